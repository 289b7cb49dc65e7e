"""A loopback server that speaks the Hugging Face Hub's HTTP protocol for dataset repos.

`huggingface_hub` (and so Carve's `hf://` sources) reaches it through `HF_ENDPOINT`. It serves
folders added with `HubServer.add_repo(repo_id, folder)` as one commit each and answers what
huggingface_hub asks of a dataset repo, with the Hub's headers:

* `GET /api/datasets/{repo}/revision/{rev}`: revision info (`sha`, `siblings`, `gated`);
* `GET /api/datasets/{repo}/tree/{rev}[/{path}]?recursive=...`: the tree listing (files with
  `oid`, `size` and, for LFS files, `lfs` {oid, size, pointerSize}; directories);
* `POST /api/datasets/{repo}/paths-info/{rev}`: infos of named paths;
* `HEAD`/`GET /datasets/{repo}/resolve/{rev}/{path}` with `Range` (206 + `Content-Range`),
  `X-Repo-Commit`, `ETag`, `Content-Length`, `Accept-Ranges: bytes` and, for LFS files,
  `X-Linked-Size`/`X-Linked-Etag`.

Errors use the Hub's `X-Error-Code` header: `RevisionNotFound` (404), `RepoNotFound` (401/404),
`GatedRepo` (401 without a token, 403 with a token that was not granted access). It counts
the body bytes it serves from `resolve` (`bytes_served`, and per file `served`), and can be told to
fail mid-file: `fail_mid_file(path, times)` cuts the next `times` GETs of that file after half
their body (`times=-1`: always).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".parquet", ".mp4", ".arrow", ".safetensors")


@dataclass
class HubFile:
    data: bytes
    lfs: bool

    @property
    def blob_oid(self) -> str:
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def entry(self, path: str) -> dict:
        out: dict = {"type": "file", "oid": self.blob_oid, "size": len(self.data), "path": path}
        if self.lfs:
            out["lfs"] = {"oid": self.sha256, "size": len(self.data), "pointerSize": 134}
        return out


@dataclass
class HubRepo:
    repo_id: str
    commits: dict[str, dict[str, HubFile]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    gated: bool = False
    granted_tokens: set[str] = field(default_factory=set)  # tokens that may read a gated repo
    private: bool = False

    def commit_of(self, rev: str) -> str | None:
        if rev in self.refs:
            return self.refs[rev]
        return rev if rev in self.commits else None

    @property
    def size(self) -> int:
        """Bytes of the files of the repo's `main` commit."""
        return sum(len(f.data) for f in self.commits[self.refs["main"]].values())


class HubServer:
    """The server (see the module docstring): `endpoint`, `add_repo`, counters, failure knobs."""

    def __init__(self) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.bytes_served = 0
        self.served: dict[str, int] = {}  # path in repo -> body bytes served
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.auth_headers: list[str | None] = []
        self._fail: dict[str, int] = {}
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def add_repo(self, repo_id: str, folder: Path, *, branch: str = "main", gated: bool = False,
                 private: bool = False) -> str:
        """Serve the files under `folder` as a new commit of `repo_id` on `branch`; its sha."""
        files = {}
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                rel = p.relative_to(folder).as_posix()
                files[rel] = HubFile(p.read_bytes(), rel.endswith(LFS_SUFFIXES))
        h = hashlib.sha1()
        for rel, f in files.items():
            h.update(rel.encode() + b"\0" + f.blob_oid.encode())
        repo = self.repos.setdefault(repo_id, HubRepo(repo_id))
        h.update(str(len(repo.commits)).encode())
        sha = h.hexdigest()
        repo.commits[sha] = files
        repo.refs[branch] = sha
        repo.gated = repo.gated or gated
        repo.private = repo.private or private
        return sha

    def fail_mid_file(self, path: str, times: int = -1) -> None:
        with self._lock:
            self._fail[path] = times

    def reset_counts(self) -> None:
        with self._lock:
            self.bytes_served = 0
            self.served = {}
            self.requests = []

    def _should_fail(self, path: str) -> bool:
        with self._lock:
            n = self._fail.get(path, 0)
            if n == 0:
                return False
            if n > 0:
                self._fail[path] = n - 1
            return True

    def _count(self, path: str, n: int) -> None:
        with self._lock:
            self.bytes_served += n
            self.served[path] = self.served.get(path, 0) + n


