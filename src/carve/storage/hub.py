"""The Hugging Face Hub as a read-only filesystem: `hf://datasets/<org>/<name>[@<revision>][/<path>]`.

Owns the Hub side of a source (the reader of what is in it is `carve.ingest.sources`):

* `HubPath` / `parse_hub_uri(uri)`: the parts of an `hf://` URI (dataset repos only);
* `pin(uri) -> HubPath`: the revision (a branch, tag or commit; `main` when none is given)
  resolved to its commit with one revision-info request, so every later read names the commit
  (`hf://datasets/org/name@<40 hex>`) and a run reads one snapshot even if the branch moves.
  A gated or private repo (HTTP 401/403), a missing repo and a missing revision raise
  `HubError` saying which and what to do;
* `hub_filesystem()`: a `pyarrow.fs` filesystem over the Hub (what `storage.fs.resolve` returns
  for `hf://`): listings come from the Hub's tree API (`huggingface_hub.HfFileSystem`), and file
  bytes from HTTP range requests through a block cache, so only the byte ranges a reader asks
  for are fetched, and each block at most once: the blocks of a file at a commit are kept on
  local disk (`CARVE_HUB_CACHE`, default `<HF_HOME>/carve/blocks`), shared by the processes of a
  node under a per-block file lock, so the v3.0 video file that many episodes share is not
  fetched again for each of them, nor by each Ray worker. Blocks are `CARVE_HUB_BLOCK_KB` KiB
  (default 1024).
* A file already in huggingface_hub's own cache (`hf download`, `snapshot_download`) for that
  commit is read from there. With `HF_HUB_OFFLINE=1` the revision resolves from that cache and
  every read is served by the cached snapshot; nothing is asked of the network.

Failures: a range request that fails (connection reset mid-file, a short body, 5xx, 429) is
retried `HUB_MAX_ATTEMPTS` times with a short backoff; then `HubError` (a `StorageError`, so
an `OSError` and a `CarveError`) names the repo, the commit, the file and the byte range.

Credentials: huggingface_hub finds the token where it always does (`HF_TOKEN`, the file
`hf auth login` writes); Carve never reads, logs or stores it. `HF_ENDPOINT` points at
another Hub (a mirror, or the tests' loopback server).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import fsspec
import pyarrow.fs as pafs

from carve.core import env
from carve.storage.fs import StorageError

SCHEME = "hf://"
REPO_TYPE = "datasets"
DEFAULT_REVISION = "main"
HUB_MAX_ATTEMPTS = 4  # per range request, first try included (backoff 0.25, 0.5, 1 s)
BLOCK_KB_DEFAULT = 1024
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_TIMEOUT_S = 60.0
_MEM_BLOCKS = 8  # blocks of one open file kept in memory


class HubError(StorageError):
    """A Hub repo, revision or file Carve cannot read; the message names it and what to do."""


@dataclass(frozen=True)
class HubPath:
    """`hf://datasets/<repo_id>@<revision>/<path>`: `revision` None means the default branch."""

    repo_id: str
    revision: str | None = None
    path: str = ""

    @property
    def commit(self) -> str | None:
        """The revision when it is a commit id (40 hex digits), else None."""
        return self.revision if self.revision and _COMMIT.match(self.revision) else None

    @property
    def name(self) -> str:
        """The repo's name without its owner (`lerobot/pusht` -> `pusht`)."""
        return self.repo_id.rsplit("/", 1)[-1]

    def fs_path(self, path: str | None = None) -> str:
        """The path on `hub_filesystem()` (`datasets/org/name@rev/path`)."""
        rev = f"@{quote(self.revision, safe='')}" if self.revision else ""
        rel = self.path if path is None else path
        return f"{REPO_TYPE}/{self.repo_id}{rev}" + (f"/{rel.strip('/')}" if rel.strip("/") else "")

    @property
    def uri(self) -> str:
        return SCHEME + self.fs_path()

    def __str__(self) -> str:
        return self.uri


def is_hub_uri(uri: object) -> bool:
    return isinstance(uri, str) and uri.startswith(SCHEME)


