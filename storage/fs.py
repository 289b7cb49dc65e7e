"""Filesystems and atomic writes.

Every path Carve writes is on a `pyarrow.fs` filesystem (local by default, `s3://` for object
stores). The `*_at(fs, path, ...)` functions work on an already-resolved filesystem and path;
a Carve root resolves once (`carve.storage.root.open_root`) and calls them through its handle.
The URI forms (`atomic_write_table(table, uri)`, ...) resolve first, for one-off files outside
a root (a simulated dataset, a source).

`atomic_write_*` write to a temporary name beside the target and rename it into place, so a
crash never leaves a half-written file under a final name. On object stores, where a single
PUT is already atomic, the object is written directly.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def resolve(uri: str | Path) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path or a pyarrow.fs URI."""
    s = str(uri)
    if "://" in s and not s.startswith("file://"):
        return pafs.FileSystem.from_uri(s)
    if s.startswith("file://"):
        s = s[len("file://") :]
    return pafs.LocalFileSystem(), os.path.abspath(s)


def is_local(fs: pafs.FileSystem) -> bool:
    return isinstance(fs, pafs.LocalFileSystem)


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])


def makedirs(fs: pafs.FileSystem, path: str) -> None:
    fs.create_dir(path, recursive=True)


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def _tmp_name(path: str) -> str:
    head, _, tail = path.rpartition("/")
    return f"{head}/.tmp-{uuid.uuid4().hex[:8]}-{tail}"


def atomic_write_table_at(
    fs: pafs.FileSystem,
    path: str,
    table: pa.Table,
    *,
    row_group_size: int | None = None,
    compression: str = "zstd",
) -> int:
    """Write `table` as Parquet at `path` on `fs` atomically; return the bytes written."""
    makedirs(fs, path.rpartition("/")[0])
    target = _tmp_name(path) if is_local(fs) else path
    try:
        pq.write_table(
            table,
            target,
            filesystem=fs,
            row_group_size=row_group_size,
            compression=compression,
            write_statistics=True,
        )
        if target != path:
            fs.move(target, path)
    except BaseException:
        if target != path and exists(fs, target):
            fs.delete_file(target)
        raise
    return int(fs.get_file_info(path).size)


def atomic_write_bytes_at(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write bytes at `path` on `fs` atomically (temp name + rename on local filesystems)."""
    makedirs(fs, path.rpartition("/")[0])
    target = _tmp_name(path) if is_local(fs) else path
    try:
        with fs.open_output_stream(target) as f:
            f.write(data)
        if target != path:
            fs.move(target, path)
    except BaseException:
        if target != path and exists(fs, target):
            fs.delete_file(target)
        raise


def read_bytes_at(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as f:
        return f.read()


def list_files_at(fs: pafs.FileSystem, path: str, suffix: str = "") -> list[str]:
    """Files below `path` (recursively) ending in `suffix`, sorted; temp files are skipped."""
    if not exists(fs, path):
        return []
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    out = [
        i.path
        for i in infos
        if i.type == pafs.FileType.File and i.path.endswith(suffix) and not i.base_name.startswith(".tmp-")
    ]
    return sorted(out)


def list_dirs_at(fs: pafs.FileSystem, path: str) -> list[str]:
    """Names of the directories directly below `path`, sorted ([] if `path` is missing)."""
    if not exists(fs, path):
        return []
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)


# -- URI forms, for files outside a Carve root ----------------------------------------------
def atomic_write_table(table: pa.Table, uri: str, **kwargs: object) -> int:
    fs, path = resolve(uri)
    return atomic_write_table_at(fs, path, table, **kwargs)  # type: ignore[arg-type]


def atomic_write_bytes(data: bytes, uri: str) -> None:
    fs, path = resolve(uri)
    atomic_write_bytes_at(fs, path, data)


def read_bytes(uri: str) -> bytes:
    return read_bytes_at(*resolve(uri))


def list_files(uri: str, suffix: str = "") -> list[str]:
    return list_files_at(*resolve(uri), suffix)
