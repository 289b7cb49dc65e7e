"""Filesystems and atomic writes.

Every path Carve writes is on a `pyarrow.fs` filesystem (local by default, `s3://` for object
stores). The `*_at(fs, path, ...)` functions work on an already-resolved filesystem and path;
a Carve root resolves once (`carve.storage.root.open_root`) and calls them through its handle.
The URI forms (`atomic_write_table(table, uri)`, ...) resolve first, for one-off files outside
a root (a simulated dataset, a source).

Object-store URIs may carry their connection settings as a query, which pyarrow's
`FileSystem.from_uri` reads: `s3://bucket/prefix?endpoint_override=http://127.0.0.1:9000&region=us-east-1`.
The query is part of the URI's identity: `join(uri, "a", "b")` and `uri_with(uri, path)` keep
it, so a URI derived from a root (a video of a source, a manifest's folder, a shard) opens the
same server wherever it is used (another process, a Ray worker). Without a query pyarrow takes
the endpoint from `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` and credentials from the usual AWS
variables (docs/CLUSTER.md); credentials never go into a URI.

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

S3_ENDPOINT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
S3_REGION_ENV = ("AWS_REGION", "AWS_DEFAULT_REGION")


def s3_settings(uri: str) -> str:
    """`uri` with the endpoint from the environment made explicit: an `s3://` URI without
    `endpoint_override` gets `AWS_ENDPOINT_URL_S3` (else `AWS_ENDPOINT_URL`), and, with an
    endpoint, a `region` (`AWS_REGION`, `AWS_DEFAULT_REGION`, else us-east-1) so that pyarrow
    never asks AWS where the bucket is. Other URIs pass unchanged."""
    if not uri.startswith("s3://"):
        return uri
    head, query = split_query(uri)
    keys = {kv.partition("=")[0] for kv in query[1:].split("&") if kv}
    extra = []
    endpoint = next((os.environ[k] for k in S3_ENDPOINT_ENV if os.environ.get(k)), None)
    if "endpoint_override" not in keys and endpoint:
        extra.append(f"endpoint_override={endpoint}")
    if "region" not in keys and ("endpoint_override" in keys or endpoint):
        region = next((os.environ[k] for k in S3_REGION_ENV if os.environ.get(k)), "us-east-1")
        extra.append(f"region={region}")
    if not extra:
        return uri
    return head + (query + "&" if query else "?") + "&".join(extra)


def resolve(uri: str | Path) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path or a pyarrow.fs URI (`s3_settings` applied)."""
    s = str(uri)
    if "://" in s and not s.startswith("file://"):
        return pafs.FileSystem.from_uri(s3_settings(s))
    if s.startswith("file://"):
        s = s[len("file://") :]
    return pafs.LocalFileSystem(), os.path.abspath(s)


def is_local(fs: pafs.FileSystem) -> bool:
    return isinstance(fs, pafs.LocalFileSystem)


def is_uri(s: str) -> bool:
    """True for a `scheme://` URI other than `file://` (an object store)."""
    return "://" in s and not s.startswith("file://")


def split_query(uri: str) -> tuple[str, str]:
    """(`scheme://path`, `?query` or "") of a URI; a local path has no query."""
    if is_uri(uri) and "?" in uri:
        head, _, query = uri.partition("?")
        return head, "?" + query
    return uri, ""


def join(base: str, *parts: str) -> str:
    """`base/part/...`; the query of a URI `base` stays at the end."""
    head, query = split_query(base)
    return "/".join([head.rstrip("/"), *[p.strip("/") for p in parts]]) + query


def parent(uri: str) -> str:
    """The folder of a path or URI (its query kept)."""
    head, query = split_query(uri)
    return head.rstrip("/").rpartition("/")[0] + query


def uri_with(like: str, path: str) -> str:
    """A URI for `path` (a path on the filesystem `like` resolves to) with `like`'s scheme and
    query, so it opens on the same server; a local `like` gives the path itself."""
    if not is_uri(like):
        return path
    scheme = like.split("://", 1)[0]
    return f"{scheme}://{path.lstrip('/')}{split_query(like)[1]}"


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
