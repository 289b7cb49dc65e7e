"""Starting or joining Ray for the pipeline stages, and refusing runs the cluster cannot do.

`ensure_ray(cfg)` starts an embedded local Ray sized by `num_cpus`, `num_gpus` and
`object_store_memory_mb` so that it fits a small machine (its idle task workers kept
`keep_idle_workers_s`, `embedded_system_config`), or joins the cluster at
`cfg.address`: the head's GCS address (`head:6379`), from a machine in the cluster's network.
A Ray Client address (`ray://head:10001`) is refused by the config: Ray Data cannot execute
a pipeline through Ray Client. It is idempotent within a process. Ray Data's progress bars
follow `cfg.progress`; Ray's own logs are kept quiet. A SIGTERM handler installed by the
caller survives `ray.init` (which would otherwise replace it).

Joining a cluster (docs/CLUSTER.md):

- **Code.** The workers import the driver's own `carve` package: its folder (`src/carve` of a
  checkout or the installed one, `carve_package`) goes to the cluster as a job `runtime_env`
  (`py_modules`, without caches: `SHIP_EXCLUDES`). The job also gets an empty `working_dir`,
  so that the driver's own directory does not go on the workers' path. `ray.ship_code=false` relies on
  the carve installed on the nodes instead. The dependencies (torch, pyarrow, ...) must be
  installed on every node (the same image or virtualenv), as for any Ray job.
- **Environment.** The variables named in `ray.forward_env` that are set on the driver (the
  object store's endpoint and credentials) reach the workers through `runtime_env.env_vars`.
- **Authentication.** A cluster started with token authentication (`RAY_AUTH_MODE=token`, the
  default of `ray start --head` when a token exists) only answers a driver that presents its
  token. With `ray.auth=auto` the driver turns token mode on when a token is at hand
  (`RAY_AUTH_TOKEN`, the file at `RAY_AUTH_TOKEN_PATH`, or `~/.ray/auth_token`), unless
  `RAY_AUTH_MODE` says otherwise; a failed connection says what to check.

`check_cluster(cfg, root)` then refuses, before any work, a run the cluster cannot do: a
node-local root or source while the cluster has several nodes (unless
`ray.allow_shared_local_root`: every node mounts it at the same path), and a step that asks for
a GPU when the cluster has none. `gpu_request(cfg)` is the one place that says which steps run
on GPUs and how many each worker reserves.
"""

from __future__ import annotations

import logging
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from carve.core import env
from carve.core.config import CarveConfig, RayConfig
from carve.core.errors import CarveError
from carve.core.log import get_logger, log_event
from carve.storage.root import Root

log = get_logger("ray")

SHIP_EXCLUDES = ["__pycache__", "*.pyc", "tests"]  # never uploaded with the package (runtime_env excludes)


def ensure_ray(cfg: RayConfig) -> None:
    import ray

    env.set_default("RAY_DEDUP_LOGS", "1")
    env.set_default("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    if not ray.is_initialized():
        # ray.init installs its own SIGTERM handler (sys.exit(15)) in the driver; keep the
        # caller's (`carve run` turns SIGTERM into a clean cancellation of the job)
        in_main = threading.current_thread() is threading.main_thread()
        prev_term = signal.getsignal(signal.SIGTERM) if in_main else None
        kwargs: dict = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.ERROR,
            "configure_logging": True,
        }
        if cfg.address:
            _connect(cfg, kwargs)
        else:
            if cfg.num_cpus is not None:
                kwargs["num_cpus"] = cfg.num_cpus
            if cfg.num_gpus is not None:
                kwargs["num_gpus"] = cfg.num_gpus
            if cfg.object_store_memory_mb is not None:
                kwargs["object_store_memory"] = int(cfg.object_store_memory_mb) * 1024 * 1024
            if cfg.node_ip_address:
                kwargs["_node_ip_address"] = cfg.node_ip_address
            kwargs["_system_config"] = embedded_system_config(cfg)
            ray.init(**kwargs)
        if in_main and callable(prev_term):
            signal.signal(signal.SIGTERM, prev_term)
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = bool(cfg.progress)
    ctx.verbose_progress = False
    try:
        ctx.print_on_execution_start = False
    except AttributeError:  # older Ray
        pass


def embedded_system_config(cfg: RayConfig) -> dict[str, Any]:
    """The raylet settings of an embedded Ray: task workers are kept `keep_idle_workers_s` when idle.

    Ray kills a task worker that has been idle for `idle_worker_killing_time_threshold_ms` (1 s)
    while the node has more workers than CPUs, its soft limit. Carve's plan has more (a decode
    worker per CPU beside the write worker and the embed actor), and a decode worker waits for
    its next block now and then: on 2 CPUs and 1,000 episodes Ray started eight decode workers
    one after another, each importing Carve and its decoders again (BENCHMARKS.md, issue 22)."""
    return {"idle_worker_killing_time_threshold_ms": round(cfg.keep_idle_workers_s * 1000)}


