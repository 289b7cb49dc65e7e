"""Duplicate marking on simulated data: true duplicates flagged, distinct demonstrations not.

A folder dataset of distinct pybullet demonstrations of ONE task (different seeds), plus one
demo copied under another name (ingested twice) and one whose video is re-encoded with PyAV
at another codec/quality (same signals, different pixels). The whole ingest + clustering runs
in this process; then every event of the copy and of the re-encode must share its duplicate
group with the source demo's event at the same span, and at most 2% of the distinct demos'
events may be grouped with another demo's. bench/dedup_validation.py measures the same over
40+ episodes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from carve.clustering.curate import cluster_catalog
from carve.clustering.dedup import event_fingerprints, signal_distance
from carve.clustering.versions import read_assignments, unique_assignments
from carve.core.config import CarveConfig
from carve.pipeline.executor import LocalExecutor
from carve.pipeline.run import run_pipeline
from carve.storage.events import read_events
from carve.storage.root import open_root

N_DISTINCT = 6


def _reencode(src: Path, dst: Path) -> None:
    """The same frames through another encoder (MPEG-4 part 2 at a coarse quantiser)."""
    import av

    with av.open(str(src)) as inp:
        stream = inp.streams.video[0]
        rate = stream.average_rate
        frames = [f.to_ndarray(format="rgb24") for f in inp.decode(stream)]
    with av.open(str(dst), "w") as out:
        s = out.add_stream("mpeg4", rate=rate)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        s.options = {"qscale": "8"}
        for fr in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(fr, format="rgb24")):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)


@pytest.fixture(scope="module")
def curated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CarveConfig, dict[str, str]]:
    from carve.sim.formats import write_folder
    from carve.sim.lerobot_writer import EpisodeArrays
    from carve.sim.scene import action_names, state_names
    from carve.sim.synth import episode_seed
    from carve.sim.tasks import run_episode

    work = tmp_path_factory.mktemp("dedup")
    src = work / "raw" / "demos"

    def arrays():
        for i in range(N_DISTINCT):
            ep = run_episode("pick_place", episode_seed(5, i), fps=12, size=64)
            yield EpisodeArrays(task=ep.task, state=ep.state, action=ep.action, frames=ep.frames)

    write_folder(src, arrays(), fps=12, state_names=state_names(1), action_names=action_names(1))
    dups = {f"{N_DISTINCT:06d}": "000000", f"{N_DISTINCT + 1:06d}": "000001"}
    for dup, orig in dups.items():
        for ext in ("npz", "json"):
            shutil.copyfile(src / f"episode_{orig}.{ext}", src / f"episode_{dup}.{ext}")
    shutil.copyfile(src / "episode_000000.mp4", src / f"episode_{N_DISTINCT:06d}.mp4")  # ingested twice
    _reencode(src / "episode_000001.mp4", src / f"episode_{N_DISTINCT + 1:06d}.mp4")  # re-encoded
    assert (src / "episode_000001.mp4").read_bytes() != (src / f"episode_{N_DISTINCT + 1:06d}.mp4").read_bytes()
    cfg = CarveConfig().with_overrides({"root": str(work / "root"), "source": {"uri": str(src), "format": "folder"},
                                        "ray": {"progress": False}})
    run_pipeline(cfg, shard=False, executor=LocalExecutor())
    return work / "root", cfg, dups


def _groups(root: Path, cfg: CarveConfig) -> tuple[dict[str, str], object]:
    v = cluster_catalog(open_root(root), cfg)
    asg = unique_assignments(read_assignments(open_root(root), v))
    groups = {e: d or e for e, d in zip(asg.column("event_id").to_pylist(), asg.column("dup_of").to_pylist(),
                                        strict=True)}
    ev = read_events(open_root(root), columns=["event_id", "episode_id", "start_frame", "end_frame", "state", "action",
                                               "emb"])
    return groups, ev


def test_copies_and_reencodes_are_flagged_and_distinct_demos_are_not(curated):
    root, cfg, dups = curated
    assert cfg.cluster.dedup_signal_tol is not None  # the default rule has the raw-signal check
    groups, ev = _groups(root, cfg)
    ep = {e: p.rsplit("/", 1)[-1] for e, p in zip(ev.column("event_id").to_pylist(),
                                                  ev.column("episode_id").to_pylist(), strict=True)}
    source = {e: dups.get(n, n) for e, n in ep.items()}
    spans = {(ep[e], s, t): e for e, s, t in zip(ev.column("event_id").to_pylist(), ev.column("start_frame").to_pylist(),
                                                 ev.column("end_frame").to_pylist(), strict=True)}
    # every event of a duplicate episode shares its group with the source demo's event at its span
    for dup, orig in dups.items():
        mine = [(s, t) for (n, s, t) in spans if n == dup]
        assert mine, f"duplicate episode {dup} produced no events"
        for s, t in mine:
            assert (orig, s, t) in spans, f"{dup} [{s},{t}) has no counterpart in {orig}"
            assert groups[spans[(dup, s, t)]] == groups[spans[(orig, s, t)]], f"{dup} [{s},{t}) not flagged"
    # distinct demos: at most 2% of their events grouped with another demo's events
    members: dict[str, list[str]] = {}
    for e, g in groups.items():
        members.setdefault(g, []).append(e)
    distinct = [e for e in ep if ep[e] not in dups]
    false = [e for e in distinct if any(source[o] != source[e] for o in members[groups[e]])]
    assert len(distinct) >= 5 * N_DISTINCT
    assert len(false) <= 0.02 * len(distinct), f"{len(false)} of {len(distinct)} distinct-demo events flagged"


def test_the_embedding_alone_does_not_separate_demos_but_the_signals_do(curated):
    """Why the raw-signal check exists: distinct demos of one task embed almost on top of each
    other; their signal distance is far above the tolerance, a duplicate's is ~0."""
    root, cfg, dups = curated
    ev = read_events(open_root(root), columns=["event_id", "episode_id", "state", "action", "emb"])
    x = np.asarray(ev.column("emb").to_pylist(), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sig = event_fingerprints(ev)
    name = [p.rsplit("/", 1)[-1] for p in ev.column("episode_id").to_pylist()]
    src = [dups.get(n, n) for n in name]
    tol = cfg.cluster.dedup_signal_tol
    sims = x @ x.T
    true_d, distinct_d = [], []
    for i in range(len(x)):
        for j in np.flatnonzero(sims[i, i + 1:] >= cfg.cluster.dedup_threshold) + i + 1:
            d = float(signal_distance(sig[i], sig[j : j + 1])[0])
            (true_d if src[i] == src[j] and name[i] != name[j] else distinct_d if src[i] != src[j] else []).append(d)
    assert true_d and max(true_d) <= tol
    assert all(d > tol for d in distinct_d)


def test_signal_distance_rules():
    t = np.linspace(0, 1, 30)[:, None]
    st = np.hstack([np.sin(3 * t), np.cos(2 * t), t])
    act = st[:, :2] * 0.5
    a = event_fingerprints_of(st, act)
    assert signal_distance(a, a[None])[0] == 0.0
    assert signal_distance(a, event_fingerprints_of(st + 1e-5, act)[None])[0] < 0.01  # float noise: same
    assert signal_distance(a, event_fingerprints_of(st + 0.05, act)[None])[0] > 0.05  # 5 cm elsewhere: not
    assert signal_distance(a, event_fingerprints_of(st[:20], act[:20])[None])[0] == np.inf  # another length
    assert signal_distance(a, event_fingerprints_of(st[:, :2], act)[None])[0] == np.inf  # other channels
    assert signal_distance(a, event_fingerprints_of(None, None)[None])[0] == 0.0  # no signals: embedding decides


def event_fingerprints_of(state: np.ndarray | None, action: np.ndarray | None) -> np.ndarray:
    from carve.clustering.dedup import signal_fingerprint

    return signal_fingerprint(state, action)


def _write_events(root: Path, x: np.ndarray, states: list[np.ndarray], *, first_episode: int, batch: str) -> list[str]:
    """Committed one-event episodes with embeddings `x` and per-event state trajectories."""
    from carve.storage.catalog import Catalog
    from carve.storage.events import write_event_part
    from carve.storage.schema import events_to_table, make_event_id

    ids, recs = [], []
    for i, (v, st) in enumerate(zip(x, states, strict=True)):
        ep_index = first_episode + i
        ep = f"d/{ep_index:06d}"
        eid = make_event_id(ep, 0, len(st))
        ids.append(eid)
        row = {"event_id": eid, "episode_id": ep, "dataset": "d", "source_uri": "/src", "episode_index": ep_index,
               "event_index": 0, "num_events": 1, "start_frame": 0, "end_frame": len(st), "fps": 10.0, "task": "t",
               "caption": "c", "next_caption": "", "state": st.tolist(), "action": (st[:, :1] * 0.5).tolist(),
               "emb": [float(a) for a in v]}
        write_event_part(open_root(root), batch, ep, events_to_table([row]))
        recs.append({"episode_id": ep, "dataset": "d", "episode_index": ep_index, "source_uri": "/src",
                     "fingerprint": "fp-" + ep, "status": "ok", "num_events": 1, "batch": batch})
    with Catalog(root) as cat:
        cat.upsert_dataset("d", "/src", "folder")
        cat.record_episodes(recs)
    return ids


@pytest.mark.parametrize("streaming", [False, True])
def test_same_embedding_other_signals_is_not_a_duplicate_on_every_path(tmp_path: Path, streaming: bool):
    """In-memory and streamed clustering, and assigning new events: an identical embedding marks
    a duplicate only when the state/action trajectory repeats too."""
    from test_cluster_curate import blob_embeddings, cfg_for

    from carve.clustering.curate import assign_new

    rng = np.random.default_rng(0)
    x, _ = blob_embeddings([30, 30], seed=3, spread=0.3)
    states = [np.cumsum(rng.normal(scale=0.05, size=(20, 3)), axis=0) for _ in x]
    ids = _write_events(tmp_path, x, states, first_episode=0, batch="b1")
    # copies of events 0..9 (same embedding): 0..4 with the same signals, 5..9 with other signals
    sig2 = [states[i] if i < 5 else states[i] + 0.1 for i in range(10)]
    copy_ids = _write_events(tmp_path, x[:10], sig2, first_episode=100, batch="b1")
    extra = dict(train_sample_per_centroid=4, batch_rows=16) if streaming else {}
    cfg = cfg_for(tmp_path, k=2, dedup_threshold=0.999, **extra)
    v = cluster_catalog(open_root(cfg.root), cfg)
    asg = unique_assignments(read_assignments(open_root(tmp_path), v))
    dup = dict(zip(asg.column("event_id").to_pylist(), asg.column("dup_of").to_pylist(), strict=True))
    pairs = list(zip(ids[:10], copy_ids, strict=True))
    for k, (a, b) in enumerate(pairs):
        same = bool(dup[a] == b or dup[b] == a)
        assert same == (k < 5), (k, dup[a], dup[b])
    assert sum(d is not None for d in dup.values()) == 5
    # new events assigned later: judged against the representatives with the same rule
    sig3 = [states[20 + i] if i < 4 else states[20 + i] * 1.5 + 0.2 for i in range(8)]
    new_ids = _write_events(tmp_path, x[20:28], sig3, first_episode=200, batch="b2")
    assign_new(open_root(cfg.root), cfg)
    asg = unique_assignments(read_assignments(open_root(tmp_path), v))
    dup = dict(zip(asg.column("event_id").to_pylist(), asg.column("dup_of").to_pylist(), strict=True))
    assert [dup[e] is not None for e in new_ids] == [True] * 4 + [False] * 4
    assert [dup[e] for e in new_ids[:4]] == ids[20:24]


def test_apply_copies_keeps_dup_of_pointing_at_representatives() -> None:
    """Rows 0-2: the original episode's events; 3-5: its copy's. Embedding dedup made 4 the
    representative of 1 and left 5 alone; row 6 (another event) was a near-duplicate of 3."""
    import numpy as np

    from carve.clustering.dedup import apply_copies

    dup = np.array([-1, 4, -1, -1, -1, -1, 3])
    out = apply_copies(dup, {3: 0, 4: 1, 5: 2})
    assert out.tolist() == [-1, -1, -1, 0, 1, 2, 0]
    reps = {i for i, d in enumerate(out) if d < 0}
    assert all(d in reps for d in out if d >= 0)  # dup_of only ever names a representative
