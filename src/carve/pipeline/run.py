"""`carve run`: the whole DAG in one screen.

    open the root once (driver)                 carve.storage.root.open_root
    list episodes (driver)                      carve.ingest.sources.open_source
      -> skip episodes already ingested          catalog fingerprints
      -> in this process or on Ray               pipeline.choose.choose_executor (small embedded runs: here)
      -> blocks of ray.part_episodes episodes    pipeline.executor.plan_blocks
      -> DecodeSegment         (Ray tasks)       pipeline.steps  (carve.ingest)
      -> Caption               (Ray actors)      pipeline.steps  (carve.captioners)
      -> Embed                 (Ray actors)      pipeline.steps  (carve.embedding)
      -> WriteEvents           (Ray tasks)       pipeline.steps  -> <root>/events/ (a part per block)
      -> record episodes       (driver)          storage.parts.commit_block (ok + part / failed + reason)
    cluster or assign          (driver, faiss)   carve.clustering.curate
    derive the audit views     (driver)          carve.audit.derive.derive_views -> clusters/vNNN/{summary,layout,neighbours}
    balance + shard            (driver)          carve.shard.cut.cut_shards -> <root>/shards/vNNN/

One bad episode is quarantined with its reason and the job carries on (the one mechanism is
`PipelineStep.__call__`, which retries a failed block episode by episode so that one bad
episode does not take its block-mates with it); part files are written atomically and an
episode is recorded `ok`, with the part that holds it, only after that file is in place.
Each step's stats (episodes, events, seconds, failures) are added up here, printed in the run
summary, kept in the service's job record and in the catalog's `runs` table, which the report
shows.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from carve.core.config import CarveConfig
from carve.core.errors import CarveError
from carve.core.log import get_logger, log_event
from carve.pipeline.choose import choose_executor, local_decode_workers, step_concurrency, step_cpus
from carve.pipeline.ray_env import gpus_needed
from carve.pipeline.step import RunStats, step_seconds
from carve.storage.catalog import Catalog
from carve.storage.root import Root, root_of

if TYPE_CHECKING:
    from carve.ingest.sources.base import EpisodeRef
    from carve.pipeline.executor import Executor, StepSpec

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
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the user should know about the source
    executor: str = ""  # "local" or "ray" (pipeline/choose.py), "" when the caller gave one
    # the quality gate over the episodes ingested in this run: kind -> episodes with such a finding
    quality: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


class JobReporter:
    """Mirrors progress into the catalog's jobs table (when run as a service job) with a heartbeat."""

    def __init__(self, catalog: Catalog, job_id: str | None, interval_s: float = 2.0):
        self.catalog = catalog
        self.job_id = job_id
        self.progress: dict[str, Any] = {"episodes_total": 0, "episodes_done": 0, "episodes_failed": 0, "events": 0}
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

    def stage(self, name: str, **progress: Any) -> None:
        self.progress.update(progress)
        log_event(log, "stage", stage=name, **{k: v for k, v in self.progress.items() if k != "stages"})
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
                if state == "cancelled":
                    # signalled while the job read "running" (a cancel racing this process's own
                    # "running" write): hand the end to the server all the same
                    self.catalog.update_job(self.job_id, state="cancelling", **fields)
                    return
                self.catalog.update_job(self.job_id, state=state, error=error, **fields)


def build_steps(cfg: CarveConfig, root: Root, batch_id: str, workers: tuple[int, int] = (1, 1),
                cpus: dict[str, float] | None = None) -> list[StepSpec]:
    """The ingest DAG's steps for this config, with (decode, embed) `workers` on Ray and the CPUs
    each worker of a step reserves there (`cpus`, from `choose.step_cpus`; None: one each, and
    every step as its class runs it). Each `StepSpec` checks its step's optional dependencies as
    it is built, here on the driver."""
    from carve.pipeline.choose import caption_in_decode, write_workers
    from carve.pipeline.executor import StepSpec
    from carve.pipeline.ray_env import gpu_request
    from carve.pipeline.steps import Caption, DecodeSegment, Embed, WriteEvents

    gpus = gpu_request(cfg)
    decode_n, embed_n = workers
    share = cpus or {}
    # on Ray, a caption step with the decode's workers and share is fused into the decode's tasks by Ray Data
    fused = cpus is not None and caption_in_decode(cfg)
    return [
        StepSpec(DecodeSegment, {"seg_cfg": cfg.segment, "src_cfg": cfg.source, "check_cfg": cfg.check},
                 concurrency=decode_n, num_cpus=share.get(DecodeSegment.name, 1.0)),
        StepSpec(Caption, {"cfg": cfg.caption, "segment": cfg.segment},
                 concurrency=decode_n if fused else cfg.ray.caption_concurrency,
                 num_cpus=share.get(Caption.name, 1.0), num_gpus=gpus.get(Caption.name, 0.0),
                 compute="tasks" if fused else None),
        StepSpec(Embed, {"cfg": cfg.embed}, concurrency=embed_n, num_cpus=share.get(Embed.name, 1.0),
                 num_gpus=gpus.get(Embed.name, 0.0)),
        # a bounded number of writers: a task of a fractional share would otherwise start a worker process per block
        StepSpec(WriteEvents, {"root": root, "batch_id": batch_id, "row_group_size": cfg.ray.part_row_group_size,
                               "part_target_mb": cfg.ray.part_target_mb},
                 concurrency=write_workers(decode_n) if cpus is not None else None,
                 num_cpus=share.get(WriteEvents.name, 1.0)),
    ]


