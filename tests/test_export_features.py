"""`carve export` keeps the source's other per-frame features (dtype, shape, names and values).

A LeRobot v3.0 dataset of the simulator gets two extra features, as real datasets have them
(`observation.velocity`, 2 floats per frame, and `next.done`, a bool): Carve reads them with the
episode, and the export writes them back frame for frame, declared in info.json the same way,
and the real lerobot library yields them per item.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_export_lerobot import _cfg, _lerobot

from carve.export.lerobot import export_lerobot
from carve.ingest.sources import load_episode, open_source

EXTRA = {
    "observation.velocity": {"dtype": "float32", "shape": [2], "names": ["vx", "vy"]},
    "next.done": {"dtype": "bool", "shape": [1], "names": None},
}


def add_features(sim: Path) -> None:
    info_path = sim / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["features"].update(EXTRA)
    info_path.write_text(json.dumps(info, indent=2))
    for f in sorted((sim / "data").rglob("*.parquet")):
        t = pq.read_table(f)
        idx = np.asarray(t.column("index").to_pylist(), dtype=np.float32)
        vel = np.stack([np.sin(idx / 7.0), np.cos(idx / 5.0)], axis=1).astype(np.float32)
        frame = np.asarray(t.column("frame_index").to_pylist())
        ep = np.asarray(t.column("episode_index").to_pylist())
        last = np.array([frame[i] == frame[ep == ep[i]].max() for i in range(len(frame))])
        t = t.append_column("observation.velocity", pa.FixedSizeListArray.from_arrays(pa.array(vel.reshape(-1)), 2))
        t = t.append_column("next.done", pa.array(last))
        pq.write_table(t, f)


@pytest.mark.timeout(600)
def test_export_keeps_the_sources_other_features(tmp_path: Path):
    from carve.pipeline.run import run_pipeline
    from carve.sim.synth import synthesize

    sim, root = tmp_path / "sim", tmp_path / "root"
    synthesize(str(sim), 2, workers=1, progress=False, overwrite=True)
    add_features(sim)
    src_eps = [load_episode(r) for r in open_source(str(sim)).list_episodes()]
    assert src_eps[0].extra_features == EXTRA and src_eps[0].extras["observation.velocity"].shape[1] == 2
    s = run_pipeline(_cfg(root, sim))
    assert s.episodes_failed == 0 and s.shards_version == 1

    out = tmp_path / "export"
    export_lerobot(root, out, version=1, unit="episode")
    info = json.loads((out / "meta" / "info.json").read_text())
    for key, spec in EXTRA.items():
        assert {k: info["features"][key][k] for k in ("dtype", "shape", "names")} == spec
    data = pa.concat_tables([pq.read_table(f) for f in sorted((out / "data").rglob("*.parquet"))])
    want_vel = np.concatenate([e.extras["observation.velocity"] for e in src_eps])
    want_done = np.concatenate([e.extras["next.done"] for e in src_eps])
    np.testing.assert_array_equal(np.asarray(data.column("observation.velocity").to_pylist(), np.float32), want_vel)
    assert data.column("next.done").to_pylist() == want_done.tolist()

    LeRobotDataset = _lerobot()
    ds = LeRobotDataset("carve/export-features", root=out)
    item = ds[3]
    np.testing.assert_allclose(np.asarray(item["observation.velocity"]), want_vel[3])
    assert bool(item["next.done"]) == bool(want_done[3])
