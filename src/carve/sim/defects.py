"""A corrupted LeRobot corpus for `carve check`: clean episodes of other programs' datasets with
one defect each injected at a known span, written by the real lerobot library (v3.0, AV1).

`make_corrupted_corpus(sources, out)` reads the clean episodes of each source dataset (e.g. the
conformance corpus's Meta-World and gym-aloha items), copies them, injects one kind of defect
(`INJECTORS`) into some copies at a span chosen from the episode's own motion, leaves the others
clean, writes every episode of a source as one LeRobot v3.0 dataset with lerobot 0.4.4's
recording API (`LeRobotDataset.create`, `add_frame(..., timestamp)`, `save_episode`,
`finalize`) and returns the truth: per dataset and episode, the injected kind and span (frame
indices of the written episode, end inclusive), or none. Two kinds are made after writing, as a
faulty recorder would leave them: `timestamp_gap` and `fps_mismatch` rewrite the episode's
`timestamp` column (lerobot writes frame_index / fps), and for `video_length_mismatch` the
injected episode is the last one of its video files, whose final packets are cut off (a stream
copy of the rest).

The spans are where the defect is, in the episode as written; which kinds a source can carry
depends on its columns (an offset needs position commands named like the state, a missed
grasp a gripper both measured and commanded).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

KINDS = ("nan", "timestamp_gap", "fps_mismatch", "frozen_video", "black_video", "video_length_mismatch",
         "state_jump", "idle_head", "idle_tail", "gripper_chatter", "action_state_offset", "duplicate_episode",
         "truncated", "missed_grasp")


@dataclass
class Ep:
    """One episode in memory: signals, every camera's frames, timestamps."""

    task: str
    fps: float
    state: np.ndarray
    action: np.ndarray
    frames: dict[str, np.ndarray]
    timestamps: np.ndarray
    state_names: list[str]
    action_names: list[str]
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.state)

    def take(self, idx: np.ndarray) -> Ep:
        idx = np.asarray(idx)
        return replace(self, state=self.state[idx].copy(), action=self.action[idx].copy(),
                       frames={c: f[idx].copy() for c, f in self.frames.items()},
                       timestamps=np.arange(len(idx)) / self.fps)


def read_episodes(uri: str) -> list[Ep]:
    """Every episode of a LeRobot dataset with all its frames (Carve's reader)."""
    from carve.ingest.sources import load_episode, open_source

    out = []
    for ref in open_source(uri, "lerobot").list_episodes():
        ep = load_episode(ref)
        out.append(Ep(ep.task, float(ep.fps), ep.state.astype(np.float32), ep.action.astype(np.float32),
                      {c: ep.frames(c) for c in ep.cameras}, np.arange(ep.length) / ep.fps,
                      list(ep.state_names), list(ep.action_names), source=f"{uri}#{ref.episode_index}"))
    return out


# -- where to inject -------------------------------------------------------------------------------------
def _layouts(ep: Ep) -> list[Any]:
    """The arms of the episode as Carve reads them (motion columns in SI units, grippers)."""
    from carve.core.config import SegmentConfig
    from carve.ingest.arms import arm_layouts

    return arm_layouts(ep.state_names, ep.action_names, np.nan_to_num(ep.state.astype(np.float64)),
                       np.nan_to_num(ep.action.astype(np.float64)), SegmentConfig())


def _speed(ep: Ep) -> np.ndarray:
    """Per frame, the fastest arm's speed (rad/s or m/s) of its motion columns."""
    out = np.zeros(ep.n)
    st, ac = np.nan_to_num(ep.state.astype(np.float64)), np.nan_to_num(ep.action.astype(np.float64))
    for lay in _layouts(ep):
        x = lay.motion_signal(st, ac)
        if x.shape[1] and len(x) > 1:
            out = np.maximum(out, np.linalg.norm(np.gradient(x, axis=0), axis=1) * ep.fps)
    return out


def _moving_span(ep: Ep, seconds: float) -> tuple[int, int]:
    """[a, b] of `seconds` where the state moves most (the injected span of frozen/black video)."""
    w = max(2, round(seconds * ep.fps))
    sp = _speed(ep)
    if ep.n <= w + 2:
        return 1, ep.n - 2
    c = np.convolve(sp, np.ones(w), mode="valid")
    a = int(np.argmax(c[1:-1])) + 1
    return a, a + w - 1


def _gripper(ep: Ep) -> tuple[int | None, int | None]:
    """(state column, action column) of the first arm's gripper, as Carve reads them."""
    for lay in _layouts(ep):
        if lay.gripper is not None or lay.gripper_action is not None:
            return lay.gripper, lay.gripper_action
    return None, None


