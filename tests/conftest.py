"""Shared pytest fixtures: a small embedded Ray for the whole session, offline model settings,
a private PostgreSQL server and the catalog backends (pg_server.py), an S3 server (s3_server.py),
a 2-node Ray cluster (ray_cluster.py); the marker `@pytest.mark.requires("ffmpeg" | "chromium" |
"postgres" | "lerobot")`, which skips (or, under its CARVE_REQUIRE_* variable, fails) a test
whose Debian or Python package is missing (requires.py)."""

from __future__ import annotations

import os

import pytest
from pg_server import catalog_url, catalog_url_module, postgres_server  # noqa: F401 - fixtures
from ray_cluster import ray_cluster  # noqa: F401 - fixture: a 2-node Ray cluster on loopback (ray_cluster.py)
from requires import NEEDS, require
from s3_server import s3, s3_server  # noqa: F401 - fixtures

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")  # no process of the tests asks a cloud for credentials


@pytest.fixture(scope="session")
def ray_local():
    """An embedded Ray sized for the 2-core CI box, shared by every test that needs one."""
    import ray

    from carve.core.config import RayConfig
    from carve.pipeline.ray_env import ensure_ray

    ensure_ray(RayConfig(num_cpus=2, object_store_memory_mb=256, progress=False))
    yield ray
    ray.shutdown()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"requires(name): needs one of {sorted(NEEDS)} (tests/requires.py); "
                                       "skips without it, fails under its CARVE_REQUIRE_* variable")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("requires"):
        for name in mark.args:
            require(name)