def parse_hub_uri(uri: str) -> HubPath:
    """The parts of `hf://datasets/<org>/<name>[@<revision>][/<path>]`; `HubError` otherwise."""
    if not is_hub_uri(uri):
        raise HubError(f"{uri}: not a Hub URI (hf://datasets/<org>/<name>[@<revision>])")
    rest = uri[len(SCHEME):].split("?", 1)[0].strip("/")
    parts = rest.split("/")
    if parts[0] != REPO_TYPE:
        kind = parts[0] if parts[0] in ("models", "spaces") else None
        what = f"a {kind[:-1]} repo" if kind else "not a dataset repo"
        raise HubError(f"{uri}: {what}; Carve reads dataset repos: hf://datasets/<org>/<name>[@<revision>]")
    if len(parts) < 3 or not parts[1] or not parts[2]:
        raise HubError(f"{uri}: expected hf://datasets/<org>/<name>[@<revision>]")
    org, name = parts[1], parts[2]
    revision = None
    if "@" in name:
        name, _, revision = name.partition("@")
        from urllib.parse import unquote

        revision = unquote(revision) or None
    return HubPath(f"{org}/{name}", revision, "/".join(parts[3:]))


def _split_fs_path(path: str) -> tuple[HubPath, str]:
    """(repo at its revision, path inside it) of a path on the Hub filesystem."""
    hp = parse_hub_uri(SCHEME + path.lstrip("/"))
    return replace(hp, path=""), hp.path


# -- settings ----------------------------------------------------------------------------------
def endpoint() -> str:
    from huggingface_hub import constants

    return (env.hf_endpoint() or constants.ENDPOINT).rstrip("/")


def offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def block_size() -> int:
    raw = env.hub_block_kb()
    try:
        kb = int(raw) if raw else BLOCK_KB_DEFAULT
    except ValueError:
        kb = 0
    if kb < 1:
        raise HubError(f"{env.HUB_BLOCK_KB}={raw!r}: expected a whole number of KiB >= 1")
    return kb * 1024


def cache_dir() -> str:
    from huggingface_hub import constants

    return env.hub_cache() or os.path.join(constants.HF_HOME, "carve", "blocks")


# -- revisions ---------------------------------------------------------------------------------
def _hub_error(hp: HubPath, e: Exception, what: str = "") -> HubError:
    """A `HubError` for a huggingface_hub exception `e` met while reading `hp`."""
    from huggingface_hub import errors as hfe

    repo = f"dataset repo {hp.repo_id}"
    status = getattr(getattr(e, "response", None), "status_code", None)
    login = "log in with `hf auth login` or set HF_TOKEN"
    if isinstance(e, hfe.GatedRepoError):
        return HubError(f"{repo} is gated (HTTP {status}): accept its conditions on the Hub with the account "
                        f"whose token Carve uses, then {login}")
    if isinstance(e, hfe.RevisionNotFoundError):
        return HubError(f"{repo}: revision {hp.revision!r} not found (no such branch, tag or commit)")
    if isinstance(e, hfe.RepositoryNotFoundError):
        return HubError(f"{repo} not found (HTTP {status}); if it is private or gated, {login} "
                        "with an account that can read it")
    if status in (401, 403):
        return HubError(f"{repo}: access denied (HTTP {status}){what}; {login} with an account that can read it")
    if isinstance(e, hfe.OfflineModeIsEnabled):
        return HubError(f"{repo}: HF_HUB_OFFLINE is set and {what or 'the revision'} is not in the local cache")
    text = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
    return HubError(f"{repo}{what}: {text}")


def pin(uri: str) -> HubPath:
    """`uri` at the commit its revision names now (one revision-info request; offline, the
    local cache's record of it). Raises `HubError` for a gated, private or missing repo or
    revision, or an unreachable Hub."""
    hp = parse_hub_uri(uri)
    rev = hp.revision or DEFAULT_REVISION
    if offline():
        return replace(hp, revision=_cached_snapshot(hp, rev)[1])
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=endpoint()).dataset_info(hp.repo_id, revision=rev, timeout=_TIMEOUT_S)
    except Exception as e:  # huggingface_hub's HTTP errors, connection errors
        raise _hub_error(replace(hp, revision=rev), e, f" (at {endpoint()})") from None
    if not info.sha:
        raise HubError(f"dataset repo {hp.repo_id}: the Hub at {endpoint()} gave no commit for revision {rev!r}")
    return replace(hp, revision=str(info.sha))


