"""Which executor `carve run` picks (pipeline/choose.py) and how many workers each step gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from carve.core.config import CarveConfig, RayConfig
from carve.core.errors import CarveError
from carve.pipeline.choose import choose_executor, step_concurrency
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
    assert step_concurrency(RayConfig(), 2) == (1, 1)
    assert step_concurrency(RayConfig(), 16) == (12, 4)
    assert step_concurrency(RayConfig(decode_concurrency=3, embed_concurrency=2), 16) == (3, 2)


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
