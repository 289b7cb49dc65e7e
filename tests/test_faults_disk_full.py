"""Fault: the disk fills up (ENOSPC) while Carve writes a part file or a shard.

On a real, tiny filesystem (a 2 MB tmpfs mounted for the test; mounting needs root, which CI
has, else the tests skip with the reason) nearly filled by a filler file:

- the write fails with `NoSpaceError` (a `CarveError`) naming the file and "no space left";
- nothing half-written is left under the file's name, nor any temporary file;
- nothing is committed: no episode of the failed part is `ok` in the catalog, no manifest (and no
  parts) for the failed shard version;
- once space is freed, the same work completes.

The catalog is kept off the tiny disk (`CARVE_CATALOG_URL`), so it is the data files that hit
the full disk.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from carve.core.errors import CarveError
from carve.storage.fs import NoSpaceError
from carve.storage.root import open_root

DISK_MB = 2


@pytest.fixture
def tiny_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh 2 MB tmpfs at tmp_path/disk (unmounted afterwards); the catalog beside it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root (CI runs the tests as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(disk)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    monkeypatch.setenv("CARVE_CATALOG_URL", f"sqlite:///{tmp_path}/catalog.sqlite")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def free_bytes(disk: Path) -> int:
    st = os.statvfs(disk)
    return st.f_bavail * st.f_frsize


def fill(disk: Path, leave: int) -> Path:
    """Fill `disk` with a filler file until only about `leave` bytes are free."""
    filler = disk / "filler.bin"
    filler.write_bytes(b"\0" * max(free_bytes(disk) - leave, 0))
    assert free_bytes(disk) <= leave + 8192
    return filler


def leftovers(folder: Path) -> list[str]:
    """Temporary files of interrupted writes below `folder`."""
    return sorted(str(p) for p in folder.rglob(".tmp-*"))


def test_write_table_and_write_bytes_on_a_full_disk(tiny_disk: Path):
    root = open_root(tiny_disk / "carve")
    rng = np.random.default_rng(0)
    table = pa.table({"x": rng.random(60_000)})  # ~480 KB of incompressible doubles
    blob = rng.bytes(400_000)
    part = root.path("events", "batch=b1", "part-000000-abcd.parquet")
    shard = root.path("shards", "v001", "part-00000.parquet")
    filler = fill(tiny_disk, leave=64 * 1024)

    with pytest.raises(NoSpaceError) as ei:
        root.write_table(part, table)
    msg = str(ei.value)
    assert part in msg and "no space left" in msg, msg
    assert isinstance(ei.value, CarveError) and isinstance(ei.value, OSError)
    with pytest.raises(NoSpaceError) as ei:
        root.write_bytes(shard, blob)
    assert shard in str(ei.value) and "no space left" in str(ei.value)
    assert not Path(part).exists() and not Path(shard).exists()
    assert leftovers(tiny_disk) == []

    filler.unlink()  # space again: the same writes complete
    root.write_table(part, table)
    root.write_bytes(shard, blob)
    assert pq.read_table(part).equals(table)
    assert Path(shard).read_bytes() == blob
    assert leftovers(tiny_disk) == []


def test_shard_version_on_a_full_disk_is_not_committed_and_a_later_cut_completes(tiny_disk: Path):
    from test_cluster_curate import add_episodes, blob_embeddings, cfg_for

    from carve.clustering.curate import cluster_catalog
    from carve.shard.cut import cut_shards
    from carve.storage.manifest import manifest_versions
    from carve.storage.shards import ShardReader

    base = tiny_disk / "carve"
    x, y = blob_embeddings([120, 120], dim=256, seed=3, spread=0.2)  # ~1 KB of embedding per event
    add_episodes(base, x, labels=y)
    cfg = cfg_for(base, k=2)
    root = open_root(cfg.root)
    cluster_catalog(root, cfg)
    filler = fill(tiny_disk, leave=160 * 1024)  # room for the first shard (~110 KB), not the second

    with pytest.raises(NoSpaceError) as ei:
        cut_shards(root, cfg)
    msg = str(ei.value)
    assert str(base / "shards") in msg and ".parquet" in msg and "no space left" in msg, msg
    assert manifest_versions(root) == []
    assert root.catalog.versions("shards") == []  # no finished shard version recorded
    assert sorted((base / "shards").rglob("*.parquet")) == []  # the failed version's parts are removed
    assert leftovers(tiny_disk) == []

    filler.unlink()
    v = cut_shards(root, cfg)
    assert manifest_versions(root) == [v]
    shards = ShardReader(str(base), verify=True).read_all()
    assert shards.num_rows == len(x)
    assert sorted(set(shards.column("event_id").to_pylist())) == sorted(
        set(pq.read_table(base / "events").column("event_id").to_pylist()))


# Ray's own driver can abort while Ray Data cancels the in-flight tasks of a failed run: "Check failed:
# it != submissible_tasks_.end() Tried to complete task that was not pending" (task_manager.cc, a race
# between cancellation and completion; ray-project/ray#54798 fixed its retry twin). So the run goes in a
# child process, where that abort cannot take the test session down, and a run aborted by exactly that
# check is run once more; any other outcome is the test's.
RAY_CANCEL_RACE = "Check failed: it != submissible_tasks_.end()"
_RUN = """
import json, sys
sys.path.insert(0, sys.argv[3])
from test_e2e_pipeline import _cfg
from carve.core.errors import CarveError
from carve.pipeline.run import run_pipeline
from carve.storage.fs import NoSpaceError
cfg = _cfg(sys.argv[1], sys.argv[2]).with_overrides({"embed": {"text": "none"}, "ray": {"executor": "ray"}})
try:
    s = run_pipeline(cfg, shard=False)
    print(json.dumps({"episodes_ok": s.episodes_ok, "episodes_failed": s.episodes_failed, "events": s.events}))