def source_notes(ref: EpisodeRef, cfg: CarveConfig) -> list[str]:
    """What a user bringing this dataset should know, from its first episode's columns (signals
    only; no frame is decoded): a dataset with no gripper column is cut from motion alone."""
    from carve.ingest.arms import arm_layouts
    from carve.ingest.sources import load_episode

    try:
        ep = load_episode(ref, camera=cfg.source.camera)  # signals only; the selected cameras verified
    except Exception:  # any failure: the episode's own step quarantines it with the reason
        return []
    arms = arm_layouts(ep.state_names, ep.action_names, ep.state, ep.action, cfg.segment)
    if any(a.gripper is not None or a.gripper_action is not None for a in arms):
        return []
    note = (f"{ref.label}: no gripper column (pattern {cfg.segment.gripper_name_pattern!r}) among the state "
            f"names {ep.state_names} or the action names {ep.action_names}; events are cut from motion alone "
            "(pauses, motion starts and turns). Name the gripper column, or pick one with "
            "--set segment.gripper_dim=N")
    log_event(log, "no_gripper", logging.WARNING, dataset=ref.dataset, source=ref.source_uri, detail=note)
    return [note]


def ingest(cfg: CarveConfig, root: Root, reporter: JobReporter, summary: RunSummary,
           executor: Executor | None = None) -> None:
    """List, skip finished, decode+segment+caption+embed+write (in this process or on Ray Data,
    `pick_executor`), record in the catalog."""
    from carve.ingest.sources import open_source
    from carve.storage.events import new_batch_id
    from carve.storage.parts import commit_block

    catalog = root.catalog
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
    summary.notes += source_notes(todo[0], cfg)

    batch_id = new_batch_id()
    summary.batch = batch_id
    if executor is None:
        executor, workers, cpus = pick_executor(cfg, root, len(todo), summary)
    else:
        workers, cpus = step_concurrency(cfg.ray, 1), None
    steps = build_steps(cfg, root, batch_id, workers, cpus)
    stats = RunStats([s.name for s in steps])
    for block in executor.run([r.to_row() for r in todo], steps):
        records = block.to_pylist()
        if not records:
            continue
        commit_block(catalog, records, job_id=reporter.job_id)
        for r in records:
            stats.add_episode(step_seconds(r), r["failed_at"], int(r["num_events"]))
            if r["status"] == "ok":
                for kind in sorted({d["kind"] for d in json.loads(r.get("defects") or "[]")}):
                    summary.quality[kind] = summary.quality.get(kind, 0) + 1
                summary.episodes_ok += 1
                summary.events += int(r["num_events"])
                reporter.bump(episodes_done=1, events=int(r["num_events"]))
            else:
                summary.episodes_failed += 1
                summary.failures.append((r["episode_id"], r["error"] or "unknown error"))
                reporter.bump(episodes_done=1, episodes_failed=1)
                log_event(log, "episode_quarantined", episode=r["episode_id"], error=r["error"])
        summary.stages = stats.as_dict()
        reporter.stage("ingest", stages=summary.stages)


