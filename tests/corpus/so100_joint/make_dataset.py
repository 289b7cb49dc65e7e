"""Write the right (grasping) arm of the gym-aloha transfer-cube recordings as a single-arm, joint-space
LeRobot v3.0 dataset with SO-100/SO-101 naming and units, with the real lerobot library (0.4.4), plus
the ground truth `truth.json` (plain list) and `truth_carve.json` (Carve's form).

Runs in Carve's venv (which has lerobot 0.4.4), fully offline:

    .venv/bin/python tests/corpus/so100_joint/make_dataset.py --npz /tmp/aloha-sim --force

Input: ../aloha_scripted/simulate.py's `transfer_cube_*.npz` (50 Hz, ALOHA conventions: joints in
radians, gripper normalised 0 closed .. 1 open). Mapping of the right ViperX arm onto SO-100 names, for
`observation.state` (from qpos) and `action` (from the joint commands) alike:

    right_waist        -> shoulder_pan.pos   degrees
    right_shoulder     -> shoulder_lift.pos  degrees
    right_elbow        -> elbow_flex.pos     degrees
    right_forearm_roll -> (dropped: the SO-100 has no forearm roll)
    right_wrist_angle  -> wrist_flex.pos     degrees
    right_wrist_rotate -> wrist_roll.pos     degrees
    right_gripper      -> gripper.pos        0..100, 100 = open (normalised gripper x 100)

Resampling 50 Hz -> 30 fps (real SO-100 datasets record at 30 fps): 30-fps frame j is at t = j/30 s,
i.e. at 50-Hz position s = j * 50 / 30, for j = 0 .. floor((n50 - 1) * 30 / 50) (400 -> 240 frames).
Joints are linearly interpolated between the neighbouring 50-Hz samples; the gripper (state and action)
and the camera images take the nearest 50-Hz sample (round half up). Truth boundaries (50-Hz step
index b) map to the nearest 30-fps frame, round(b * 30 / 50) half up.

Cameras: `observation.images.front` is gym-aloha's `angle` camera (a front view of the table; it shows
both ViperX arms, the left one too), `observation.images.wrist` (optional, --wrist) the right arm's
wrist camera. Afterwards the dataset is loaded back with `LeRobotDataset(repo_id, root=...)` and every
episode's length, task, all state/action values and a few decoded frames per camera are checked.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "aloha_scripted"), str(HERE.parent)]
from frame_check import check_frame  # noqa: E402 - tests/corpus/frame_check.py
from make_dataset import CARVE_VERB, load_npz, resize_frames  # noqa: E402

NAMES = ["shoulder_pan.pos", "shoulder_lift.pos", "elbow_flex.pos", "wrist_flex.pos", "wrist_roll.pos", "gripper.pos"]
# indices into ALOHA's 14-d vector (left 0..6, right 7..13): waist, shoulder, elbow, wrist_angle, wrist_rotate
RIGHT_JOINTS = [7, 8, 9, 11, 12]
RIGHT_GRIPPER = 13
SRC_FPS = 50
TASK = "Pick up the cube and hand it over"


def round_half_up(x: float) -> int:
    return math.floor(x + 0.5 + 1e-9)


def resample(ep: dict, fps: int, cams: dict[str, str]) -> dict:
    """The right arm in SO-100 units at `fps` (see the module doc)."""
    n50 = len(ep["qpos"])
    n = (n50 - 1) * fps // SRC_FPS + 1
    s = np.arange(n) * SRC_FPS / fps  # 50-Hz position of each output frame
    lo = np.floor(s).astype(int)
    hi = np.minimum(lo + 1, n50 - 1)
    w = (s - lo)[:, None]
    near = np.array([min(round_half_up(x), n50 - 1) for x in s])

    def arm(x: np.ndarray) -> np.ndarray:
        joints = (1 - w) * x[lo][:, RIGHT_JOINTS] + w * x[hi][:, RIGHT_JOINTS]
        out = np.concatenate([np.rad2deg(joints), 100.0 * x[near][:, [RIGHT_GRIPPER]]], axis=1)
        return out.astype(np.float32)

    out = {"state": arm(ep["qpos"]), "action": arm(ep["action"]), "near": near}
    for key, cam in cams.items():
        out[key] = ep[f"images_{cam}"][near]
    return out


def truth_entry(k: int, ep: dict, fps: int, n: int, source: str) -> dict:
    """Right arm only: its own waypoint boundaries mapped to the nearest `fps` frame."""
    t = ep["meta"]["truth"]
    segs = t["arm_segments"]["right"]
    b50 = [int(b) for b in t["arms"]["right"]]
    bounds = [round_half_up(b * fps / SRC_FPS) for b in b50]
    assert bounds == sorted(set(bounds)) and all(0 < b < n for b in bounds), bounds
    # one phase per waypoint segment; right-arm boundaries are exactly its segment starts (t > 0)
    assert [s["start"] for s in segs[1:]] == b50, (segs, b50)
    starts, ends = [0, *bounds], [*bounds, n]
    return {
        "episode_index": k,
        "boundaries": bounds,
        "phases": [s["name"] for s in segs],
        "fps": fps,
        "length": n,
        "task": TASK,
        "task_type": "transfer_cube_right_arm",
        "arms": {"right": bounds},
        "phase_info": [{"arm": "right", "verb": s["verb"], "object": s["object"]} for s in segs],
        "phase_frames": [[a, b] for a, b in zip(starts, ends, strict=True)],
        "boundaries_50hz": b50,
        "source": {"npz": ep["path"], "seed": ep["meta"]["seed"], "generator": source},
    }


def carve_truth(entries: list[dict], fps: int, dataset: str, source: str) -> dict:
    return {
        "dataset": dataset,
        "fps": fps,
        "generator": {"source": source, "verb_map": CARVE_VERB},
        "episodes": [
            {
                "episode_index": e["episode_index"], "task": e["task"], "task_type": e["task_type"],
                "length": e["length"], "fps": fps, "duration_s": e["length"] / fps, "arms": ["arm"],
                "boundaries": e["boundaries"],
                "phases": [
                    {"name": CARVE_VERB[info["verb"]], "start": a, "end": b, "start_s": a / fps, "end_s": b / fps,
                     "object": info["object"], "verb": info["verb"], "label": name}
                    for name, (a, b), info in zip(e["phases"], e["phase_frames"], e["phase_info"], strict=True)
                ],
            }
            for e in entries
        ],
    }


def write_dataset(args: argparse.Namespace, frames: list[dict], cam_keys: list[str]) -> None:
    import lerobot
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    h, w = frames[0][cam_keys[0]].shape[1:3]
    video = {"dtype": "video", "shape": (h, w, 3), "names": ["height", "width", "channels"]}
    features = {f"observation.images.{c}": dict(video) for c in cam_keys}
    features["observation.state"] = {"dtype": "float32", "shape": (6,), "names": list(NAMES)}
    features["action"] = {"dtype": "float32", "shape": (6,), "names": list(NAMES)}
    ds = LeRobotDataset.create(
        repo_id=args.repo_id, fps=args.fps, root=args.out, features=features, robot_type="so100_follower",
        use_videos=True,
    )
    for ep in frames:
        for i in range(len(ep["state"])):
            frame = {f"observation.images.{c}": ep[c][i] for c in cam_keys}
            frame["observation.state"] = ep["state"][i]
            frame["action"] = ep["action"][i]
            frame["task"] = TASK
            ds.add_frame(frame)
        ds.save_episode()
    ds.finalize()
    images = args.out / "images"
    if images.is_dir() and not any(p.is_file() for p in images.rglob("*")):
        shutil.rmtree(images)
    print(f"wrote {args.out} with lerobot {lerobot.__version__}")


def verify(args: argparse.Namespace, frames: list[dict], cam_keys: list[str], entries: list[dict]) -> None:
    import lerobot
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    kw = {"video_backend": args.video_backend} if args.video_backend else {}
    ds = LeRobotDataset(args.repo_id, root=args.out, **kw)
    lengths = [len(ep["state"]) for ep in frames]
    assert ds.num_episodes == len(frames) and ds.num_frames == sum(lengths), (ds.num_episodes, ds.num_frames)
    assert ds.fps == args.fps and ds.meta.robot_type == "so100_follower"
    assert ds.meta.features["observation.state"]["names"] == NAMES
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    table = ds.hf_dataset.with_format("numpy")
    st = np.stack(table["observation.state"])
    ac = np.stack(table["action"])
    epi = np.asarray(table["episode_index"]).reshape(-1)
    fi = np.asarray(table["frame_index"]).reshape(-1)
    for k, ep in enumerate(frames):
        sl = slice(offsets[k], offsets[k + 1])
        assert (epi[sl] == k).all() and (fi[sl] == np.arange(lengths[k])).all()
        np.testing.assert_array_equal(st[sl], ep["state"])
        np.testing.assert_array_equal(ac[sl], ep["action"])
        assert ep["state"][:, 5].min() >= 0.0 and ep["state"][:, 5].max() <= 100.0
    worst = 0.0
    for k, ep in enumerate(frames):
        n = lengths[k]
        for i in sorted({0, n // 2, n - 1, *entries[k]["boundaries"][:3]}):
            item = ds[int(offsets[k] + i)]
            assert int(item["episode_index"]) == k and int(item["frame_index"]) == i
            assert abs(float(item["timestamp"]) - i / args.fps) < 1e-4
            assert item["task"] == TASK
            for c in cam_keys:
                worst = max(worst, check_frame(item[f"observation.images.{c}"], ep[c], i, (k, c)))
    print(f"verified {args.out} with lerobot {lerobot.__version__}: {ds.num_episodes} episodes, "
          f"{ds.num_frames} frames, video backend {ds.video_backend}, worst mean |decoded - rendered| "
          f"{worst:.2f}/255")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--npz", type=Path, required=True, help="simulate.py's output folder")
    ap.add_argument("--out", type=Path, default=HERE / "dataset")
    ap.add_argument("--truth-dir", type=Path, default=HERE)
    ap.add_argument("--repo-id", default="carve/so100_transfer_right_arm")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--episodes", type=int, default=8, help="at most this many transfer_cube episodes (first by file name)")
    ap.add_argument("--size", default="96x72", help="WxH of the videos (area-resized)")
    ap.add_argument("--wrist", action="store_true", help="also write observation.images.wrist")
    ap.add_argument("--force", action="store_true", help="delete --out first if it exists")
    ap.add_argument("--verify-only", action="store_true")
    ap.add_argument("--video-backend", default=None, help="e.g. pyav when torchcodec cannot load")
    args = ap.parse_args(argv)

    episodes = load_npz(args.npz, tasks=("transfer_cube",), per_task=args.episodes)
    cams = {"front": "angle", **({"wrist": "right_wrist"} if args.wrist else {})}
    size = tuple(int(v) for v in args.size.lower().split("x"))
    for ep in episodes:
        for cam in cams.values():
            ep[f"images_{cam}"] = resize_frames(ep[f"images_{cam}"], size)
    frames = [resample(ep, args.fps, cams) for ep in episodes]
    src = ("right arm of ACT's scripted transfer-cube expert in gym-aloha (tests/corpus/aloha_scripted/"
           "simulate.py), expert waypoints, resampled 50 Hz -> 30 fps")
    entries = [truth_entry(k, ep, args.fps, len(f["state"]), src) for k, (ep, f) in enumerate(zip(episodes, frames, strict=True))]
    if not args.verify_only:
        if args.out.exists():
            if not args.force:
                print(f"error: {args.out} exists (use --force)", file=sys.stderr)
                return 2
            shutil.rmtree(args.out)
        write_dataset(args, frames, list(cams))
        (args.truth_dir / "truth.json").write_text(json.dumps(entries, indent=1) + "\n")
        (args.truth_dir / "truth_carve.json").write_text(
            json.dumps(carve_truth(entries, args.fps, args.out.name, src), indent=1) + "\n")
    verify(args, frames, list(cams), entries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
