"""CI smoke run of the closed-loop study (`carve eval-sim --study`): one training seed, a few
environments and a handful of training steps, so the whole path (record demonstrations, ingest
them into event rows with captions, split, then balance weights from the training episodes, the
chunk sweep on validation seeds, train event / unified / the best chunk with matched
parameters, save and reload the policies, act in the simulator under each hold, bootstrap the
paired differences over both levels, write markdown + JSON) stays alive. Not a measurement;
and a second run reuses every cache only while the code, data and weights are the same."""

from __future__ import annotations

import json

import numpy as np

ARGS = ["eval-sim", "--study", "--tasks", "push", "--train-episodes", "4", "--train-seeds", "1", "--seeds", "2",
        "--steps", "8", "--batch-size", "8", "--max-seconds", "3", "--workers", "1", "--chunk-lens", "4", "8",
        "--val-train-seeds", "1", "--val-seeds", "1", "--hold-ablation-seeds", "1", "--matched-seeds", "1",
        "--plateau-every", "4", "--plateau-max-steps", "24", "-q"]


def test_study_smoke_writes_the_table_and_json(tmp_path) -> None:
    from carve.cli.main import main

    out = tmp_path / "paper" / "study.md"
    assert main([*ARGS, "--out", str(out)]) == 0
    md = out.read_text()
    res = json.loads(out.with_suffix(".json").read_text())
    variants = {"event", "event_captions_off", "event_balanced", "unified", "chunk_best", "hold",
                "event@linear", "event@zoh", "chunk_best@linear", "chunk_best@zoh",
                "event@matched", "chunk_best@matched", "unified@matched"}
    assert set(res["summary"]) == variants
    for v in variants:
        s = res["summary"][v]
        assert s["env_episodes"] == 2  # the same 2 environment seeds of the one task for every variant
        assert 0.0 <= s["success_ci95"][0] <= s["success_rate"] <= s["success_ci95"][1] <= 1.0
        assert f"| {v} |" in md
    # the sweep: lengths 4 and 8 x executed 4 / half / all without repeats, + ensembling
    assert sorted(res["sweep"]) == sorted(["chunk-H4-x4", "chunk-H4-x2", "chunk-H4-ens", "chunk-H8-x4", "chunk-H8-x8",
                                           "chunk-H8-ens"])
    best = max(res["sweep"].values(), key=lambda v: (v["success_rate"], v["progress_mean"]))
    assert res["chunk_best"]["name"] == best["name"]
    assert res["primary"] == "event - chunk_best" and res["comparisons"]["event - chunk_best"]["role"] == "primary"
    assert md.index("Primary contrast") < md.index("| variant |")  # named before the numbers
    explore = [k for k, v in res["comparisons"].items() if v["role"] == "exploratory"]
    assert {"event_balanced - event", "event - event_captions_off", "event@zoh - event"} <= set(explore)
    assert all("p_holm" in res["comparisons"][k]["success"] for k in explore)
    params = [res["compute"][m]["params"] for m in ("event", "unified", "chunk_best")]
    assert (max(params) - min(params)) / max(params) < 0.01  # matched parameter counts
    d = res["data"]
    assert d["train_episodes"] + d["heldout_episodes"] == 4 and d["heldout_episodes"] >= 1
    assert all(np.isfinite(v["action_mse"]) for v in res["offline"].values())
    cap = res["caption_check"]  # the captions checked against the simulator's phases before any contrast
    assert cap["events"] >= 4 and 0.0 <= cap["class_accuracy"] <= 1.0 and cap["gate"] == 0.95
    assert md.index("Captions checked first") < md.index("| variant |")
    assert res["caption_accuracy"] == cap["class_accuracy"]
    # the equal-budget ablation: batch sizes give every mode event mode's supervised actions per step
    m = res["matched"]
    assert set(m) == {"event", "chunk_best", "unified"} and m["event"]["batch_size"] == 8
    for v in m.values():
        assert abs(v["batch_size"] * v["actions_per_sample"] - m["event"]["budget"]) <= v["actions_per_sample"] / 2 + 1e-9
        (r,) = v["runs"]
        assert r["stopped"] in ("plateau", "max_steps") and 4 <= r["best_step"] <= r["steps"] <= 24
        assert r["stopped"] == "max_steps" or r["steps"] >= 4 * 4  # a stop needs the best check and 3 stale ones
    assert "event@matched - chunk_best@matched" in explore and "Equal budget, trained to a plateau" in md
    assert not any(k.startswith("matched-") for k in res["offline"])  # stopped on the held-out loss: no MSE
    pol = out.with_suffix("") / "policies"
    assert sorted(p.name for p in pol.iterdir()) == sorted(
        [f"{v}-seed0" for v in ("event", "event_balanced", "unified", "chunk_best")]
        + [f"matched-{v}-seed0" for v in ("event", "chunk_best", "unified")]
        + ["val-chunk-H4-seed100", "val-chunk-H8-seed100"])
    assert (pol / "event-seed0" / "model.safetensors").exists()
    # the main study is on rendered observations: every mode's policy sees the one image encoder, no object poses
    assert res["config"]["observation"] == "pixels" and "rendered observations" in md.splitlines()[0]
    for name in ("event-seed0", "unified-seed0", "chunk_best-seed0"):
        pcfg = json.loads((pol / name / "config.json").read_text())
        assert pcfg["policy"]["visual"] == "pixels" and not pcfg["policy"]["privileged_state"], pcfg
        assert pcfg["model"]["visual_stem"] == "conv" and pcfg["spec"]["visual_dim"] == 3 * 32 * 32
        assert pcfg["spec"]["state_dim"] == 8  # 7 joints + gripper: no object pose

    # a second run: everything is cached; then new weights for one policy invalidate its episodes only
    ep = pol / "event-seed0" / "study_eval" / "event" / f"push-{res['episodes'][0]['seed']}.json"
    before = {p: p.stat().st_mtime_ns for p in (pol / "event-seed0" / "study_eval").rglob("*.json")}
    assert main([*ARGS, "--out", str(out)]) == 0
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert json.loads(out.with_suffix(".json").read_text())["summary"] == res["summary"]
    weights = pol / "event-seed0" / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(blob))
    cached = json.loads(ep.read_text())["key"]
    from carve.sim.study import _eval_job

    job = {"policy": str(pol / "event-seed0"), "variant": "event", "train_seed": 0, "tasks": ["push"],
           "seeds": [res["episodes"][0]["seed"]], "fps": 12, "max_seconds": 3.0, "hold": "foh", "size": 64}
    _eval_job(job)
    assert json.loads(ep.read_text())["key"] != cached  # re-evaluated under the new weights' key