except CarveError as e:
    print(json.dumps({"error": type(e).__name__, "no_space": isinstance(e, NoSpaceError), "message": str(e)}))
"""


def _run_in_child(base: Path, src: Path) -> dict:
    """`run_pipeline` on Ray in a child interpreter: its summary, or the CarveError it raised."""
    import json
    import sys

    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", _RUN, str(base), str(src), str(Path(__file__).parent)],
                           capture_output=True, text=True, timeout=600, env=os.environ.copy())
        if r.returncode == 0 and r.stdout.strip():
            return json.loads(r.stdout.strip().splitlines()[-1])
        if RAY_CANCEL_RACE not in r.stderr + r.stdout:
            break
    raise AssertionError(f"the run's child process failed (exit {r.returncode}):\n{r.stderr[-3000:]}")


def test_run_on_a_full_disk_commits_nothing_and_a_later_run_completes(tiny_disk: Path, tmp_path: Path):
    from test_e2e_pipeline import write_folder_episode

    from carve.storage.catalog import Catalog
    from carve.storage.events import read_events

    src = tmp_path / "raw" / "toy"
    src.mkdir(parents=True)
    for i in range(3):
        write_folder_episode(src, f"ep_{i}", seed=i, frames=60)
    base = tiny_disk / "carve"
    base.mkdir()
    filler = fill(tiny_disk, leave=16 * 1024)

    out = _run_in_child(base, src)  # the worker's NoSpaceError, as itself (not Ray's UserCodeException)
    assert out.get("no_space") is True, out
    msg = out["message"]
    assert "no space left" in msg and str(base / "events") in msg, msg
    with Catalog(base) as cat:
        assert cat.episodes(status="ok") == []
    assert sorted((base / "events").rglob("*.parquet")) == []
    assert leftovers(tiny_disk) == []

    filler.unlink()
    s = _run_in_child(base, src)
    assert s.get("episodes_ok") == 3 and s.get("episodes_failed") == 0, s
    ev = read_events(open_root(base), columns=["event_id", "episode_id"])
    ids = ev.column("event_id").to_pylist()
    assert len(ids) == len(set(ids)) == s["events"] > 0
    assert len(set(ev.column("episode_id").to_pylist())) == 3
