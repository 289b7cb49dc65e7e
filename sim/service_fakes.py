"""Helpers for exercising the service without a full pipeline run (tests, bench, demos).

* `fabricate_root(root, ...)` writes a small but format-true Carve root: schema-v1 event
  parts under `events/` recorded `ok` in the catalog (plus quarantined episodes with reasons),
  `clusters/v001/` (centroids, meta, hierarchy, assignments with near-duplicates) and
  `shards/v001/` (a part file and `manifest.json` written last), per docs/FORMATS.md.
* `LiveServer` runs the real app under uvicorn on a free loopback port in a thread.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

TASKS = ("put the red cube in the tray", "stack the blue cube on the green cube", "push the yellow ball to the left")
CAPTIONS = ("reach toward the {o}", "close the gripper on the {o}", "lift the {o}", "move the {o} over the tray",
            "open the gripper to release the {o}", "retreat from the {o}")


def _jpeg(color: tuple[int, int, int], size: int = 32) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="JPEG", quality=80)
    return buf.getvalue()


@dataclass
class FabricatedRoot:
    root: Path
    datasets: list[str]
    event_ids: list[str]
    k: int
    tiny_cluster: int  # a cluster with a single event (under-covered)
    failures: list[str] = field(default_factory=list)


def fabricate_root(
    root: str | Path,
    datasets: tuple[str, ...] = ("sim",),
    episodes: int = 6,
    events_per_episode: int = 6,
    k: int = 4,
    clusters: bool = True,
    manifest: bool = True,
    failed_episodes: int = 1,
    seed: int = 0,
) -> FabricatedRoot:
    """Write events + catalog (+ clusters v001, + shards v001) under `root`; see module doc."""
    from carve.storage.catalog import Catalog
    from carve.storage.events import write_event_part
    from carve.storage.fs import atomic_write_bytes, atomic_write_table
    from carve.storage.root import open_root
    from carve.storage.schema import event_schema, events_to_table, make_event_id

    root = Path(root)
    rng = np.random.default_rng(seed)
    dim = 16
    centers = rng.normal(size=(k, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    colors = [(200, 40, 40), (40, 160, 40), (40, 40, 200), (200, 200, 40), (160, 40, 160), (40, 160, 160)]
    all_rows: list[dict[str, Any]] = []
    failures: list[str] = []
    batch = "20260101T000000-fab001"
    with Catalog(root) as cat:
        for ds in datasets:
            cat.upsert_dataset(ds, f"/data/{ds}", "lerobot")
            records = []
            for ep in range(episodes):
                ep_id = f"{ds}/ep{ep:04d}"
                task = TASKS[ep % len(TASKS)]
                obj = task.split()[3]
                rows = []
                for ev in range(events_per_episode):
                    c = ev % (k - 1)  # cluster k-1 stays nearly empty: the under-covered one
                    s, e = ev * 10, ev * 10 + 10
                    emb = centers[c] + 0.05 * rng.normal(size=dim).astype(np.float32)
                    emb /= np.linalg.norm(emb)
                    rows.append({
                        "event_id": make_event_id(ep_id, s, e), "episode_id": ep_id, "dataset": ds,
                        "source_uri": f"/data/{ds}", "camera": "front", "robot": "panda" if ep % 2 else "so100",
                        "episode_index": ep, "event_index": ev, "num_events": events_per_episode,
                        "start_frame": s, "end_frame": e, "fps": 12.0, "start_reason": "episode_start",
                        "boundary_reason": "gripper_close", "task": task,
                        "caption": CAPTIONS[ev % len(CAPTIONS)].format(o=obj), "next_caption": "",
                        "caption_model": "kinematic", "caption_status": "ok",
                        "keyframes": [_jpeg(colors[c % len(colors)]) for _ in range(3)],
                        "state": [[0.0] * 4 for _ in range(10)], "action": [[0.0] * 4 for _ in range(10)],
                        "emb": emb.tolist(), "_cluster": c,
                    })
                write_event_part(open_root(root), batch, ep_id, events_to_table(rows))
                all_rows += rows
                records.append({"episode_id": ep_id, "dataset": ds, "episode_index": ep, "source_uri": f"/data/{ds}",
                                "fingerprint": f"fp{ep}", "status": "ok", "num_events": len(rows), "batch": batch})
            for j in range(failed_episodes):
                ep_id = f"{ds}/ep{episodes + j:04d}"
                failures.append(ep_id)
                records.append({"episode_id": ep_id, "dataset": ds, "episode_index": episodes + j,
                                "source_uri": f"/data/{ds}", "fingerprint": "bad", "status": "failed",
                                "error": f"episode {episodes + j} of /data/{ds}: video ends at 4.2 s but actions "
                                         "run to 6.0 s", "num_events": 0, "batch": None})
            cat.record_episodes(records)
        # one lone event in the last cluster, so it is under-covered
        tiny = k - 1
        all_rows[-1]["_cluster"] = tiny
        if clusters:
            cdir = root / "clusters" / "v001"
            buf = io.BytesIO()
            np.save(buf, centers)
            atomic_write_bytes(buf.getvalue(), str(cdir / "centroids.npy"))
            atomic_write_bytes(json.dumps({"levels": [k], "centroids": [centers.tolist()], "parents": [[]]}).encode(),
                               str(cdir / "hierarchy.json"))
            ids = [r["event_id"] for r in all_rows]
            dups = [ids[i - len(CAPTIONS)] if (i % 7 == 6 and i >= len(CAPTIONS)) else None for i in range(len(ids))]
            table = pa.table({
                "event_id": pa.array(ids, pa.string()),
                "episode_id": pa.array([r["episode_id"] for r in all_rows], pa.string()),
                "dataset": pa.array([r["dataset"] for r in all_rows], pa.string()),
                "cluster_id": pa.array([r["_cluster"] for r in all_rows], pa.int32()),
                "cluster_path": pa.array([[r["_cluster"]] for r in all_rows], pa.list_(pa.int32())),
                "cluster_dist": pa.array(rng.random(len(ids)).astype(np.float32), pa.float32()),
                "dup_of": pa.array(dups, pa.string()),
            })
            atomic_write_table(table, str(cdir / "assignments" / "part-00000.parquet"))
            meta = {"version": 1, "k": k, "levels": [k], "dim": dim, "n_events": len(ids),
                    "created_at": "2026-01-01T00:00:00Z", "config": {"k": k}}
            atomic_write_bytes(json.dumps(meta).encode(), str(cdir / "meta.json"))
            cat.record_version("clusters", 1, str(cdir), meta)
            if manifest:
                sdir = root / "shards" / "v001"
                before = {str(c): sum(1 for r in all_rows if r["_cluster"] == c) for c in range(k)}
                per = max(1, len(all_rows) // k)
                after = {str(c): min(per, 4 * n) for c, n in before.items()}
                shard_rows = [{kk: v for kk, v in r.items() if kk != "_cluster"} | {"cluster_id": r["_cluster"],
                              "weight": 1.0} for r in all_rows]
                t = events_to_table(shard_rows, event_schema({"emb": dim}))
                atomic_write_table(t, str(sdir / "part-00000.parquet"))
                size = (sdir / "part-00000.parquet").stat().st_size
                man = {"format": "carve.manifest", "manifest_version": 1, "version": 1,
                       "created_at": "2026-01-01T00:00:00Z", "schema_version": 1, "clusters_version": 1,
                       "policy": {"name": "uniform", "temperature": 0.5, "max_repeat": 4}, "config": {},
                       "emb_dims": {"emb": dim},
                       "shards": [{"path": "part-00000.parquet", "rows": t.num_rows, "bytes": size, "sha256": ""}],
                       "clusters": {"before": before, "after": after},
                       "stats": {"before": {"max_min_ratio": max(before.values()) / max(1, min(before.values())),
                                            "entropy": 0.8},
                                 "after": {"max_min_ratio": 1.0, "entropy": 1.0}},
                       "sources": [{"dataset": d, "source_uri": f"/data/{d}", "fingerprint": ""} for d in datasets],
                       "total_rows": sum(after.values()), "unique_events": len(all_rows)}
                atomic_write_bytes(json.dumps(man).encode(), str(sdir / "manifest.json"))
                cat.record_version("shards", 1, str(sdir), {"clusters_version": 1})
    return FabricatedRoot(root=root, datasets=list(datasets), event_ids=[r["event_id"] for r in all_rows], k=k,
                          tiny_cluster=tiny, failures=failures)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """The real app under uvicorn on 127.0.0.1:<free port>, in a background thread."""

    def __init__(self, app: Any, port: int | None = None):
        import uvicorn

        self.app = app
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error",
                                                    lifespan="on", timeout_keep_alive=30))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"uvicorn did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def read_parquet_rows(path: str | Path) -> int:
    """Rows of a Parquet file (used by tests to check shard files the fabricator wrote)."""
    return pq.ParquetFile(path).metadata.num_rows
