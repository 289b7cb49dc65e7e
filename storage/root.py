"""The Carve root handle: a root is opened once, and the handle is passed down.

`open_root(uri)` resolves a root URI (a local path, `file://`, or any `pyarrow.fs` URI such
as `s3://bucket/prefix`) into a `Root`: the filesystem, the base path on it, and the catalog
(opened lazily, once). Code below the command line and the service takes a `Root`, never a
URI string that it resolves again, so local roots, object stores and another catalog backend
plug in here, in one place.

Everything under a root is addressed by a relative path (`root.path("shards", "v001")`).
The handle pickles as its URI, so Ray tasks get a handle of their own on the worker; the
catalog is not shipped (workers write files, the driver records them).

Layout (docs/FORMATS.md): `catalog.sqlite`, `events/batch=<id>/part-*.parquet`,
`clusters/vNNN/`, `shards/vNNN/` + `manifest.json`, `reports/`, `jobs/`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs

from carve.storage import fs as fsx

if TYPE_CHECKING:
    from carve.storage.catalog import Catalog


class Root:
    """An opened Carve root: `fs`, `base` (the root's path on `fs`) and `catalog`."""

    def __init__(self, uri: str, fs: pafs.FileSystem, base: str):
        self.uri = uri
        self.fs = fs
        self.base = base.rstrip("/") or "/"
        self._catalog: Catalog | None = None

    # -- identity ---------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"Root({self.uri!r})"

    def __str__(self) -> str:
        return self.uri

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return open_root, (self.uri,)

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
        """A URI for a path on `fs` that `open_root`/`fs.resolve` would open again."""
        if self.is_local:
            return path
        scheme = self.uri.split("://", 1)[0]
        return f"{scheme}://{path}"

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


def open_root(uri: str | Path | Root) -> Root:
    """Open a root URI once; a `Root` passes through unchanged."""
    if isinstance(uri, Root):
        return uri
    fs, base = fsx.resolve(uri)
    return Root(str(uri), fs, base)

