"""Trainer loop: each mode learns, exact resume, NaN stop, incompatible checkpoints, config, CLI, eval."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from carve.cli.main import main as carve_main
from carve.core.config import ConfigError
from carve.core.errors import CarveError
from carve.sim.toydata import write_toy_shards
from carve.trainer.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints, load_checkpoint
from carve.trainer.config import TrainConfig, TrainConfigError
from carve.trainer.data import EventStream
from carve.trainer.eval import evaluate, markdown_table
from carve.trainer.manifest import open_manifest
from carve.trainer.model import ModelSpec, WorldActionModel, block_causal_mask
from carve.trainer.train import TrainingDiverged, load_model, train


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_shards(tmp_path_factory.mktemp("toy") / "shards" / "v001", n_episodes=24)


def _cfg(manifest: Path, out: Path, **over: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "mode": "event",
        "max_steps": 40,
        "out_dir": str(out),
        "log_every": 1,
        "ckpt_every": 1000,
        "progress": False,
        "tensorboard": False,
        "data": {
            "manifest": str(manifest),
            "batch_size": 16,
            "max_len": 32,
            "chunk_len": 8,
            "shuffle_buffer": 32,
            "holdout_frac": 0.2,
        },
        "model": {"d_model": 32, "n_layers": 2, "n_heads": 2, "block_size": 4},
        "optim": {"warmup_steps": 5},
    }
    for k, v in over.items():
        if isinstance(v, dict):
            base[k] = {**base.get(k, {}), **v}
        else:
            base[k] = v
    return TrainConfig.from_dict(base)


@pytest.mark.parametrize("mode", ["event", "unified", "chunk"])
def test_each_mode_loss_goes_down(toy: Path, tmp_path: Path, mode: str) -> None:
    res = train(_cfg(toy, tmp_path, mode=mode, max_steps=50))
    losses = res["losses"]
    assert len(losses) == 50 and all(np.isfinite(losses))
    assert np.mean(losses[-10:]) < 0.9 * np.mean(losses[:10])
    recs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == list(range(1, 51))
    assert {"action", "lr", "muon_lr", "grad_norm"} <= set(recs[0])
    if mode == "event":
        assert "length" in recs[0] and "world" in recs[0]
    if mode == "unified":
        assert "latent" in recs[0] and "world" in recs[0]


def test_optimizer_split(toy: Path) -> None:
    spec = ModelSpec("unified", 6, 6, 16, 12, 128, 8)
    model = WorldActionModel(_cfg(toy, Path("/tmp")).model, spec)
    muon = model.muon_parameters()
    adamw = model.adamw_parameters()
    assert muon and all(p.ndim == 2 for p in muon)
    assert {id(p) for p in muon}.isdisjoint({id(p) for p in adamw})
    assert len(muon) + len(adamw) == len(list(model.parameters()))
    head_ids = {id(model.action_head.weight), id(model.lang_head.weight), id(model.vis_in.weight)}
    assert head_ids <= {id(p) for p in adamw}  # heads and input projections stay on AdamW


def test_block_causal_mask() -> None:
    m = block_causal_mask([0, 0, 0, 1, 2, 2, 3, 3])
    assert m[:3, :3].all() and not m[:3, 3:].any()  # observation block sees only itself
    assert m[3, :4].all() and not m[3, 4:].any()  # latent sees observation + itself
    assert m[4, :6].all() and not m[4, 6:].any()  # first action block: not the later one
    assert m[7].all()


def test_unified_action_loss_reaches_language_head(toy: Path) -> None:
    spec = ModelSpec("unified", 6, 6, 16, 12, 128, 8)
    model = WorldActionModel(_cfg(toy, Path("/tmp")).model, spec)
    m = open_manifest(toy)
    first = next(iter(EventStream(m, _cfg(toy, Path("/tmp")).data, view="chunk", split="all", infinite=False)))
    batch = {k: v[:4] for k, v in first.items()}
    out = model(batch)
    out["actions"].pow(2).mean().backward()  # the action output alone
    assert model.lang_head.weight.grad is not None and model.lang_head.weight.grad.abs().sum() > 0


def test_resume_is_bit_for_bit(toy: Path, tmp_path: Path) -> None:
    over = {
        "max_steps": 8,
        "ckpt_every": 4,
        "keep_last": 0,
        "data": {"num_workers": 2},
        "model": {"dropout": 0.1},
    }
    a = train(_cfg(toy, tmp_path / "a", mode="unified", **over))
    ckpt4 = tmp_path / "a" / "ckpt-00000004.pt"
    assert ckpt4.exists()
    b = train(_cfg(toy, tmp_path / "b", mode="unified", resume=str(ckpt4), **over))
    assert b["losses"] == a["losses"][4:]
    sa = load_checkpoint(tmp_path / "a" / "ckpt-00000008.pt")
    sb = load_checkpoint(tmp_path / "b" / "ckpt-00000008.pt")
    for k, v in sa["model"].items():
        assert torch.equal(v, sb["model"][k]), k
    assert sa["adamw"]["state"].keys() == sb["adamw"]["state"].keys()
    for k in sa["muon"]["state"]:
        assert torch.equal(
            sa["muon"]["state"][k]["momentum_buffer"], sb["muon"]["state"][k]["momentum_buffer"]
        )


def test_resume_auto_continues_from_latest(toy: Path, tmp_path: Path) -> None:
    train(_cfg(toy, tmp_path, max_steps=3, ckpt_every=3))
    res = train(_cfg(toy, tmp_path, max_steps=5, ckpt_every=5, resume="auto"))
    assert res["step"] == 5 and len(res["losses"]) == 2
    assert latest_checkpoint(tmp_path).name == "ckpt-00000005.pt"


def test_nan_loss_stops_and_keeps_last_good_checkpoint(toy: Path, tmp_path: Path) -> None:
    # copy the data and poison the row group that the single loader stream reaches last
    raw = json.loads(toy.read_text())
    d = tmp_path / "data"
    d.mkdir()
    for s in raw["shards"]:
        (d / s["path"]).write_bytes((toy.parent / s["path"]).read_bytes())
    (d / "manifest.json").write_text(toy.read_text())
    cfg = _cfg(
        d / "manifest.json",
        tmp_path / "run",
        max_steps=100,
        ckpt_every=2,
        data={"shuffle": False, "holdout_frac": 0.0, "batch_size": 16},
    )
    m = open_manifest(d)
    unit = m.units[EventStream(m, cfg.data)._unit_order[-1]]
    table = pq.read_table(unit.shard)
    start = sum(pq.ParquetFile(unit.shard).metadata.row_group(i).num_rows for i in range(unit.row_group))
    actions = table.column("action").to_pylist()
    for r in range(start, start + unit.rows):
        actions[r] = [[float("nan")] * len(f) for f in actions[r]]
    table = table.set_column(
        table.schema.get_field_index("action"), "action", pa.array(actions, table.schema.field("action").type)
    )
    pq.write_table(table, unit.shard, row_group_size=16)
    bad_step = m.total_rows // 16  # 1-based step whose batch is the poisoned row group
    with pytest.raises(
        TrainingDiverged, match=rf"loss became NaN/inf at step {bad_step}.*ckpt-{bad_step - 2:08d}\.pt"
    ) as ei:
        train(cfg)
    assert "last good checkpoint" in str(ei.value)
    names = [p.name for p in list_checkpoints(tmp_path / "run")]
    assert names[-1] == f"ckpt-{bad_step - 2:08d}.pt"
    model, _ = load_model(tmp_path / "run" / names[-1])
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_incompatible_checkpoint_errors(toy: Path, tmp_path: Path) -> None:
    train(_cfg(toy, tmp_path / "a", max_steps=2, ckpt_every=2))
    ck = str(tmp_path / "a" / "ckpt-00000002.pt")
    with pytest.raises(
        CheckpointError,
        match=r"ckpt-00000002\.pt: incompatible.*model\.d_model: checkpoint has 32, this run has 64",
    ):
        train(_cfg(toy, tmp_path / "b", resume=ck, model={"d_model": 64}))
    with pytest.raises(CheckpointError, match=r"mode: checkpoint has 'event', this run has 'chunk'"):
        train(_cfg(toy, tmp_path / "b", resume=ck, mode="chunk"))
    with pytest.raises(CheckpointError, match=r"data batch_size: checkpoint has 16, this run has 8"):
        train(_cfg(toy, tmp_path / "b", resume=ck, data={"batch_size": 8}))
    junk = tmp_path / "junk.pt"
    torch.save({"weights": 1}, junk)
    with pytest.raises(CheckpointError, match="not a Carve trainer checkpoint"):
        train(_cfg(toy, tmp_path / "b", resume=str(junk)))
    (tmp_path / "garbage.pt").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "garbage.pt")


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(TrainConfigError, match=r"model\.dmodel: Extra inputs are not permitted"):
        TrainConfig.from_dict({"model": {"dmodel": 3}})
    with pytest.raises(TrainConfigError, match=r"mode: Input should be 'event', 'unified' or 'chunk'"):
        TrainConfig.from_dict({"mode": "diffusion"})
    with pytest.raises(TrainConfigError, match=r"data\.batch_size: Input should be a valid integer"):
        TrainConfig.load(None, ["data.batch_size=abc"])
    with pytest.raises(TrainConfigError, match=r"data\.batch_size: Input should be greater than or equal to 1"):
        TrainConfig.load(None, ["data.batch_size=0"])
    with pytest.raises(TrainConfigError, match=r"data\.chunk_len: must be at most data\.max_len \(8\), got 16"):
        TrainConfig.load(None, ["data.max_len=8"])
    with pytest.raises(TrainConfigError, match=r"model\.d_model: must be a multiple of model\.n_heads"):
        TrainConfig.load(None, ["model.n_heads=3"])
    with pytest.raises(TrainConfigError, match=r"section\.key=value"):
        TrainConfig.load(None, ["nonsense"])
    with pytest.raises(TrainConfigError, match="does not exist"):
        TrainConfig.load(tmp_path / "nope.yaml")
    p = tmp_path / "c.yaml"
    p.write_text("root: ./x\ntrain:\n  mode: chunk\n  model:\n    d_model: 48\n")
    cfg = TrainConfig.load(p, ["model.n_heads=3", "train.max_steps=7"])
    assert (cfg.mode, cfg.model.d_model, cfg.model.n_heads, cfg.max_steps) == ("chunk", 48, 3, 7)
    # a section edited in place is re-checked by check() (train() calls it)
    cfg.data.chunk_len = 100
    with pytest.raises(TrainConfigError, match=r"data\.chunk_len"):
        cfg.check()


def test_wrong_type_in_override_names_the_key() -> None:
    with pytest.raises(TrainConfigError, match=r"invalid trainer config: optim\.lr: Input should be a valid number"):
        TrainConfig.load(None, ["optim.lr=abc"])
    with pytest.raises(TrainConfigError, match=r"tensorboard: Input should be a valid boolean"):
        TrainConfig.load(None, ["tensorboard=maybe"])
    # the same error type as the pipeline's config, and a CarveError for the CLIs
    with pytest.raises(ConfigError):
        TrainConfig.load(None, ["optim.betas=[0.9]"])
    with pytest.raises(CarveError):
        TrainConfig.load(None, ["model.d_model=big"])


def test_yaml_trainer_config_loads(tmp_path: Path) -> None:
    p = tmp_path / "train.yaml"
    p.write_text(
        "mode: unified\nmax_steps: 12\nresume: auto\n"
        "data: {batch_size: 8, max_len: 24, chunk_len: 6, holdout_frac: 0.25}\n"
        "model: {d_model: 48, n_heads: 6}\noptim: {lr: 1.0e-3, betas: [0.8, 0.9]}\n"
    )
    cfg = TrainConfig.load(p, ["optim.lr=2e-3", "data.shuffle=false"])
    assert (cfg.mode, cfg.max_steps, cfg.resume) == ("unified", 12, "auto")
    assert (cfg.data.batch_size, cfg.data.max_len, cfg.data.chunk_len, cfg.data.holdout_frac) == (8, 24, 6, 0.25)
    assert cfg.data.shuffle is False and cfg.data.num_workers == 0  # unset keys keep their defaults
    assert (cfg.model.d_model, cfg.model.n_heads, cfg.model.n_layers) == (48, 6, 4)
    assert cfg.optim.lr == 2e-3 and cfg.optim.betas == (0.8, 0.9)
    # what a checkpoint stores validates back to the same config
    assert TrainConfig.from_dict(cfg.model_dump()) == cfg
    # a checkpoint written by the dataclass trainer stored dataclasses.asdict(): that dict validates
    legacy = {
        "mode": "chunk", "max_steps": 1000, "out_dir": "./carve-train", "log_every": 10, "ckpt_every": 200,
        "keep_last": 3, "resume": None, "tensorboard": True, "progress": True, "log_event_ids": False,
        "device": "auto",
        "data": {"manifest": "", "batch_size": 32, "num_workers": 0, "shuffle": True, "shuffle_buffer": 1024,
                 "seed": 0, "holdout_frac": 0.1, "task_dim": 128, "max_len": 64, "chunk_len": 16, "norm_rows": 4096},
        "model": {"d_model": 128, "n_layers": 4, "n_heads": 4, "mlp_ratio": 4.0, "dropout": 0.0, "block_size": 8,
                  "latent_loss_weight": 1.0, "length_loss_weight": 0.1, "world_loss_weight": 0.5},
        "optim": {"lr": 0.003, "muon_lr": 0.02, "weight_decay": 0.01, "muon_weight_decay": 0.01,
                  "betas": (0.9, 0.95), "warmup_steps": 20, "min_lr_frac": 0.1, "grad_clip": 1.0},
    }
    old = TrainConfig.from_dict(legacy)
    # new since: train.seed, data.sampling_weights, model.visual_stem, model.visual_shift,
    # model.visual_cameras, model.relative_actions (their defaults fill in)
    assert old == TrainConfig(mode="chunk")
    assert old.model_dump() == {**legacy, "seed": None, "data": {**legacy["data"], "sampling_weights": True},
                                "model": {**legacy["model"], "visual_stem": "linear", "visual_shift": 0,
                                          "visual_cameras": 1, "relative_actions": 0}}
    with pytest.raises(TrainConfigError, match="invalid trainer config: mode"):
        TrainConfig.from_dict({**legacy, "mode": "diffusion"})


def test_eval_scores_each_mode(toy: Path, tmp_path: Path) -> None:
    for mode in ("event", "chunk"):
        res = train(_cfg(toy, tmp_path / mode, mode=mode, max_steps=3, ckpt_every=3))
        model, state = load_model(res["checkpoint"])
        cfg = TrainConfig.from_dict(state["config"])
        ev = evaluate(model, open_manifest(toy), cfg.data)
        assert ev["events"] > 0 and np.isfinite(ev["mse_event"])
        assert len(ev["mse_per_timestep"]) <= cfg.data.max_len
        if mode == "event":
            assert 0.0 <= ev["len_acc"] <= 1.0 and ev["future_cos_err"] is not None
        else:
            assert ev["len_acc"] is None and ev["future_cos_err"] is None
    table = markdown_table([ev])
    assert table.splitlines()[2].startswith("| chunk |")


def test_cli_train_then_eval_model(toy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "train.yaml"
    cfg.write_text(
        "max_steps: 3\nprogress: false\ntensorboard: true\n"
        "data: {batch_size: 8, max_len: 24, chunk_len: 6}\nmodel: {d_model: 16, n_layers: 1, n_heads: 2}\n"
    )
    root = toy.parent.parent.parent
    rc = carve_main(
        [
            "train",
            "--config",
            str(cfg),
            "--root",
            str(root),
            "--out-dir",
            str(tmp_path / "run"),
            "--set",
            "data.holdout_frac=0.25",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["step"] == 3 and Path(out["checkpoint"]).exists()
    assert list((tmp_path / "run" / "tb").iterdir())
    rc = carve_main(["eval-model", "--checkpoint", out["checkpoint"], "--json", str(tmp_path / "ev.json")])
    assert rc == 0
    assert "| event |" in capsys.readouterr().out
    assert json.loads((tmp_path / "ev.json").read_text())[0]["step"] == 3
    rc = carve_main(["train", "--manifest", str(tmp_path / "nowhere"), "--out-dir", str(tmp_path / "x")])
    assert rc == 2
    assert "no manifest.json" in capsys.readouterr().err
