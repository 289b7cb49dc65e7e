"""Helpers for exercising the service without a full pipeline run (tests, bench, demos).

* `fabricate_root(root, ...)` writes a small but format-true Carve root: schema-v1 event
  parts under `events/` recorded `ok` in the catalog (plus quarantined episodes with reasons),
  `clusters/v001/` (centroids, faiss index, meta, hierarchy, assignments with near-duplicates;
  loadable by `load_clustering`, so `cut_shards` works on it) and
  `shards/v001/` (a part file and `manifest.json` written last), per docs/FORMATS.md.
* `LiveServer` runs the real app under uvicorn on a free loopback port in a thread.
* `ChatServer` is an OpenAI-compatible chat-completions server on a loopback socket (captioner
  tests and bench/bench_caption_concurrency.py): it answers after a fixed or random latency with
  a caption read back from the prompt, and records the most requests it had in flight at once.
"""

from __future__ import annotations

import io
import json
import random
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
    videos: bool = False,
) -> FabricatedRoot:
    """Write events + catalog (+ clusters v001 with its layout, + shards v001) under `root`; see
    module doc. With `videos`, each dataset's source is a real LeRobot v3.0 dataset (H.264, one
    camera "front", 64x48, state ["x", "y", "z", "gripper"]) at `<root>-sources/<dataset>`, whose
    episodes the events point at, so clips and signals can be cut from it."""
    import faiss

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
    src_of = {ds: f"/data/{ds}" for ds in datasets}
    if videos:
        src_of = {ds: str(_fabricate_source(root.parent / f"{root.name}-sources" / ds, episodes,
                                            events_per_episode, seed)) for ds in datasets}
    with Catalog(root) as cat:
        for ds in datasets:
            cat.upsert_dataset(ds, src_of[ds], "lerobot")
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
                        "source_uri": src_of[ds], "camera": "front", "robot": "panda" if ep % 2 else "so100",
                        "arms": ["left" if ev % 2 else "right"],
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
            # the index and one-level hierarchy as `save_clustering` writes them (a shard cut loads both)
            from carve.clustering.hierarchical import Hierarchy
            from carve.clustering.kmeans import build_index

            atomic_write_bytes(bytes(faiss.serialize_index(build_index(centers))), str(cdir / "index.faiss"))
            atomic_write_bytes(json.dumps(Hierarchy(levels=[k], centroids=[centers], parents=[None]).to_json()).encode(),
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
            from carve.clustering.summary import refresh_layout

            refresh_layout(open_root(root), 1)  # the embedding map's layout.parquet of v001
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


def _fabricate_source(path: Path, episodes: int, events_per_episode: int, seed: int) -> Path:
    """A small LeRobot v3.0 dataset: per episode 10 frames per event at 12 fps, a square moving
    across a coloured background (a new colour per event), the gripper closing and opening."""
    from carve.sim.lerobot_writer import EpisodeArrays, write_lerobot_dataset

    rng = np.random.default_rng(seed + 7)
    eps = []
    for ep in range(episodes):
        n = 10 * events_per_episode
        t = np.arange(n, dtype=np.float32)
        state = np.stack([np.sin(t / 7 + ep), np.cos(t / 9), t / n, (t // 10 % 2).astype(np.float32)], 1)
        frames = np.zeros((n, 48, 64, 3), dtype=np.uint8)
        for i in range(n):
            frames[i] = (40 * (i // 10) % 255, 90, 160)
            x = int(4 + (i % 10) * 5)
            frames[i, 18:30, x : x + 12] = (250, 250, 250)
        eps.append(EpisodeArrays(task=TASKS[ep % len(TASKS)], state=state.astype(np.float32),
                                 action=(state + 0.01 * rng.normal(size=state.shape)).astype(np.float32),
                                 frames={"observation.images.front": frames}))
    return write_lerobot_dataset(path, eps, fps=12, state_names=["x", "y", "z", "gripper"],
                                 action_names=["x", "y", "z", "gripper"], overwrite=True)


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
        # proxy_headers off, as `carve serve` runs it: the peer address is the socket's (service/auth.py)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error",
                                                    lifespan="on", timeout_keep_alive=30, proxy_headers=False))
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


class ChatServer:
    """An OpenAI-compatible chat server on 127.0.0.1 (threaded, HTTP/1.1 keep-alive), as a context manager.

    POST /v1/chat/completions waits `latency_s` (seconds, or a (low, high) range drawn per request
    from `seed`) and answers, in plain text as a server without structured outputs does,
    "Caption: echo <task> event <k>." with the task and the 1-based event number read from the
    prompt of captioners/prompts (v1/v2); a request for which `fail(call)` is true gets HTTP 500.
    GET /v1/models lists `model`. `calls` records each answered request in reply order (task,
    event, the prompt's "Previous event" text); `max_inflight` is the most requests that were
    being answered at once.
    """

    def __init__(self, latency_s: float | tuple[float, float] = 0.2, seed: int = 0, model: str = "fake-vlm",
                 fail: Callable[[dict[str, Any]], bool] | None = None):
        self.latency_s = latency_s
        self.fail = fail
        self.model = model
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.calls: list[dict[str, Any]] = []
        self.inflight = 0
        self.max_inflight = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stall

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [
                        {"id": server.model, "object": "model", "created": 0, "owned_by": "carve-sim"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": "not found"}})
                    return
                with server.lock:
                    server.inflight += 1
                    server.max_inflight = max(server.max_inflight, server.inflight)
                    lat = server.latency_s
                    delay = server.rng.uniform(*lat) if isinstance(lat, tuple) else float(lat)
                try:
                    time.sleep(delay)
                    self._send(*server.reply(body))
                finally:
                    with server.lock:
                        server.inflight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.httpd.request_queue_size = 256  # many clients connect at once: no SYN retries
        self.httpd.daemon_threads = True
        self.httpd.server_bind()
        self.httpd.server_activate()
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def reply(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        user = next((m for m in body.get("messages", []) if m.get("role") == "user"), {"content": ""})
        content = user["content"]
        text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content
                                                                if p.get("type") == "text")
        task = re.search(r'Task of the whole episode: "(.*?)"', text)
        event = re.search(r"This is event (\d+) of", text)
        prev = re.search(r"Previous event: (.*)", text)
        call = {"task": task.group(1) if task else "", "event": int(event.group(1)) if event else 0,
                "previous": prev.group(1).strip() if prev else ""}
        with self.lock:
            self.calls.append(call)
            n = len(self.calls)
        if self.fail is not None and self.fail(call):
            return 500, {"error": {"message": "engine crashed", "type": "server_error"}}
        return 200, {
            "id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None, "message": {
                "role": "assistant", "content": f"Caption: echo {call['task']} event {call['event']}."}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }

    def reset(self) -> None:
        with self.lock:
            self.calls, self.inflight, self.max_inflight = [], 0, 0

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
