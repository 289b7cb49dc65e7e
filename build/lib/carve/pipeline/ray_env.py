"""Starting or joining Ray for the pipeline stages.

`ensure_ray(cfg)` connects to `cfg.address` (a Ray cluster, e.g. `ray://head:10001` or
`auto`) or starts an embedded local Ray sized by `num_cpus` and `object_store_memory_mb`
so that it fits a small machine. It is idempotent within a process. Ray Data's progress
bars follow `cfg.progress`; Ray's own logs are kept quiet. A SIGTERM handler installed by
the caller survives `ray.init` (which would otherwise replace it).
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from carve.core.config import RayConfig


def ensure_ray(cfg: RayConfig) -> None:
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
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
            ray.init(address=cfg.address, **kwargs)
        else:
            if cfg.num_cpus is not None:
                kwargs["num_cpus"] = cfg.num_cpus
            if cfg.object_store_memory_mb is not None:
                kwargs["object_store_memory"] = int(cfg.object_store_memory_mb) * 1024 * 1024
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
