"""Write the `metaworld_tasks` recordings (this folder's simulate.py dumps) as a LeRobot v3.0 dataset with
the real lerobot 0.4.4, plus its ground truth, exactly as ../metaworld/make_dataset.py does (imported from
there, unchanged: `LeRobotDataset.create` / `add_frame` / `save_episode` / `finalize`, AV1 video,
`subtask_index` per frame, `meta/subtasks.parquet`, then the dataset read back and checked frame by frame):

    .venv/bin/python tests/corpus/metaworld_tasks/make_dataset.py --npz /tmp/mwt-npz --force

Writes `dataset/`, `truth_all.json` (every expert phase change), `truth.json` (phases of >= 0.15 s,
../min_phase.py) and `truth_carve.json` (Carve's own form, all phases) into this folder. Each truth entry
also keeps `expert_phases` / `expert_boundaries`: the (position arm, grab arm) pair names before the
renaming of simulate.py (`RENAME`), so the renaming can be audited against the policy source.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("mw_make_dataset", HERE.parent / "metaworld" / "make_dataset.py")
mk = importlib.util.module_from_spec(_spec)
sys.modules["mw_make_dataset"] = mk
_spec.loader.exec_module(mk)

_truth_entries = mk.truth_entries
_carve_truth = mk.carve_truth


def truth_entries(episodes: list[dict], fps: int) -> list[dict]:
    out = _truth_entries(episodes, fps)
    for e, ep in zip(out, episodes, strict=True):
        e["expert_phases"] = ep["meta"].get("expert_phases", e["phases"])
        e["expert_boundaries"] = ep["meta"].get("expert_boundaries", e["boundaries"])
    return out


def carve_truth(entries: list[dict], fps: int, dataset: str) -> dict:
    out = _carve_truth(entries, fps, dataset)
    out["generator"] = {"source": "metaworld scripted experts (tests/corpus/metaworld_tasks/simulate.py)"}
    return out


mk.truth_entries = truth_entries
mk.carve_truth = carve_truth

if __name__ == "__main__":
    sys.exit(mk.main(["--out", str(HERE / "dataset"), "--truth-dir", str(HERE), "--repo-id", "carve/metaworld_tasks",
                      *sys.argv[1:]]))
