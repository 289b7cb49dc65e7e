"""The service's one job runner: queued jobs in the catalog become `carve run` or `carve export` subprocesses.

Job state lives only in the SQLite catalog (`jobs` table), so it survives restarts and is
shared by every server on the same root. Each server runs one `JobRunner` thread that,
every `service.poll_interval_s`:

1. reaps its finished subprocesses (the subprocess's own `JobReporter` normally wrote the
   final state; a process that died without doing so is marked failed with its exit code;
   a cancelled job is always ended here, after its process has exited);
2. kills its processes whose job was asked to cancel (state `cancelling`, or the marker file
   `<root>/jobs/<id>/cancel`): SIGTERM, then SIGKILL after `cancel_grace_s`; a cancelling job
   whose server on this host died is signalled by pid (after checking that process's command
   line names the job);
3. refreshes the heartbeat of the jobs it owns;
4. recovers orphans: a `running`/`cancelling` job whose heartbeat is older than
   `stale_after_s` (its server and its subprocess are both gone) becomes `resumable`
   (or `cancelled` if a cancel was pending) with the reason; `POST /jobs/{id}/resume`
   re-queues it and the pipeline skips the episodes that already finished;
5. starts queued jobs up to `max_concurrent_jobs`, claiming each with a compare-and-set
   (`queued` -> `running`, owner = this server) so two servers never start the same job.

A `run` job's subprocess is `python -m carve run --root R --source S --format F --job-id ID
--config <root>/jobs/<id>/config.yaml` (plus `--ray-address` when the server has one); its
output goes to `<root>/jobs/<id>/log.txt`. An `export` job's is `python -m carve export --root R
--config ... --job-id ID --out O ... --json` (`export_argv`, options from the job's `params`):
its stdout (the summary) goes to `summary.json`, its stderr to `log.txt`, and its exit status
alone decides its final state. The catalog URL reaches it as `CARVE_CATALOG_URL` in
its environment, never in the config file (a PostgreSQL URL may hold a password). For an
object-store root the job folders are local to the server (`job_dir`); cancelling then goes
through the catalog's `cancelling` state alone.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from carve.core import env
from carve.core.config import CarveConfig
from carve.core.log import get_logger, log_event
from carve.storage.catalog import Catalog
from carve.storage.fs import is_uri, split_query
from carve.storage.root import Root, root_of

log = get_logger("service.jobs")

TERMINAL_STATES = ("succeeded", "failed", "cancelled")
LIVE_STATES = ("running", "cancelling")


def new_owner_id() -> str:
    """A server identity unique across hosts and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def job_dir(root: str, job_id: str) -> Path:
    """`<root>/jobs/<id>` of a local root; for an object-store root a local folder of this host
    (`<tmp>/carve-jobs/<hash of the root>/<id>`): logs and configs are the server's files."""
    if is_uri(str(root)):
        key = hashlib.sha1(split_query(str(root))[0].encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / "carve-jobs" / key / job_id
    return Path(root) / "jobs" / job_id


def job_config(base: CarveConfig, overrides: dict[str, Any]) -> dict[str, Any]:
    """The config a job subprocess runs with: base + overrides, without the service section
    (its token) and the catalog section (its URL may hold a password; it goes by environment)."""
    cfg = base.with_overrides(overrides).model_dump()
    cfg.pop("service", None)  # never write the token to disk
    cfg.pop("catalog", None)
    return cfg


@dataclass
class _Proc:
    popen: subprocess.Popen[bytes]
    started: float
    term_sent: float | None = None
    files: list[Any] = field(default_factory=list)  # its stdout/stderr files, closed when reaped


def export_argv(python: str, root: str, config: Path, job_id: str, params: dict[str, Any]) -> list[str]:
    """`carve export` for an export job: its options (`service.routes.export.ExportRequest`), the
    job's config file, and `--job-id` (which names the job on the process's command line)."""
    argv = [python, "-m", "carve", "export", "--root", root, "--config", str(config), "--job-id", job_id,
            "--out", params["out"], "--unit", params.get("unit", "episode"), "--codec", params.get("codec", "av1"),
            "--json"]
    if params.get("shards") is not None:
        argv += ["--shards", str(params["shards"])]
    if params.get("task_from"):
        argv += ["--task-from", params["task_from"]]
    if params.get("dataset"):
        argv += ["--dataset", params["dataset"]]
    return (argv + ["--reencode"] * bool(params.get("reencode")) + ["--overwrite"] * bool(params.get("overwrite"))
            + ["--trim-idle"] * bool(params.get("trim_idle")))


@dataclass
class JobRunner:
    """Starts, watches, cancels and recovers pipeline jobs for one server (see module doc)."""

    cfg: CarveConfig
    root: Root | None = None  # the server's opened root; opened from cfg.root when not given
    ray_address: str | None = None
    owner: str = field(default_factory=new_owner_id)
    python: str = sys.executable

    def __post_init__(self) -> None:
        self._procs: dict[str, _Proc] = {}
        self._cancel: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._cat: Catalog | None = None
        if self.root is None:
            self.root = root_of(self.cfg)

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def catalog(self) -> Catalog:
        if self._cat is None:
            self._cat = Catalog.for_root(self.root)
        return self._cat

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="carve-job-runner", daemon=True)
        self._thread.start()

    def stop(self, kill_jobs: bool = False) -> None:
        """Stop the loop. Running subprocesses keep running (and heartbeating) unless `kill_jobs`."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if kill_jobs:
            for jid, p in list(self._procs.items()):
                p.popen.kill()
                p.popen.wait(timeout=10)
                self._reap(jid, p)
        if self._cat is not None:
            self._cat.close()
            self._cat = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as e:  # keep serving; the next tick retries
                log_event(log, "runner_error", error=f"{type(e).__name__}: {e}")
            self._stop.wait(self.cfg.service.poll_interval_s)

    def tick(self) -> None:
        """One pass: reap, cancel, heartbeat, recover orphans, start queued jobs."""
        with self._lock:
            self._reap_finished()
            self._handle_cancels()
            self._heartbeat()
            self.recover_stale()
            self._start_queued()

    # -- steps -------------------------------------------------------------------------
    def _reap_finished(self) -> None:
        for jid, p in list(self._procs.items()):
            if p.popen.poll() is not None:
                self._reap(jid, p)

    def _reap(self, jid: str, p: _Proc) -> None:
        rc = p.popen.returncode
        self._procs.pop(jid, None)
        for f in p.files:
            f.close()
        job = self.catalog.job(jid)
        if job is None or job["state"] in TERMINAL_STATES:
            self._cancel.discard(jid)
            return
        if jid in self._cancel or job["state"] == "cancelling":
            final, err = "cancelled", "cancelled"
        elif rc == 0 or (rc == 3 and job["kind"] == "run"):  # run: 3 = finished with quarantined episodes
            final, err = "succeeded", None
        else:
            tail = _log_tail(job_dir(self.cfg.root, jid) / "log.txt")
            what = "carve export" if job["kind"] == "export" else "pipeline process"
            final, err = "failed", f"{what} exited with code {rc}" + (f": {tail}" if tail else "")
        self.catalog.transition_job(jid, LIVE_STATES, expect_owner=self.owner, state=final, error=err,
                                    heartbeat=time.time())
        self._cancel.discard(jid)
        log_event(log, "job_reaped", job=jid, rc=rc, state=final)

    def _handle_cancels(self) -> None:
        self._cancel_orphans()
        if not self._procs:
            return
        now = time.time()
        for jid, p in list(self._procs.items()):
            job = self.catalog.job(jid)
            if (job is not None and job["state"] == "cancelling") or cancel_marker(self.cfg.root, jid).exists():
                self._cancel.add(jid)
            if jid not in self._cancel:
                continue
            if p.term_sent is None:
                _signal(p.popen, signal.SIGTERM)
                p.term_sent = now
            elif now - p.term_sent > self.cfg.service.cancel_grace_s:
                _signal(p.popen, signal.SIGKILL)

    def _cancel_orphans(self) -> None:
        """SIGTERM the pipeline process of a job asked to cancel whose server (on this host) is gone."""
        host = socket.gethostname()
        for job in self.catalog.jobs(state="cancelling", limit=10_000):
            if job["id"] in self._procs or not job.get("pid") or not job.get("owner"):
                continue
            o_host, _, rest = job["owner"].partition(":")
            o_pid = rest.partition(":")[0]
            if o_host != host or not o_pid.isdigit() or _pid_alive(int(o_pid)):
                continue  # its owner is alive (or elsewhere) and will do it
            if _is_job_process(int(job["pid"]), job["id"]):
                try:
                    os.kill(int(job["pid"]), signal.SIGTERM)
                    log_event(log, "orphan_cancelled", job=job["id"], pid=job["pid"])
                except ProcessLookupError:
                    pass

    def _heartbeat(self) -> None:
        now = time.time()
        for jid in list(self._procs):
            self.catalog.transition_job(jid, LIVE_STATES, expect_owner=self.owner, heartbeat=now)

    def recover_stale(self) -> list[str]:
        """Mark orphaned live jobs (stale heartbeat, not ours) resumable or cancelled; return their ids."""
        cutoff = time.time() - self.cfg.service.stale_after_s
        changed = []
        for state in LIVE_STATES:
            for job in self.catalog.jobs(state=state, limit=10_000):
                if job["id"] in self._procs:
                    continue
                hb = job.get("heartbeat") or job.get("updated_at") or 0.0
                if hb >= cutoff:
                    continue
                if state == "cancelling":
                    new, err = "cancelled", "cancelled (its server stopped before the job ended)"
                else:
                    new = "resumable"
                    err = (f"orphaned: no heartbeat since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(hb))} "
                           f"(owner {job.get('owner') or 'none'} gone); POST /jobs/{job['id']}/resume to re-queue")
                if self.catalog.transition_job(job["id"], (state,), expect_owner=job.get("owner"),
                                               state=new, error=err, pid=None):
                    changed.append(job["id"])
                    log_event(log, "job_orphaned", job=job["id"], state=new)
        return changed

    def claim_queued(self, n: int) -> list[dict[str, Any]]:
        """Claim up to `n` queued jobs (oldest first) for this server; compare-and-set, so a job
        another server claimed first is skipped."""
        claimed: list[dict[str, Any]] = []
        if n <= 0:
            return claimed
        for job in sorted(self.catalog.jobs(state="queued", limit=1000), key=lambda j: j["created_at"]):
            if len(claimed) >= n:
                break
            if self.catalog.transition_job(job["id"], ("queued",), owner=self.owner, state="running",
                                           stage="starting", heartbeat=time.time(), error=None):
                claimed.append(job)
        return claimed

    def _start_queued(self) -> None:
        for job in self.claim_queued(self.cfg.service.max_concurrent_jobs - len(self._procs)):
            try:
                self._spawn(job)
            except Exception as e:
                self.catalog.transition_job(job["id"], ("running", "cancelling"), expect_owner=self.owner,
                                            state="failed", error=f"could not start: {e}")

    def _spawn(self, job: dict[str, Any]) -> None:
        d = job_dir(self.cfg.root, job["id"])
        d.mkdir(parents=True, exist_ok=True)
        cfg_path = d / "config.yaml"
        tmp = d / f".tmp-{uuid.uuid4().hex[:6]}-config.yaml"
        tmp.write_text(yaml.safe_dump(job_config(self.cfg, job["overrides"]), sort_keys=False))
        os.replace(tmp, cfg_path)
        root_uri = self.root.uri_of(self.root.base)
        if job["kind"] == "export":
            argv = export_argv(self.python, root_uri, cfg_path, job["id"], job["params"] or {})
            out = open(d / "summary.json", "wb")  # noqa: SIM115 - its stdout: the summary; closed when reaped
            logf = open(d / "log.txt", "ab")  # noqa: SIM115 - closed when the process is reaped
        else:
            source = job["source_uri"]
            if "://" not in source and not os.path.exists(source):
                raise FileNotFoundError(f"source {source} no longer exists")
            argv = [self.python, "-m", "carve", "run", "--root", root_uri, "--source", source,
                    "--format", job["format"], "--job-id", job["id"], "--config", str(cfg_path)]
            if self.ray_address:
                argv += ["--ray-address", self.ray_address]
            logf = open(d / "log.txt", "ab")  # noqa: SIM115 - closed when the process is reaped
            out = logf
        catalog_url = self.root.catalog_url  # the server's catalog, however it was given
        child = env.child_env({env.CATALOG_URL: catalog_url} if catalog_url else None)
        popen = subprocess.Popen(argv, stdout=out, stderr=logf if out is not logf else subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=child, start_new_session=True)
        files = [logf] if out is logf else [out, logf]
        self._procs[job["id"]] = _Proc(popen=popen, started=time.time(), files=files)
        self.catalog.transition_job(job["id"], ("running", "cancelling"), expect_owner=self.owner, pid=popen.pid)
        log_event(log, "job_started", job=job["id"], kind=job["kind"], pid=popen.pid, source=job["source_uri"])

    # -- queries used by the API ---------------------------------------------------------
    def owns(self, job_id: str) -> bool:
        return job_id in self._procs

    def request_cancel(self, job_id: str) -> None:
        with self._lock:
            if job_id in self._procs:
                self._cancel.add(job_id)


def cancel_marker(root: str, job_id: str) -> Path:
    """A file the API drops to ask the owning server to cancel (survives a racing state write)."""
    return job_dir(root, job_id) / "cancel"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_job_process(pid: int, job_id: str) -> bool:
    """True if `pid` is alive and its command line names `job_id` (guards against pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return job_id.encode() in cmdline


def _signal(p: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass


def _log_tail(path: Path, max_chars: int = 400) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else "")[-max_chars:]
