"""The embedded Ray keeps its idle task workers (`ray.keep_idle_workers_s`) instead of replacing them.

Ray kills a task worker idle for a second while its node runs more workers than CPUs, and the
next task then waits for a new process that imports Carve again. Carve's plan on Ray runs more
workers than CPUs, so a decode worker waiting for its next block was killed and replaced (eight
decode workers one after another in a 1,000-episode run on 2 CPUs). Here tasks of a fractional
CPU run three at a time on 2 CPUs, the workers wait 2.5 s, and the three processes must all be
alive then (which idle worker Ray hands the next task to is its own choice, so the test asks
whether they live, not whether the next tasks pick them). The control starts Ray as before
(`keep_idle_workers_s=0`, i.e. Ray's 1 s and less) in a child process and sees at least one of
them gone, which is what the test guards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from carve.core.config import RayConfig
from carve.pipeline.ray_env import embedded_system_config

_ROUNDS = """
import os, time
import ray

@ray.remote(num_cpus=0.25)  # three fit beside a leftover actor of an earlier test
def pid_after(s):
    time.sleep(s)
    return os.getpid()

def three():
    return sorted(ray.get([pid_after.remote(1.0) for _ in range(3)]))

def alive(pid):  # a process that has exited (a zombie included) is not alive
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False

first = three()
time.sleep(2.5)  # idle: longer than Ray's own threshold and its 0.2 s sweep
living = [p for p in first if alive(p)]
"""


def test_the_setting_is_rays_idle_threshold_in_ms():
    assert embedded_system_config(RayConfig(keep_idle_workers_s=60)) == {"idle_worker_killing_time_threshold_ms": 60000}
    assert embedded_system_config(RayConfig(keep_idle_workers_s=0.25)) == {"idle_worker_killing_time_threshold_ms": 250}


@pytest.mark.timeout(180)
def test_idle_workers_are_still_alive_after_a_wait(ray_local):
    scope: dict = {}
    exec(_ROUNDS, scope)  # the rounds above, on the shared embedded Ray of the suite
    assert len(set(scope["first"])) == 3, scope["first"]
    assert scope["living"] == scope["first"]


@pytest.mark.timeout(180)
def test_control_with_rays_own_threshold_a_worker_is_killed(tmp_path):
    script = textwrap.dedent("""
        import json
        from carve.core.config import RayConfig
        from carve.pipeline.ray_env import ensure_ray
        ensure_ray(RayConfig(num_cpus=2, object_store_memory_mb=128, progress=False, keep_idle_workers_s=0))
    """) + _ROUNDS + "\nprint(json.dumps({'first': first, 'living': living}))\nray.shutdown()\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=170, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(set(got["first"])) == 3, got
    assert len(got["living"]) < 3, got