# -- joining a cluster ---------------------------------------------------------------------
def _connect(cfg: RayConfig, kwargs: dict[str, Any]) -> None:
    """`ray.init(address=...)` with Carve's runtime_env and the cluster's authentication."""
    import ray

    mode = _auth_mode(cfg)
    with tempfile.TemporaryDirectory(prefix="carve-ship-") as scratch:
        runtime_env = cluster_runtime_env(cfg, Path(scratch))
        try:
            ray.init(address=cfg.address, runtime_env=runtime_env, **kwargs)
        except Exception as e:  # ConnectionError, AuthenticationError, a version mismatch, ...
            raise CarveError(_connect_hint(cfg.address or "", mode, e)) from e
    log_event(log, "ray_connected", address=cfg.address, auth=mode, nodes=len(alive_nodes()),
              code="shipped" if cfg.ship_code else "installed on the nodes")


def cluster_runtime_env(cfg: RayConfig, scratch: Path) -> dict[str, Any]:
    """The job's runtime_env: the carve package (`py_modules`), forwarded variables, extras.

    `scratch` holds the job's empty working directory until `ray.init` has uploaded it.
    """
    job: dict[str, Any] = {k: v for k, v in cfg.runtime_env.items() if k not in ("py_modules", "env_vars")}
    if cfg.ship_code:
        job["py_modules"] = [str(carve_package()), *cfg.runtime_env.get("py_modules", [])]
        job["excludes"] = [*SHIP_EXCLUDES, *cfg.runtime_env.get("excludes", [])]
        if "working_dir" not in job:
            # Ray puts the driver's working and script directories first on the workers' sys.path
            # unless the job has a working_dir; whatever the driver's directory holds, an empty
            # working_dir keeps the workers on the shipped code.
            workdir = scratch / "workdir"
            workdir.mkdir(exist_ok=True)
            (workdir / "README").write_text("the working directory of carve's Ray workers (left empty)\n")
            job["working_dir"] = str(workdir)
    elif "py_modules" in cfg.runtime_env:
        job["py_modules"] = list(cfg.runtime_env["py_modules"])
    env_vars = env.values(cfg.forward_env)
    env_vars.update(cfg.runtime_env.get("env_vars", {}))
    if env_vars:
        job["env_vars"] = env_vars
    return job


def carve_package() -> Path:
    """The driver's `carve` package folder (src/carve of a checkout, or the installed one), for
    `runtime_env.py_modules`; caches and tests stay behind (`SHIP_EXCLUDES`)."""
    import carve

    return Path(carve.__file__).resolve().parent


def _token_at_hand() -> bool:
    if env.get(env.RAY_AUTH_TOKEN):
        return True
    path = env.get(env.RAY_AUTH_TOKEN_PATH)
    if path:
        return Path(path).expanduser().is_file()
    return (Path.home() / ".ray" / "auth_token").is_file()


def _auth_mode(cfg: RayConfig) -> str:
    """Set `RAY_AUTH_MODE` for this driver from `cfg.auth`; return the mode in effect."""
    explicit = env.get(env.RAY_AUTH_MODE)
    if cfg.auth == "auto":
        if explicit:
            return explicit.lower()
        mode = "token" if _token_at_hand() else "disabled"
    else:
        mode = cfg.auth
        if mode == "token" and not _token_at_hand():
            raise CarveError(
                "ray.auth=token but no Ray token was found: set RAY_AUTH_TOKEN, or RAY_AUTH_TOKEN_PATH to a "
                "file holding it, or copy it to ~/.ray/auth_token (`ray get-auth-token` on the head prints it)"
            )
    if mode != (explicit or "").lower():
        env.set_value(env.RAY_AUTH_MODE, mode)
        try:  # Ray reads its config once per process: make the new mode visible (as `ray start` does)
            from ray._raylet import Config

            Config.initialize("")
        except Exception:  # pragma: no cover - older Ray without token authentication
            pass
    return mode


