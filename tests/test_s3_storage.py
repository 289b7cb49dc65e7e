"""S3 roots and sources through pyarrow.fs, against a real S3-compatible server on loopback (moto).

In-process, without Ray: URIs that carry their endpoint, a root handle that pickles with it,
LeRobot v3.0 sources read (and their AV1 video decoded) from the bucket exactly as from disk,
and a whole root (events, clusters, shards + manifest) on S3 with a catalog elsewhere, read by
the coverage audit and report, the shard reader and the trainer's manifest view. The full pipeline
(`carve run`, `carve shard` twice at once, `carve report`, `carve export`) is test_s3_e2e.py.
"""

from __future__ import annotations

import pickle
import socket
from pathlib import Path

import numpy as np
import pytest

from carve.ingest.sources import load_episode, open_source
from carve.storage import fs as fsx
from carve.storage.root import open_root
from carve.storage.shards import ShardReader

FIXTURES = Path(__file__).parent / "fixtures" / "lerobot"


def test_uris_keep_their_endpoint_query():
    uri = "s3://b/root?endpoint_override=http://127.0.0.1:9000&region=eu-west-1"
    assert fsx.join(uri, "shards", "v001") == "s3://b/root/shards/v001?endpoint_override=http://127.0.0.1:9000&region=eu-west-1"
    assert fsx.parent(fsx.join(uri, "manifest.json")) == uri
    assert fsx.uri_with(uri, "b/root/x.parquet") == "s3://b/root/x.parquet?endpoint_override=http://127.0.0.1:9000&region=eu-west-1"
    assert fsx.uri_with("/data/sim", "/data/sim/v.mp4") == "/data/sim/v.mp4"
    assert fsx.join("/data/sim", "a") == "/data/sim/a"


