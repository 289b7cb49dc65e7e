"""Write the gym-aloha scripted-expert recordings (simulate.py's .npz dumps) as a LeRobot v3.0 dataset
with the real lerobot library (0.4.4), named like lerobot's own `aloha_sim_*` datasets, plus the
ground truth `truth.json` (plain list) and `truth_carve.json` (Carve's ground_truth_events.json form).

Runs in Carve's venv (which has lerobot 0.4.4), fully offline:

    .venv/bin/python tests/corpus/aloha_scripted/make_dataset.py --npz /tmp/aloha-sim --force

Only lerobot's public recording API is used (`LeRobotDataset.create(..., use_videos=True)`, `add_frame`,
`save_episode`, `finalize`); videos are AV1 (`libsvtav1`, lerobot's default). Per frame:
`observation.state` / `action` float32[14] with lerobot's aloha_sim names
(`{"motors": ["left_waist", ..., "right_gripper"]}`), `observation.images.top` (+ `angle`), the task.
Episodes: all `transfer_cube_*.npz` (in file order), then all `insertion_*.npz`.

Afterwards the dataset is loaded back with `LeRobotDataset(repo_id, root=...)`: every episode's length,
task, all state/action values and some decoded frames per camera are checked.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from frame_check import check_frame

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
ALOHA_JOINTS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper"]
MOTORS = [f"{side}_{j}" for side in ("left", "right") for j in ALOHA_JOINTS]
TASK_ORDER = ("transfer_cube", "insertion")


def load_npz(folder: Path, tasks=TASK_ORDER, per_task: int | None = None) -> list[dict]:
    """simulate.py's dumps: all episodes of the first task (file order), then the next task's."""
    episodes = []
    for task in tasks:
        paths = sorted(folder.glob(f"{task}_*.npz"))
        if per_task is not None:
            paths = paths[:per_task]
        for path in paths:
            d = np.load(path)
            ep = {"meta": json.loads(str(d["meta"])), "path": path.name}
            for k in d.files:
                if k != "meta":
                    ep[k] = d[k]
            episodes.append(ep)
    if not episodes:
        raise SystemExit(f"error: no {'/'.join(tasks)}_*.npz in {folder}")
    return episodes


def truth_entry(k: int, ep: dict, fps: int, *, source: str) -> dict:
    """One plain-list truth entry at the recording's own 50-Hz frame index (== expert step index)."""
    m = ep["meta"]
    t = m["truth"]
    n = len(ep["qpos"])
    assert n == t["length"], (ep["path"], n, t["length"])
    bounds = [int(b) for b in t["boundaries"]]
    starts, ends = [0, *bounds], [*bounds, n]
    info = [{key: p[key] for key in ("arm", "verb", "object", "left", "right")} for p in t["phase_info"]]
    return {
        "episode_index": k,
        "boundaries": bounds,
        "phases": list(t["phases"]),
        "fps": fps,
        "length": n,
        "task": m["task"],
        "task_type": m["task_name"],
        "arms": {arm: [int(b) for b in t["arms"][arm]] for arm in ("left", "right")},
        "phase_info": info,
        "phase_frames": [[s, e] for s, e in zip(starts, ends, strict=True)],
        "arm_phases": {
            arm: [
                {"name": s["name"], "verb": s["verb"], "object": s["object"], "start": s["start"], "end": s["end"]}
                for s in t["arm_segments"][arm]
            ]
            for arm in ("left", "right")
        },
        "source": {"npz": ep["path"], "seed": m["seed"], "generator": source},
    }


# My verbs -> Carve's phase vocabulary (reach, grasp, lift, move, place, release, retreat, push), used
# only for `truth_carve.json` (what `carve eval-captions` reads). Fixed a priori from the meaning of
# the motion, never fitted to Carve's output: descending onto an object before the grasp is the end
# of the reach; `insert` is what Carve's caption scorer folds into `place`; `hold` (a still arm
# holding its pose) has no word in the vocabulary and is kept as `hold`.
CARVE_VERB = {
    "approach": "reach", "descend": "reach", "grasp": "grasp", "lift": "lift", "move": "move",
    "release": "release", "retreat": "retreat", "insert": "place", "hold": "hold",
}


def carve_truth(entries: list[dict], fps: int, dataset: str, source: str) -> dict:
    """The same truth in the form `carve synth` writes for two-arm episodes (ground_truth_events.json):
    `boundaries` the union over arms, `arm_boundaries` per arm, `phases` per arm (overlapping in time
    across arms) with `name` in Carve's vocabulary (CARVE_VERB), `verb` / `label` the expert's own."""
    return {
        "dataset": dataset,
        "fps": fps,
        "generator": {"source": source, "verb_map": CARVE_VERB},
        "episodes": [
            {
                "episode_index": e["episode_index"], "task": e["task"], "task_type": e["task_type"],
                "length": e["length"], "fps": fps, "duration_s": e["length"] / fps,
                "arms": ["left", "right"],
                "boundaries": e["boundaries"],
                "arm_boundaries": e["arms"],
                "phases": [
                    {"name": CARVE_VERB[p["verb"]], "start": p["start"], "end": p["end"], "arm": arm,
                     "start_s": p["start"] / fps, "end_s": p["end"] / fps, "object": p["object"],
                     "verb": p["verb"], "label": p["name"]}
                    for arm in ("left", "right") for p in e["arm_phases"][arm]
                ],
            }
            for e in entries
        ],
    }


def resize_frames(frames: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, h, w, 3) with PIL's area-averaging (BOX) filter; size = (w, h)."""
    if size is None or tuple(frames.shape[2:0:-1]) == tuple(size):
        return frames
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(f).resize(size, Image.BOX)) for f in frames])


