"""CI smoke run of the closed-loop study (`carve eval-sim --study`): one training seed, a few
environments and a handful of training steps, so the whole path (record demonstrations, ingest
them into event rows with captions and balance weights, train event / unified / chunk with
matched parameters, save and reload the policies, act in the simulator, bootstrap the paired
differences, write markdown + JSON) stays alive. Not a measurement."""

from __future__ import annotations

import json

import numpy as np


def test_study_smoke_writes_the_table_and_json(tmp_path) -> None:
    from carve.cli.main import main

    out = tmp_path / "paper" / "study.md"
    rc = main(["eval-sim", "--study", "--tasks", "push", "--train-episodes", "4", "--train-seeds", "1",
               "--seeds", "2", "--steps", "8", "--batch-size", "8", "--max-seconds", "3", "--workers", "1",
               "--out", str(out), "-q"])
    assert rc == 0
    md = out.read_text()
    res = json.loads(out.with_suffix(".json").read_text())
    variants = {"event", "event_captions_off", "event_balanced", "unified", "chunk", "hold"}
    assert set(res["summary"]) == variants
    for v in variants:
        s = res["summary"][v]
        assert s["env_episodes"] == 2  # the same 2 environment seeds of the one task for every variant
        assert 0.0 <= s["success_ci95"][0] <= s["success_rate"] <= s["success_ci95"][1] <= 1.0
        assert f"| {v} |" in md
    assert {"event - chunk", "event_balanced - event", "event - event_captions_off"} <= set(res["comparisons"])
    params = [res["compute"][m]["params"] for m in ("event", "unified", "chunk")]
    assert (max(params) - min(params)) / max(params) < 0.01  # matched parameter counts
    d = res["data"]
    assert d["train_episodes"] + d["heldout_episodes"] == 4 and d["heldout_episodes"] >= 1
    assert all(np.isfinite(v["action_mse"]) for v in res["offline"].values())
    pol = out.with_suffix("") / "policies"
    assert sorted(p.name for p in pol.iterdir()) == sorted(f"{v}-seed0" for v in ("event", "event_balanced",
                                                                                    "unified", "chunk"))
    assert (pol / "event-seed0" / "model.safetensors").exists()