API = re.compile(r"^/api/datasets/([^/]+/[^/]+)/(revision|tree|paths-info)/([^/]+)(?:/(.*))?$")
RESOLVE = re.compile(r"^/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


def _handler(server: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            pass

        # -- helpers ------------------------------------------------------------------------
        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                  content_type: str = "application/json", head: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _error(self, status: int, code: str, message: str, head: bool = False) -> None:
            body = json.dumps({"error": message}).encode()
            self._send(status, body, {"X-Error-Code": code, "X-Error-Message": message}, head=head)

        def _repo(self, repo_id: str, head: bool = False, check_gate: bool = False) -> HubRepo | None:
            repo = server.repos.get(repo_id)
            token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip() or None
            if repo is None or (repo.private and token not in repo.granted_tokens):
                self._error(401 if token is None else 404, "RepoNotFound", "Repository not found", head)
                return None
            if check_gate and repo.gated and token not in repo.granted_tokens:
                msg = (f"Access to dataset {repo_id} is restricted. You must have access to it and be "
                       "authenticated to access it. Please log in.")
                self._error(401 if token is None else 403, "GatedRepo", msg, head)
                return None
            return repo

        def _commit(self, repo: HubRepo, rev: str, head: bool = False) -> str | None:
            sha = repo.commit_of(unquote(rev))
            if sha is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {unquote(rev)}", head)
            return sha

        # -- methods --------------------------------------------------------------------------
        def do_HEAD(self) -> None:
            self._dispatch(head=True)

        def do_GET(self) -> None:
            self._dispatch(head=False)

        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            self._dispatch(head=False, body=body)

        def _dispatch(self, head: bool, body: bytes = b"") -> None:
            url = urlsplit(self.path)
            with server._lock:
                server.requests.append((self.command, url.path, self.headers.get("Range")))
                server.auth_headers.append(self.headers.get("Authorization"))
            m = RESOLVE.match(url.path)
            if m:
                return self._resolve(m.group(1), m.group(2), unquote(m.group(3)), head)
            m = API.match(url.path)
            if m:
                repo_id, kind, rev, sub = m.groups()
                repo = self._repo(repo_id, head)
                if repo is None:
                    return
                sha = self._commit(repo, rev, head)
                if sha is None:
                    return
                if kind == "revision":
                    return self._revision(repo, sha)
                if kind == "tree":
                    q = parse_qs(url.query)
                    recursive = (q.get("recursive") or ["false"])[0].lower() in ("1", "true")
                    return self._tree(repo, sha, unquote(sub or ""), recursive)
                return self._paths_info(repo, sha, body)
            self._error(404, "EntryNotFound", f"no route {url.path}", head)

        def _revision(self, repo: HubRepo, sha: str) -> None:
            files = repo.commits[sha]
            info = {"_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id,
                    "author": repo.repo_id.split("/")[0], "sha": sha, "private": repo.private,
                    "gated": "auto" if repo.gated else False, "disabled": False, "downloads": 0, "likes": 0,
                    "tags": [], "lastModified": "2026-01-01T00:00:00.000Z", "createdAt": "2026-01-01T00:00:00.000Z",
                    "siblings": [{"rfilename": p} for p in sorted(files)], "cardData": {}}
            self._send(200, json.dumps(info).encode())

        def _entries(self, files: dict[str, HubFile], base: str, recursive: bool) -> list[dict]:
            prefix = base.strip("/") + "/" if base.strip("/") else ""
            dirs: dict[str, None] = {}
            out = []
            for path, f in sorted(files.items()):
                if not path.startswith(prefix):
                    continue
                rest = path[len(prefix):]
                parts = rest.split("/")
                for i in range(1, len(parts)):
                    if not recursive and i > 1:
                        break
                    dirs.setdefault(prefix + "/".join(parts[:i]))
                if recursive or len(parts) == 1:
                    out.append(f.entry(path))
            tree = [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
                    for d in dirs]
            return tree + out

        def _tree(self, repo: HubRepo, sha: str, sub: str, recursive: bool) -> None:
            files = repo.commits[sha]
            sub = sub.strip("/")
            if sub and not any(p.startswith(sub + "/") for p in files):
                return self._error(404, "EntryNotFound", f"{sub} does not exist on {sha}")
            self._send(200, json.dumps(self._entries(files, sub, recursive)).encode())

        def _paths_info(self, repo: HubRepo, sha: str, body: bytes) -> None:
            files = repo.commits[sha]
            try:
                wanted = json.loads(body).get("paths", [])
            except ValueError:
                wanted = parse_qs(body.decode()).get("paths", [])
            out = []
            for p in wanted:
                p = p.strip("/")
                if p in files:
                    out.append(files[p].entry(p))
                elif any(q.startswith(p + "/") for q in files):
                    out.append({"type": "directory", "oid": hashlib.sha1(p.encode()).hexdigest(), "size": 0,
                                "path": p})
            self._send(200, json.dumps(out).encode())

        def _resolve(self, repo_id: str, rev: str, path: str, head: bool) -> None:
            repo = self._repo(repo_id, head, check_gate=True)
            if repo is None:
                return
            sha = self._commit(repo, rev, head)
            if sha is None:
                return
            f = repo.commits[sha].get(path)
            if f is None:
                return self._error(404, "EntryNotFound", f"{path} does not exist on {sha}", head)
            size = len(f.data)
            etag = f'"{f.sha256 if f.lfs else f.blob_oid}"'
            headers = {"X-Repo-Commit": sha, "ETag": etag, "Accept-Ranges": "bytes"}
            if f.lfs:
                headers.update({"X-Linked-Size": str(size), "X-Linked-Etag": etag})
            start, end, status = 0, size, 200
            rng = self.headers.get("Range")
            if rng:
                m = re.match(r"bytes=(\d*)-(\d*)$", rng.strip())
                if not m or (not m.group(1) and not m.group(2)):
                    return self._error(416, "RangeNotSatisfiable", f"bad range {rng}", head)
                if m.group(1):
                    start = int(m.group(1))
                    end = min(size, int(m.group(2)) + 1) if m.group(2) else size
                else:
                    start, end = max(0, size - int(m.group(2))), size
                if start >= size or end <= start:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
            body = f.data[start:end]
            content_type = "application/octet-stream"
            if head:
                return self._send(status, body, headers, content_type, head=True)
            if self._should_fail_now(path):
                half = body[: len(body) // 2]
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(half)
                self.wfile.flush()
                server._count(path, len(half))
                self.close_connection = True
                return
            self._send(status, body, headers, content_type)
            server._count(path, len(body))

        def _should_fail_now(self, path: str) -> bool:
            return server._should_fail(path)

    return Handler
