"""`carve run`: the whole DAG in one screen.

    list episodes (driver)                      pipeline.sources.open_source
      -> skip episodes already ingested          catalog fingerprints
      -> decode + segment      (Ray tasks)       pipeline.stages.decode_segment
      -> caption               (Ray actors)      captioners.stage.CaptionStage
      -> embed                 (Ray actors)      clustering.embed.EmbedStage
      -> write event parts     (Ray tasks)       pipeline.stages.write_events -> <root>/events/
      -> record episodes       (driver)          catalog.sqlite (ok / failed + reason)
    cluster or assign          (driver, faiss)   clustering.curate
    balance + shard            (driver)          clustering.curate.cut_shards -> <root>/shards/vNNN/

One bad episode is quarantined with its reason and the job carries on; part files are written
atomically and an episode is recorded `ok` only after its part file is in place.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from carve.core.config import CarveConfig
from carve.core.log import get_logger, log_event
from carve.storage.catalog import Catalog

log = get_logger("run")


class Cancelled(BaseException):
    """Raised in the driver when the job is cancelled (SIGTERM from the service)."""


@dataclass
class RunSummary:
    dataset: str = ""
    episodes_total: int = 0
    episodes_skipped: int = 0
    episodes_ok: int = 0
    episodes_failed: int = 0
    events: int = 0
    batch: str | None = None
    clusters_version: int | None = None
    shards_version: int | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


class JobReporter:
    """Mirrors progress into the catalog's jobs table (when run as a service job) with a heartbeat."""

    def __init__(self, catalog: Catalog, job_id: str | None, interval_s: float = 2.0):
        self.catalog = catalog
        self.job_id = job_id
        self.progress: dict[str, int] = {"episodes_total": 0, "episodes_done": 0, "episodes_failed": 0, "events": 0}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if job_id:
            import os

            self.catalog.update_job(job_id, state="running", pid=os.getpid(), heartbeat=time.time())
            self._thread = threading.Thread(target=self._beat, args=(interval_s,), daemon=True)
            self._thread.start()

    def _beat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            with self._lock:
                try:
                    self.catalog.update_job(self.job_id, heartbeat=time.time(), progress=dict(self.progress))
                except Exception:  # the heartbeat must never kill the run
                    pass

    def stage(self, name: str, **progress: int) -> None:
        self.progress.update(progress)
        log_event(log, "stage", stage=name, **self.progress)
        if self.job_id:
            with self._lock:
                self.catalog.update_job(self.job_id, stage=name, progress=dict(self.progress), heartbeat=time.time())

    def bump(self, **delta: int) -> None:
        for k, v in delta.items():
            self.progress[k] = self.progress.get(k, 0) + v

    def finish(self, state: str, error: str | None = None) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if self.job_id:
            with self._lock:
                fields = {"progress": dict(self.progress), "heartbeat": time.time()}
                if self.catalog.transition_job(self.job_id, ("cancelling",), **fields):
                    # being cancelled: the server that signalled this process records the end
                    # once the process has exited, so "cancelled" never shows while it still runs
                    return
                self.catalog.update_job(self.job_id, state=state, error=error, **fields)


