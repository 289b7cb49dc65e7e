"""Which executor runs a `carve run`, and how many workers each step gets on Ray.

The rule (`choose_executor`), with `ray.executor`:

* `ray`: always Ray (embedded, or the cluster at `ray.address`);
* `local`: always in this process (`LocalExecutor`); refused with `ray.address` or a step that
  needs Ray's GPU scheduling (vLLM captioning);
* `auto` (the default): Ray when it is asked for or needed: a cluster address, a step that asks
  for a GPU (`ray_env.gpus_needed`); otherwise in this process when the work is small,
  `episodes < ray.local_below_episodes` (default 500), or when the machine has fewer than
  `ray.local_below_cores` usable cores (default 4; `ray.num_cpus` when set); Ray beyond that.

Why: an embedded Ray costs a fixed start-up (the raylet, GCS and the worker processes, each
importing the steps' libraries and loading the embedding model again) of several seconds per
run, plus a per-block cost of moving blocks through the object store (BENCHMARKS.md, "Ray
overhead"). What it buys is parallel decode and embed across cores. On a small run the start-up
is a large share of the whole wall time and is never repaid (240 short episodes: BENCHMARKS.md,
issue 22). On 2 cores Ray does not beat one process even at 1,000 episodes (43.0 s against
32.8 s in-process, BENCHMARKS.md, issue 22: its start-up and worker processes cost more than its
parallel steps give back on 2 cores), hence the core floor;
with 4+ cores decode runs on 3+ workers and a run of a few hundred episodes repays the start-up. Both executors run the same steps on the same blocks
(`executor.plan_blocks`), so a run's event rows and shards are the same whichever runs it.

`step_concurrency(cfg, cpus)`: the workers of the decode and embed steps when the config does
not fix them (`ray.decode_concurrency` / `ray.embed_concurrency` unset), from the CPUs Ray
offers: one decode worker per CPU (the decode is the bound) and an embed worker per four CPUs,
at least one each: 2 CPUs give 2 + 1, 16 give 16 + 4.

`step_cpus(cfg, cpus, workers)`: what each worker reserves. The light steps reserve a share of a
CPU (`ray.embed_cpus` = 0.25 per embed actor, `ray.light_cpus` = 0.1 per write worker, one per
eight decode workers, and per caption actor; an embed actor on a GPU is given Ray Data's one CPU) and the decode workers share
the rest, so that the light steps run on the decode's cores between its work, as the in-process
executor's driver does, instead of holding a core each (an idle one: on 2 CPUs one decode task
and one embed actor each held a core, and the write tasks waited for the end). The kinematic
captioner needs no model or server, so it runs in the decode's workers (a task with the decode's
share, which Ray Data fuses with the decode); other captioners run in actors. Measured on 2 cores,
1,000 short episodes (BENCHMARKS.md, issue 22): 51.7 s before, 43.0 s after (medians of 3).
"""

from __future__ import annotations

import math
import os
from typing import Literal

from carve.core.config import CarveConfig, RayConfig
from carve.core.errors import CarveError
from carve.pipeline.ray_env import gpus_needed

Choice = Literal["ray", "local"]

WRITE_PER_DECODE = 8  # decode workers per write worker on Ray (`write_workers`)


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, which a container or taskset narrows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def choose_executor(cfg: CarveConfig, episodes: int, cores: int | None = None) -> tuple[Choice, str]:
    """("ray" | "local", why) for a run of `episodes` episodes (module doc: the rule)."""
    ray_cfg = cfg.ray
    need = gpus_needed(cfg)
    if ray_cfg.executor == "local":
        if ray_cfg.address:
            raise CarveError(f"ray.executor=local but ray.address={ray_cfg.address}: a cluster run needs Ray "
                             "(drop one of the two)")
        if "caption.backend=vllm" in need:
            raise CarveError("ray.executor=local but caption.backend=vllm runs in Ray Data LLM's engine actors: "
                             "use ray.executor=auto or ray")
        return "local", "asked (ray.executor=local)"
    if ray_cfg.executor == "ray":
        return "ray", "asked (ray.executor=ray)"
    if ray_cfg.address:
        return "ray", f"a cluster address ({ray_cfg.address})"
    if need:
        return "ray", "a step asks for a GPU (" + ", ".join(need) + ")"
    cores = cores if cores is not None else (ray_cfg.num_cpus or usable_cores())
    if cores < ray_cfg.local_below_cores:
        return "local", (f"{cores} usable cores < ray.local_below_cores={ray_cfg.local_below_cores}: too few "
                         "for Ray's parallel steps to repay its start-up")
    if episodes < ray_cfg.local_below_episodes:
        return "local", (f"{episodes} episodes < ray.local_below_episodes={ray_cfg.local_below_episodes}: "
                         "Ray's start-up would not be repaid")
    return "ray", f"{episodes} episodes on {cores} cores"


def step_concurrency(cfg: RayConfig, cpus: float) -> tuple[int, int]:
    """(decode workers, embed workers) on `cpus` CPUs: the configured counts, else a quarter of the
    decode worker per CPU and an embed worker per four CPUs, at least one each (module doc)."""
    n = max(1, int(cpus))
    embed = cfg.embed_concurrency or max(1, n // 4)
    decode = cfg.decode_concurrency or n
    return decode, embed


def write_workers(decode_workers: int) -> int:
    """The write step's workers on Ray: one per eight decode workers, at least one (a part write
    is mostly I/O; one writer for a cluster's decode would queue its blocks)."""
    return max(1, math.ceil(decode_workers / WRITE_PER_DECODE))


def caption_in_decode(cfg: CarveConfig) -> bool:
    """Whether the caption step runs in the decode's workers on Ray (module doc): the kinematic
    captioner holds no model and talks to no server."""
    return cfg.caption.backend == "kinematic"


def step_cpus(cfg: CarveConfig, cpus: float, workers: tuple[int, int]) -> dict[str, float]:
    """The CPUs each worker of each step reserves on Ray, by step name, for `cpus` CPUs and
    (decode, embed) `workers` (module doc). The decode's share is what the others leave, shared
    out and rounded down to a twentieth, at least 0.05, and at most 1 less the embed's share (so
    that a decode worker fits beside an embed actor on a node of one CPU)."""
    decode_n, embed_n = workers
    ray_cfg = cfg.ray
    embed = 1.0 if cfg.embed.device.startswith("cuda") else ray_cfg.embed_cpus
    fused = caption_in_decode(cfg)
    caption_actors = 0.0 if fused else ray_cfg.caption_concurrency * ray_cfg.light_cpus
    left = cpus - embed_n * embed - write_workers(decode_n) * ray_cfg.light_cpus - caption_actors
    # at most 1 - the embed's share: a node of one CPU then holds a decode worker beside an embed actor
    cap = 1.0 - max(embed, ray_cfg.light_cpus) if embed < 1.0 else 1.0
    decode = min(cap, max(0.05, math.floor(left / max(1, decode_n) * 20 + 1e-9) / 20))
    return {"decode_segment": decode, "caption": decode if fused else ray_cfg.light_cpus, "embed": embed,
            "write": ray_cfg.light_cpus}


def local_decode_workers(cfg: RayConfig) -> int:
    """The decode children of an in-process run (`executor.LocalExecutor`): `ray.decode_concurrency`
    when set, else one per usable core (`ray.num_cpus` when set)."""
    return max(1, cfg.decode_concurrency or cfg.num_cpus or usable_cores())