def pick_executor(cfg: CarveConfig, root: Root, episodes: int,
                  summary: RunSummary) -> tuple[Executor, tuple[int, int], dict[str, float] | None]:
    """The executor for this run (`pipeline.choose.choose_executor`: in this process for a small
    embedded run, Ray otherwise), the (decode, embed) workers it gets and, on Ray, the CPUs each
    step's workers reserve (`choose.step_cpus`); noted in the summary."""
    from carve.pipeline.executor import LocalExecutor, RayExecutor

    choice, why = choose_executor(cfg, episodes)
    summary.executor = choice
    log_event(log, "executor", executor=choice, why=why, episodes=episodes)
    if choice == "local":
        decode = local_decode_workers(cfg.ray)
        return LocalExecutor(cfg.ray, decode_workers=decode), (decode, 1), None
    import ray

    start_ray(cfg, root)
    offered = float(ray.cluster_resources().get("CPU", 1))
    workers = step_concurrency(cfg.ray, offered)
    cpus = step_cpus(cfg, offered, workers)
    log_event(log, "ray_plan", decode=workers[0], embed=workers[1], **{f"{k}_cpus": v for k, v in cpus.items()})
    return RayExecutor(cfg.ray, decode_workers=workers[0]), workers, cpus


def start_ray(cfg: CarveConfig, root: Root) -> None:
    """Start or join Ray, then refuse a run it cannot do (a node-local root on several nodes, no
    GPU for a GPU step) with an error that says what to use instead (pipeline/ray_env.py)."""
    from carve.pipeline.ray_env import check_cluster, ensure_ray

    ensure_ray(cfg.ray)
    check_cluster(cfg, root)


def for_cluster(cfg: CarveConfig) -> CarveConfig:
    """`cfg` with local root and source paths made absolute: workers resolve paths from their own
    working directory, not the driver's."""
    import os

    def absolute(uri: str) -> str:
        return os.path.abspath(uri) if uri and "://" not in uri else uri

    return cfg.with_overrides({"root": absolute(cfg.root), "source": {"uri": absolute(cfg.source.uri)}})


def curate(cfg: CarveConfig, root: Root, reporter: JobReporter, summary: RunSummary) -> None:
    """Cluster (first time) or assign new events to the existing clustering, then cut shards."""
    from carve.audit.derive import derive_views
    from carve.clustering import curate as cur
    from carve.pipeline.copies import episode_copies
    from carve.shard.cut import cut_shards

    catalog = root.catalog
    if not catalog.episodes(status="ok"):
        return
    reporter.stage("cluster")
    t0 = time.perf_counter()
    # copied episodes go through the dedup (`pipeline.copies`); a run that ingested nothing new into a
    # clustered root has no new copy to mark
    fresh = summary.episodes_ok or not catalog.versions("clusters")
    copies, copied = episode_copies(root, cfg.check) if fresh else ({}, 0)
    if copied:
        summary.quality["duplicate_episode"] = copied
    if catalog.versions("clusters"):
        summary.clusters_version = cur.assign_new(root, cfg, copies)
    else:
        summary.clusters_version = cur.cluster_catalog(root, cfg, copies)
    derive_views(root, summary.clusters_version, cfg.cluster)  # the audit views' summary, layout, neighbours
    summary.stages["cluster"] = {"events": summary.events, "seconds": round(time.perf_counter() - t0, 3)}
    reporter.stage("shard", stages=summary.stages)
    t0 = time.perf_counter()
    summary.shards_version = cut_shards(root, cfg, progress=cfg.ray.progress)
    summary.stages["shard"] = {"seconds": round(time.perf_counter() - t0, 3)}


def run_pipeline(cfg: CarveConfig, job_id: str | None = None, shard: bool = True,
                 executor: Executor | None = None) -> RunSummary:
    """Run ingest -> caption -> embed -> catalog -> cluster -> shard; return what happened."""
    if not cfg.source.uri:
        raise CarveError("no source given: pass --source DIR or set source.uri")
    if cfg.ray.address and executor is None:
        cfg = for_cluster(cfg)
    t0 = time.time()
    summary = RunSummary()
    with root_of(cfg) as root:
        reporter = JobReporter(root.catalog, job_id)
        try:
            if executor is None and cfg.ray.executor != "local" and (cfg.ray.address or gpus_needed(cfg)):
                start_ray(cfg, root)  # a cluster or a GPU: refuse what cannot run before any work
            ingest(cfg, root, reporter, summary, executor)
            if shard:
                curate(cfg, root, reporter, summary)
            reporter.stage("done", stages=summary.stages)
        except Cancelled:
            reporter.finish("cancelled", error="cancelled")
            raise
        except BaseException as e:
            reporter.finish("failed", error=f"{type(e).__name__}: {e}")
            raise
        reporter.finish("succeeded")
        summary.seconds = time.time() - t0
        if summary.batch:
            root.catalog.record_run(summary.batch, summary.dataset, job_id, summary.seconds, summary.as_dict())
    return summary
