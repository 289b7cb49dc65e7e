"""A private PostgreSQL server for the tests, on 127.0.0.1, and the catalog-backend fixtures.

`postgres_server` (session) runs `initdb` + `pg_ctl start` from Debian's `postgresql` package
(`/usr/lib/postgresql/<v>/bin`, or `initdb` on PATH: `requires.postgres_bindir`) in a fresh temporary folder, listening
only on 127.0.0.1 at a free port with password authentication, as the `postgres` system user
when the tests run as root (initdb refuses root). Each test gets its own database
(`new_database()`), so catalogs never share rows. Without the binaries the PostgreSQL cases
skip with a reason naming the Debian package, unless `CARVE_REQUIRE_POSTGRES=1` (CI sets it):
then they fail (requires.py holds the probe and the rule).

`catalog_url` (per test) and `catalog_url_module` (per module) are parametrized over
`sqlite` (the embedded default: None, `<root>/catalog.sqlite`) and `postgresql` (a fresh
database whose URL is put in `CARVE_CATALOG_URL`, which every root opened meanwhile uses,
subprocesses included).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from requires import postgres_bindir, require_postgres

HOST = "127.0.0.1"
CATALOG_ENV = "CARVE_CATALOG_URL"
BACKENDS = ("sqlite", "postgresql")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class PgServer:
    """One running PostgreSQL cluster (see module doc)."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.user = "carve"
        self.password = secrets.token_hex(8)
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="carve-pg-"))
        self.data = self.dir / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            shutil.chown(self.dir, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self._n = 0

    def _run(self, *argv: str) -> None:
        r = subprocess.run([*self._as, *argv], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")

    def start(self) -> PgServer:
        pw = self.dir / "pw"
        pw.write_text(self.password + "\n")
        if self._as:
            shutil.chown(pw, "postgres", "postgres")
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user, f"--pwfile={pw}",
                  "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
        opts = (f"-k {self.dir} -p {self.port} -c listen_addresses={HOST} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log.txt"),
                  "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}:{self.password}@{HOST}:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty database; its SQLAlchemy URL."""
        import psycopg

        self._n += 1
        name = f"carve_t{self._n}_{secrets.token_hex(3)}"
        with psycopg.connect(host=HOST, port=self.port, user=self.user, password=self.password,
                             dbname="postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PgServer]:
    require_postgres()  # skips (fails under CARVE_REQUIRE_POSTGRES=1) without Debian's postgresql
    bindir = postgres_bindir()
    assert bindir is not None
    server = PgServer(bindir)
    deadline = time.time() + 5
    while True:  # a free port can be taken between probing and binding: retry on another
        try:
            server.start()
            break
        except RuntimeError:
            if time.time() > deadline:
                raise
            server.stop()
            server = PgServer(bindir)
    try:
        yield server
    finally:
        server.stop()


def _backend_url(request: pytest.FixtureRequest, backend: str) -> str | None:
    if backend == "sqlite":
        return None
    return request.getfixturevalue("postgres_server").new_database()


@pytest.fixture(params=BACKENDS)
def catalog_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """None (SQLite in the root) or a fresh PostgreSQL database, set as CARVE_CATALOG_URL."""
    url = _backend_url(request, request.param)
    if url is None:
        monkeypatch.delenv(CATALOG_ENV, raising=False)
    else:
        monkeypatch.setenv(CATALOG_ENV, url)
    return url


@pytest.fixture(scope="module", params=BACKENDS)
def catalog_url_module(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """`catalog_url` for module-scoped fixtures (one database for the module)."""
    url = _backend_url(request, request.param)
    with pytest.MonkeyPatch.context() as mp:
        if url is None:
            mp.delenv(CATALOG_ENV, raising=False)
        else:
            mp.setenv(CATALOG_ENV, url)
        yield url