def _grasp(ep: Ep) -> tuple[int, int] | None:
    """[onset, open) of the first grasp by the gripper command: from where the command starts to
    fall toward closed (after having been open) to where it opens again (or the episode ends)."""
    gs, ga = _gripper(ep)
    if ga is None:
        return None
    x = ep.action[:, ga].astype(np.float64)
    lo, hi = np.percentile(x, [2, 98])
    meas = ep.state[:, gs].astype(np.float64) if gs is not None else None
    if meas is not None and np.std(x) > 0 and np.std(meas) > 0 and np.corrcoef(x, meas)[0, 1] < 0:
        x = -x
        lo, hi = -hi, -lo
    closed = x < (lo + hi) / 2
    on = np.flatnonzero(np.diff(closed.astype(int)) == 1)
    if not len(on):
        return None
    a = int(on[0]) + 1
    while a > 1 and x[a - 1] < x[a - 2] - 1e-6:  # back to where the command starts to fall
        a -= 1
    off = np.flatnonzero(~closed[a:] & (np.arange(a, ep.n) > int(on[0]) + 1))
    return a, (int(off[0]) + a if len(off) else ep.n)


# -- the injectors: (episode, rng) -> (corrupted episode, (start, end)) or None when it cannot carry it --
def _nan(ep: Ep, rng: np.random.Generator) -> tuple[Ep, tuple[int, int]]:
    a = int(rng.integers(ep.n // 4, ep.n // 2))
    out = ep.take(np.arange(ep.n))
    out.state[a : a + 3, int(rng.integers(0, ep.state.shape[1]))] = np.nan
    return out, (a, a + 2)


def _gap(ep: Ep, rng: np.random.Generator) -> tuple[Ep, tuple[int, int]]:
    k = int(rng.integers(ep.n // 3, 2 * ep.n // 3))
    m = max(2, round(0.2 * ep.fps))
    keep = np.r_[0:k, k + m : ep.n]
    out = ep.take(keep)
    out.timestamps = ep.timestamps[keep]  # the frames' own times: the dropped ones leave a hole
    return out, (k - 1, k)


def _fps(ep: Ep, rng: np.random.Generator) -> tuple[Ep, tuple[int, int]]:
    out = ep.take(np.arange(ep.n))
    out.timestamps = np.arange(ep.n) / (ep.fps * 0.8)  # recorded at 0.8x the rate the dataset declares
    return out, (0, ep.n - 1)


def _frozen(ep: Ep, rng: np.random.Generator) -> tuple[Ep, tuple[int, int]]:
    a, b = _moving_span(ep, 1.0)
    out = ep.take(np.arange(ep.n))
    cam = sorted(out.frames)[0]
    out.frames[cam][a : b + 1] = out.frames[cam][a]
    return out, (a, b)


def _black(ep: Ep, rng: np.random.Generator) -> tuple[Ep, tuple[int, int]]:
    a, b = _moving_span(ep, 1.0)
    out = ep.take(np.arange(ep.n))
    cam = sorted(out.frames)[-1]
    out.frames[cam][a : b + 1] = 0
    return out, (a, b)


def _jump(ep: Ep, rng: np.random.Generator) -> tuple[Ep, tuple[int, int]]:
    k = int(rng.integers(ep.n // 4, 3 * ep.n // 4))
    lay = next(lay for lay in _layouts(ep) if lay.motion and not lay.motion_in_action)
    d = lay.motion[int(rng.integers(0, len(lay.motion)))]
    span = float(np.ptp(ep.state[:, d]))
    out = ep.take(np.arange(ep.n))
    # one frame off by far more than any arm moves in a frame: 1 rad (57 deg) or 1 m, and beyond its range
    out.state[k, d] += max(2 * span, 57.3 if lay.degrees else 1.0)
    return out, (k - 1, k + 1)


def _idle_head(ep: Ep, rng: np.random.Generator) -> tuple[Ep, tuple[int, int]] | None:
    if _speed(ep)[0] < 1e-6:
        return None  # starts still already: the injected span would not be the defect's
    m = round(2.0 * ep.fps)
    return ep.take(np.r_[np.zeros(m, int), np.arange(ep.n)]), (0, m - 1)


def _idle_tail(ep: Ep, rng: np.random.Generator) -> tuple[Ep, tuple[int, int]] | None:
    if _speed(ep)[-1] < 1e-6:
        return None
    m = round(2.0 * ep.fps)
    return ep.take(np.r_[np.arange(ep.n), np.full(m, ep.n - 1)]), (ep.n, ep.n + m - 1)


def _chatter(ep: Ep, rng: np.random.Generator) -> tuple[Ep, tuple[int, int]] | None:
    gs, ga = _gripper(ep)
    if gs is None and ga is None:
        return None
    a = int(rng.integers(ep.n // 4, ep.n // 2))
    period = max(2, round(0.12 * ep.fps))  # open / close every 0.12 s for 1 s
    b = min(ep.n - 1, a + round(1.0 * ep.fps))
    out = ep.take(np.arange(ep.n))
    for dim, arr, src in ((gs, out.state, ep.state), (ga, out.action, ep.action)):
        if dim is None:
            continue
        lo, hi = np.percentile(src[:, dim], [2, 98])
        if hi - lo <= 1e-9:
            return None
        for k in range(a, b + 1):
            arr[k, dim] = hi if ((k - a) // period) % 2 == 0 else lo
    return out, (a, b)


def _offset(ep: Ep, rng: np.random.Generator) -> tuple[Ep, tuple[int, int]] | None:
    if ep.state_names != ep.action_names:
        return None
    lay = next((lay for lay in _layouts(ep) if lay.motion and not lay.motion_in_action), None)
    if lay is None:
        return None
    out = ep.take(np.arange(ep.n))
    d = lay.motion[int(rng.integers(0, len(lay.motion)))]
    out.action[:, d] += 8.0 if lay.degrees else (0.03 if lay.kind == "cartesian" else 0.14)  # ~8 degrees / 3 cm
    return out, (0, ep.n - 1)


def _truncated(ep: Ep, rng: np.random.Generator) -> tuple[Ep, tuple[int, int]]:
    sp = _speed(ep)
    lo, hi = ep.n // 3, max(ep.n // 3 + 1, 2 * ep.n // 3)
    k = lo + int(np.argmax(sp[lo:hi]))  # cut at the fastest moment of the middle third
    w = max(2, round(0.2 * ep.fps))
    return ep.take(np.arange(k + 1)), (k + 1 - w, k)


def _missed(ep: Ep, rng: np.random.Generator) -> tuple[Ep, tuple[int, int]] | None:
    gs, ga = _gripper(ep)
    grasp = _grasp(ep)
    if gs is None or ga is None or ep.state_names != ep.action_names or grasp is None:
        return None
    a, b = grasp
    out = ep.take(np.arange(ep.n))
    out.state[a:b, gs] = out.action[a:b, ga]  # the fingers reach their command: nothing between them
    return out, (a, b - 1)


INJECTORS: dict[str, Callable[[Ep, np.random.Generator], Any]] = {
    "nan": _nan, "timestamp_gap": _gap, "fps_mismatch": _fps, "frozen_video": _frozen, "black_video": _black,
    "state_jump": _jump, "idle_head": _idle_head, "idle_tail": _idle_tail, "gripper_chatter": _chatter,
    "action_state_offset": _offset, "truncated": _truncated, "missed_grasp": _missed,
}


# -- writing ----------------------------------------------------------------------------------------------
def write_lerobot(episodes: list[Ep], out: Path, repo_id: str, robot_type: str = "unknown") -> None:
    """The episodes as one LeRobot v3.0 dataset (AV1 video), through lerobot's recording API."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    first = episodes[0]
    features: dict[str, Any] = {}
    for cam, fr in first.frames.items():
        features[cam] = {"dtype": "video", "shape": tuple(fr.shape[1:]), "names": ["height", "width", "channels"]}
    features["observation.state"] = {"dtype": "float32", "shape": (first.state.shape[1],), "names": first.state_names}
    features["action"] = {"dtype": "float32", "shape": (first.action.shape[1],), "names": first.action_names}
    ds = LeRobotDataset.create(repo_id=repo_id, fps=round(first.fps), root=out, features=features,
                               robot_type=robot_type, use_videos=True)
    for ep in episodes:
        for i in range(ep.n):
            frame = {cam: fr[i] for cam, fr in ep.frames.items()}
            frame["observation.state"] = ep.state[i].astype(np.float32)
            frame["action"] = ep.action[i].astype(np.float32)
            frame["task"] = ep.task or "do the task"
            ds.add_frame(frame)
        ds.save_episode()
    ds.finalize()
    images = out / "images"
    if images.is_dir():
        shutil.rmtree(images)


def set_timestamps(root: Path, timestamps: dict[int, np.ndarray]) -> None:
    """Overwrite the `timestamp` column of some episodes in a written dataset's data files (lerobot
    writes frame_index / fps; a recorder with a dropped-frame hole or a wrong clock writes others)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for path in sorted(root.glob("data/**/*.parquet")):
        t = pq.read_table(path)
        ts = t.column("timestamp").to_numpy().astype(np.float64).copy()
        ep = t.column("episode_index").to_numpy()
        fi = t.column("frame_index").to_numpy()
        changed = False
        for e, new in timestamps.items():
            rows = np.flatnonzero(ep == e)
            if len(rows):
                ts[rows] = np.asarray(new, dtype=np.float64)[fi[rows]]
                changed = True
        if changed:
            col = pc.cast(pa.array(ts), t.schema.field("timestamp").type)
            tmp = path.with_name(path.name + ".tmp")
            pq.write_table(t.set_column(t.schema.get_field_index("timestamp"), "timestamp", col), tmp)
            tmp.replace(path)


def cut_video_tails(root: Path, frames: int) -> list[str]:
    """Drop the last `frames` packets of every video file of a LeRobot dataset (stream copy):
    the last episode of each file then has fewer video frames than data rows."""
    import av

    done = []
    for path in sorted(root.glob("videos/**/*.mp4")):
        tmp = path.with_name(path.stem + ".cut.mp4")
        with av.open(str(path)) as src:
            s = src.streams.video[0]
            packets = [p for p in src.demux(s) if p.dts is not None]
            keep = sorted(packets, key=lambda p: p.pts)[:-frames]
            keep_ids = {id(p) for p in keep}
            with av.open(str(tmp), "w", format="mp4") as dst:
                o = dst.add_stream_from_template(s, opaque=True)  # the decoder as codec object: no encoder needed
                for p in packets:
                    if id(p) in keep_ids:
                        p.stream = o
                        dst.mux(p)
        tmp.replace(path)
        done.append(str(path.relative_to(root)))
    return done


def make_corrupted_corpus(sources: dict[str, str], out: Path, seed: int = 0, clean_every: int = 3,
                          duplicates: int = 1) -> dict[str, Any]:
    """Write one corrupted dataset per source under `out/<name>/` and return the truth:
    {"datasets": {name: {"source", "episodes": [{"episode_index", "from", "kind", "start_frame", "end_frame"}]}}}
    (kind None for a clean episode). Every `clean_every`-th episode stays clean; the others get the
    kinds in turn (those a source cannot carry are skipped for it); `duplicates` episodes are
    noisy copies of earlier clean ones with 2% of their frames trimmed; the source's last episode is
    written last, with a video that ends early (`video_length_mismatch`)."""
    rng = np.random.default_rng(seed)
    truth: dict[str, Any] = {"seed": seed, "datasets": {}}
    made: dict[str, int] = dict.fromkeys(INJECTORS, 0)  # kinds injected so far, over every source
    for name, uri in sources.items():
        clean = read_episodes(uri)
        last = clean.pop()  # kept for the video that ends early (written last), used nowhere else
        eps: list[Ep] = []
        rows: list[dict[str, Any]] = []
        for i, ep in enumerate(clean):
            if i % clean_every == 0:
                eps.append(ep)
                rows.append({"from": ep.source, "kind": None})
                continue
            # the kind injected least so far that this episode can carry
            for kind in sorted(INJECTORS, key=lambda k: (made[k], list(INJECTORS).index(k))):
                done = INJECTORS[kind](ep, rng)
                if done is not None:
                    new, (a, b) = done
                    made[kind] += 1
                    eps.append(new)
                    rows.append({"from": ep.source, "kind": kind, "start_frame": int(a), "end_frame": int(b)})
                    break
        for k in range(duplicates):  # a noisy copy of a clean episode, 2% of its frames trimmed off its start
            orig = next(j for j, r in enumerate(rows) if r["kind"] is None and j >= k * clean_every)
            src = eps[orig]
            copy = src.take(np.arange(max(1, round(0.02 * src.n)), src.n))
            spread = np.nanstd(src.state, axis=0)
            copy.state = (copy.state + rng.normal(0, 1, copy.state.shape) * 2e-4 * spread).astype(np.float32)
            eps.append(copy)
            rows.append({"from": src.source, "kind": "duplicate_episode", "start_frame": 0, "end_frame": copy.n - 1,
                         "of": orig})
        cut = max(3, round(0.25 * last.fps))  # the episode whose video ends early: written last
        eps.append(last.take(np.arange(last.n)))
        rows.append({"from": last.source, "kind": "video_length_mismatch", "start_frame": last.n - cut,
                     "end_frame": last.n - 1})
        d = out / name
        if d.exists():
            shutil.rmtree(d)
        write_lerobot(eps, d, f"carve/corrupted_{name}")
        set_timestamps(d, {i: e.timestamps for i, e in enumerate(eps)
                           if not np.allclose(e.timestamps, np.arange(e.n) / e.fps)})
        cut_video_tails(d, cut)
        for i, r in enumerate(rows):
            r["episode_index"] = i
        truth["datasets"][name] = {"source": uri, "episodes": rows}
    (out / "truth.json").write_text(json.dumps(truth, indent=2))
    return truth