def test_study_captions_name_the_simulators_phases(tmp_path) -> None:
    """Issue 20: the study's captions (its own recording, replayed to success, captioned by the pipeline's
    captioner) against the simulator's phase schedule, both task types. Before the fix push events were
    "lift" / "move" (the study built views without state names) and a push cut at success was "retreat"."""
    from carve.sim.study import CAPTION_GATE, StudyConfig, _recorded_rows, caption_check

    cfg = StudyConfig(tasks=["pick_place", "push"], train_episodes=4)
    rows, _, truth = _recorded_rows(cfg, tmp_path)
    assert [t["task_type"] for t in truth] == ["pick_place", "push", "pick_place", "push"]
    check = caption_check(rows, truth)
    assert check["passed"] and check["class_accuracy"] >= CAPTION_GATE, check
    assert set(check["per_task"]) == {"pick_place", "push"}
    assert check["confusion"]["push"] == {"push": check["confusion"]["push"]["push"]}  # every push is a push
    pushes = [r["caption"] for r in rows if r["task_type"] == "push"]
    assert not any(c.startswith(("lift", "move", "retreat")) for c in pushes), pushes


def test_study_json_carries_the_headline_fields() -> None:
    """The flat fields of study.json (issue 20): every contrast with its metric and CI, the chunk sweep,
    the seed and episode counts and the code hash, built from the run's nested results."""
    from carve.sim.study import headline

    ci = {"diff": -0.1, "ci95": [-0.2, 0.0], "p": 0.04}
    res = {"comparisons": {"event - chunk_best": {"role": "primary", "success": ci, "progress": ci},
                           "event - unified": {"role": "exploratory", "success": {**ci, "p_holm": 0.08},
                                               "progress": ci}},
           "sweep": {"chunk-H8-x4": {"chunk_len": 8, "n_action_steps": 4, "temporal_ensemble": None, "success_rate": 0.2,
                                     "progress_mean": 30.0, "success_ci95": [0.1, 0.3]},
                     "chunk-H8-ens": {"chunk_len": 8, "n_action_steps": None, "temporal_ensemble": 0.01,
                                      "success_rate": 0.1, "progress_mean": 20.0}},
           "chunk_best": {"name": "chunk-H8-x4"}, "train_seeds": [0, 1, 2], "code": "abc",
           "summary": {"event": {"env_episodes": 100}}}
    h = headline(res)
    assert [c["primary"] for c in h["contrasts"]] == [True, False, False, False]
    assert h["contrasts"][2] == {"name": "event - unified", "metric": "success", "primary": False, "diff": -0.1,
                                 "ci_low": -0.2, "ci_high": 0.0, "p": 0.04, "p_holm": 0.08}
    assert [(s["n_exec"], s["ensembling"], s["chosen"], s["ci_low"]) for s in h["chunk_sweep"]] == [
        (4, None, True, 0.1), (8, 0.01, False, None)]
    assert (h["n_train_seeds"], h["n_env_episodes"], h["code_hash"]) == (3, 100, "abc")


def test_study_retrains_its_policies_when_the_code_changes(tmp_path, monkeypatch) -> None:
    """Issue 20: a trained policy is reused only under the code that trained it (its cache key carries
    `study_cache.code_hash`), as the evaluated episodes are; a changed trainer retrains."""
    import carve.sim.study_cache as sc
    from carve.cli.main import main

    args = [*ARGS[:ARGS.index("--chunk-lens")], "--chunk-lens", "4", *ARGS[ARGS.index("--val-train-seeds"):],
            "--matched-seeds", "0", "--out", str(tmp_path / "study.md")]
    assert main(args) == 0
    trained = tmp_path / "study" / "policies" / "event-seed0" / "study_train.json"
    first = (trained.stat().st_mtime_ns, json.loads(trained.read_text())["key"])
    assert main(args) == 0  # the same code: the policy is reused
    assert (trained.stat().st_mtime_ns, json.loads(trained.read_text())["key"]) == first
    monkeypatch.setattr(sc, "code_hash", lambda: "0123456789abcdef")  # as if the trainer's source had changed
    assert main(args) == 0
    assert trained.stat().st_mtime_ns != first[0] and json.loads(trained.read_text())["key"] != first[1]