def test_the_endpoint_from_the_environment_is_made_explicit(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:2")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert fsx.s3_settings("s3://b/p") == "s3://b/p?endpoint_override=http://127.0.0.1:2&region=eu-west-1"
    assert fsx.s3_settings("s3://b/p?endpoint_override=http://127.0.0.1:3") == \
        "s3://b/p?endpoint_override=http://127.0.0.1:3&region=eu-west-1"
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert fsx.s3_settings("s3://b/p") == "s3://b/p?endpoint_override=http://127.0.0.1:1&region=us-east-1"
    assert fsx.s3_settings("/local/p") == "/local/p"


def test_a_root_pickles_with_its_endpoint(s3, monkeypatch):
    root = open_root(s3.uri("carve"))
    root.write_bytes(root.path("a", "b.txt"), b"hello")
    # another process (a Ray worker) with no endpoint in its environment still reaches the server
    for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(k)
    again = pickle.loads(pickle.dumps(root))
    assert again.uri == root.uri and not again.is_local
    assert again.read_bytes(again.path("a", "b.txt")) == b"hello"
    assert again.list_files("a") == [f"{s3.name}/carve/a/b.txt"]
    assert again.uri_of(again.path("a", "b.txt")) == fsx.join(s3.uri("carve"), "a", "b.txt")


def test_an_unreachable_store_or_a_missing_bucket_is_named_when_the_root_opens(s3):
    from carve.core.errors import CarveError

    with pytest.raises(CarveError) as e:
        open_root(f"s3://{s3.name}-gone/carve")  # the test server, from the environment
    assert f"bucket '{s3.name}-gone' does not exist" in str(e.value)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once the block ends
    with pytest.raises(CarveError) as e:
        open_root(f"s3://{s3.name}/carve?endpoint_override=http://127.0.0.1:{port}")
    msg = str(e.value)
    assert "cannot reach the object store" in msg and f"127.0.0.1:{port}" in msg and "AWS_ENDPOINT_URL_S3" in msg


def test_lerobot_v30_source_on_s3_reads_like_the_local_copy(s3):
    uri = s3.upload(FIXTURES / "v30", "sources/v30")
    local, remote = open_source(str(FIXTURES / "v30")), open_source(uri)
    assert remote.format == "lerobot" and remote.dataset == "v30" == local.dataset
    lrefs, rrefs = local.list_episodes(), remote.list_episodes()
    assert [r.episode_index for r in rrefs] == [r.episode_index for r in lrefs]
    for lref, rref in zip(lrefs[:2], rrefs[:2], strict=True):
        a, b = load_episode(lref), load_episode(rref)
        assert (b.length, b.task, b.cameras) == (a.length, a.task, a.cameras)
        np.testing.assert_array_equal(a.state, b.state)
        for cam in a.cameras:  # AV1 from the bucket through a pyarrow file, frame for frame
            idx = [0, a.length // 2, a.length - 1]
            np.testing.assert_array_equal(a.frames(cam, idx), b.frames(cam, idx))


def test_a_missing_video_on_s3_quarantines_the_episode_naming_it(s3):
    from carve.core.errors import EpisodeError

    uri = s3.upload(FIXTURES / "v30", "sources/broken")
    s3.fs.delete_file(f"{s3.name}/sources/broken/videos/observation.images.top/chunk-000/file-000.mp4")
    ref = open_source(uri).list_episodes()[0]
    with pytest.raises(EpisodeError) as e:
        load_episode(ref)
    assert "observation.images.top" in str(e.value) and "file-000.mp4" in str(e.value)


@pytest.fixture
def s3_root(s3, tmp_path: Path):
    """A fabricated root (events, clusters v001, shards v001) copied to the bucket; its catalog
    stays a local SQLite file, given explicitly."""
    from carve.sim.service_fakes import fabricate_root

    fab = fabricate_root(tmp_path / "local", datasets=("sim",))
    uri = s3.upload(fab.root, "roots/fab")
    root = open_root(uri, catalog_url=f"sqlite:///{fab.root}/catalog.sqlite")
    yield root, fab
    root.close()


def test_audit_report_shards_and_trainer_read_an_s3_root(s3_root, s3, tmp_path: Path):
    from carve.audit import data as au
    from carve.report.render import write_report
    from carve.trainer.manifest import open_manifest, open_shard

    root, fab = s3_root
    local = open_root(fab.root)
    # the coverage audit and the report, written into the bucket
    a, b = au.load_audit(root, "sim"), au.load_audit(local, "sim")
    assert a.events.num_rows == b.events.num_rows > 0 and a.manifest_version == b.manifest_version == 1
    out = write_report(root)
    assert str(out) == fsx.join(root.uri, "reports", "index.html")
    assert {"reports/index.html", "reports/sizes.png"} <= set(s3.keys("roots/fab"))
    html = root.read_bytes(root.path("reports", "index.html")).decode()
    assert "<html" in html.lower() and 'src="sizes.png"' in html.replace("'", '"')
    # the shard reader gives the same rows as the local copy (the fabricated manifest has no sha256s)
    t = ShardReader(root).read_all()
    assert t.num_rows > 0 and t.equals(ShardReader(local).read_all())
    # the trainer's manifest view and loader stream the shards from the bucket
    m = open_manifest(root.uri)
    assert m.shards and all(s.startswith("s3://") and "endpoint_override=" in s for s in m.shards)
    assert m.total_rows == open_manifest(str(fab.root)).total_rows
    u = m.units[0]  # (the fabricated rows have no embeddings: the loader itself runs in test_s3_e2e.py)
    assert open_shard(u.shard).read_row_group(u.row_group, columns=["event_id"]).num_rows == u.rows
    local.close()


def test_the_command_line_says_an_s3_root_needs_a_catalog(s3, monkeypatch):
    import subprocess
    import sys

    monkeypatch.delenv("CARVE_CATALOG_URL", raising=False)
    r = subprocess.run([sys.executable, "-m", "carve", "status", "--root", s3.uri("carve")], capture_output=True,
                       text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("carve: error: root s3://") and "CARVE_CATALOG_URL" in r.stderr
    assert "Traceback" not in r.stderr
