"""Near-duplicate marking validated on simulated data: false flags on distinct demos, recall on copies.

    .venv/bin/python -m bench.dedup_validation --episodes 40 --dups 8 [--noise 0.0] [--task pick_place]

Builds a folder dataset of `--episodes` distinct demonstrations of ONE task (pybullet, a
different seed each), then adds `--dups` true duplicates: half are byte copies of a demo under
another name (an episode ingested twice), half have the video re-encoded with PyAV at another
codec/CRF (same signals, different pixels). Runs ingest + clustering in this process
(`LocalExecutor`), then re-marks duplicates on the same clustering input with the embedding-only
rule (`cluster.dedup_signal_tol=None`, the rule before the raw-signal check) and with the
current default, and reports for both:

* false-flag rate: the fraction of distinct-demo events that share a duplicate group with an
  event of ANOTHER distinct demo (a group is a representative and the events marked dup_of it),
  with a 95% Wilson interval;
* recall: the fraction of (source event, duplicate event) pairs that end up in one group;
* the signal distance (clustering.dedup.signal_distance) of distinct-demo pairs whose embeddings
  pass the cosine threshold (the pairs the raw-signal check must reject): minimum and 1st
  percentile, against the maximum over true-duplicate pairs: the margin around the tolerance.

The baseline in the same process is the embedding-only rule on the same events; the ratio
reported is false flags (current) / false flags (embedding only).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of k successes in n trials."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def reencode(src: Path, dst: Path, codec: str, crf: int) -> None:
    """Decode `src` and encode the same frames into `dst` with `codec` at `crf` (PyAV)."""
    import av

    with av.open(str(src)) as inp:
        stream = inp.streams.video[0]
        fps = stream.average_rate
        frames = [f.to_ndarray(format="rgb24") for f in inp.decode(stream)]
    with av.open(str(dst), "w") as out:
        s = out.add_stream(codec, rate=fps)
        s.width, s.height = frames[0].shape[1], frames[0].shape[0]
        s.pix_fmt = "yuv420p"
        s.options = {"crf": str(crf)} if codec in ("libx264", "libx265", "libsvtav1", "libaom-av1") else {}
        if codec == "mpeg4":
            s.options = {"qscale": "8"}
        for fr in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(fr, format="rgb24")):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)


def make_dataset(folder: Path, n_distinct: int, n_dups: int, *, task: str = "pick_place", seed: int = 0,
                 size: int = 64, fps: int = 12, noise: float = 0.0) -> dict[str, str]:
    """Write the dataset; return {duplicate's episode number: the number of the demo it copies}
    (zero-padded, as in the episode ids `<dataset>/NNNNNN`)."""
    from carve.sim.formats import write_folder
    from carve.sim.lerobot_writer import EpisodeArrays
    from carve.sim.scene import action_names, state_names
    from carve.sim.synth import episode_seed
    from carve.sim.tasks import run_episode

    def arrays():
        for i in range(n_distinct):
            ep = run_episode(task, episode_seed(seed, i), fps=fps, size=size, operator_noise=noise)
            yield EpisodeArrays(task=ep.task, state=ep.state, action=ep.action, frames=ep.frames)

    write_folder(folder, arrays(), fps=fps, state_names=state_names(1), action_names=action_names(1))
    codecs = [("libx264", 38), ("mpeg4", 0)]
    dups: dict[str, str] = {}
    for j in range(n_dups):
        src = f"episode_{j % n_distinct:06d}"
        name = f"episode_{n_distinct + j:06d}"
        for ext in ("npz", "json"):
            shutil.copyfile(folder / f"{src}.{ext}", folder / f"{name}.{ext}")
        if j % 2 == 0:  # ingested twice: the same bytes under another name
            shutil.copyfile(folder / f"{src}.mp4", folder / f"{name}.mp4")
        else:  # re-encoded: another codec / CRF of the same frames
            codec, crf = codecs[(j // 2) % len(codecs)]
            reencode(folder / f"{src}.mp4", folder / f"{name}.mp4", codec, crf)
        dups[name.split("_")[1]] = src.split("_")[1]
    return dups


def _groups(asg: Any) -> dict[str, str]:
    """event_id -> group (its representative's id, or its own)."""
    return {e: (d or e) for e, d in zip(asg.column("event_id").to_pylist(), asg.column("dup_of").to_pylist(),
                                         strict=True)}


def score(events: Any, groups: dict[str, str], dups: dict[str, str]) -> dict[str, Any]:
    """False-flag rate on distinct demos and recall on true duplicates (see the module docstring)."""
    ep_of = dict(zip(events.column("event_id").to_pylist(), events.column("episode_id").to_pylist(), strict=True))
    name = {e: ep.rsplit("/", 1)[-1] for e, ep in ep_of.items()}
    source = {e: dups.get(n, n) for e, n in name.items()}  # the demo an event's recording comes from
    members: dict[str, list[str]] = {}
    for e, g in groups.items():
        members.setdefault(g, []).append(e)
    distinct = [e for e in ep_of if name[e] not in dups]
    false = sum(1 for e in distinct if any(source[o] != source[e] for o in members[groups[e]]))
    # true pairs: a duplicate's event and the source demo's event at the same position
    key = {(name[e], s, t): e for e, s, t in zip(events.column("event_id").to_pylist(),
                                               events.column("start_frame").to_pylist(),
                                               events.column("end_frame").to_pylist(), strict=True)}
    pairs = [(key[(src, s, t)], e) for (n, s, t), e in key.items() if n in dups
             for src in [dups[n]] if (src, s, t) in key]
    found = sum(1 for a, b in pairs if groups[a] == groups[b])
    dup_events = sum(1 for e in ep_of if name[e] in dups)
    lo, hi = wilson(false, len(distinct))
    return {"distinct_events": len(distinct), "false_flags": false, "false_rate": false / max(1, len(distinct)),
            "false_ci95": [round(lo, 4), round(hi, 4)], "dup_events": dup_events, "true_pairs": len(pairs),
            "pairs_found": found, "recall": found / max(1, len(pairs)),
            "recall_ci95": [round(v, 4) for v in wilson(found, len(pairs))]}


def margins(events: Any, dups: dict[str, str], threshold: float) -> dict[str, Any]:
    """Signal distances of embedding-candidate pairs: distinct demos vs true duplicates."""
    from carve.clustering.dedup import event_fingerprints, signal_distance

    x = np.asarray(events.column("emb").to_pylist(), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sig = event_fingerprints(events)
    name = [ep.rsplit("/", 1)[-1] for ep in events.column("episode_id").to_pylist()]
    src = [dups.get(n, n) for n in name]
    sims = x @ x.T
    cand, true = [], []
    for i in range(len(x)):
        js = np.flatnonzero(sims[i, i + 1:] >= threshold) + i + 1
        if not len(js):
            continue
        d = signal_distance(sig[i], sig[js])
        for j, dj in zip(js, d, strict=True):
            if src[i] != src[j]:
                cand.append(float(dj))
            elif name[i] != name[j]:
                true.append(float(dj))
    c = np.asarray(cand)
    return {"distinct_candidate_pairs": len(cand),
            "distinct_min": float(c.min()) if len(c) else None,
            "distinct_p01": float(np.quantile(c, 0.01)) if len(c) else None,
            "distinct_p50": float(np.median(c)) if len(c) else None,
            "true_pairs_passing_cosine": len(true), "true_max": max(true) if true else None}


def run(episodes: int, n_dups: int, *, task: str, noise: float, seed: int, keep: str | None = None) -> dict[str, Any]:
    from carve.clustering.curate import cluster_catalog
    from carve.clustering.versions import read_assignments, unique_assignments
    from carve.core.config import CarveConfig
    from carve.pipeline.executor import LocalExecutor
    from carve.pipeline.run import run_pipeline
    from carve.storage.events import read_events
    from carve.storage.root import open_root

    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="carve-dedup-val-"))
    try:
        t0 = time.time()
        src = work / "raw" / "demos"
        dups = make_dataset(src, episodes, n_dups, task=task, seed=seed, noise=noise)
        t_sim = time.time() - t0
        cfg = CarveConfig().with_overrides({
            "root": str(work / "root"), "source": {"uri": str(src), "format": "folder"},
            "ray": {"progress": False}})
        t0 = time.time()
        run_pipeline(cfg, shard=False, executor=LocalExecutor())
        t_pipe = time.time() - t0
        root = open_root(cfg.root)
        events = read_events(root, columns=["event_id", "episode_id", "start_frame", "end_frame", "state", "action",
                                            "emb"])
        out: dict[str, Any] = {"episodes": episodes, "duplicates": n_dups, "task": task, "noise": noise,
                               "events": events.num_rows, "threshold": cfg.cluster.dedup_threshold,
                               "signal_tol": cfg.cluster.dedup_signal_tol, "sim_s": round(t_sim, 1),
                               "pipeline_s": round(t_pipe, 1)}
        for label, tol in (("embedding_only", None), ("default", cfg.cluster.dedup_signal_tol)):
            c = cfg.with_overrides({"cluster": {"dedup_signal_tol": tol}})
            v = cluster_catalog(root, c)
            out[label] = score(events, _groups(unique_assignments(read_assignments(root, v))), dups)
        out["signal_margins"] = margins(events, dups, cfg.cluster.dedup_threshold)
        base = out["embedding_only"]["false_rate"]
        out["ratio_false_flags_vs_embedding_only"] = (out["default"]["false_rate"] / base) if base else None
        return out
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--dups", type=int, default=8)
    ap.add_argument("--task", default="pick_place")
    ap.add_argument("--noise", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", default=None, help="work folder to keep (default: a temp folder, removed)")
    args = ap.parse_args()
    res = run(args.episodes, args.dups, task=args.task, noise=args.noise, seed=args.seed, keep=args.keep)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
