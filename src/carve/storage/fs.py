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

Failures: a write (and a read other than of a missing file) that fails raises `StorageError`
(a `CarveError` and an `OSError`) naming the file (`s3://bucket/key` on an object store) and the
reason; a full disk raises its subclass `NoSpaceError` ("no space left on device"), after the
temporary file is removed, so nothing half-written stays behind under any name.

Retries: S3 requests that fail with a transient error (503 SlowDown, throttling, 500) are
retried by the AWS SDK's standard strategy (jittered exponential backoff, at most 20 s apart)
up to `CARVE_S3_MAX_ATTEMPTS` attempts in all (default 6); a persistent error then surfaces as
`StorageError`. (A root's one-off reachability check when it opens tries 3 times, so a wrong
endpoint is reported at once.)
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from carve.core import env
from carve.core.errors import CarveError

S3_MAX_ATTEMPTS_ENV = env.S3_MAX_ATTEMPTS
S3_MAX_ATTEMPTS_DEFAULT = 6  # backoff ~1, 2, 4, 8, 16 s (jittered): up to ~30 s before giving up


class StorageError(CarveError, OSError):
    """A file Carve could not write (or read) on its filesystem; the message names the file and
    the reason. Also an `OSError`, so code that handles I/O errors keeps handling it."""


class NoSpaceError(StorageError):
    """A write that ran out of space (ENOSPC); nothing was left under the file's name."""


def s3_max_attempts() -> int:
    """Attempts per S3 request (`CARVE_S3_MAX_ATTEMPTS`, default 6), first try included."""
    raw = env.s3_max_attempts()
    if not raw:
        return S3_MAX_ATTEMPTS_DEFAULT
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise CarveError(f"{S3_MAX_ATTEMPTS_ENV}={raw!r}: expected a whole number of attempts >= 1")
    return n


def with_max_attempts(fs: pafs.FileSystem, attempts: int | None = None) -> pafs.FileSystem:
    """An S3 filesystem with the same settings and `attempts` (default `s3_max_attempts()`)
    attempts per request (pyarrow's URI parsing cannot take a retry strategy); other
    filesystems unchanged."""
    if not isinstance(fs, pafs.S3FileSystem):
        return fs
    _, (options,) = fs.__reduce__()
    strategy = pafs.AwsStandardS3RetryStrategy(max_attempts=attempts or s3_max_attempts())
    return pafs.S3FileSystem(**{**options, "retry_strategy": strategy})


def display_path(fs: pafs.FileSystem, path: str) -> str:
    """`path` on `fs` as a user reads it: `s3://bucket/key` on S3, the path itself locally."""
    return f"s3://{path.lstrip('/')}" if isinstance(fs, pafs.S3FileSystem) else path


def storage_error(fs: pafs.FileSystem, path: str, action: str, e: OSError) -> StorageError:
    """A `StorageError` (or `NoSpaceError`) for `action` ("write", "read") of `path` that failed with `e`."""
    where = display_path(fs, path)
    text = str(e).strip()
    if e.errno == errno.ENOSPC or "No space left on device" in text:
        err: StorageError = NoSpaceError(
            f"cannot {action} {where}: no space left on device; nothing was written under this name "
            "(free space or point the root at a larger disk, then run again)")
        err.errno = errno.ENOSPC
        return err
    reason = text.splitlines()[0][:400] if text else type(e).__name__
    if isinstance(fs, pafs.S3FileSystem):
        reason += (f" (each S3 request was tried up to {s3_max_attempts()} times; "
                   f"{S3_MAX_ATTEMPTS_ENV} sets how many)")
    err = StorageError(f"cannot {action} {where}: {reason}")
    err.errno = e.errno
    return err


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
    endpoint = env.s3_endpoint()
    if "endpoint_override" not in keys and endpoint:
        extra.append(f"endpoint_override={endpoint}")
    if "region" not in keys and ("endpoint_override" in keys or endpoint):
        region = env.s3_region()
        extra.append(f"region={region}")
    if not extra:
        return uri
    return head + (query + "&" if query else "?") + "&".join(extra)


def resolve(uri: str | Path) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path, a pyarrow.fs URI (`s3_settings` applied) or an
    `hf://datasets/...` URI (the Hub filesystem of `carve.storage.hub`, read-only)."""
    s = str(uri)
    if s.startswith("hf://"):  # a Hugging Face Hub dataset repo (storage/hub.py)
        from carve.storage.hub import hub_filesystem, parse_hub_uri

        return hub_filesystem(), parse_hub_uri(s).fs_path()
    if "://" in s and not s.startswith("file://"):
        fs, path = pafs.FileSystem.from_uri(s3_settings(s))
        return with_max_attempts(fs), path
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


@contextlib.contextmanager
def _atomic(fs: pafs.FileSystem, path: str) -> Iterator[str]:
    """The name to write `path` under: a temporary one on local filesystems, renamed to `path` when
    the block ends (an object store's upload is atomic by itself). A failure removes what was
    written and raises `StorageError` (`NoSpaceError` for a full disk) naming `path`."""
    target = _tmp_name(path) if is_local(fs) else path
    try:
        makedirs(fs, path.rpartition("/")[0])
        yield target
        if target != path:
            fs.move(target, path)
    except BaseException as e:
        _remove_quietly(fs, target, path)
        if isinstance(e, OSError) and not isinstance(e, StorageError):
            raise storage_error(fs, path, "write", e) from e
        raise


def atomic_write_table_at(
    fs: pafs.FileSystem,
    path: str,
    table: pa.Table,
    *,
    row_group_size: int | None = None,
    compression: str = "zstd",
) -> int:
    """Write `table` as Parquet at `path` on `fs` atomically; return the bytes written. A failure
    raises `StorageError` (`NoSpaceError` for a full disk) naming `path`, with no file left behind."""
    with _atomic(fs, path) as target:
        pq.write_table(table, target, filesystem=fs, row_group_size=row_group_size, compression=compression,
                       write_statistics=True)
    return int(fs.get_file_info(path).size)


def atomic_write_bytes_at(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write bytes at `path` on `fs` atomically (temp name + rename on local filesystems). A failure
    raises `StorageError` (`NoSpaceError` for a full disk) naming `path`, with no file left behind."""
    with _atomic(fs, path) as target, fs.open_output_stream(target) as f:
        f.write(data)


def _remove_quietly(fs: pafs.FileSystem, target: str, path: str) -> None:
    """Remove the temporary file of a failed write (never the final `path`); best effort."""
    if target == path:
        return  # object stores: a failed PUT / aborted multipart upload leaves no object
    try:
        if exists(fs, target):
            fs.delete_file(target)
    except OSError:
        pass


def read_bytes_at(fs: pafs.FileSystem, path: str) -> bytes:
    """The bytes of `path`; `FileNotFoundError` if it is missing, `StorageError` on other failures."""
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except (FileNotFoundError, StorageError):
        raise
    except OSError as e:
        raise storage_error(fs, path, "read", e) from e


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
