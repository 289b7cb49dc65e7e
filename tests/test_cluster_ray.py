"""Cluster mode: `carve run --ray-address` on a real 2-node Ray cluster (tests/ray_cluster.py).

- The run ships Carve to the workers (runtime_env py_modules), authenticates with the
  cluster's token although the driver only has the token file, spreads its steps over both
  nodes (the node each step ran each block on, logged as `ray_nodes`), and writes events, clusters and shards
  that match, row for row, an embedded single-node run of the same source.
- A node-local root on a multi-node cluster is refused before any work, saying what to use.
- A driver without the token is told how to give it one.

Both runs leave the text embedder out (`embed.text=none`): loading MiniLM in every fresh
worker would double the test's time and says nothing about the cluster.

The shared root is a local folder plus `--allow-shared-local-root` (every "node" here sees the
same disk); `shared_root` is the one place that says so, so an object-store root can be swapped
in (a parameter of that fixture) without touching the tests.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from carve.core.config import CarveConfig, RayConfig
from carve.pipeline.ray_env import carve_package, cluster_runtime_env
from carve.sim.lerobot_writer import write_video
from carve.sim.toy import toy_episode
from carve.storage.root import open_root

CARVE = str(Path(sys.executable).with_name("carve"))
TASKS = ["put the red cube in the tray", "stack the red cube on the blue cube", "push the green cube to the left"]


def write_source(folder: Path, episodes: int = 3) -> Path:
    """A small folder dataset (MP4 + signals + task per episode)."""
    folder.mkdir(parents=True)
    for i in range(episodes):
        ep = toy_episode(i, frames=96, task=TASKS[i % 3])
        write_video(folder / f"ep{i}.mp4", next(iter(ep.frames.values())), 12)
        np.savez(folder / f"ep{i}.npz", state=ep.state, action=ep.action, timestamps=np.arange(96) / 12.0)
        (folder / f"ep{i}.json").write_text(json.dumps({"task": ep.task, "fps": 12}))
    return folder


@pytest.fixture(params=["shared_local"])
def shared_root(request, tmp_path: Path) -> tuple[str, list[str]]:
    """(root URI every node reaches, extra `carve run` arguments) for a cluster run."""
    if request.param == "shared_local":
        return str(tmp_path / "cluster-root"), ["--allow-shared-local-root"]
    raise ValueError(request.param)


def read_rows(uri: str, *parts: str, sort_by: str | None = None) -> pa.Table:
    """Every Parquet file below `parts` of a root, in path order (or sorted by a column)."""
    root = open_root(uri)
    files = sorted(root.list_files(*parts, suffix=".parquet"))
    assert files, f"no parquet files under {uri}/{'/'.join(parts)}"
    t = pa.concat_tables([pq.read_table(f, filesystem=root.fs) for f in files])
    return t.sort_by(sort_by) if sort_by else t


def assert_same_rows(a: pa.Table, b: pa.Table, what: str) -> None:
    assert a.schema.names == b.schema.names, what
    assert a.num_rows == b.num_rows, what
    for name in a.column_names:
        assert a.column(name).to_pylist() == b.column(name).to_pylist(), f"{what}: column {name} differs"


def carve_run(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([CARVE, "run", *args, "--set", "ray.progress=false"], env=env, capture_output=True,
                          text=True, timeout=timeout)


# -- shipping the code ---------------------------------------------------------------------
def test_carve_package_is_the_imported_package_folder():
    pkg = carve_package()
    assert pkg.name == "carve"
    for name, rel in [("carve", "__init__.py"), ("carve.core.config", "core/config.py"),
                      ("carve.pipeline.ray_env", "pipeline/ray_env.py"), ("carve.ingest.sources", "ingest/sources/__init__.py")]:
        assert (pkg / rel).resolve() == Path(importlib.import_module(name).__file__).resolve(), name
    assert list((pkg / "captioners" / "prompts").glob("*.yaml")), "package data travels too"


def test_runtime_env_ships_carve_and_forwards_only_set_variables(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    env = cluster_runtime_env(RayConfig(address="127.0.0.2:1", runtime_env={"env_vars": {"X": "1"}}), tmp_path)
    assert [Path(p).name for p in env["py_modules"]] == ["carve"]
    assert {"__pycache__", "*.pyc"} <= set(env["excludes"])  # caches never travel
    assert Path(env["working_dir"]).is_dir()  # not the driver's directory (a checkout shadows the package)
    assert env["env_vars"]["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9" and env["env_vars"]["X"] == "1"
    assert "AWS_SECRET_ACCESS_KEY" not in env["env_vars"]
    assert "py_modules" not in cluster_runtime_env(RayConfig(address="x:1", ship_code=False), tmp_path)


def test_ray_client_addresses_and_a_missing_token_are_refused_up_front(tmp_path: Path, monkeypatch):
    from carve.core.config import ConfigError
    from carve.core.errors import CarveError
    from carve.pipeline.ray_env import _auth_mode

    with pytest.raises(ConfigError, match=r"ray\.address: a Ray Client address \(ray://\) cannot run"):
        CarveConfig.load(None, ["ray.address=ray://head:10001"])
    for k in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(CarveError, match=r"ray\.auth=token but no Ray token was found"):
        _auth_mode(RayConfig(address="127.0.0.2:1", auth="token"))


# -- the cluster ---------------------------------------------------------------------------
@pytest.mark.timeout(600)
def test_run_on_two_nodes_matches_a_local_run(ray_cluster, ray_local, shared_root, tmp_path: Path):
    from carve.pipeline.run import run_pipeline

    source = write_source(tmp_path / "raw" / "toy")
    root, extra = shared_root
    # the cluster run (a subprocess, as a user runs it) while the embedded reference runs here
    proc = subprocess.Popen(
        [CARVE, "run", "--source", str(source), "--format", "folder", "--root", root,
         "--ray-address", ray_cluster.address, *extra, "--set", "cluster.k=3", "--set", "embed.text=none",
         "--set", "ray.progress=false", "-v"],
        env=ray_cluster.driver_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    local = str(tmp_path / "local-root")
    cfg = CarveConfig().with_overrides({
        "root": local, "source": {"uri": str(source), "format": "folder"}, "cluster": {"k": 3},
        "embed": {"text": "none"},
        "ray": {"num_cpus": 2, "object_store_memory_mb": 256, "progress": False},
    })
    summary = run_pipeline(cfg)
    out, err = proc.communicate(timeout=540)
    assert proc.returncode == 0, err[-4000:]
    assert "3 ingested, 0 quarantined" in out and summary.episodes_ok == 3

    # it ran on both nodes: the union of the nodes Ray Data ran each operator on
    used = set()
    for line in err.splitlines():
        m = re.search(r"ray_nodes operator=.* node_ids=(\S+)", line)
        if m:
            used.update(m.group(1).split(","))
    assert used == {n["id"] for n in ray_cluster.nodes}, err[-3000:]
    assert "auth=token" in err  # the driver turned token mode on from the token file alone

    assert_same_rows(read_rows(local, "events", sort_by="event_id"), read_rows(root, "events", sort_by="event_id"),
                     "events")
    assert_same_rows(read_rows(local, "clusters", "v001", "assignments", sort_by="event_id"),
                     read_rows(root, "clusters", "v001", "assignments", sort_by="event_id"), "cluster assignments")
    lroot, croot = open_root(local), open_root(root)
    assert np.array_equal(np.load(lroot.open_input(lroot.path("clusters", "v001", "centroids.npy"))),
                          np.load(croot.open_input(croot.path("clusters", "v001", "centroids.npy"))))
    assert_same_rows(read_rows(local, "shards", "v001"), read_rows(root, "shards", "v001"), "shards")


@pytest.mark.timeout(300)
def test_node_local_root_is_refused_on_a_multi_node_cluster(ray_cluster, tmp_path: Path):
    source = write_source(tmp_path / "raw" / "toy", episodes=1)
    root = tmp_path / "node-local-root"
    res = carve_run(["--source", str(source), "--root", str(root), "--ray-address", ray_cluster.address],
                    env=ray_cluster.driver_env())
    assert res.returncode == 2, res.stderr[-3000:]
    assert (f"root {root} is a local directory but the cluster has 2 nodes: workers on other nodes would write "
            "their part files there; use an s3:// root (or a directory every node mounts at the same path, "
            "with --allow-shared-local-root)") in res.stderr
    assert not (root / "events").exists()


@pytest.mark.timeout(300)
def test_a_driver_without_the_token_is_told_how_to_authenticate(ray_cluster, tmp_path: Path):
    home = tmp_path / "home"  # no ~/.ray/auth_token here, no RAY_AUTH_TOKEN(_PATH)
    home.mkdir()
    env = {k: v for k, v in ray_cluster.driver_env().items() if not k.startswith("RAY_AUTH")}
    env.update(HOME=str(home), RAY_NUM_REDIS_GET_RETRIES="2")  # fail in seconds, not Ray's default ~20 s
    res = carve_run(["--source", str(tmp_path), "--root", str(tmp_path / "r"), "--ray-address",
                     ray_cluster.address], env=env)
    assert res.returncode == 2, res.stderr[-3000:]
    err = res.stderr
    assert f"could not connect to the Ray cluster at {ray_cluster.address}" in err
    assert "rejected this driver's authentication" in err
    assert "RAY_AUTH_TOKEN" in err and "ray get-auth-token" in err


@pytest.mark.timeout(900)
def test_run_on_two_nodes_with_s3_and_postgres_matches_a_local_run(ray_cluster, ray_local, s3, postgres_server,
                                                                   tmp_path: Path):
    """The production shape: source and root on the S3 server, the catalog on PostgreSQL, the
    steps on a 2-node cluster; its events, clusters and shards equal a local single-node run of
    the same episodes (all but `source_uri`, which names where the source was read from)."""
    from carve.pipeline.run import run_pipeline

    source = write_source(tmp_path / "raw" / "toy")
    src_uri = s3.upload(source, "raw/toy")
    root = s3.uri("carve")
    env = ray_cluster.driver_env(**s3.server.env(), CARVE_CATALOG_URL=postgres_server.new_database())
    proc = subprocess.Popen(
        [CARVE, "run", "--source", src_uri, "--format", "folder", "--root", root, "--ray-address",
         ray_cluster.address, "--set", "cluster.k=3", "--set", "embed.text=none", "--set", "ray.progress=false"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    local = str(tmp_path / "local-root")
    cfg = CarveConfig().with_overrides({
        "root": local, "source": {"uri": str(source), "format": "folder"}, "cluster": {"k": 3},
        "embed": {"text": "none"}, "ray": {"num_cpus": 2, "object_store_memory_mb": 256, "progress": False},
    })
    summary = run_pipeline(cfg)
    out, err = proc.communicate(timeout=840)
    assert proc.returncode == 0, err[-4000:]
    assert "3 ingested, 0 quarantined" in out and summary.episodes_ok == 3
    assert not any(k.startswith("catalog") for k in s3.keys("carve")), "the catalog lives in PostgreSQL"

    def rows(uri: str, *parts: str, sort_by: str | None = None) -> pa.Table:
        t = read_rows(uri, *parts, sort_by=sort_by)
        return t.drop_columns(["source_uri"]) if "source_uri" in t.column_names else t

    assert_same_rows(rows(local, "events", sort_by="event_id"), rows(root, "events", sort_by="event_id"), "events")
    assert_same_rows(rows(local, "clusters", "v001", "assignments", sort_by="event_id"),
                     rows(root, "clusters", "v001", "assignments", sort_by="event_id"), "cluster assignments")
    lroot, croot = open_root(local), open_root(root, catalog_url=env["CARVE_CATALOG_URL"])
    assert np.array_equal(np.load(lroot.open_input(lroot.path("clusters", "v001", "centroids.npy"))),
                          np.load(croot.open_input(croot.path("clusters", "v001", "centroids.npy"))))
    assert_same_rows(rows(local, "shards", "v001"), rows(root, "shards", "v001"), "shards")
    assert [r["version"] for r in croot.catalog.versions("shards")] == [1]
