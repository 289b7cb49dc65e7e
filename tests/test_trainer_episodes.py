"""Fair baselines (`carve.sim.study_episodes`, `carve.sim.study_fit`): whole episodes rebuilt from event
rows, the episode-level held-out split, training-only normalisation, chunks sampled across event
boundaries with the current observation, caption dropout, balance weights, a data seed separate
from the training seed, matched parameter counts, and the equal-budget ablation's parts (supervised
actions per sample, training to a plateau of the validation loss)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from carve.sim.study_episodes import (
    Sampler,
    TextCache,
    episodes_from_rows,
    event_weights,
    norm_stats,
    split_episodes,
)
from carve.sim.study_fit import (
    Plateau,
    actions_per_sample,
    fit,
    matched_config,
    n_params,
    offline_metrics,
    spec_for,
    tokens_per_sample,
    val_loss,
)
from carve.trainer.config import ModelConfig
from carve.trainer.policy import PolicySettings, make_text_encoder

TASK = "put the red cube in the tray"


def rows_for(ep: str, bounds: list[int], weights: list[float] | None = None, env: bool = False) -> list[dict]:
    """Event rows of one episode whose state/action at frame t are (t, ...): frames are traceable."""
    out = []
    for k, (a, b) in enumerate(itertools.pairwise(bounds)):
        t = np.arange(a, b, dtype=np.float32)[:, None]
        r = {"event_id": f"{ep}-{k}", "episode_id": ep, "task": TASK, "start_frame": a, "end_frame": b,
             "state": np.concatenate([t, t * 0 + 1], 1).tolist(), "action": np.concatenate([t, -t], 1).tolist(),
             "caption": f"phase {k}", "weight": (weights or [1.0] * (len(bounds) - 1))[k]}
        if env:
            r["env_state"] = (t * 10).tolist()
        out.append(r)
    return out


def text() -> TextCache:
    return TextCache(make_text_encoder(PolicySettings(text="hashed"), 16))


def test_episodes_are_rebuilt_from_rows_in_order_without_repeats() -> None:
    rows = rows_for("b", [0, 5, 9, 20]) + rows_for("a", [0, 7, 12], env=True)
    rows = rows[::-1] + rows[:2]  # shuffled, and two events repeated (a balanced shard)
    eps = episodes_from_rows(rows)
    assert [e.episode_id for e in eps] == ["a", "b"]
    b = eps[1]
    assert b.length == 20 and b.starts.tolist() == [0, 5, 9] and b.ends.tolist() == [5, 9, 20]
    np.testing.assert_array_equal(b.action[:, 0], np.arange(20))
    assert b.captions == ["phase 0", "phase 1", "phase 2"]
    with pytest.raises(ValueError, match="env_state"):
        episodes_from_rows(rows, privileged=True)
    a = episodes_from_rows(rows_for("a", [0, 7, 12], env=True), privileged=True)[0]
    assert a.state.shape == (12, 3)
    np.testing.assert_array_equal(a.state[:, 2], np.arange(12) * 10)


def test_held_out_split_is_by_episode_and_by_its_own_seed() -> None:
    ids = [f"ep{i}" for i in range(40)] * 3  # repeats do not change the split
    tr, ho = split_episodes(ids, 0.25, seed=1)
    assert len(ho) == 10 and len(tr) == 30 and not set(tr) & set(ho)
    assert split_episodes(ids, 0.25, seed=1) == (tr, ho)
    assert split_episodes(ids, 0.25, seed=2)[1] != ho
    assert split_episodes(ids, 0.0, seed=1) == (sorted(set(ids)), [])


def test_normalisation_comes_from_the_given_training_episodes_only() -> None:
    eps = episodes_from_rows(rows_for("a", [0, 10]) + rows_for("b", [0, 30]))
    st = norm_stats(eps[:1])
    assert st.action_mean[0] == pytest.approx(4.5)  # frames 0..9 of "a" only
    assert norm_stats(eps).action_mean[0] != pytest.approx(4.5)


def test_chunks_cross_event_boundaries_with_the_observation_at_their_start() -> None:
    eps = episodes_from_rows(rows_for("a", [0, 4, 8, 12, 30]))
    s = Sampler(eps, "chunk", text(), chunk_len=6, data_seed=0)
    crossed, starts = 0, set()
    for _ in range(300):
        x = s.sample()
        t = int(x["state"][0])
        starts.add(t)
        n = int(x["length"])
        np.testing.assert_array_equal(x["actions"][:n, 0], np.arange(t, t + n))  # the episode's own actions
        assert n == min(6, 30 - t) and x["mask"].sum() == n  # padded only at the episode's end
        crossed += any(t < b < t + n for b in (4, 8, 12))
    assert crossed > 50
    assert starts == set(range(30))  # every frame is a decision point


def test_event_samples_and_length_aware_caption_dropout() -> None:
    eps = episodes_from_rows(rows_for("a", [0, 4, 10, 30]))
    tc = text()
    s = Sampler(eps, "event", tc, max_len=16, caption_dropout=0.5, data_seed=3)
    dropped, n = 0, 400
    for _ in range(n):
        x = s.sample()
        t = int(x["state"][0])
        assert t in (0, 4, 10)  # event starts
        length = {0: 4, 4: 6, 10: 16}[t]
        assert int(x["length"]) == length  # kept whether or not the caption was dropped
        if np.array_equal(x["text"], tc(TASK)):
            dropped += 1
        else:
            k = {0: 0, 4: 1, 10: 2}[t]
            np.testing.assert_array_equal(x["text"], tc(f"phase {k}"))
    assert 0.4 < dropped / n < 0.6


def test_balance_weights_are_honoured_and_uniform_is_the_unbalanced_baseline() -> None:
    eps = episodes_from_rows(rows_for("a", [0, 5, 10], weights=[0.0, 1.0]))
    assert event_weights(eps, "uniform").tolist() == [0.5, 0.5]
    s = Sampler(eps, "event", text(), max_len=8, weights="balanced", data_seed=0)
    assert {int(s.sample()["state"][0]) for _ in range(50)} == {5}
    hook = Sampler(eps, "event", text(), max_len=8, weights=lambda e: np.array([1.0, 0.0]), data_seed=0)
    assert {int(hook.sample()["state"][0]) for _ in range(50)} == {0}
    three = episodes_from_rows(rows_for("b", [0, 3, 6, 9]))
    u = Sampler(three, "event", text(), max_len=8, data_seed=4)  # uniform: each epoch visits every event once
    for _ in range(5):
        assert sorted(int(u.sample()["state"][0]) for _ in range(3)) == [0, 3, 6]


def test_data_seed_fixes_the_batches_whatever_the_training_seed() -> None:
    eps = episodes_from_rows(rows_for("a", [0, 5, 10, 20]))
    b1 = Sampler(eps, "chunk", text(), chunk_len=4, data_seed=7).batch(16)
    torch.manual_seed(123)
    b2 = Sampler(eps, "chunk", text(), chunk_len=4, data_seed=7).batch(16)
    assert torch.equal(b1["actions"], b2["actions"])
    assert not torch.equal(b1["actions"], Sampler(eps, "chunk", text(), chunk_len=4, data_seed=8).batch(16)["actions"])


def test_modes_get_matched_parameter_counts_and_report_compute() -> None:
    specs = {m: spec_for(m, state_dim=10, action_dim=8, visual_dim=0, text_dim=16, max_len=32, chunk_len=8)
             for m in ("event", "unified", "chunk")}
    base = ModelConfig(d_model=32, n_layers=2, n_heads=4)
    cfgs = matched_config(base, specs)
    ref = n_params(cfgs["event"], specs["event"])
    for m in ("unified", "chunk"):
        assert abs(n_params(cfgs[m], specs[m]) - ref) / ref < 0.01
    assert n_params(base, specs["chunk"]) < 0.97 * ref  # unmatched, chunk would be smaller
    assert tokens_per_sample(specs["event"]) == 3 + 1 + 32 and tokens_per_sample(specs["chunk"]) == 3 + 8


def test_fit_trains_and_offline_metrics_are_per_episode() -> None:
    torch.set_num_threads(1)
    eps = episodes_from_rows(rows_for("a", [0, 6, 12, 20]) + rows_for("b", [0, 8, 16]))
    tc = text()
    spec = spec_for("chunk", state_dim=2, action_dim=2, visual_dim=0, text_dim=16, max_len=8, chunk_len=4)
    s = Sampler(eps, "chunk", tc, chunk_len=4, data_seed=0)
    cfg = ModelConfig(d_model=16, n_layers=1, n_heads=2, block_size=2)
    m, comp = fit("chunk", s, cfg, spec, norm_stats(eps), steps=60, batch_size=16, train_seed=0)
    assert comp["tokens_per_step"] == 16 * (3 + 4) and 0 < comp["actions_per_step"] <= 16 * 4
    m2, _ = fit("chunk", Sampler(eps, "chunk", tc, chunk_len=4, data_seed=0), cfg, spec, norm_stats(eps),
                steps=60, batch_size=16, train_seed=0)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values(), strict=True))
    off = offline_metrics(m, eps, tc)
    assert [o["episode_id"] for o in off] == ["a", "b"] and [o["actions"] for o in off] == [20, 16]
    untrained = fit("chunk", s, cfg, spec, norm_stats(eps), steps=1, batch_size=16, train_seed=0)[0]
    assert np.mean([o["action_mse"] for o in off]) < np.mean([o["action_mse"] for o in offline_metrics(
        untrained, eps, tc)])


def test_ingest_writes_per_step_observation_columns_only_when_asked() -> None:
    from carve.core.config import SegmentConfig
    from carve.ingest.events import ENV_STATE_FEATURE, episode_events
    from carve.ingest.sources.base import Episode, EpisodeRef
    from carve.ingest.visual import image_descriptors
    from carve.sim.tasks import run_episode

    sim = run_episode("push", 3, fps=12, render=True, size=32)
    cam = sim.cameras[0]
    video = sim.frames[cam]
    env = np.arange(sim.length * 3, dtype=np.float32).reshape(sim.length, 3)

    def episode(extras: dict) -> Episode:
        return Episode(ref=EpisodeRef("mem://x", "sim", "x", 0), fps=12.0, task=sim.task, state=sim.state,
                       action=sim.action, timestamps=np.arange(sim.length) / 12, state_names=sim.state_names,
                       action_names=sim.action_names, cameras=[cam], extras=extras,
                       _frame_fn=lambda c, idx: video if idx is None else video[list(idx)])

    plain = episode_events(episode({}), SegmentConfig(), None)
    assert all("env_state" not in r and "obs_visual" not in r for r in plain)
    rows = episode_events(episode({ENV_STATE_FEATURE: env}), SegmentConfig(), None, obs_stride=4)
    same = ("event_id", "start_frame", "end_frame", "state", "action", "keyframes")
    assert [[r[k] for k in same] for r in rows] == [[r[k] for k in same] for r in plain]  # the same events
    for r in rows:
        a, b = r["start_frame"], r["end_frame"]
        np.testing.assert_array_equal(np.asarray(r["env_state"]), env[a:b])
        assert r["obs_stride"] == 4 and len(r["obs_visual"]) == len(range(a, b, 4))
    r = rows[1]
    np.testing.assert_allclose(r["obs_visual"][1], image_descriptors([video[r["start_frame"] + 4]])[0], atol=1e-6)


def test_actions_per_sample_counts_each_modes_supervised_positions() -> None:
    eps = episodes_from_rows(rows_for("a", [0, 6, 12, 20]) + rows_for("b", [0, 8, 16]))
    tc = text()
    # event: one sample per event, its length capped at max_len 8: (6 + 6 + 8 + 8 + 8) / 5
    assert actions_per_sample(Sampler(eps, "event", tc, max_len=8, data_seed=0), n=2000) == pytest.approx(7.2)
    # chunk of 4 from a uniform step of an event: 4 except in an episode's last 3 steps (3, 2, 1), which
    # lie in the last event of each episode (8 steps: 26 / 8), so (4 + 4 + 3.25 + 4 + 3.25) / 5
    got = actions_per_sample(Sampler(eps, "chunk", tc, chunk_len=4, data_seed=0), n=6000)
    assert got == pytest.approx(3.7, abs=0.05)


def _plateau_setup() -> tuple:
    torch.set_num_threads(1)
    eps = episodes_from_rows(rows_for("a", [0, 6, 12, 20]) + rows_for("b", [0, 8, 16]))
    tc = text()
    spec = spec_for("chunk", state_dim=2, action_dim=2, visual_dim=0, text_dim=16, max_len=8, chunk_len=4)
    cfg = ModelConfig(d_model=16, n_layers=1, n_heads=2, block_size=2)
    val = Sampler(eps, "chunk", tc, chunk_len=4, data_seed=99)
    batches = [val.batch(16) for _ in range(2)]
    return eps, tc, spec, cfg, batches


def test_fit_to_a_plateau_stops_after_stale_checks_and_keeps_the_best_weights() -> None:
    eps, tc, spec, cfg, batches = _plateau_setup()
    # no check can gain 99%: the first sets the best, the next two are stale, so training stops at step 15
    until = Plateau(batches, every=5, patience=2, min_rel=0.99, max_steps=100)
    m, comp = fit("chunk", Sampler(eps, "chunk", tc, chunk_len=4, data_seed=0), cfg, spec, norm_stats(eps),
                  batch_size=16, train_seed=0, plateau=until)
    assert comp["stopped"] == "plateau" and comp["steps"] == 15
    assert [s for s, _ in comp["val_curve"]] == [5, 10, 15]
    lowest = min(comp["val_curve"], key=lambda c: c[1])
    assert (comp["best_step"], comp["best_val_loss"]) == lowest
    assert val_loss(m, batches) == pytest.approx(lowest[1], rel=1e-6)  # the best check's weights came back
    # with a patience it never reaches, it trains to the limit; the weights kept are the lowest check's
    m2, comp2 = fit("chunk", Sampler(eps, "chunk", tc, chunk_len=4, data_seed=0), cfg, spec, norm_stats(eps),
                    batch_size=16, train_seed=0, plateau=Plateau(batches, every=5, patience=50, max_steps=40))
    assert comp2["stopped"] == "max_steps" and comp2["steps"] == 40 and len(comp2["val_curve"]) == 8
    assert comp2["best_val_loss"] == min(v for _, v in comp2["val_curve"])
    assert val_loss(m2, batches) == pytest.approx(comp2["best_val_loss"], rel=1e-6)
