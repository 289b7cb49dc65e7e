"""Write the `maniskill_heldout2` recordings (this folder's simulate.py dumps) as a LeRobot v3.0 dataset with
the real lerobot 0.4.4, plus its ground truth: ../maniskill_heldout/make_dataset.py, imported and run
unchanged (same features, encoding and checks) with this folder as its output.

    PYTHONPATH=src .venv/bin/python tests/corpus/maniskill_heldout2/make_dataset.py --npz /tmp/msk2-npz --force
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("msk_make_dataset", HERE.parent / "maniskill_heldout" / "make_dataset.py")
first = importlib.util.module_from_spec(_spec)
sys.modules["msk_make_dataset"] = first
_spec.loader.exec_module(first)
mk = first.mk
_carve_truth = first.carve_truth


def carve_truth(entries: list[dict], fps: int, dataset: str) -> dict:
    out = _carve_truth(entries, fps, dataset)
    out["generator"] = {"source": "ManiSkill 3 motion-planning experts (tests/corpus/maniskill_heldout2/simulate.py)"}
    return out


mk.carve_truth = carve_truth

if __name__ == "__main__":
    sys.exit(mk.main(["--out", str(HERE / "dataset"), "--truth-dir", str(HERE), "--repo-id",
                      "carve/maniskill_heldout2", *sys.argv[1:]]))
