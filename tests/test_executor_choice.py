"""Which executor `carve run` picks (pipeline/choose.py) and how many workers each step gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from carve.core.config import CarveConfig, RayConfig
from carve.core.errors import CarveError
from carve.pipeline.choose import (
    caption_in_decode,
    choose_executor,
    step_concurrency,
    step_cpus,
    write_workers,
)
from carve.pipeline.executor import plan_blocks


def _cfg(**ray: object) -> CarveConfig:
    return CarveConfig().with_overrides({"ray": ray})


def test_a_small_embedded_run_stays_in_this_process():
    choice, why = choose_executor(_cfg(), episodes=240, cores=16)
    assert choice == "local" and "240 episodes" in why


def test_a_large_run_on_enough_cores_uses_ray():
    assert choose_executor(_cfg(), episodes=500, cores=4)[0] == "ray"
    assert choose_executor(_cfg(), episodes=499, cores=64)[0] == "local"
    assert choose_executor(_cfg(local_below_episodes=10), episodes=11, cores=16)[0] == "ray"


def test_too_few_cores_never_start_ray_unless_asked():
    choice, why = choose_executor(_cfg(), episodes=100_000, cores=2)
    assert choice == "local" and "2 usable cores" in why
    assert choose_executor(_cfg(local_below_cores=2), episodes=100_000, cores=2)[0] == "ray"
    assert choose_executor(_cfg(executor="ray"), episodes=1, cores=1)[0] == "ray"


def test_num_cpus_counts_as_the_cores():
    assert choose_executor(_cfg(num_cpus=2), episodes=100_000)[0] == "local"
    assert choose_executor(_cfg(num_cpus=8), episodes=100_000)[0] == "ray"


def test_a_cluster_address_or_a_gpu_step_means_ray():
    assert choose_executor(_cfg(address="head:6379"), episodes=1, cores=2) == ("ray", "a cluster address (head:6379)")
    gpu = CarveConfig().with_overrides({"embed": {"device": "cuda"}})
    choice, why = choose_executor(gpu, episodes=1, cores=2)
    assert choice == "ray" and "GPU" in why


def test_asking_for_local_is_obeyed_and_contradictions_refused():
    assert choose_executor(_cfg(executor="local"), episodes=10**6, cores=64)[0] == "local"
    with pytest.raises(CarveError, match="cluster run needs Ray"):
        choose_executor(_cfg(executor="local", address="head:6379"), episodes=1)
    vllm = CarveConfig().with_overrides({"ray": {"executor": "local"}, "caption": {"backend": "vllm"}})
    with pytest.raises(CarveError, match="vllm"):
        choose_executor(vllm, episodes=1)


def test_workers_are_sized_from_the_cpus_unless_configured():
    assert step_concurrency(RayConfig(), 1) == (1, 1)
    assert step_concurrency(RayConfig(), 2) == (2, 1)  # a decode worker per CPU, the embed rides along
    assert step_concurrency(RayConfig(), 16) == (16, 4)
    assert step_concurrency(RayConfig(decode_concurrency=3, embed_concurrency=2), 16) == (3, 2)


def _fits(shares: list[float], cpus: float) -> bool:
    return sum(shares) <= cpus + 1e-9


def test_light_steps_reserve_a_share_and_the_decode_the_rest():
    cfg = CarveConfig()
    # 2 CPUs: embed 0.25 + write 0.1 leave 1.65 for 2 decode workers, 0.825 each, capped at 1 - 0.25
    assert step_cpus(cfg, 2, (2, 1)) == {"decode_segment": 0.75, "caption": 0.75, "embed": 0.25, "write": 0.1}
    # 1 CPU: 1 - 0.25 - 0.1 = 0.65 for the one decode worker
    assert step_cpus(cfg, 1, (1, 1))["decode_segment"] == 0.65
    # a fixed decode concurrency shares what is left: 16 - 4 x 0.25 - 5 writers x 0.1 = 14.5 over 40 workers
    assert step_cpus(cfg, 16, (40, 4))["decode_segment"] == 0.35
    # a writer per eight decode workers: 160 CPUs (10 nodes of 16) get 20, 2 CPUs one
    assert [write_workers(n) for n in (1, 2, 8, 9, 160)] == [1, 1, 1, 2, 20]
    for cpus in (1, 2, 3, 4, 8, 16, 64):
        workers = step_concurrency(cfg.ray, cpus)
        share = step_cpus(cfg, cpus, workers)
        # every worker of the plan fits at once on the CPUs offered
        writers = write_workers(workers[0])
        assert _fits([share["decode_segment"]] * workers[0] + [share["embed"]] * workers[1]
                     + [share["write"]] * writers, cpus)
        # and on a node of one CPU a decode worker fits beside an embed actor or the write task
        assert _fits([share["decode_segment"], share["embed"]], 1)
        assert _fits([share["decode_segment"], share["write"]], 1)


def test_the_kinematic_captioner_runs_in_the_decode_workers_others_in_actors():
    assert caption_in_decode(CarveConfig())
    http = CarveConfig().with_overrides({"caption": {"backend": "openai"}})
    assert not caption_in_decode(http)
    share = step_cpus(http, 2, (2, 1))
    # a caption actor reserves the light share, and the decode keeps its own
    assert share["caption"] == 0.1 and share["decode_segment"] == 0.75
    # an embed actor on a GPU is given Ray Data's one CPU: 16 - 4 - 2 x 0.1 = 11.8 over 16 decode workers
    gpu = CarveConfig().with_overrides({"embed": {"device": "cuda"}})
    share = step_cpus(gpu, 16, (16, 4))
    assert share["embed"] == 1.0 and share["decode_segment"] == 0.7


def test_the_steps_on_ray_carry_the_plan(tmp_path: Path):
    from carve.pipeline.run import build_steps
    from carve.storage.root import open_root

    cfg = CarveConfig()
    root = open_root(tmp_path / "r")
    steps = {s.name: s for s in build_steps(cfg, root, "b", (2, 1), step_cpus(cfg, 2, (2, 1)))}
    assert steps["decode_segment"].resources() == {"num_cpus": 0.75} and steps["decode_segment"].concurrency == 2
    # the caption with the decode's workers, share and compute: Ray Data fuses the two into one task
    assert steps["caption"].resources() == {"num_cpus": 0.75} and steps["caption"].concurrency == 2
    assert steps["caption"].compute == "tasks"
    assert steps["embed"].resources() == {"num_cpus": 0.25} and steps["embed"].concurrency == 1
    assert steps["write"].resources() == {"num_cpus": 0.1} and steps["write"].concurrency == 1
    # without a plan (the in-process executor): every step as its class runs it, one CPU each
    plain = {s.name: s for s in build_steps(cfg, root, "b")}
    assert plain["caption"].compute is None and plain["caption"].resources() == {"num_cpus": 1.0}
    assert plain["write"].concurrency is None


def test_blocks_follow_the_decode_workers():
    assert plan_blocks(100, RayConfig()) == 4  # ceil(100 / 32)
    assert plan_blocks(100, RayConfig(), workers=12) == 24  # two per worker
    assert plan_blocks(100, RayConfig(decode_concurrency=5)) == 10
    assert plan_blocks(3, RayConfig(), workers=12) == 3  # never more blocks than episodes


def test_run_without_an_executor_picks_local_for_a_small_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`run_pipeline` with the shipped config ingests a small folder dataset without starting Ray."""
    from test_e2e_pipeline import write_folder_episode

    import carve.pipeline.run as run

    def no_ray(*a: object, **k: object) -> None:
        raise AssertionError("Ray was started for a small embedded run")

    monkeypatch.setattr(run, "start_ray", no_ray)
    src = tmp_path / "raw" / "toy"
    src.mkdir(parents=True)
    for i in range(2):
        write_folder_episode(src, f"ep_{i}", seed=i, frames=60)
    cfg = CarveConfig().with_overrides({"root": str(tmp_path / "carve"), "source": {"uri": str(src), "format": "folder"},
                                        "embed": {"text": "none"}, "ray": {"progress": False}})
    s = run.run_pipeline(cfg, shard=False)
    assert s.executor == "local"
    assert s.episodes_ok == 2 and s.events > 0