def _connect_hint(address: str, mode: str, e: BaseException) -> str:
    chain, c = [], e  # Ray wraps the reason (e.g. "Unauthenticated ... InvalidAuthToken") in its causes
    while c is not None and len(chain) < 8:
        chain.append(str(c))
        c = c.__cause__ or c.__context__
    rejected = any(w in text for text in chain for w in ("nauthenticated", "InvalidAuthToken", "AuthenticationError"))
    msg = f"could not connect to the Ray cluster at {address}: {str(e).splitlines()[0]}"
    if rejected:
        msg += " (the cluster rejected this driver's authentication)"
    if mode == "token":
        return (msg + ". The driver used token authentication: check that RAY_AUTH_TOKEN, the file at "
                "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token holds the cluster's token (`ray get-auth-token` on the "
                "head prints it), that the address is the head's GCS address (host:port of `ray start --head "
                "--port`) and that the driver's Python and Ray versions match the cluster's")
    return (msg + ". If the cluster uses token authentication (RAY_AUTH_MODE=token on its nodes; `ray start "
            "--head` turns it on when a token exists), give this driver the token: RAY_AUTH_TOKEN=..., or "
            "RAY_AUTH_TOKEN_PATH=<file>, or ~/.ray/auth_token (`ray get-auth-token` on the head prints it). "
            "Also check the address (the head's GCS address, host:port) and that the driver's Python and "
            "Ray versions match the cluster's")


# -- what the run needs from the cluster ---------------------------------------------------
def worker_cpus() -> int | None:
    """The CPUs Ray gave the task or actor this process is running (at least 1), in a Ray worker;
    None anywhere else (the driver, a plain process or child). Ray is not imported for the asking."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    ctx = ray.get_runtime_context()
    if ctx.worker.mode != ray.WORKER_MODE:
        return None
    cpus = ctx.get_assigned_resources().get("CPU")
    return max(1, int(cpus)) if cpus else None


def gpu_request(cfg: CarveConfig) -> dict[str, float]:
    """GPUs each worker of a step reserves: {step name: GPUs}, for the steps that need any.

    `embed` runs its models on `embed.device`; on `cuda` each worker reserves
    `ray.embed_num_gpus` (Ray then sets CUDA_VISIBLE_DEVICES for it). `caption.backend=vllm`
    runs vLLM in Ray Data LLM's own engine actors, which reserve their GPUs themselves: the
    caption worker that drives them holds none (holding one would starve the engine on a
    one-GPU node), but the cluster must have a GPU (`gpus_needed`).
    """
    return {"embed": cfg.ray.embed_num_gpus} if cfg.embed.device.startswith("cuda") else {}


def gpus_needed(cfg: CarveConfig) -> dict[str, float]:
    """{what asks for a GPU: GPUs one worker needs on one node}: the steps' requests, plus vLLM's engine."""
    need = {f"embed.device={cfg.embed.device}": g for g in gpu_request(cfg).values()}
    if cfg.caption.backend == "vllm":
        need["caption.backend=vllm"] = 1.0
    return need


def alive_nodes() -> list[dict[str, Any]]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def _is_local_uri(uri: str) -> bool:
    return bool(uri) and ("://" not in uri or uri.startswith("file://"))


def check_cluster(cfg: CarveConfig, root: Root) -> None:
    """Refuse (CarveError), before any work, a run this Ray cannot do; `ray` must be initialised."""
    import ray

    nodes = alive_nodes()
    if len(nodes) > 1 and not cfg.ray.allow_shared_local_root:
        fix = ("use an s3:// {what} (or a directory every node mounts at the same path, with "
               "--allow-shared-local-root)")
        if root.is_local:
            raise CarveError(
                f"root {root.base} is a local directory but the cluster has {len(nodes)} nodes: workers on other "
                f"nodes would write their part files there; " + fix.format(what="root"))
        if _is_local_uri(cfg.source.uri):
            raise CarveError(
                f"source {cfg.source.uri} is a local directory but the cluster has {len(nodes)} nodes: workers on "
                f"other nodes would not find its episodes there; " + fix.format(what="source"))
    need = gpus_needed(cfg)
    if need:
        total = float(ray.cluster_resources().get("GPU", 0))
        what = " and ".join(need)
        if total == 0:
            raise CarveError(
                f"{what} needs a GPU but the Ray cluster has none ({len(nodes)} node(s), "
                f"{ray.cluster_resources().get('CPU', 0):g} CPUs, 0 GPUs): start its nodes with their GPUs "
                f"(`ray start --num-gpus=N`), or run on CPUs (embed.device=cpu; caption.backend=kinematic or "
                f"openai)")
        most = max(float(n.get("Resources", {}).get("GPU", 0)) for n in nodes)
        for who, g in need.items():
            if g > most:
                raise CarveError(
                    f"{who} asks for {g:g} GPUs per worker but no node of the Ray cluster has more than {most:g}: "
                    f"lower ray.embed_num_gpus")
    log_event(log, "cluster_ok", nodes=len(nodes), gpus=float(ray.cluster_resources().get("GPU", 0)))
