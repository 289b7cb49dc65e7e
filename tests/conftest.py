"""Shared pytest fixtures: a small embedded Ray for the whole session, offline model settings."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


@pytest.fixture(scope="session")
def ray_local():
    """An embedded Ray sized for the 2-core CI box, shared by every test that needs one."""
    import ray

    from carve.core.config import RayConfig
    from carve.pipeline.ray_env import ensure_ray

    ensure_ray(RayConfig(num_cpus=2, object_store_memory_mb=256, progress=False))
    yield ray
    ray.shutdown()
