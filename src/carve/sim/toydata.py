"""Small structured shards + manifest for trainer tests and benchmarks (no pipeline needed).

`write_toy_shards(out_dir, ...)` writes schema-v1 Parquet shards and a `manifest.json` in the
agreed format. The data is random but learnable: each episode executes a task-specific
sequence of phases; phase p moves the state along a fixed direction d_p, so an event's
actions are a function of its caption embedding (which encodes p) and its start state
(the step size decays as the state approaches the phase's goal), its length depends on the
phase and on the start state, and the visual embeddings are a fixed nonlinear projection
of the state plus a code of the phase the scene is in (so the next event is partly visible,
and the end-observation embedding is predictable from the start).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from carve.storage.schema import event_schema, events_to_table, make_event_id

PHASES = ("reach", "grasp", "lift", "move", "place", "release", "retreat", "push")
TASKS = {
    "pick_place": ("put the {c} cube in the tray", (0, 1, 2, 3, 4, 5, 6)),
    "stack": ("stack the {c} cube on the blue cube", (0, 1, 2, 3, 5, 6)),
    "push": ("push the {c} block to the left", (0, 7, 6)),
}
COLORS = ("red", "green", "yellow")


def _episodes(
    n_episodes: int, state_dim: int, visual_dim: int, text_dim: int, seed: int
) -> list[dict[str, Any]]:
    g = np.random.default_rng(1234)  # fixed "world": directions, projections, phase embeddings
    dirs = g.normal(size=(len(PHASES), state_dim)).astype(np.float32)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    proj = g.normal(size=(state_dim, visual_dim)).astype(np.float32) / np.sqrt(state_dim)
    phase_text = g.normal(size=(len(PHASES), text_dim)).astype(np.float32)
    phase_vis = g.normal(size=(len(PHASES), visual_dim)).astype(
        np.float32
    )  # what the camera shows of a phase
    base_len = g.integers(6, 20, size=len(PHASES))
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for ep in range(n_episodes):
        kind = list(TASKS)[ep % len(TASKS)]
        template, phases = TASKS[kind]
        task = template.format(c=COLORS[(ep // len(TASKS)) % len(COLORS)])
        state = rng.normal(scale=0.5, size=state_dim).astype(np.float32)
        frame = 0
        episode_id = f"toy/{ep:05d}"
        events = []
        for k, p in enumerate(phases):
            L = int(base_len[p] + 4 * abs(float(state[0])) + rng.integers(0, 3))
            step = 0.6 / L
            st, ac = [], []
            for t in range(L):
                a = dirs[p] * step * (1.5 - t / L) + rng.normal(scale=0.005, size=state_dim)
                st.append(state.copy())
                ac.append(a.astype(np.float32))
                state = (state + a).astype(np.float32)
            text = phase_text[p] + rng.normal(scale=0.05, size=text_dim)
            events.append((k, p, frame, L, st, ac, text))
            frame += L
        for k, p, start, L, st, ac, text in events:
            nxt = events[k + 1][1] if k + 1 < len(events) else p
            vis = np.tanh(st[0] @ proj + 0.8 * phase_vis[p])
            end = np.tanh(state_after(st, ac) @ proj + 0.8 * phase_vis[nxt])
            rows.append(
                {
                    "event_id": make_event_id(episode_id, start, start + L),
                    "episode_id": episode_id,
                    "dataset": "toy",
                    "source_uri": "toy://",
                    "camera": "front",
                    "episode_index": ep,
                    "event_index": k,
                    "num_events": len(events),
                    "start_frame": start,
                    "end_frame": start + L,
                    "fps": 12.0,
                    "boundary_reason": "pause",
                    "task": task,
                    "caption": PHASES[p],
                    "next_caption": PHASES[events[k + 1][1]] if k + 1 < len(events) else "",
                    "caption_model": "toy",
                    "caption_status": "ok",
                    "state": [s.tolist() for s in st],
                    "action": [a.tolist() for a in ac],
                    "emb_visual": vis.astype(np.float32).tolist(),
                    "emb_text": text.astype(np.float32).tolist(),
                    "end_emb_visual": end.astype(np.float32).tolist(),
                    "emb_motion": [0.0] * 4,
                    "emb": [0.0] * 4,
                    "cluster_id": p,
                    "weight": 1.0,
                }
            )
    return rows


def state_after(states: list[np.ndarray], actions: list[np.ndarray]) -> np.ndarray:
    return states[-1] + actions[-1]


def write_toy_shards(
    out_dir: str | Path,
    n_episodes: int = 24,
    rows_per_shard: int = 64,
    row_group_size: int = 16,
    state_dim: int = 6,
    visual_dim: int = 16,
    text_dim: int = 12,
    seed: int = 0,
    manifest_overrides: dict[str, Any] | None = None,
) -> Path:
    """Write shards + manifest.json into `out_dir` (a `shards/vNNN` style folder); return the manifest path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = _episodes(n_episodes, state_dim, visual_dim, text_dim, seed)
    dims = {"visual": visual_dim, "text": text_dim, "motion": 4, "emb": 4}
    schema = event_schema(dims)
    shards = []
    for i in range(0, len(rows), rows_per_shard):
        table = events_to_table(rows[i : i + rows_per_shard], schema)
        name = f"part-{i // rows_per_shard:05d}.parquet"
        pq.write_table(table, out / name, row_group_size=row_group_size, compression="zstd")
        shards.append(
            {"path": name, "rows": table.num_rows, "bytes": (out / name).stat().st_size, "sha256": ""}
        )
    manifest: dict[str, Any] = {
        "format": "carve.manifest",
        "manifest_version": 1,
        "version": 1,
        "created_at": "2026-01-01T00:00:00Z",
        "schema_version": 1,
        "clusters_version": 1,
        "policy": {"name": "uniform"},
        "config": {},
        "emb_dims": dims,
        "shards": shards,
        "total_rows": len(rows),
        "unique_events": len(rows),
    }
    manifest.update(manifest_overrides or {})
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1))
    return path