def _cached_snapshot(hp: HubPath, rev: str) -> tuple[str, str]:
    """(snapshot folder, commit) of `hp` at `rev` in huggingface_hub's cache (offline mode)."""
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(hp.repo_id, repo_type="dataset", revision=rev, local_files_only=True)
    except Exception:
        raise HubError(f"dataset repo {hp.repo_id}: HF_HUB_OFFLINE is set and revision {rev!r} is not in the "
                       "local Hugging Face cache (download it first, e.g. `hf download --repo-type dataset "
                       f"{hp.repo_id} --revision {rev}`, or unset HF_HUB_OFFLINE)") from None
    return folder, os.path.basename(os.path.normpath(folder))


# -- block cache -------------------------------------------------------------------------------
class BlockCache:
    """Blocks of Hub files on local disk, one file per block, written once under a file lock.

    A block is keyed by (repo, commit, path, block size, index): a commit never changes, so a
    block never goes stale."""

    def __init__(self, root: str, size: int):
        self.root = root
        self.size = size

    def _dir(self, hp: HubPath, rel: str) -> str:
        key = hashlib.sha1(f"{hp.repo_id}@{hp.revision}/{rel}".encode()).hexdigest()
        return os.path.join(self.root, key[:2], key, str(self.size))

    def read(self, hp: HubPath, rel: str, size: int, first: int, last: int) -> list[bytes]:
        """Blocks `first..last` (inclusive) of the file `rel` (`size` bytes) of `hp`."""
        folder = self._dir(hp, rel)
        out: dict[int, bytes] = {}
        missing = []
        for b in range(first, last + 1):
            data = _read_file(os.path.join(folder, f"{b}"))
            if data is None:
                missing.append(b)
            else:
                out[b] = data
        if missing:
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as e:
                raise HubError(f"cannot write the Hub block cache {folder} ({e.strerror or e}); point "
                               f"{env.HUB_CACHE} at a writable folder") from None
            for run in _runs(missing):
                out.update(self._fetch_run(hp, rel, size, folder, run))
        return [out[b] for b in range(first, last + 1)]

    def _fetch_run(self, hp: HubPath, rel: str, size: int, folder: str, run: list[int]) -> dict[int, bytes]:
        """Fetch the consecutive blocks `run` under their locks (ascending, so never a deadlock);
        blocks another process wrote meanwhile are read from disk, not fetched."""
        locks = []
        try:
            for b in run:
                fd = os.open(os.path.join(folder, f"{b}.lock"), os.O_CREAT | os.O_RDWR, 0o644)
                fcntl.flock(fd, fcntl.LOCK_EX)
                locks.append(fd)
            out: dict[int, bytes] = {}
            still = []
            for b in run:
                data = _read_file(os.path.join(folder, f"{b}"))
                if data is None:
                    still.append(b)
                else:
                    out[b] = data
            for sub in _runs(still):
                start = sub[0] * self.size
                end = min(size, (sub[-1] + 1) * self.size)
                data = _fetch_range(hp, rel, start, end)
                for b in sub:
                    chunk = data[(b - sub[0]) * self.size:(b - sub[0] + 1) * self.size]
                    _write_atomic(os.path.join(folder, f"{b}"), chunk)
                    out[b] = chunk
            return out
        finally:
            for fd in locks:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)


def _runs(blocks: list[int]) -> list[list[int]]:
    """Consecutive runs of sorted block numbers."""
    runs: list[list[int]] = []
    for b in blocks:
        if runs and runs[-1][-1] == b - 1:
            runs[-1].append(b)
        else:
            runs.append([b])
    return runs


