"""Write the Meta-World expert recordings (simulate.py's .npz dumps) as a LeRobot v3.0 dataset with
the real lerobot library (0.4.4), plus the ground truth `truth.json` / `truth_carve.json`.

Runs in Carve's venv (which has lerobot 0.4.4), fully offline:

    .venv/bin/python tests/corpus/metaworld/make_dataset.py --npz /tmp/mw-npz --force

The dataset is written only through lerobot's public recording API (`LeRobotDataset.create(...,
use_videos=True)`, `add_frame`, `save_episode`, `finalize`), AV1 (`libsvtav1`, lerobot's default).
Per frame: `observation.state` float32[4] (x, y, z, gripper), `action` float32[4] (dx, dy, dz,
grip_effort), two videos, the task, and `subtask_index` int64[1] (the expert's phase, an index into
this dataset's list of phase texts). lerobot 0.4.4 takes `subtask_index` as an ordinary int64 feature
(one workaround for numpy 2.4 in `write_dataset`, see there) but has no writer for the phase texts (it only reads `meta/subtasks.parquet`), so that file is written
afterwards with pandas in the layout lerobot reads and Carve's exporter writes: indexed by the text
(index name `subtask`), one column `subtask_index`, row i holding index i.

Afterwards the dataset is loaded back with `LeRobotDataset(repo_id, root=...)` and every episode's
length, task, subtask text, state/action values and a few decoded frames per camera are checked.
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
import min_phase
from frame_check import check_frame

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
STATE_NAMES = ["x", "y", "z", "gripper"]
ACTION_NAMES = ["dx", "dy", "dz", "grip_effort"]
# camera name in Meta-World -> feature key suffix
CAMERA_KEYS = {"corner": "corner", "behindGripper": "behind_gripper"}


def load_npz(folder: Path) -> list[dict]:
    episodes = []
    for path in sorted(folder.glob("episode_*.npz")):
        d = np.load(path)
        meta = json.loads(str(d["meta"]))
        ep = {"meta": meta, "path": path.name}
        for k in d.files:
            if k != "meta":
                ep[k] = d[k]
        episodes.append(ep)
    if not episodes:
        raise SystemExit(f"error: no episode_*.npz in {folder}")
    return episodes


def phase_gripper(name: str) -> str | None:
    if name.endswith("(gripper closing)"):
        return "closing"
    if name.endswith("(gripper open)"):
        return "open"
    return None


def subtask_table(episodes: list[dict]) -> dict[str, int]:
    """Phase text -> subtask index, in order of first appearance over the episodes."""
    texts: dict[str, int] = {}
    for ep in episodes:
        for name in ep["meta"]["phases"]:
            texts.setdefault(name, len(texts))
    return texts


ROBOT_TYPE = "sawyer"


def write_dataset(args: argparse.Namespace, episodes: list[dict], subtasks: dict[str, int]) -> None:
    """The episodes as a LeRobot v3.0 dataset at `args.out`, written by lerobot itself (`STATE_NAMES`,
    `ACTION_NAMES`, `CAMERA_KEYS` and `ROBOT_TYPE` name what it records; a generator that reuses this
    module sets them)."""
    import lerobot
    import pandas as pd
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    cams = episodes[0]["meta"]["cameras"]
    h, w = episodes[0][f"image_{cams[0]}"].shape[1:3]
    video = {"dtype": "video", "shape": (h, w, 3), "names": ["height", "width", "channels"]}
    features = {f"observation.images.{CAMERA_KEYS[c]}": dict(video) for c in cams}
    features["observation.state"] = {"dtype": "float32", "shape": (len(STATE_NAMES),), "names": list(STATE_NAMES)}
    features["action"] = {"dtype": "float32", "shape": (len(ACTION_NAMES),), "names": list(ACTION_NAMES)}
    features["subtask_index"] = {"dtype": "int64", "shape": (1,), "names": None}
    ds = LeRobotDataset.create(
        repo_id=args.repo_id, fps=args.fps, root=args.out, features=features, robot_type=ROBOT_TYPE,
        use_videos=True,
    )
    for ep in episodes:
        names = ep["meta"]["phases"]
        sub = np.array([subtasks[names[p]] for p in ep["frame_phase"]], dtype=np.int64)
        for i in range(len(ep["state"])):
            frame = {f"observation.images.{CAMERA_KEYS[c]}": ep[f"image_{c}"][i] for c in cams}
            frame["observation.state"] = ep["state"][i].astype(np.float32)
            frame["action"] = ep["action"][i].astype(np.float32)
            frame["subtask_index"] = np.array([sub[i]], dtype=np.int64)
            frame["task"] = ep["meta"]["task"]
            ds.add_frame(frame)
        # lerobot 0.4.4 validates a shape-(1,) feature as a (1,) array, stacks the episode's values to
        # (n, 1), and `datasets`' Value("int64") encoder then calls int() on each (1,) row, which
        # numpy >= 2.4 refuses ("only 0-dimensional arrays can be converted to Python scalars").
        # Flatten this one buffer entry to scalars (as add_frame stores frame_index) before saving.
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
    out = []
    for k, ep in enumerate(episodes):
        m = ep["meta"]
        n = len(ep["state"])
        bounds = [int(b) for b in m["boundaries"]]
        starts = [0, *bounds]
        ends = [*bounds, n]
        stride = m["step_stride"]
        out.append({
            "episode_index": k,
            "boundaries": bounds,
            "phases": list(m["phases"]),
            "fps": fps,
            "length": n,
            "task": m["task"],
            "task_type": m["task_name"],
            "phase_gripper": [phase_gripper(p) for p in m["phases"]],
            "phase_frames": [[s, e] for s, e in zip(starts, ends, strict=True)],
            "metaworld": {
                "env": m["task_name"], "mt1_seed": m["seed"], "variation": m["variation"],
                "control_hz": m["control_hz"], "step_stride": stride,
                "success_step": m["success_step"],
                "success_frame": -(-int(m["success_step"]) // stride),
                "change_steps": m["change_steps"],
                "step_phases": m["step_phase_names"],
            },
        })
    return out


def carve_truth(entries: list[dict], fps: int, dataset: str) -> dict:
    """The same truth in the form `carve synth` writes (ground_truth_events.json)."""
    return {
        "dataset": dataset,
        "fps": fps,
        "generator": {"source": "metaworld scripted experts (tests/corpus/metaworld/simulate.py)"},
        "episodes": [
            {
                "episode_index": e["episode_index"], "task": e["task"], "task_type": e["task_type"],
                "length": e["length"], "fps": fps, "duration_s": e["length"] / fps,
                "boundaries": e["boundaries"],
                "phases": [
                    {"name": name, "start": s, "end": t, "start_s": s / fps, "end_s": t / fps}
                    for name, (s, t) in zip(e["phases"], e["phase_frames"], strict=True)
                ],
            }
            for e in entries
        ],
    }


def verify(args: argparse.Namespace, episodes: list[dict], subtasks: dict[str, int]) -> None:
    import lerobot
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    kw = {"video_backend": args.video_backend} if args.video_backend else {}
    ds = LeRobotDataset(args.repo_id, root=args.out, **kw)
    lengths = [len(ep["state"]) for ep in episodes]
    assert ds.num_episodes == len(episodes), (ds.num_episodes, len(episodes))
    assert ds.num_frames == sum(lengths), (ds.num_frames, sum(lengths))
    assert ds.meta.subtasks is not None and list(ds.meta.subtasks.index) == list(subtasks)
    cams = episodes[0]["meta"]["cameras"]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    # all tabular values of every frame, through the HF dataset (no video decoding)
    table = ds.hf_dataset.with_format("numpy")
    st = np.stack(table["observation.state"])
    ac = np.stack(table["action"])
    sub = np.asarray(table["subtask_index"]).reshape(-1)
    epi = np.asarray(table["episode_index"]).reshape(-1)
    fi = np.asarray(table["frame_index"]).reshape(-1)
    for k, ep in enumerate(episodes):
        sl = slice(offsets[k], offsets[k + 1])
        assert (epi[sl] == k).all() and (fi[sl] == np.arange(lengths[k])).all()
        np.testing.assert_array_equal(st[sl], ep["state"])
        np.testing.assert_array_equal(ac[sl], ep["action"])
        names = ep["meta"]["phases"]
        np.testing.assert_array_equal(sub[sl], [subtasks[names[p]] for p in ep["frame_phase"]])
    worst = 0.0
    for k, ep in enumerate(episodes):
        n = lengths[k]
        picks = sorted({0, n // 2, n - 1, *[b for b in ep["meta"]["boundaries"][:2]]})
        for i in picks:
            item = ds[int(offsets[k] + i)]
            assert int(item["episode_index"]) == k and int(item["frame_index"]) == i
            assert item["task"] == ep["meta"]["task"], item["task"]
            assert item["subtask"] == ep["meta"]["phases"][int(ep["frame_phase"][i])], item["subtask"]
            np.testing.assert_array_equal(item["observation.state"].numpy(), ep["state"][i])
            for c in cams:
                img = item[f"observation.images.{CAMERA_KEYS[c]}"]
                worst = max(worst, check_frame(img, ep[f"image_{c}"], i, (k, c)))
    print(f"verified {args.out} with lerobot {lerobot.__version__}: {ds.num_episodes} episodes, "
          f"{ds.num_frames} frames, video backend {ds.video_backend}, worst mean |decoded - rendered| "
          f"{worst:.2f}/255")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--npz", type=Path, required=True, help="simulate.py's output folder")
    ap.add_argument("--out", type=Path, default=HERE / "dataset")
    ap.add_argument("--truth-dir", type=Path, default=HERE)
    ap.add_argument("--repo-id", default="carve/metaworld_experts")
    ap.add_argument("--fps", type=int, default=20)
    ap.add_argument("--force", action="store_true", help="delete --out first if it exists")
    ap.add_argument("--verify-only", action="store_true")
    ap.add_argument("--video-backend", default=None, help="lerobot video backend (default torchcodec; lerobot 0.4.4's pyav backend needs "
                    "torchvision.io.VideoReader, absent from torchvision 0.29)")
    args = ap.parse_args(argv)

    episodes = load_npz(args.npz)
    for ep in episodes:
        assert ep["meta"]["fps"] == args.fps, (ep["path"], ep["meta"]["fps"])
    subtasks = subtask_table(episodes)
    if not args.verify_only:
        if args.out.exists():
            if not args.force:
                print(f"error: {args.out} exists (use --force)", file=sys.stderr)
                return 2
            shutil.rmtree(args.out)
        write_dataset(args, episodes, subtasks)
        entries = truth_entries(episodes, args.fps)
        # every expert phase change; truth.json keeps the phases of >= 0.15 s (../min_phase.py)
        (args.truth_dir / "truth_all.json").write_text(json.dumps(entries, indent=1) + "\n")
        (args.truth_dir / "truth.json").write_text(json.dumps(min_phase.convert(entries), indent=1) + "\n")
        (args.truth_dir / "truth_carve.json").write_text(
            json.dumps(carve_truth(entries, args.fps, args.out.name), indent=1) + "\n")
    verify(args, episodes, subtasks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
