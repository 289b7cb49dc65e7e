"""GPU placement: steps on `cuda` reserve GPUs at their `map_batches`, CPUs otherwise.

- `build_steps` declares `num_gpus` for the embed step when `embed.device` is cuda (a share
  with `ray.embed_num_gpus`), one CPU for every other step; vLLM captioning reserves its GPUs
  in Ray Data LLM's own engine actors, so the caption worker holds none.
- On the 2-node test cluster, whose second node declares one GPU (no real one: Ray accepts a
  declared GPU resource), a test double of the embed step reports what Ray gave its worker: it
  lands on the GPU node with the GPU id, CUDA_VISIBLE_DEVICES and the fractional share it
  asked for, and imports the carve code the driver shipped. Nothing runs torch on cuda.
- A run that asks for cuda on a Ray without GPUs is refused before any work.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from carve.core.config import CarveConfig
from carve.core.errors import CarveError
from carve.pipeline.ray_env import check_cluster, gpu_request, gpus_needed
from carve.pipeline.run import build_steps, run_pipeline
from carve.storage.root import open_root


def _cfg(tmp_path: Path, **sections) -> CarveConfig:
    return CarveConfig().with_overrides({"root": str(tmp_path / "root"), **sections})


def _resources(cfg: CarveConfig, root) -> dict[str, dict[str, float]]:
    return {s.name: s.resources() for s in build_steps(cfg, root, "b")}


def test_steps_declare_gpus_on_cuda_and_cpus_otherwise(tmp_path: Path):
    root = open_root(tmp_path / "root")
    cpu = _resources(_cfg(tmp_path), root)
    assert cpu == {name: {"num_cpus": 1.0} for name in ("decode_segment", "caption", "embed", "write")}
    cuda = _resources(_cfg(tmp_path, embed={"device": "cuda"}), root)
    assert cuda["embed"] == {"num_gpus": 1.0}
    assert all(cuda[n] == {"num_cpus": 1.0} for n in ("decode_segment", "caption", "write"))
    half = _cfg(tmp_path, embed={"device": "cuda:0"}, ray={"embed_num_gpus": 0.5})
    assert _resources(half, root)["embed"] == {"num_gpus": 0.5}
    vllm = _cfg(tmp_path, caption={"backend": "vllm", "model": "m"})
    assert gpu_request(vllm) == {} and gpus_needed(vllm) == {"caption.backend=vllm": 1.0}


def test_cuda_without_a_gpu_is_refused_before_any_work(ray_local, tmp_path: Path):
    cfg = _cfg(tmp_path, source={"uri": str(tmp_path / "nowhere"), "format": "folder"}, embed={"device": "cuda"})
    with pytest.raises(CarveError, match=r"embed\.device=cuda needs a GPU but the Ray cluster has none \(1 node"):
        run_pipeline(cfg)
    assert not (tmp_path / "root" / "events").exists()
    vllm = _cfg(tmp_path, caption={"backend": "vllm", "model": "m"})
    with pytest.raises(CarveError, match=r"caption\.backend=vllm needs a GPU but the Ray cluster has none"):
        check_cluster(vllm, open_root(tmp_path / "root"))


# A driver on the cluster: the embed step's real StepSpec (from build_steps) with a test double
# in place of Embed that writes down what Ray gave its worker.
DRIVER = r'''
import hashlib, json, os, sys
import ray
import carve
from carve.core.config import CarveConfig
from carve.core.errors import CarveError
from carve.pipeline.executor import RayExecutor, StepSpec
from carve.pipeline.ray_env import check_cluster, ensure_ray
from carve.pipeline.run import build_steps
from carve.pipeline.step import PipelineStep
from carve.storage.root import open_root

address, root_dir, out_dir = sys.argv[1:4]


class GpuProbe(PipelineStep):
    """Stands in for the embed step: reports its worker's node, GPUs and code; touches no GPU."""

    name = "embed"

    def __init__(self, out: str):
        import carve.pipeline.ray_env as shipped

        ctx = ray.get_runtime_context()
        report = {
            "node": ctx.get_node_id(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "resources": ctx.get_assigned_resources(), "carve": carve.__file__, "cwd": os.getcwd(),
            "ray_env_sha": hashlib.sha256(open(shipped.__file__, "rb").read()).hexdigest(),
        }
        with open(os.path.join(out, f"{os.getpid()}.json"), "w") as f:
            json.dump(report, f)

    def process(self, events):
        return events

    def __call__(self, batch):
        return batch


cfg = CarveConfig().with_overrides({
    "root": root_dir, "source": {"uri": root_dir}, "embed": {"device": "cuda"},
    "ray": {"address": address, "embed_num_gpus": 0.5, "allow_shared_local_root": True, "progress": False},
})
root = open_root(root_dir)
ensure_ray(cfg.ray)
check_cluster(cfg, root)  # the cluster has a GPU: accepted
embed = next(s for s in build_steps(cfg, root, "b") if s.name == "embed")
probe = StepSpec(GpuProbe, {"out": out_dir}, concurrency=embed.concurrency, num_cpus=embed.num_cpus,
                 num_gpus=embed.num_gpus)
rows = sum(b.num_rows for b in RayExecutor(cfg.ray).run([{"x": i} for i in range(3)], [probe]))
try:
    check_cluster(cfg.with_overrides({"ray": {"embed_num_gpus": 2}}), root)
    too_big = ""
except CarveError as e:
    too_big = str(e)
print(json.dumps({"rows": rows, "declared": embed.resources(), "too_big": too_big}))
'''


@pytest.mark.timeout(300)
def test_the_embed_worker_gets_the_declared_gpu(ray_cluster, tmp_path: Path):
    out = tmp_path / "probe"
    out.mkdir()
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    res = subprocess.run([sys.executable, str(script), ray_cluster.address, str(tmp_path / "root"), str(out)],
                         env=ray_cluster.driver_env(), capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-4000:]
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert result["rows"] == 3 and result["declared"] == {"num_gpus": 0.5}
    assert "asks for 2 GPUs per worker but no node of the Ray cluster has more than 1" in result["too_big"]

    reports = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert len(reports) == 1  # embed_concurrency=1: one worker
    r = reports[0]
    assert r["node"] == ray_cluster.gpu_node  # the only node with a GPU
    assert r["gpu_ids"] == ["0"] and r["cuda_visible_devices"] == "0"
    assert r["resources"].get("GPU") == 0.5
    # it ran the code the driver shipped (runtime_env py_modules), not the nodes' own install
    assert "runtime_resources" in r["carve"], r
    local = Path(__file__).resolve().parents[1] / "src" / "carve" / "pipeline" / "ray_env.py"
    assert r["ray_env_sha"] == hashlib.sha256(local.read_bytes()).hexdigest()
