"""A decode step built in a Ray worker gives its video decoders the CPUs Ray gave the worker
(`pipeline/ray_env.worker_cpus`), not a thread per core of the node; anywhere else it leaves the
process's setting alone."""

from __future__ import annotations

from typing import Any

from carve.core.config import SegmentConfig, SourceConfig
from carve.ingest import video
from carve.pipeline.ray_env import worker_cpus
from carve.pipeline.steps import DecodeSegment


def test_in_a_ray_task_the_decoders_get_its_cpus(ray_local: Any):
    ray = ray_local

    def built_here() -> tuple[int | None, int]:  # a closure: the workers cannot import a test module
        from carve.core.config import SegmentConfig, SourceConfig
        from carve.ingest import video
        from carve.pipeline.ray_env import worker_cpus
        from carve.pipeline.steps import DecodeSegment

        DecodeSegment(SegmentConfig(), SourceConfig())
        return worker_cpus(), video.decoder_threads()

    assert ray.get(ray.remote(num_cpus=1)(built_here).remote()) == (1, 1)
    assert ray.get(ray.remote(num_cpus=2)(built_here).remote()) == (2, 2)


def test_in_the_driver_nothing_changes(ray_local: Any):
    assert worker_cpus() is None  # Ray is up, but this is its driver
    DecodeSegment(SegmentConfig(), SourceConfig())
    assert video.decoder_threads() == 0
