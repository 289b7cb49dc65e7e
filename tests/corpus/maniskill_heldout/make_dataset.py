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
import shutil
import sys
from pathlib import Path

import numpy as np

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

_truth_entries = mk.truth_entries
_carve_truth = mk.carve_truth


def write_dataset(args, episodes: list[dict], subtasks: dict[str, int]) -> None:
    import functools

    import lerobot
    import lerobot.datasets.lerobot_dataset as lds
    import pandas as pd
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    encode = lds.encode_video_frames
    lds.encode_video_frames = functools.partial(encode, g=VIDEO_GOP)
    try:
        _write(args, episodes, subtasks, lerobot, pd, LeRobotDataset)
    finally:
        lds.encode_video_frames = encode


def _write(args, episodes, subtasks, lerobot, pd, LeRobotDataset) -> None:
    cams = episodes[0]["meta"]["cameras"]
    h, w = episodes[0][f"image_{cams[0]}"].shape[1:3]
    video = {"dtype": "video", "shape": (h, w, 3), "names": ["height", "width", "channels"]}
    features = {f"observation.images.{mk.CAMERA_KEYS[c]}": dict(video) for c in cams}
    features["observation.state"] = {"dtype": "float32", "shape": (len(mk.STATE_NAMES),),
                                     "names": list(mk.STATE_NAMES)}
    features["action"] = {"dtype": "float32", "shape": (len(mk.ACTION_NAMES),), "names": list(mk.ACTION_NAMES)}
    features["subtask_index"] = {"dtype": "int64", "shape": (1,), "names": None}
    ds = LeRobotDataset.create(
        repo_id=args.repo_id, fps=args.fps, root=args.out, features=features, robot_type="panda",
        use_videos=True,
    )
    for ep in episodes:
        names = ep["meta"]["phases"]
        sub = np.array([subtasks[names[p]] for p in ep["frame_phase"]], dtype=np.int64)
        for i in range(len(ep["state"])):
            frame = {f"observation.images.{mk.CAMERA_KEYS[c]}": ep[f"image_{c}"][i] for c in cams}
            frame["observation.state"] = ep["state"][i].astype(np.float32)
            frame["action"] = ep["action"][i].astype(np.float32)
            frame["subtask_index"] = np.array([sub[i]], dtype=np.int64)
            frame["task"] = ep["meta"]["task"]
            ds.add_frame(frame)
        # as ../metaworld/make_dataset.py: lerobot 0.4.4 + numpy >= 2.4 need this (1,) buffer flattened
        ds.episode_buffer["subtask_index"] = [np.int64(v[0]) for v in ds.episode_buffer["subtask_index"]]
        ds.save_episode()
    ds.finalize()
    images = args.out / "images"  # lerobot's scratch dir for frames before encoding, left empty
    if images.is_dir() and not any(p.is_file() for p in images.rglob("*")):
        shutil.rmtree(images)
    order = sorted(subtasks.items(), key=lambda kv: kv[1])
    pd.DataFrame(
        {"subtask_index": [i for _, i in order]}, index=pd.Index([t for t, _ in order], name="subtask")
    ).to_parquet(args.out / "meta" / "subtasks.parquet")
    print(f"wrote {args.out} with lerobot {lerobot.__version__}")


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
