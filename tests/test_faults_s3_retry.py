"""Fault: transient S3 errors (503 SlowDown, 429 throttling) are retried; persistent ones are a clear error.

A real HTTP proxy (tests/s3_proxy.py) sits between Carve's S3 root and the moto S3 server and
answers chosen requests as a throttling S3 endpoint does. Writes and reads through the root
must get through a run of throttled requests shorter than `CARVE_S3_MAX_ATTEMPTS`, and fail
with a `StorageError` (a `CarveError`) naming the bucket and key once every request is refused.
The attempt count is kept small here (backoff between attempts grows 1 s, 2 s, ...).
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from s3_proxy import FaultyS3Proxy

from carve.core.errors import CarveError
from carve.storage import fs as fsx
from carve.storage.fs import StorageError
from carve.storage.root import open_root

ATTEMPTS = 4  # one more than pyarrow's own default, so that surviving ATTEMPTS - 1 failures shows it applies


@pytest.fixture
def proxy(s3, monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[FaultyS3Proxy]:
    monkeypatch.setenv(fsx.S3_MAX_ATTEMPTS_ENV, str(ATTEMPTS))
    monkeypatch.setenv("CARVE_CATALOG_URL", f"sqlite:///{tmp_path}/catalog.sqlite")
    p = FaultyS3Proxy(s3.server.endpoint)
    yield p
    p.close()


def _root(s3, proxy: FaultyS3Proxy):
    return open_root(f"s3://{s3.name}/carve?endpoint_override={proxy.endpoint}")


@pytest.mark.parametrize("status,code", [(503, "SlowDown"), (429, "Throttling")])
def test_throttled_requests_are_retried_and_nothing_is_lost(s3, proxy: FaultyS3Proxy, status: int, code: str):
    root = _root(s3, proxy)
    table = pa.table({"event_id": [f"e{i}" for i in range(50)], "x": list(range(50))})
    # ATTEMPTS - 1 throttled answers in a row: more than pyarrow's default (3 attempts) survives
    proxy.fail_next(ATTEMPTS - 1, status, code)
    path = root.path("events", "batch=b1", "part-000000.parquet")
    root.write_table(path, table)
    assert proxy.failed == ATTEMPTS - 1

    proxy.reset_counts()
    proxy.fail_next(1, status, code)
    root.write_bytes(root.path("shards", "v001", "manifest.json"), b'{"ok": true}')
    assert proxy.failed == 1

    proxy.reset_counts()
    proxy.fail_next(1, status, code)
    assert root.read_bytes(root.path("shards", "v001", "manifest.json")) == b'{"ok": true}'
    assert proxy.failed == 1
    assert pq.read_table(path, filesystem=root.fs).equals(table)
    # the objects are whole on the server behind the proxy
    assert sorted(s3.keys("carve")) == ["events/batch=b1/part-000000.parquet", "shards/v001/manifest.json"]


def test_persistent_throttling_is_a_clear_error_naming_bucket_and_key(s3, proxy: FaultyS3Proxy):
    root = _root(s3, proxy)
    proxy.reset_counts()
    proxy.fail_always(503, "SlowDown")
    key = "carve/events/batch=b1/part-000001.parquet"
    with pytest.raises(StorageError) as ei:
        root.write_table(root.path("events", "batch=b1", "part-000001.parquet"), pa.table({"x": [1, 2, 3]}))
    msg = str(ei.value)
    assert isinstance(ei.value, CarveError) and isinstance(ei.value, OSError)
    assert f"s3://{s3.name}/{key}" in msg, msg
    assert ("503" in msg or "SLOW_DOWN" in msg) and f"up to {ATTEMPTS} times" in msg, msg
    # the request was tried the configured number of times, and none got through
    assert proxy.requests >= ATTEMPTS and proxy.failed == proxy.requests

    proxy.heal()
    assert s3.keys("carve") == []  # nothing half-written became an object
    root.write_bytes(root.path("shards", "v002", "manifest.json"), b"{}")
    proxy.fail_always(429, "Throttling")
    with pytest.raises(StorageError) as ei:
        root.read_bytes(root.path("shards", "v002", "manifest.json"))
    msg = str(ei.value)
    assert f"s3://{s3.name}/carve/shards/v002/manifest.json" in msg and "cannot read" in msg, msg


def test_retry_count_setting(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(fsx.S3_MAX_ATTEMPTS_ENV, raising=False)
    assert fsx.s3_max_attempts() == fsx.S3_MAX_ATTEMPTS_DEFAULT >= 5
    monkeypatch.setenv(fsx.S3_MAX_ATTEMPTS_ENV, "7")
    assert fsx.s3_max_attempts() == 7
    for bad in ("0", "many"):
        monkeypatch.setenv(fsx.S3_MAX_ATTEMPTS_ENV, bad)
        with pytest.raises(CarveError, match=fsx.S3_MAX_ATTEMPTS_ENV):
            fsx.s3_max_attempts()
