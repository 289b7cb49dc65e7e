"""Write the `maniskill_heldout` recordings (this folder's simulate.py dumps) as a LeRobot v3.0 dataset with
the real lerobot 0.4.4, plus its ground truth, as ../metaworld_tasks/make_dataset.py does: the functions of
../metaworld/make_dataset.py are imported from there and reused unchanged (`load_npz`, `subtask_table`,
`truth_entries`, `carve_truth`, `verify`, `main`: AV1 video, `subtask_index` per frame,
`meta/subtasks.parquet`, then the dataset read back and checked frame by frame). Only the dataset's
features differ from Meta-World's, so `write_dataset` is this file's own, the same lerobot calls
(`LeRobotDataset.create` / `add_frame` / `save_episode` / `finalize`) with this robot's shapes and names.
One encoding parameter differs from lerobot's default, to keep the item small (1958 frames): lerobot's own
`encode_video_frames` (AV1, `libsvtav1`, crf 30, yuv420p) is called with a keyframe every 10 frames
(`g=10`, 0.5 s) instead of every 2 (`lerobot_dataset.encode_video_frames` is rebound to it with
`functools.partial` while the dataset is written): 0.93 MB of video instead of 2.4 MB at 96x72.

    PYTHONPATH=src .venv/bin/python tests/corpus/maniskill_heldout/make_dataset.py --npz /tmp/msk-npz --force

Per frame (simulate.py's module doc): `observation.state` float32[11] = the TCP position `x y z` (m, world
frame), the Panda's 7 arm joint positions `panda_joint1` .. `panda_joint7` (rad) and `gripper` (the
finger opening, m: 0.08 open, 0 closed); `action` float32[8] = what `pd_joint_pos` takes, the 7 arm joint
targets `panda_joint1` .. `panda_joint7` (rad) and `gripper_open` (1 open, -1 closed); one video,
`observation.images.render_camera`; fps 20 (the env's control frequency, every control step a frame).

Writes `dataset/`, `truth_all.json` (every expert phase change), `truth.json` (phases of >= 0.15 s,
../min_phase.py) and `truth_carve.json` (Carve's own form, all phases) into this folder. Each truth entry
keeps `expert_phases` / `expert_boundaries` (one entry per executed planner call) and, under `maniskill`,
the env id, seed, success step and the planner's calls with their start and end steps.
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

JOINTS = [f"panda_joint{i}" for i in range(1, 8)]
mk.STATE_NAMES = ["x", "y", "z", *JOINTS, "gripper"]
mk.ACTION_NAMES = [*JOINTS, "gripper_open"]
mk.CAMERA_KEYS = {"render_camera": "render_camera"}
VIDEO_GOP = 10  # keyframe interval passed to lerobot's encode_video_frames (module doc)

mk.ROBOT_TYPE = "panda"
_truth_entries = mk.truth_entries
_carve_truth = mk.carve_truth
_write_dataset = mk.write_dataset


def write_dataset(args, episodes: list[dict], subtasks: dict[str, int]) -> None:
    import functools

    import lerobot.datasets.lerobot_dataset as lds

    encode = lds.encode_video_frames
    lds.encode_video_frames = functools.partial(encode, g=VIDEO_GOP)
    try:
        _write_dataset(args, episodes, subtasks)  # ../metaworld/make_dataset.py's writer, with our names
    finally:
        lds.encode_video_frames = encode


def truth_entries(episodes: list[dict], fps: int) -> list[dict]:
    out = _truth_entries(episodes, fps)
    for e, ep in zip(out, episodes, strict=True):
        m = ep["meta"]
        e.pop("metaworld")
        e["expert_phases"] = m["expert_phases"]
        e["expert_boundaries"] = m["expert_boundaries"]
        e["maniskill"] = {
            "env": m["task_name"], "seed": m["seed"], "control_hz": m["control_hz"], "step_stride": 1,
            "success_step": m["success_step"], "success_at_end": m["success_at_end"],
            "planner_calls": m["planner_calls"],
        }
    return out


def carve_truth(entries: list[dict], fps: int, dataset: str) -> dict:
    out = _carve_truth(entries, fps, dataset)
    out["generator"] = {"source": "ManiSkill 3 motion-planning experts (tests/corpus/maniskill_heldout/simulate.py)"}
    return out


mk.write_dataset = write_dataset
mk.truth_entries = truth_entries
mk.carve_truth = carve_truth

if __name__ == "__main__":
    sys.exit(mk.main(["--out", str(HERE / "dataset"), "--truth-dir", str(HERE), "--repo-id",
                      "carve/maniskill_heldout", *sys.argv[1:]]))
