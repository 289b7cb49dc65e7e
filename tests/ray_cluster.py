"""A real two-node Ray cluster on this machine for the tests, on loopback only.

`ray_cluster` (session) starts a head (`ray start --head --block`) and a second node
(`ray start --address=<head> --block`) as separate processes, each with its own `--temp-dir`
(two nodes on one host need their own session folders and sockets), one CPU and a small object
store each, so it fits the 2-core CI box. The second node declares one GPU (`--num-gpus=1`:
Ray takes a declared GPU without a real one and sets CUDA_VISIBLE_DEVICES for whoever reserves
it), which is what the GPU placement test schedules onto.

Network: every node is at 127.0.0.2. Ray rewrites the literal `127.0.0.1` (and `localhost`)
to the machine's routable address, so the cluster would advertise that; `127.0.0.2` is a
loopback address Ray leaves alone. Free ports are picked on loopback for the ports Ray would
otherwise take by default (GCS, Ray Client, dashboard, dashboard agent); usage stats are off.

Authentication is on, as on a real cluster: the nodes run with `RAY_AUTH_MODE=token` and a
token file of their own; `cluster.driver_env()` is the environment of a driver that has the
token file (`RAY_AUTH_TOKEN_PATH`) but does not set `RAY_AUTH_MODE`, so `carve run` must turn
token mode on itself, as it must for a user whose cluster was started by `ray start --head`.

Teardown never runs `ray stop` (it would stop every Ray on the machine, other sessions' too):
each `ray start --block` process is sent SIGTERM, which stops the processes it started; what is
left of its process group (the fixture started it in a new session) is then killed.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

NODE_IP = "127.0.0.2"
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env() -> dict[str, str]:
    """This process's environment without Ray's own settings (an embedded Ray may have set some)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] = "0"
    env["RAY_idle_worker_killing_time_threshold_ms"] = "60000"  # the `ray start` of docs/CLUSTER.md
    return env


class RayCluster:
    """A head and one more node; `address`, `nodes` (id, is_head, GPU) and the driver's env."""

    def __init__(self, base: Path):
        self.base = base
        self.token_path = base / "auth_token"
        self.token_path.write_text(secrets.token_hex(32))
        self.token_path.chmod(0o600)
        self.port = _free_port()
        self.address = f"{NODE_IP}:{self.port}"
        self.procs: list[subprocess.Popen] = []
        self.nodes: list[dict] = []

    def node_env(self) -> dict[str, str]:
        return {**_clean_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path)}

    def driver_env(self, **extra: str) -> dict[str, str]:
        """A driver that has the token file but leaves RAY_AUTH_MODE unset."""
        return {**_clean_env(), "RAY_AUTH_TOKEN_PATH": str(self.token_path), **extra}

    def _start(self, name: str, args: list[str], ready: str = "block forever") -> None:
        log = open(self.base / f"{name}.log", "w")  # noqa: SIM115 - kept open for the process's life
        cmd = [RAY, "start", "--block", f"--node-ip-address={NODE_IP}", "--num-cpus=1",
               "--object-store-memory=100000000", f"--dashboard-agent-listen-port={_free_port()}",
               "--disable-usage-stats", *args]
        p = subprocess.Popen(cmd, env=self.node_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        deadline = time.time() + 180
        while not self._ready(name, ready):
            if p.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"ray node {name} did not start:\n{(self.base / f'{name}.log').read_text()[-3000:]}")
            time.sleep(0.5)

    def _ready(self, name: str, ready: str) -> bool:
        if ready == "gcs":  # the head's GCS answers: the next node can join while the head finishes
            try:
                socket.create_connection((NODE_IP, self.port), timeout=1).close()
                return True
            except OSError:
                return False
        return ready in (self.base / f"{name}.log").read_text()

    def start(self) -> RayCluster:
        self._start("head", ready="gcs", args=["--head", f"--port={self.port}", f"--temp-dir={self.base}/h",
                             "--include-dashboard=false", f"--ray-client-server-port={_free_port()}",
                             f"--dashboard-port={_free_port()}"])
        self._start("worker", [f"--address={self.address}", f"--temp-dir={self.base}/w", "--num-gpus=1"])
        self.nodes = self._wait_for_nodes(2)
        return self

    def _wait_for_nodes(self, n: int) -> list[dict]:
        """Connect once as a driver (this also checks the token set-up) until `n` nodes are alive."""
        code = (
            "import json, sys, time, ray\n"
            "ray.init(address=sys.argv[1], log_to_driver=False, logging_level='ERROR')\n"
            "t = time.time()\n"
            "while len([x for x in ray.nodes() if x['Alive']]) < int(sys.argv[2]) and time.time() - t < 120:\n"
            "    time.sleep(0.5)\n"
            "print(json.dumps([{'id': x['NodeID'], 'head': 'node:__internal_head__' in x['Resources'],\n"
            "                   'gpus': x['Resources'].get('GPU', 0)} for x in ray.nodes() if x['Alive']]))\n"
        )
        env = {**self.driver_env(), "RAY_AUTH_MODE": "token"}
        out = subprocess.run([sys.executable, "-c", code, self.address, str(n)], env=env, capture_output=True,
                             text=True, timeout=240)
        if out.returncode:
            raise RuntimeError(f"cannot reach the test cluster: {out.stderr[-3000:]}")
        nodes = json.loads(out.stdout.strip().splitlines()[-1])
        if len(nodes) < n:
            raise RuntimeError(f"the test cluster has {len(nodes)} nodes alive, wanted {n}")
        return nodes

    @property
    def gpu_node(self) -> str:
        return next(x["id"] for x in self.nodes if x["gpus"])

    def stop(self) -> None:
        for p in reversed(self.procs):  # the worker node first, then the head
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            try:  # whatever of this node is left: its process group, which only it started
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """A 2-node Ray cluster on loopback (1 CPU each; the second node declares 1 GPU), token auth on."""
    base = Path(tempfile.mkdtemp(prefix="crc-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    cluster = RayCluster(base)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        subprocess.run(["rm", "-rf", str(base)], check=False)
