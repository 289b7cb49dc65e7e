"""Segmentation rules on constructed signals: gripper transitions, pauses, visual change
points, hysteresis/debounce, min/max length and the tiling of [0, T)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from carve.core.config import SegmentConfig
from carve.ingest.segment import (
    Segment,
    find_gripper_dim,
    gripper_opening,
    segment_episode,
)
from carve.ingest.visual import frame_descriptors, image_descriptors

NAMES = [*(f"joint_{i}" for i in range(7)), "gripper_opening"]


def min_jerk_steps(n: int, dist: float) -> np.ndarray:
    s = np.arange(1, n + 1) / n
    pos = dist * (10 * s**3 - 15 * s**4 + 6 * s**5)
    return np.diff(np.concatenate([[0.0], pos]))


def build(plan: list[tuple[str, int]], seed: int = 0, jitter: float = 2e-4) -> tuple[np.ndarray, list[int]]:
    """State (T, 8) from a plan of ("move", n) / ("still", n) / ("close", n) / ("open", n)
    steps; returns it with the frames where each step after the first begins."""
    rng = np.random.default_rng(seed)
    q = np.zeros(7)
    g = 0.08
    rows, starts = [], []
    direction = rng.normal(size=7)
    direction /= np.linalg.norm(direction)
    for kind, n in plan:
        starts.append(len(rows))
        steps = min_jerk_steps(n, 0.5) if kind == "move" else np.zeros(n)
        gsteps = {"close": -min_jerk_steps(n, 0.04), "open": min_jerk_steps(n, 0.04)}.get(kind, np.zeros(n))
        if kind == "move":
            direction = rng.normal(size=7)
            direction /= np.linalg.norm(direction)
        for k in range(n):
            rows.append([*(q + rng.normal(0, jitter, 7)), g])
            q = q + direction * steps[k]
            g = g + gsteps[k]
    return np.asarray(rows, dtype=np.float32), starts[1:]


def action_of(state: np.ndarray) -> np.ndarray:
    return np.concatenate([state[1:], state[-1:]])


def check_tiling(segs: list[Segment], n: int) -> None:
    assert segs[0].start == 0 and segs[-1].end == n
    assert all(a.end == b.start for a, b in itertools.pairwise(segs))
    assert all(s.end > s.start for s in segs)
    assert segs[0].start_reason == "episode_start" and segs[-1].end_reason == "episode_end"
    assert all(a.end_reason == b.start_reason for a, b in itertools.pairwise(segs))


def test_find_gripper_dim_by_name_config_and_absent() -> None:
    cfg = SegmentConfig()
    assert find_gripper_dim(NAMES, cfg) == 7
    assert find_gripper_dim(["x", "Left_Gripper_pos", "y"], cfg) == 1
    assert find_gripper_dim(["a", "b"], cfg) is None
    assert find_gripper_dim(None, cfg) is None
    assert find_gripper_dim(["a", "b"], SegmentConfig(gripper_dim=0)) == 0
    assert find_gripper_dim(["hand", "claw"], SegmentConfig(gripper_name_pattern="claw")) == 1


def test_gripper_opening_normalises_and_handles_missing() -> None:
    state = np.zeros((5, 3), np.float32)
    state[:, 2] = [0.08, 0.06, 0.04, 0.06, 0.08]
    g = gripper_opening(state, 2)
    assert g.shape == (5,) and g.min() == 0.0 and g.max() == 1.0
    assert g[1] == pytest.approx(0.5)
    assert gripper_opening(state, None).shape == (0,)
    const = np.full((4, 2), 0.08, np.float32)
    assert np.all(gripper_opening(const, 1) == 1.0)
    with pytest.raises(ValueError, match="gripper dim 5"):
        gripper_opening(state, 5)


def test_pick_and_place_signal_gets_gripper_and_pause_boundaries_with_reasons() -> None:
    plan = [("move", 18), ("still", 3), ("close", 5), ("still", 3), ("move", 10), ("still", 3),
            ("move", 16), ("still", 3), ("open", 4), ("still", 3), ("move", 12), ("still", 2)]
    state, starts = build(plan)
    # phase starts: grasp = the close step, lift = next move, move, release = open, retreat
    close_at, lift_at, move_at, open_at, retreat_at = starts[1], starts[3], starts[5], starts[7], starts[9]
    segs = segment_episode(state, action_of(state), 12, SegmentConfig(), NAMES, NAMES)
    check_tiling(segs, len(state))
    got = {(s.start, s.start_reason) for s in segs[1:]}
    for frame, reason in [(close_at, "gripper_close"), (lift_at, "pause"), (move_at, "pause"),
                          (open_at, "gripper_open"), (retreat_at, "pause")]:
        assert any(abs(f - frame) <= 1 and r == reason for f, r in got), (frame, reason, sorted(got))
    assert len(segs) == 6


def test_gripper_boundary_is_at_the_onset_of_closing() -> None:
    state = np.zeros((40, 8), np.float32)
    state[:, 7] = 0.08
    state[20:, 7] = np.linspace(0.075, 0.03, 20).clip(0.04)  # starts moving after frame 19
    segs = segment_episode(state, state, 12, SegmentConfig(use_pauses=False), NAMES, NAMES)
    assert [(s.start, s.start_reason) for s in segs] == [(0, "episode_start"), (19, "gripper_close")]


def test_one_frame_gripper_glitch_is_debounced() -> None:
    state = np.zeros((60, 8), np.float32)
    state[:, 7] = 0.08
    state[30, 7] = 0.0  # a single-frame sensor glitch
    segs = segment_episode(state, state, 12, SegmentConfig(use_pauses=False, gripper_min_hold_frames=2), NAMES, NAMES)
    assert len(segs) == 1
    # with hold 1 the same glitch is two transitions (merged by the min-length rule into one event edge)
    segs1 = segment_episode(state, state, 12, SegmentConfig(use_pauses=False, gripper_min_hold_frames=1,
                                                                 min_len_frames=1, refractory_frames=0), NAMES, NAMES)
    assert [s.start_reason for s in segs1[1:]] == ["gripper_close", "gripper_open"]


def test_hysteresis_ignores_wobble_inside_the_band() -> None:
    state = np.zeros((50, 8), np.float32)
    state[:, 7] = 0.0
    state[10:, 7] = 1.0
    state[25:35, 7] = [0.6, 0.45, 0.6, 0.45, 0.6, 0.45, 0.6, 0.45, 0.6, 1.0]  # wobble around 0.5
    segs = segment_episode(state, state, 12, SegmentConfig(use_pauses=False), NAMES, NAMES)
    assert [s.start_reason for s in segs[1:]] == ["gripper_open"]


def test_idle_at_start_and_end_is_not_a_boundary() -> None:
    state, _starts = build([("still", 6), ("move", 20), ("still", 8)])
    segs = segment_episode(state, action_of(state), 12, SegmentConfig(), NAMES, NAMES)
    assert len(segs) == 1


def test_pause_boundaries_respect_min_pause_frames() -> None:
    plan = [("move", 15), ("still", 1), ("move", 15), ("still", 6), ("move", 15)]
    state, starts = build(plan)
    strict = SegmentConfig(pause_min_frames=5)
    segs = segment_episode(state, action_of(state), 12, strict, NAMES, NAMES)
    assert [s.start_reason for s in segs[1:]] == ["pause"]
    assert abs(segs[1].start - starts[3]) <= 1


def test_min_length_merges_short_segment_keeping_the_gripper_boundary() -> None:
    # a pause boundary 2 frames after a gripper transition: with refractory 0 both are
    # candidates; the 2-frame segment between them is merged away by dropping the pause
    plan = [("move", 15), ("still", 4), ("close", 2), ("move", 15)]
    state, _starts = build(plan)
    cfg = SegmentConfig(refractory_frames=0, min_len_frames=4)
    segs = segment_episode(state, action_of(state), 12, cfg, NAMES, NAMES)
    check_tiling(segs, len(state))
    assert all(s.length >= 4 for s in segs)
    assert [s.start_reason for s in segs[1:]] == ["gripper_close"]
    loose = segment_episode(state, action_of(state), 12, SegmentConfig(refractory_frames=0, min_len_frames=1),
                            NAMES, NAMES)
    assert [s.start_reason for s in loose[1:]] == ["gripper_close", "pause"]


def test_max_length_splits_long_segments_evenly() -> None:
    state, _ = build([("move", 100)])
    segs = segment_episode(state, action_of(state), 12, SegmentConfig(max_len_frames=30), NAMES, NAMES)
    check_tiling(segs, 100)
    assert len(segs) == 4
    assert all(s.length <= 30 for s in segs)
    assert [s.start_reason for s in segs[1:]] == ["max_len"] * 3


def test_state_without_gripper_name_uses_pauses_only() -> None:
    plan = [("move", 15), ("still", 5), ("move", 15)]
    state, _starts = build(plan)
    segs = segment_episode(state[:, :7], None, 12, SegmentConfig(), [f"q{i}" for i in range(7)], None)
    assert [s.start_reason for s in segs[1:]] == ["pause"]


def test_random_signals_always_tile() -> None:
    rng = np.random.default_rng(3)
    for n in (1, 2, 5, 37, 200):
        state = rng.normal(size=(n, 8)).astype(np.float32)
        segs = segment_episode(state, state, 12, SegmentConfig(max_len_frames=50), NAMES, NAMES)
        check_tiling(segs, n)
        assert all(s.length <= 50 for s in segs)


def test_visual_change_point_found_only_when_enabled() -> None:
    rng = np.random.default_rng(0)
    frames = np.empty((40, 32, 32, 3), np.uint8)
    frames[:20] = (200, 30, 30)
    frames[20:] = (30, 30, 200)
    frames[20:, 8:24, 8:24] = (240, 240, 240)
    frames = np.clip(frames.astype(int) + rng.integers(-5, 6, frames.shape), 0, 255).astype(np.uint8)
    feats = frame_descriptors(frames)
    assert feats.shape[0] == 40 and feats.dtype == np.float32
    state = np.zeros((40, 8), np.float32)
    on = segment_episode(state, state, 12, SegmentConfig(use_visual=True, use_pauses=False), NAMES, NAMES,
                         visual_features=feats)
    assert [(s.start, s.start_reason) for s in on[1:]] == [(20, "visual")]
    off = segment_episode(state, state, 12, SegmentConfig(use_pauses=False), NAMES, NAMES, visual_features=feats)
    assert len(off) == 1


def panning_scene(n: int = 40, seed: int = 0) -> np.ndarray:
    """(n, 128, 128, 3) uint8 frames of a smooth scene panning 2 px per frame, with sensor noise."""
    y, x = np.mgrid[0:128, 0 : 128 + 2 * n]
    scene = np.stack([128 + 60 * np.sin(x / 9.0) * np.cos(y / 13.0), 120 + 50 * np.cos(x / 17.0 + y / 11.0),
                      100 + 40 * np.sin(y / 7.0)], axis=-1)
    frames = np.stack([scene[:, 2 * t : 2 * t + 128] for t in range(n)])
    return np.clip(frames + np.random.default_rng(seed).normal(0, 4, frames.shape), 0, 255).astype(np.uint8)


def test_default_visual_threshold_ignores_a_camera_pan_and_finds_an_object_appearing() -> None:
    frames = panning_scene()
    state = np.zeros((len(frames), 8), np.float32)
    cfg = SegmentConfig(use_visual=True, use_pauses=False)
    pan = segment_episode(state, state, 12, cfg, NAMES, NAMES, visual_features=frame_descriptors(frames))
    assert len(pan) == 1
    frames[20:, 40:90, 30:100] = (230, 200, 20)  # a yellow object enters the view at frame 20
    obj = segment_episode(state, state, 12, cfg, NAMES, NAMES, visual_features=frame_descriptors(frames))
    assert [(s.start, s.start_reason) for s in obj[1:]] == [(20, "visual")]


def test_frame_descriptors_are_the_image_descriptor_of_box_shrunk_frames() -> None:
    frames = panning_scene(n=6)
    feats = frame_descriptors(frames)
    assert feats.shape == (6, 256) and feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    sums = frames.reshape(6, 32, 4, 32, 4, 3).sum(axis=(2, 4), dtype=np.uint32)
    shrunk = ((sums + 8) // 16).astype(np.uint8)  # 4x4 box filter, rounded to nearest
    np.testing.assert_array_equal(feats, image_descriptors(shrunk, size=32))
    assert np.all(np.sum(feats * image_descriptors(frames, size=32), axis=1) > 0.9)  # close to the bilinear resize
    odd = frame_descriptors(frames[:, :100, :90])  # sizes that are not a multiple of 32 still give unit rows
    np.testing.assert_allclose(np.linalg.norm(odd, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="frames must be"):
        frame_descriptors(frames[0])