def _read_file(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def resolve_url(hp: HubPath, rel: str) -> str:
    return f"{endpoint()}/{REPO_TYPE}/{hp.repo_id}/resolve/{quote(hp.revision or DEFAULT_REVISION, safe='')}/" + \
        quote(rel)


def _fetch_range(hp: HubPath, rel: str, start: int, end: int) -> bytes:
    """Bytes [start, end) of `rel`, by one HTTP range request, retried on transient failures."""
    from huggingface_hub.utils import build_hf_headers, get_session

    where = f"{hp.uri}/{rel} (repo {hp.repo_id}, commit {hp.revision}, file {rel}, bytes {start}-{end - 1})"
    want = end - start
    reason = ""
    for attempt in range(HUB_MAX_ATTEMPTS):
        if attempt:
            time.sleep(0.25 * 2 ** (attempt - 1))
        try:
            headers = {**build_hf_headers(), "Range": f"bytes={start}-{end - 1}"}
            r = get_session().get(resolve_url(hp, rel), headers=headers, timeout=_TIMEOUT_S)
        except Exception as e:  # connection refused/reset, a body cut short, a timeout
            reason = f"{type(e).__name__}: {str(e).strip()[:200]}"
            continue
        if r.status_code in (401, 403):
            login = "log in with `hf auth login` or set HF_TOKEN"
            if r.headers.get("X-Error-Code") == "GatedRepo":
                raise HubError(f"cannot read {where}: the repo is gated (HTTP {r.status_code}): accept its "
                               f"conditions on the Hub with the account whose token Carve uses, then {login}")
            raise HubError(f"cannot read {where}: access denied (HTTP {r.status_code}); the repo is private or "
                           f"gated: {login} with an account that can read it")
        if r.status_code == 404:
            raise HubError(f"cannot read {where}: not found (HTTP 404)")
        if r.status_code == 429 or r.status_code >= 500:
            reason = f"HTTP {r.status_code}"
            continue
        if r.status_code not in (200, 206):
            raise HubError(f"cannot read {where}: HTTP {r.status_code}")
        body = r.content
        if r.status_code == 200:  # a server that ignores Range sends the whole file
            body = body[start:end]
        if len(body) != want:
            reason = f"the server sent {len(body)} of {want} bytes"
            continue
        return body
    raise HubError(f"cannot read {where}: {reason} (tried {HUB_MAX_ATTEMPTS} times)")


class HubFile(io.RawIOBase):
    """A seekable read-only file on the Hub whose bytes come through a `BlockCache`."""

    def __init__(self, cache: BlockCache, hp: HubPath, rel: str, size: int):
        super().__init__()
        self.cache = cache
        self.hp = hp
        self.rel = rel
        self.size = int(size)
        self.pos = 0
        self._mem: OrderedDict[int, bytes] = OrderedDict()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + int(offset))
        return self.pos

    def _blocks(self, first: int, last: int) -> list[bytes]:
        need = [b for b in range(first, last + 1) if b not in self._mem]
        if need:
            got = self.cache.read(self.hp, self.rel, self.size, need[0], need[-1])
            for b, data in zip(range(need[0], need[-1] + 1), got, strict=True):
                self._mem[b] = data
        out = []
        for b in range(first, last + 1):
            self._mem.move_to_end(b)
            out.append(self._mem[b])
        while len(self._mem) > max(_MEM_BLOCKS, last - first + 1):
            self._mem.popitem(last=False)
        return out

    def read(self, n: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        end = self.size if n is None or n < 0 else min(self.size, self.pos + n)
        if end <= self.pos:
            return b""
        bs = self.cache.size
        first, last = self.pos // bs, (end - 1) // bs
        data = b"".join(self._blocks(first, last))
        out = data[self.pos - first * bs:end - first * bs]
        self.pos = end
        return out

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)


