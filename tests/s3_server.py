"""An S3-compatible server for the tests: moto in server mode on 127.0.0.1, never real AWS.

`s3_server` (session) starts `moto_server -H 127.0.0.1 -p <free port>` (moto[server], a dev
dependency) and refuses any other host. `s3` (per test) points this process and every
subprocess it starts at it: test credentials, `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_S3` set to
the server, no EC2 metadata lookups, no AWS config files; and gives a fresh bucket.
`s3.uri(prefix)` is an `s3://` URI that also carries the endpoint as its query
(`?endpoint_override=http://127.0.0.1:<port>`), the form that travels with a root to other
processes and Ray workers.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class S3Server:
    def __init__(self, host: str, port: int):
        if host != HOST:
            raise RuntimeError(f"the test S3 server must listen on {HOST}, not {host}")
        self.host, self.port = host, port
        self.endpoint = f"http://{host}:{port}"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "carve-test", "AWS_SECRET_ACCESS_KEY": "carve-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint, "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }


class S3Bucket:
    """A fresh bucket on the test server."""

    def __init__(self, server: S3Server, name: str):
        import pyarrow.fs as pafs

        self.server = server
        self.name = name
        self.fs = pafs.S3FileSystem(endpoint_override=server.endpoint, access_key="carve-test",
                                    secret_key="carve-test-secret", region="us-east-1", allow_bucket_creation=True)
        self.fs.create_dir(name)

    def uri(self, prefix: str = "", *, query: bool = True) -> str:
        base = f"s3://{self.name}/{prefix.strip('/')}".rstrip("/")
        return f"{base}?endpoint_override={self.server.endpoint}" if query else base

    def upload(self, local: str | Path, prefix: str) -> str:
        """Copy a local folder to `<bucket>/<prefix>`; return its URI (with the endpoint query)."""
        import pyarrow.fs as pafs

        pafs.copy_files(str(local), f"{self.name}/{prefix.strip('/')}", source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=self.fs)
        return self.uri(prefix)

    def keys(self, prefix: str = "") -> list[str]:
        """Object keys below `prefix`, relative to it."""
        import pyarrow.fs as pafs

        base = f"{self.name}/{prefix.strip('/')}".rstrip("/")
        infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        return sorted(i.path[len(base) + 1:] for i in infos if i.type == pafs.FileType.File)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    moto = Path(sys.executable).parent / "moto_server"
    if not moto.exists():
        pytest.fail("moto_server not found: pip install 'moto[server]' (a dev dependency of carve)")
    server = S3Server(HOST, _free_port())
    proc = subprocess.Popen([str(moto), "-H", server.host, "-p", str(server.port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                with socket.create_connection((server.host, server.port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"moto_server did not start on {server.endpoint}") from None
                time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Bucket:
    """The test S3 server in this process's environment (inherited by subprocesses), and a fresh bucket."""
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    return S3Bucket(s3_server, f"carve-{secrets.token_hex(4)}")