def ingest(cfg: CarveConfig, catalog: Catalog, reporter: JobReporter, summary: RunSummary) -> None:
    """List, skip finished, decode+segment+caption+embed+write on Ray Data, record in the catalog."""
    import ray.data

    from carve.pipeline.ray_env import ensure_ray
    from carve.ingest.sources import open_source
    from carve.pipeline.stages import CaptionStep, EmbedStep, decode_segment, write_events
    from carve.storage.events import new_batch_id

    reporter.stage("listing")
    src = open_source(
        cfg.source.uri, cfg.source.format, dataset=cfg.source.dataset,
        camera=cfg.source.camera, video_backend=cfg.source.video_backend,
    )
    summary.dataset = src.dataset
    catalog.upsert_dataset(src.dataset, src.uri, src.format)
    refs = src.list_episodes()
    if cfg.source.max_episodes:
        refs = refs[: cfg.source.max_episodes]
    finished = catalog.finished_fingerprints(src.dataset)
    todo = [r for r in refs if finished.get(r.episode_id) != r.fingerprint]
    summary.episodes_total = len(refs)
    summary.episodes_skipped = len(refs) - len(todo)
    reporter.stage("ingest", episodes_total=len(todo))
    if not todo:
        return

    ensure_ray(cfg.ray)
    batch_id = new_batch_id()
    summary.batch = batch_id
    pool = ray.data.ActorPoolStrategy
    ds = ray.data.from_items([r.to_row() for r in todo], override_num_blocks=len(todo))
    ds = ds.map_batches(
        decode_segment, fn_kwargs={"seg_cfg": cfg.segment, "src_cfg": cfg.source},
        batch_size=1, batch_format="pyarrow", compute=ray.data.TaskPoolStrategy(size=cfg.ray.decode_concurrency),
    )
    ds = ds.map_batches(
        CaptionStep, fn_constructor_kwargs={"cfg": cfg.caption},
        batch_size=None, batch_format="pyarrow", compute=pool(size=cfg.ray.caption_concurrency),
    )
    ds = ds.map_batches(
        EmbedStep, fn_constructor_kwargs={"cfg": cfg.embed},
        batch_size=None, batch_format="pyarrow", compute=pool(size=cfg.ray.embed_concurrency),
    )
    ds = ds.map_batches(
        write_events, fn_kwargs={"root": cfg.root, "batch_id": batch_id, "row_group_size": cfg.shard.row_group_size},
        batch_size=None, batch_format="pyarrow",
    )
    for block in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        records = block.to_pylist()
        if not records:
            continue
        catalog.record_episodes(records, job_id=reporter.job_id)
        for r in records:
            if r["status"] == "ok":
                summary.episodes_ok += 1
                summary.events += int(r["num_events"])
                reporter.bump(episodes_done=1, events=int(r["num_events"]))
            else:
                summary.episodes_failed += 1
                summary.failures.append((r["episode_id"], r["error"] or "unknown error"))
                reporter.bump(episodes_done=1, episodes_failed=1)
                log_event(log, "episode_quarantined", episode=r["episode_id"], error=r["error"])
        reporter.stage("ingest")


def curate(cfg: CarveConfig, catalog: Catalog, reporter: JobReporter, summary: RunSummary) -> None:
    """Cluster (first time) or assign new events to the existing clustering, then cut shards."""
    from carve.clustering import curate as cur

    if not catalog.episodes(status="ok"):
        return
    reporter.stage("cluster")
    if catalog.versions("clusters"):
        summary.clusters_version = cur.assign_new(cfg)
    else:
        summary.clusters_version = cur.cluster_catalog(cfg)
    reporter.stage("shard")
    summary.shards_version = cur.cut_shards(cfg)


def run_pipeline(cfg: CarveConfig, job_id: str | None = None, shard: bool = True) -> RunSummary:
    """Run ingest -> caption -> embed -> catalog -> cluster -> shard; return what happened."""
    if not cfg.source.uri:
        from carve.core.errors import CarveError

        raise CarveError("no source given: pass --source DIR or set source.uri")
    t0 = time.time()
    summary = RunSummary()
    with Catalog(cfg.root) as catalog:
        reporter = JobReporter(catalog, job_id)
        try:
            ingest(cfg, catalog, reporter, summary)
            if shard:
                curate(cfg, catalog, reporter, summary)
            reporter.stage("done")
        except Cancelled:
            reporter.finish("cancelled", error="cancelled")
            raise
        except BaseException as e:
            reporter.finish("failed", error=f"{type(e).__name__}: {e}")
            raise
        reporter.finish("succeeded")
    summary.seconds = time.time() - t0
    return summary
