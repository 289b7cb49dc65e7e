"""The Carve root handle: a root is opened once, and the handle is passed down.

`open_root(uri, catalog_url=None)` resolves a root URI (a local path, `file://`, or any
`pyarrow.fs` URI such as `s3://bucket/prefix`, optionally with connection settings as a query:
`s3://bucket/prefix?endpoint_override=http://host:9000`) into a `Root`: the filesystem, the
base path on it, and the catalog (opened lazily, once). Code below the command line and the
service takes a `Root`, never a URI string that it resolves again, so local roots, object
stores and another catalog backend plug in here, in one place.

The catalog is a database at a SQLAlchemy URL (`carve.storage.catalog`): `catalog_url` if
given (the `catalog.url` setting), else `CARVE_CATALOG_URL` from the environment, else the
embedded SQLite file `<root>/catalog.sqlite` of a local root. An object-store root has no
default: it needs PostgreSQL (`postgresql+psycopg://user@host/db`) or an explicit SQLite file
on a local disk (`sqlite:////var/lib/carve/catalog.sqlite`), and `root.catalog` says so.

Everything under a root is addressed by a relative path (`root.path("shards", "v001")`).
The handle pickles as its URI, query included, so a Ray task gets a handle of its own on the
worker that reaches the same object store; the catalog (and its URL, which may hold a
password) is not shipped: workers write files, the driver records them.

Layout (docs/FORMATS.md): `catalog.sqlite`, `events/batch=<id>/part-*.parquet`,
`clusters/vNNN/`, `shards/vNNN/` + `manifest.json`, `reports/`, `jobs/`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs

from carve.core.errors import CarveError
from carve.storage import fs as fsx

if TYPE_CHECKING:
    from carve.core.config import CarveConfig
    from carve.storage.catalog import Catalog


class Root:
    """An opened Carve root: `fs`, `base` (the root's path on `fs`) and `catalog`."""

    def __init__(self, uri: str, fs: pafs.FileSystem, base: str, catalog_url: str | None = None):
        self.uri = uri
        self.fs = fs
        self.base = base.rstrip("/") or "/"
        self._catalog_url = catalog_url  # explicit; None = CARVE_CATALOG_URL or the default
        self._catalog: Catalog | None = None

    # -- identity ---------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"Root({self.uri!r})"

    def __str__(self) -> str:
        return self.uri

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return _reopen, (self.uri,)

    @property
    def is_local(self) -> bool:
        return fsx.is_local(self.fs)

    @property
    def local_dir(self) -> Path:
        """The root as a local directory; a clear error for an object-store root."""
        if not self.is_local:
            raise ValueError(f"{self.uri} is not a local directory")
        return Path(self.base)

    # -- paths ------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        """The path on `fs` of `parts` below the root."""
        return fsx.join(self.base, *parts) if parts else self.base

    def relative(self, path: str) -> str:
        """`path` (on `fs`) relative to the root."""
        return path[len(self.base):].lstrip("/") if path.startswith(self.base) else path

    def uri_of(self, path: str) -> str:
        """A URI for a path on `fs` that `open_root`/`fs.resolve` would open again (the root's
        query, e.g. its endpoint, included)."""
        if self.is_local:
            return path
        return fsx.uri_with(self.uri, path)

    # -- files ------------------------------------------------------------------------
    def exists(self, *parts: str) -> bool:
        return fsx.exists(self.fs, self.path(*parts))

    def makedirs(self, *parts: str) -> str:
        p = self.path(*parts)
        fsx.makedirs(self.fs, p)
        return p

    def list_files(self, *parts: str, suffix: str = "") -> list[str]:
        """Files (fs paths) below `parts`, recursively, ending in `suffix`; temp files skipped."""
        return fsx.list_files_at(self.fs, self.path(*parts), suffix)

    def list_dirs(self, *parts: str) -> list[str]:
        """Names of the directories directly below `parts`, sorted."""
        return fsx.list_dirs_at(self.fs, self.path(*parts))

    def read_bytes(self, path: str) -> bytes:
        return fsx.read_bytes_at(self.fs, path)

    def write_bytes(self, path: str, data: bytes) -> None:
        fsx.atomic_write_bytes_at(self.fs, path, data)

    def write_table(self, path: str, table: pa.Table, **kwargs: Any) -> int:
        return fsx.atomic_write_table_at(self.fs, path, table, **kwargs)

    def open_input(self, path: str) -> Any:
        return self.fs.open_input_file(path)

    # -- catalog ----------------------------------------------------------------------
    @property
    def catalog_url(self) -> str | None:
        """The SQLAlchemy URL of this root's catalog (explicit, else `CARVE_CATALOG_URL`, else
        `sqlite:///<root>/catalog.sqlite` for a local root); None for an object-store root
        without one (opening its catalog then fails with what to set)."""
        from carve.storage.catalog import catalog_url_for

        return catalog_url_for(self, self._catalog_url)

    @property
    def catalog(self) -> Catalog:
        """The catalog of this root, opened on first use and kept for the handle's life."""
        if self._catalog is None:
            from carve.storage.catalog import Catalog

            self._catalog = Catalog.for_root(self)
        return self._catalog

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    def __enter__(self) -> Root:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_root(uri: str | Path | Root, catalog_url: str | None = None) -> Root:
    """Open a root URI once, with its catalog at `catalog_url` (default: see the module doc);
    a `Root` passes through unchanged. An object-store root is checked once here: an endpoint
    that cannot be reached, refused credentials or a missing bucket raise `CarveError` naming
    the root, before any work starts."""
    if isinstance(uri, Root):
        if catalog_url is not None and catalog_url != uri._catalog_url:
            raise ValueError(f"{uri.uri} is already open with another catalog")
        return uri
    root = _reopen(str(uri), catalog_url)
    if not root.is_local:
        _check_reachable(root)
    return root


def _reopen(uri: str, catalog_url: str | None = None) -> Root:
    """A handle without the reachability check (how a pickled handle comes back on a worker)."""
    fs, base = fsx.resolve(uri)
    return Root(uri, fs, base, catalog_url=catalog_url)


def _check_reachable(root: Root) -> None:
    bucket = root.base.lstrip("/").split("/", 1)[0]
    try:  # few attempts: a wrong endpoint is reported at once, not after the long retries of a run
        info = fsx.with_max_attempts(root.fs, 3).get_file_info(bucket)
    except OSError as e:
        reason = str(e).strip().splitlines()[0][:300]
        raise CarveError(
            f"root {root.uri}: cannot reach the object store ({reason}); check the endpoint "
            "(AWS_ENDPOINT_URL_S3, or endpoint_override= in the URI) and the credentials (AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY)"
        ) from None
    if info.type == pafs.FileType.NotFound:
        raise CarveError(f"root {root.uri}: bucket {bucket!r} does not exist on this object store; create it first")


def root_of(cfg: CarveConfig) -> Root:
    """Open the root of a Carve config, with its catalog URL (`catalog.url`) when one is set."""
    return open_root(cfg.root, catalog_url=cfg.catalog.url)