# -- filesystem --------------------------------------------------------------------------------
class HubFileSystem(fsspec.AbstractFileSystem):
    """A read-only fsspec filesystem over dataset repos (see the module docstring); paths are
    `datasets/<org>/<name>@<revision>/<path>`."""

    protocol = "carvehf"
    root_marker = ""
    cachable = False

    def __init__(self, endpoint_url: str, offline_mode: bool, blocks_dir: str, block_bytes: int):
        super().__init__()
        self.endpoint_url = endpoint_url
        self.offline_mode = offline_mode
        self.blocks = BlockCache(blocks_dir, block_bytes)
        self._hf: Any = None
        self._snapshots: dict[tuple[str, str], str] = {}
        if not offline_mode:
            from huggingface_hub import HfFileSystem

            # one instance for every thread (pyarrow calls from its own threads): one listing per process
            self._hf = HfFileSystem(endpoint=endpoint_url, skip_instance_cache=True)

    def __reduce__(self) -> tuple[Any, ...]:
        return (HubFileSystem, (self.endpoint_url, self.offline_mode, self.blocks.root, self.blocks.size))

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        p = str(path)
        for prefix in (SCHEME, "carvehf://"):
            if p.startswith(prefix):
                p = p[len(prefix):]
        return p.strip("/")

    # offline: the snapshot in huggingface_hub's cache --------------------------------------
    def _local(self, path: str) -> tuple[str, str]:
        """(local path, hub prefix) of `path` in the cached snapshot (offline mode)."""
        hp, rel = _split_fs_path(self._strip_protocol(path))
        key = (hp.repo_id, hp.revision or DEFAULT_REVISION)
        if key not in self._snapshots:
            self._snapshots[key] = _cached_snapshot(hp, key[1])[0]
        return os.path.join(self._snapshots[key], rel), hp.fs_path("")

    def _local_info(self, local: str, name: str) -> dict[str, Any]:
        if not os.path.exists(local):
            raise FileNotFoundError(name)
        if os.path.isdir(local):
            return {"name": name, "size": 0, "type": "directory"}
        return {"name": name, "size": os.path.getsize(local), "type": "file"}

    # the fsspec interface ---------------------------------------------------------------
    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        if self.offline_mode:
            return self._local_info(self._local(path)[0], path)
        return self._call(path, self._hf.info, path)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        if self.offline_mode:
            local, _ = self._local(path)
            if not os.path.isdir(local):
                return [self.info(path)] if detail else [path]
            out = [self._local_info(os.path.join(local, n), f"{path}/{n}") for n in sorted(os.listdir(local))]
            return out if detail else [o["name"] for o in out]
        return self._call(path, self._hf.ls, path, detail=detail)

    def find(self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False,
             **kwargs: Any) -> Any:
        path = self._strip_protocol(path)
        if self.offline_mode:
            return super().find(path, maxdepth=maxdepth, withdirs=withdirs, detail=detail, **kwargs)
        return self._call(path, self._hf.find, path, maxdepth=maxdepth, withdirs=withdirs, detail=detail)

    def _call(self, path: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError:
            raise
        except Exception as e:  # HTTP errors of the tree API
            hp, rel = _split_fs_path(path)
            raise _hub_error(hp, e, f" (listing {rel or '/'})") from None

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "r" not in mode or "+" in mode:
            raise HubError(f"{SCHEME}{path}: the Hub is read-only for Carve")
        path = self._strip_protocol(path)
        if self.offline_mode:
            local, _ = self._local(path)
            if not os.path.isfile(local):
                raise FileNotFoundError(f"{SCHEME}{path}")
            return open(local, "rb")
        hp, rel = _split_fs_path(path)
        cached = _in_hub_cache(hp, rel)
        if cached is not None:
            return open(cached, "rb")
        info = self.info(path)
        if info["type"] != "file":
            raise IsADirectoryError(f"{SCHEME}{path}")
        return HubFile(self.blocks, hp, rel, int(info["size"]))

    def stamp(self, path: str) -> list[Any]:
        """[name, size, content id] of a file (its LFS sha256 or git blob id), for fingerprints."""
        info = self.info(path)
        lfs = info.get("lfs")
        oid = (lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)) or info.get("blob_id")
        return [path.rsplit("/", 1)[-1], int(info.get("size") or 0), oid]


def _in_hub_cache(hp: HubPath, rel: str) -> str | None:
    """The file in huggingface_hub's own cache at this commit, if it is there."""
    if not hp.commit:
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(hp.repo_id, rel, revision=hp.commit, repo_type="dataset")
    return found if isinstance(found, str) and os.path.isfile(found) else None


_FILESYSTEMS: dict[tuple[str, bool, str, int], tuple[HubFileSystem, pafs.FileSystem]] = {}
_FS_LOCK = threading.Lock()


def hub_fsspec() -> HubFileSystem:
    """This process's Hub filesystem for the current settings (one per endpoint and cache)."""
    return _hub()[0]


def hub_filesystem() -> pafs.FileSystem:
    """`hub_fsspec()` as a `pyarrow.fs` filesystem."""
    return _hub()[1]


def _hub() -> tuple[HubFileSystem, pafs.FileSystem]:
    key = (endpoint(), offline(), cache_dir(), block_size())
    with _FS_LOCK:
        if key not in _FILESYSTEMS:
            fs = HubFileSystem(*key)
            _FILESYSTEMS[key] = (fs, pafs.PyFileSystem(pafs.FSSpecHandler(fs)))
        return _FILESYSTEMS[key]