def write_dataset(args: argparse.Namespace, episodes: list[dict], cams: list[str]) -> None:
    import lerobot
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    h, w = episodes[0][f"images_{cams[0]}"].shape[1:3]
    video = {"dtype": "video", "shape": (h, w, 3), "names": ["height", "width", "channel"]}
    features = {f"observation.images.{c}": dict(video) for c in cams}
    features["observation.state"] = {"dtype": "float32", "shape": (14,), "names": {"motors": list(MOTORS)}}
    features["action"] = {"dtype": "float32", "shape": (14,), "names": {"motors": list(MOTORS)}}
    ds = LeRobotDataset.create(
        repo_id=args.repo_id, fps=args.fps, root=args.out, features=features, robot_type="aloha",
        use_videos=True,
    )
    for ep in episodes:
        for i in range(len(ep["qpos"])):
            frame = {f"observation.images.{c}": ep[f"images_{c}"][i] for c in cams}
            frame["observation.state"] = ep["qpos"][i].astype(np.float32)
            frame["action"] = ep["action"][i].astype(np.float32)
            frame["task"] = ep["meta"]["task"]
            ds.add_frame(frame)
        ds.save_episode()
    ds.finalize()
    images = args.out / "images"  # lerobot's scratch dir for frames before encoding, left empty
    if images.is_dir() and not any(p.is_file() for p in images.rglob("*")):
        shutil.rmtree(images)
    print(f"wrote {args.out} with lerobot {lerobot.__version__}")


def verify(args: argparse.Namespace, episodes: list[dict], cams: list[str]) -> None:
    import lerobot
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    kw = {"video_backend": args.video_backend} if args.video_backend else {}
    ds = LeRobotDataset(args.repo_id, root=args.out, **kw)
    lengths = [len(ep["qpos"]) for ep in episodes]
    assert ds.num_episodes == len(episodes), (ds.num_episodes, len(episodes))
    assert ds.num_frames == sum(lengths), (ds.num_frames, sum(lengths))
    assert ds.fps == args.fps
    for key in ("observation.state", "action"):
        assert ds.meta.features[key]["names"] == {"motors": MOTORS}, ds.meta.features[key]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    table = ds.hf_dataset.with_format("numpy")
    st = np.stack(table["observation.state"])
    ac = np.stack(table["action"])
    epi = np.asarray(table["episode_index"]).reshape(-1)
    fi = np.asarray(table["frame_index"]).reshape(-1)
    for k, ep in enumerate(episodes):
        sl = slice(offsets[k], offsets[k + 1])
        assert (epi[sl] == k).all() and (fi[sl] == np.arange(lengths[k])).all()
        np.testing.assert_array_equal(st[sl], ep["qpos"].astype(np.float32))
        np.testing.assert_array_equal(ac[sl], ep["action"].astype(np.float32))
    worst = 0.0
    for k, ep in enumerate(episodes):
        n = lengths[k]
        picks = sorted({0, n // 2, n - 1, *ep["meta"]["truth"]["boundaries"][:3]})
        for i in picks:
            item = ds[int(offsets[k] + i)]
            assert int(item["episode_index"]) == k and int(item["frame_index"]) == i
            assert abs(float(item["timestamp"]) - i / args.fps) < 1e-4
            assert item["task"] == ep["meta"]["task"], item["task"]
            for c in cams:
                worst = max(worst, check_frame(item[f"observation.images.{c}"], ep[f"images_{c}"], i, (k, c)))
    print(f"verified {args.out} with lerobot {lerobot.__version__}: {ds.num_episodes} episodes, "
          f"{ds.num_frames} frames, video backend {ds.video_backend}, worst mean |decoded - rendered| "
          f"{worst:.2f}/255")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--npz", type=Path, required=True, help="simulate.py's output folder")
    ap.add_argument("--out", type=Path, default=HERE / "dataset")
    ap.add_argument("--truth-dir", type=Path, default=HERE)
    ap.add_argument("--repo-id", default="carve/aloha_sim_scripted")
    ap.add_argument("--fps", type=int, default=50)
    ap.add_argument("--cams", default="top", help="cameras of the .npz to keep, in order (e.g. top,angle)")
    ap.add_argument("--per-task", type=int, default=8, help="at most this many episodes per task (first by file name)")
    ap.add_argument("--size", default="96x72", help="WxH of the videos (the .npz frames are area-resized)")
    ap.add_argument("--force", action="store_true", help="delete --out first if it exists")
    ap.add_argument("--verify-only", action="store_true")
    ap.add_argument("--video-backend", default=None, help="e.g. pyav when torchcodec cannot load")
    args = ap.parse_args(argv)

    episodes = load_npz(args.npz, per_task=args.per_task)
    cams = [c for c in args.cams.split(",") if c]
    size = tuple(int(v) for v in args.size.lower().split("x"))
    for ep in episodes:
        for c in cams:
            ep[f"images_{c}"] = resize_frames(ep[f"images_{c}"], size)
    if not args.verify_only:
        if args.out.exists():
            if not args.force:
                print(f"error: {args.out} exists (use --force)", file=sys.stderr)
                return 2
            shutil.rmtree(args.out)
        write_dataset(args, episodes, cams)
        src = "ACT scripted experts in gym-aloha (tests/corpus/aloha_scripted/simulate.py), expert waypoints"
        entries = [truth_entry(k, ep, args.fps, source=src) for k, ep in enumerate(episodes)]
        (args.truth_dir / "truth.json").write_text(json.dumps(entries, indent=1) + "\n")
        (args.truth_dir / "truth_carve.json").write_text(
            json.dumps(carve_truth(entries, args.fps, args.out.name, src), indent=1) + "\n")
    verify(args, episodes, cams)
    return 0


if __name__ == "__main__":
    sys.exit(main())
