"""Segmentation rules on constructed signals: gripper transitions, motion starts, pauses,
motion changes, visual change points, hysteresis/debounce, min/max length, physical units
(the same motion at 10, 30 and 50 fps, joints in degrees, Cartesian metres), several arms and
grippers that exist only in the action stream, and the tiling of [0, T)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from carve.core.config import SegmentConfig
from carve.ingest.arms import arm_layouts
from carve.ingest.segment import Segment, segment_arms, segment_episode
from carve.ingest.visual import frame_descriptors, image_descriptors

NAMES = [*(f"joint_{i}" for i in range(7)), "gripper_opening"]


def min_jerk_steps(n: int, dist: float) -> np.ndarray:
    s = np.arange(1, n + 1) / n
    pos = dist * (10 * s**3 - 15 * s**4 + 6 * s**5)
    return np.diff(np.concatenate([[0.0], pos]))


def build(plan: list[tuple[str, float]], fps: float = 12, seed: int = 0, jitter: float = 2e-4,
          ) -> tuple[np.ndarray, list[int]]:
    """State (T, 8) from a plan of ("move", s) / ("still", s) / ("close", s) / ("open", s) steps of
    s seconds (joints in rad, gripper in m); returns it with the frames where each step after the
    first begins. A move covers 0.5 rad along a random joint direction with a minimum-jerk profile."""
    rng = np.random.default_rng(seed)
    q = np.zeros(7)
    g = 0.08
    rows, starts = [], []
    direction = rng.normal(size=7)
    direction /= np.linalg.norm(direction)
    for kind, secs in plan:
        n = max(1, round(secs * fps))
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


def test_arm_layouts_by_name_prefix_action_only_and_config() -> None:
    st = np.zeros((5, 8))
    (one,) = arm_layouts(NAMES, NAMES, st, st, SegmentConfig())
    assert one.name == "arm" and one.gripper == 7 and one.gripper_action == 7 and one.motion == list(range(7))
    two = [*(f"left_j{i}" for i in range(3)), "left_gripper", *(f"right_j{i}" for i in range(3)), "right_gripper"]
    lay = {a.name: a for a in arm_layouts(two, two, st, st, SegmentConfig())}
    assert lay["left"].motion == [0, 1, 2] and lay["left"].gripper == 3
    assert lay["right"].motion == [4, 5, 6] and lay["right"].gripper == 7
    act_only = arm_layouts([f"q{i}" for i in range(7)], [*(f"q{i}" for i in range(7)), "gripper_cmd"],
                           st[:, :7], st, SegmentConfig())
    assert act_only[0].gripper is None and act_only[0].gripper_action == 7
    cart = ["x", "y", "z", "roll", "pitch", "yaw", "pad", "gripper"]
    (c,) = arm_layouts(cart, cart, st, st, SegmentConfig())
    assert c.kind == "cartesian" and c.motion == [0, 1, 2]
    (cfg_dim,) = arm_layouts(["a", "b"], None, st[:, :2], None, SegmentConfig(gripper_dim=0))
    assert cfg_dim.gripper == 0 and cfg_dim.motion == [1]


PICK = [("move", 1.5), ("still", 0.25), ("close", 0.4), ("still", 0.25), ("move", 0.8), ("still", 0.25),
        ("move", 1.3), ("still", 0.25), ("open", 0.35), ("still", 0.25), ("move", 1.0), ("still", 0.2)]


def _pick_boundaries(fps: float) -> tuple[list[Segment], dict[str, int], int]:
    state, starts = build(PICK, fps=fps)
    segs = segment_episode(state, action_of(state), fps, SegmentConfig(), NAMES, NAMES)
    check_tiling(segs, len(state))
    phases = {"grasp": starts[1], "lift": starts[3], "move": starts[5], "release": starts[7], "retreat": starts[9]}
    return segs, phases, len(state)


def test_pick_and_place_signal_gets_one_boundary_per_phase_with_reasons() -> None:
    segs, ph, _ = _pick_boundaries(12)
    got = [(s.start, s.start_reason) for s in segs[1:]]
    want = [(ph["grasp"], "gripper_close"), (ph["lift"], "motion_start"), (ph["move"], "pause"),
            (ph["release"], "gripper_open"), (ph["retreat"], "motion_start")]
    assert len(got) == len(want), got
    for (f, r), (wf, wr) in zip(got, want, strict=True):
        assert r == wr and abs(f - wf) <= 1, (got, want)


@pytest.mark.parametrize("fps", [10, 30, 50])
def test_the_same_motion_at_another_frame_rate_gives_the_same_boundaries_in_seconds(fps: int) -> None:
    """One configuration at 10..50 fps: the same phases, each within 0.06 s (or a frame) of its start."""
    ref, _, _ = _pick_boundaries(12)
    segs, ph, _ = _pick_boundaries(fps)
    assert [s.start_reason for s in segs] == [s.start_reason for s in ref]
    tol = max(1, round(0.06 * fps))
    for s, phase in zip(segs[1:], ("grasp", "lift", "move", "release", "retreat"), strict=True):
        assert abs(s.start - ph[phase]) <= tol, (fps, phase, s.start, ph[phase])


def test_joints_in_degrees_and_cartesian_metres_are_read_in_si_units() -> None:
    state, _ = build(PICK, fps=30)
    rad = segment_episode(state, action_of(state), 30, SegmentConfig(), NAMES, NAMES)
    deg = state.copy()
    deg[:, :7] = np.degrees(deg[:, :7]) + 90.0  # a robot logging degrees, offset so the range shows it
    got = segment_episode(deg, action_of(deg), 30, SegmentConfig(), NAMES, NAMES)
    assert [(s.start, s.start_reason) for s in got] == [(s.start, s.start_reason) for s in rad]
    # Cartesian: 0.5 rad moves become 0.3 m moves of the end effector
    cart_names = ["x", "y", "z", "gripper"]
    cart = np.concatenate([state[:, :3] * 0.6, state[:, 7:8]], axis=1)
    c = segment_episode(cart, action_of(cart), 30, SegmentConfig(), cart_names, cart_names)
    assert [s.start_reason for s in c] == [s.start_reason for s in rad]


def test_gripper_boundary_is_at_the_first_frame_of_closing() -> None:
    state = np.zeros((40, 8), np.float32)
    state[:, 7] = 0.08
    state[20:, 7] = np.linspace(0.075, 0.03, 20).clip(0.04)  # moving from frame 20 on
    segs = segment_episode(state, None, 12, SegmentConfig(use_pauses=False), NAMES, None)
    assert [(s.start, s.start_reason) for s in segs] == [(0, "episode_start"), (20, "gripper_close")]


def test_the_gripper_command_is_preferred_and_its_polarity_learned() -> None:
    """The command (1 = close here) leads the measured opening by the fingers' lag."""
    state = np.zeros((60, 8), np.float32)
    state[:, 7] = 0.08
    state[24:, 7] = np.linspace(0.075, 0.03, 36).clip(0.04)  # the fingers follow 4 frames late
    action = np.zeros((60, 8), np.float32)
    action[20:, 7] = 1.0
    segs = segment_episode(state, action, 12, SegmentConfig(use_pauses=False), NAMES, NAMES)
    assert [(s.start, s.start_reason) for s in segs[1:]] == [(20, "gripper_close")]


def test_sensor_noise_and_one_frame_glitches_make_no_transition() -> None:
    rng = np.random.default_rng(5)
    state = np.zeros((90, 8), np.float32)
    state[:, 7] = 0.08 + rng.normal(0, 0.0005, 90)  # 0.5 mm gripper-sensor noise, gripper never moves
    state[45, 7] = 0.0  # and a single-frame glitch
    assert len(segment_episode(state, None, 30, SegmentConfig(), NAMES, None)) == 1
    # a real close with the same noise and a one-frame glitch back open while closed
    state[50:, 7] = 0.01 + rng.normal(0, 0.0005, 40)
    state[70, 7] = 0.08
    segs = segment_episode(state, None, 30, SegmentConfig(), NAMES, None)
    assert [s.start_reason for s in segs[1:]] == ["gripper_close"] and abs(segs[1].start - 50) <= 1


def test_hysteresis_ignores_wobble_inside_the_band() -> None:
    state = np.zeros((50, 8), np.float32)
    state[:, 7] = 0.0
    state[10:, 7] = 1.0
    state[25:35, 7] = [0.6, 0.45, 0.6, 0.45, 0.6, 0.45, 0.6, 0.45, 0.6, 1.0]  # wobble around 0.5
    segs = segment_episode(state, None, 12, SegmentConfig(use_pauses=False), NAMES, None)
    assert [s.start_reason for s in segs[1:]] == ["gripper_open"]


def test_idle_at_start_and_end_of_a_single_arm_is_not_a_boundary() -> None:
    state, _starts = build([("still", 0.5), ("move", 1.7), ("still", 0.7)])
    segs = segment_episode(state, action_of(state), 12, SegmentConfig(), NAMES, NAMES)
    assert len(segs) == 1


def test_pause_boundaries_respect_the_minimum_pause_in_seconds() -> None:
    plan = [("move", 1.2), ("still", 0.08), ("move", 1.2), ("still", 0.5), ("move", 1.2)]
    state, starts = build(plan, fps=30)
    segs = segment_episode(state, action_of(state), 30, SegmentConfig(pause_min_s=0.45, use_waypoints=False),
                           NAMES, NAMES)
    assert [s.start_reason for s in segs[1:]] == ["pause"]
    assert abs(segs[1].start - starts[3]) <= 1


def test_blended_motion_turning_without_a_stop_is_cut_at_the_turn() -> None:
    """lift -> move -> lower as one continuous path (no stop) in Cartesian metres at 30 fps."""
    fps, n = 30, 150
    t = np.linspace(0, 1, n)
    # a smooth path: up 0.15 m, across 0.4 m, down 0.15 m, corners rounded by the time profile
    s = 3 * t**2 - 2 * t**3
    way = np.array([[0.0, 0, 0], [0.0, 0, 0.15], [0.4, 0, 0.15], [0.4, 0, 0.0]])
    seg_len = np.linalg.norm(np.diff(way, axis=0), axis=1)
    arc = np.concatenate([[0], np.cumsum(seg_len)]) / seg_len.sum()
    xyz = np.stack([np.interp(s, arc, way[:, k]) for k in range(3)], axis=1)
    from scipy.ndimage import gaussian_filter1d

    xyz = gaussian_filter1d(xyz, 3, axis=0, mode="nearest")  # rounded corners, never still
    names = ["x", "y", "z", "gripper"]
    state = np.concatenate([xyz, np.full((n, 1), 0.01)], axis=1)
    segs = segment_episode(state, None, fps, SegmentConfig(), names, None)
    corners = [int(np.argmin(np.abs(np.interp(s, arc, np.arange(4)) - k))) for k in (1, 2)]
    got = [sg.start for sg in segs[1:] if sg.start_reason == "motion_change"]
    assert len(got) == 2 and all(abs(g - c) <= 3 for g, c in zip(got, corners, strict=True)), (got, corners)


def _first_order_lag(x: np.ndarray, fps: float, tau_s: float) -> np.ndarray:
    """A position-controlled joint following its command (first-order lag with time constant tau)."""
    a = 1.0 - np.exp(-1.0 / (tau_s * fps))
    y = np.empty_like(x)
    y[0] = x[0]
    for i in range(1, len(x)):
        y[i] = y[i - 1] + a * (x[i] - y[i - 1])
    return y


@pytest.mark.parametrize("fps", [20, 30, 50])
def test_a_step_between_two_steady_speeds_is_cut_at_its_onset(fps: int) -> None:
    """A scripted expert's straight joint-space path: 1.2 s at 0.9 rad/s then 1.0 s at 0.3 rad/s in the
    same direction (no turn, no dip), followed by a lagging joint; the boundary is the commanded change."""
    rng = np.random.default_rng(0)
    d = rng.normal(size=6)
    d /= np.linalg.norm(d)
    t1, t2 = round(1.2 * fps), round(1.0 * fps)
    rate = np.concatenate([np.full(t1, 0.9), np.full(t2, 0.3)]) / fps
    cmd = np.cumsum(rate)[:, None] * d[None, :]
    q = _first_order_lag(cmd, fps, 0.03)
    names = [*(f"joint_{i}" for i in range(6)), "gripper"]
    state = np.concatenate([q, np.full((len(q), 1), 0.5)], axis=1)
    segs = segment_episode(state, None, fps, SegmentConfig(), names, None)
    check_tiling(segs, len(q))
    got = [(sg.start, sg.start_reason) for sg in segs[1:]]
    assert len(got) == 1 and got[0][1] == "speed_change", got
    assert abs(got[0][0] - t1) <= round(0.1 * fps), (got, t1)
    off = segment_episode(state, None, fps, SegmentConfig(use_speed_steps=False), names, None)
    assert all(sg.start_reason != "speed_change" for sg in off)


@pytest.mark.parametrize("fps", [20, 30, 50])
def test_a_controllers_final_stay_is_cut_where_it_slows(fps: int) -> None:
    """A scripted expert's last move at constant speed, then its final "stay" (the command holds still to
    the end; the joint follows with a lag): the stay starts an event where the speed leaves its level. A
    recording cut while the arm still moves has no stay and no boundary."""
    rng = np.random.default_rng(1)
    d = rng.normal(size=6)
    d /= np.linalg.norm(d)
    t1, t2 = round(1.5 * fps), round(0.8 * fps)
    names = [*(f"joint_{i}" for i in range(6)), "gripper"]

    def state_of(rate: np.ndarray) -> np.ndarray:
        q = _first_order_lag(np.cumsum(rate / fps)[:, None] * d[None, :], fps, 0.08)
        return np.concatenate([q, np.full((len(q), 1), 0.5)], axis=1)

    state = state_of(np.concatenate([np.full(t1, 0.6), np.zeros(t2)]))
    segs = segment_episode(state, None, fps, SegmentConfig(), names, None)
    check_tiling(segs, len(state))
    got = [(sg.start, sg.start_reason) for sg in segs[1:]]
    assert len(got) == 1 and got[0][1] == "speed_change", got
    assert abs(got[0][0] - t1) <= round(0.1 * fps), (got, t1)
    assert len(segment_episode(state, None, fps, SegmentConfig(use_speed_steps=False), names, None)) == 1
    moving = state_of(np.full(t1 + t2, 0.6))  # cut while moving: nothing stays
    assert len(segment_episode(moving, None, fps, SegmentConfig(), names, None)) == 1


def test_a_move_off_after_a_creeping_hold_starts_where_the_hand_leaves_the_creep() -> None:
    """Fingers close while the hand creeps (0.025 m/s, above the pause speed and a fifth of the moving
    speed, below half of it), then the hand lifts: the lift's event starts where the raw speed leaves
    the creep, not where the smoothing spreads it back to."""
    fps = 20
    approach, hold, lift, rest = 20, 16, 20, 10
    v = np.zeros((approach + hold + lift + rest, 3))
    v[:approach, 0] = 0.3
    v[approach : approach + hold, 1] = 0.025
    v[approach + hold : approach + hold + lift, 2] = 0.4
    xyz = np.cumsum(v / fps, axis=0) + np.random.default_rng(0).normal(0.0, 1e-4, (len(v), 3))  # sensor noise
    grip = np.full(len(xyz), 0.08)
    close = approach + 2
    grip[close : close + 6] = np.linspace(0.08, 0.0, 6)
    grip[close + 6 :] = 0.0
    names = ["x", "y", "z", "gripper"]
    state = np.concatenate([xyz, grip[:, None]], axis=1)
    segs = segment_episode(state, None, fps, SegmentConfig(), names, None)
    starts = [(sg.start, sg.start_reason) for sg in segs[1:]]
    lift_at = approach + hold
    got = [s for s, r in starts if r == "motion_start"]
    assert len(got) == 1 and abs(got[0] - lift_at) <= 1, (starts, lift_at)



def test_a_joint_position_controller_s_moves_start_where_their_commands_do() -> None:
    """A controller's targets (the actions, named as the joints they command) move in three strokes with
    pauses between; the measured joints follow 4 frames later (20 fps: the loop's latency) through a
    first-order lag. The strokes' events start where their commands start (within a frame), not where the
    lagging joints do; actions equal to the joints (no lag) change nothing against no actions at all."""
    from carve.ingest.kinematics import command_lag

    fps = 20
    rng = np.random.default_rng(3)
    d = rng.normal(size=6)
    d /= np.linalg.norm(d)
    rate = np.zeros(150)
    starts = [20, 70, 115]
    for a in starts:
        rate[a : a + 25] = 0.8
    cmd = np.cumsum(rate / fps)[:, None] * d[None, :]
    q = _first_order_lag(np.vstack([np.repeat(cmd[:1], 4, axis=0), cmd[:-4]]), fps, 0.05)  # latency, then a lag
    names = [*(f"joint_{i}" for i in range(6)), "gripper"]
    state = np.concatenate([q, np.full((len(q), 1), 0.5)], axis=1)
    action = np.concatenate([cmd, np.full((len(q), 1), 0.5)], axis=1)
    assert command_lag(q, cmd, fps, 6) >= 2 and command_lag(q, q, fps, 6) == 0
    led = [sg.start for sg in segment_episode(state, action, fps, SegmentConfig(), names, names)
           if sg.start_reason == "pause"]
    lagging = [sg.start for sg in segment_episode(state, None, fps, SegmentConfig(), names, None)
               if sg.start_reason == "pause"]
    assert len(led) == 2 and all(abs(t - a) <= 1 for t, a in zip(led, starts[1:], strict=True)), (led, lagging)
    assert all(t > a + 1 for t, a in zip(lagging, starts[1:], strict=True)), lagging  # what the lag alone gives
    same = segment_episode(state, state, fps, SegmentConfig(), names, names)
    assert [sg.start for sg in same] == [sg.start for sg in segment_episode(state, None, fps, SegmentConfig(),
                                                                          names, None)]

def test_bell_shaped_human_reaches_and_a_stop_make_no_speed_change() -> None:
    """Teleoperated reaches (minimum-jerk speed profiles, sensor noise) have no steady speed levels: the
    speed rule stays silent, and a stop (moving -> still) is the pause rule's, not a speed change."""
    for seed in range(5):
        state, _ = build([("still", 0.6), ("move", 1.4), ("move", 0.9), ("still", 0.8), ("move", 1.1),
                          ("still", 0.7)], fps=30, seed=seed, jitter=1e-3)
        segs = segment_episode(state, action_of(state), 30, SegmentConfig(), NAMES, NAMES)
        assert not [sg.start for sg in segs if sg.start_reason == "speed_change"], (seed, segs)


def test_min_length_merges_short_segment_keeping_the_gripper_boundary() -> None:
    plan = [("move", 1.2), ("still", 0.35), ("close", 0.17), ("move", 1.2)]
    state, _starts = build(plan)
    cfg = SegmentConfig(refractory_s=0.0, min_len_s=0.3)
    segs = segment_episode(state, action_of(state), 12, cfg, NAMES, NAMES)
    check_tiling(segs, len(state))
    assert all(s.length >= round(0.3 * 12) for s in segs)
    assert segs[1].start_reason == "gripper_close"


def test_max_length_splits_long_segments_evenly() -> None:
    state, _ = build([("move", 8.3)])
    segs = segment_episode(state, action_of(state), 12, SegmentConfig(max_len_s=2.5), NAMES, NAMES)
    check_tiling(segs, len(state))
    assert len(segs) == 4 and all(s.length <= 30 for s in segs)
    assert [s.start_reason for s in segs[1:]] == ["max_len"] * 3


def test_state_without_gripper_name_uses_motion_only() -> None:
    plan = [("move", 1.2), ("still", 0.4), ("move", 1.2)]
    state, _starts = build(plan)
    segs = segment_episode(state[:, :7], None, 12, SegmentConfig(), [f"q{i}" for i in range(7)], None)
    assert [s.start_reason for s in segs[1:]] == ["pause"]


def _two_arms(fps: float = 30) -> tuple[np.ndarray, list[str], dict[str, list[int]], int]:
    """Left picks and places; the right arm starts while the left still places, then picks too."""
    left, ls = build(PICK, fps=fps, seed=1)
    right, rs = build([("still", 3.0), *PICK], fps=fps, seed=2)
    n = max(len(left), len(right))
    left = np.concatenate([left, np.repeat(left[-1:], n - len(left), axis=0)])
    right = right[:n]
    names = [*(f"left_joint_{i}" for i in range(7)), "left_gripper",
             *(f"right_joint_{i}" for i in range(7)), "right_gripper"]
    state = np.concatenate([left, right], axis=1)
    # per arm the start of PICK[1:] (as `build` returns them); the right arm first moves at rs[0]
    return state, names, {"left": ls, "right": rs[1:]}, rs[0]


def test_two_arms_every_gripper_is_read_and_no_event_spans_another_arms_grasp_and_release() -> None:
    state, names, starts, right_onset = _two_arms()
    segs = segment_episode(state, action_of(state), 30, SegmentConfig(), names, names)
    check_tiling(segs, len(state))
    reasons = [s.start_reason for s in segs]
    assert reasons.count("gripper_close") == 2 and reasons.count("gripper_open") == 2
    for arm, st in starts.items():
        close, release = st[1], st[7]
        assert not any(s.start <= close and release < s.end for s in segs), arm
        grasp = next(s for s in segs if s.start_reason == "gripper_close" and abs(s.start - close) <= 2)
        assert arm in grasp.arms
    # the right arm's first move (while the left arm still works) starts an event
    assert any(s.start_reason == "motion_start" and "right" in s.arms and abs(s.start - right_onset) <= 3
               for s in segs)
    per_arm = segment_arms(state, action_of(state), 30, SegmentConfig(), names, names)
    assert set(per_arm) == {"left", "right"}
    assert [s.start_reason for s in per_arm["left"]].count("gripper_close") == 1
    assert all(s.arms == ["right"] for s in per_arm["right"])


def test_random_signals_always_tile() -> None:
    rng = np.random.default_rng(3)
    for n in (1, 2, 5, 37, 200):
        state = rng.normal(size=(n, 8)).astype(np.float32)
        segs = segment_episode(state, state, 12, SegmentConfig(max_len_s=4.0), NAMES, NAMES)
        check_tiling(segs, n)
        assert all(s.length <= 48 for s in segs)


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


def _ramped(second_move_s: float, peak: float, fps: float = 20.0) -> tuple[np.ndarray, list[str], int]:
    """A Cartesian hand (m) that moves 0.2 m, stops for 0.5 s, then moves again along the same line with a
    trapezoid-free planned profile: speed rising linearly from rest to `peak` m/s over `second_move_s`, then
    falling back. Returns the state, names and the frame where the second move starts."""
    t1 = np.arange(round(1.0 * fps)) / fps
    first = 0.2 * (10 * t1**3 - 15 * t1**4 + 6 * t1**5)  # minimum jerk over 1 s
    rest = np.full(round(0.5 * fps), 0.2)
    k = round(second_move_s * fps)
    sp = np.r_[np.linspace(0, peak, k), np.linspace(peak, 0, k)]
    second = 0.2 + np.cumsum(sp) / fps
    x = np.r_[first, rest, second, np.full(round(0.5 * fps), second[-1])]
    state = np.stack([x, np.zeros_like(x), np.full_like(x, 0.3), np.full_like(x, 0.04)], axis=1)
    return state, ["x", "y", "z", "gripper"], len(first) + len(rest)


def test_a_move_that_ramps_up_slowly_after_a_stop_starts_an_event() -> None:
    """A planned move from rest reaches the moving speed (0.08 m/s) only 0.64 s after it starts (0.2 m/s at
    1.6 s; more than twice `pause_min_s` after the speed leaves the pause): the pause still ends where it
    starts. A creep after the stop that never reaches the moving speed before the hand stops again starts
    nothing."""
    state, names, start = _ramped(1.6, 0.2)
    segs = segment_episode(state, None, 20.0, SegmentConfig(), names, None)
    assert [abs(s.start - start) <= 2 for s in segs[1:] if s.start_reason == "pause"] == [True], segs
    creep, names, start = _ramped(1.6, 0.06)  # peaks below the moving speed
    segs = segment_episode(creep, None, 20.0, SegmentConfig(), names, None)
    assert not [s for s in segs[1:] if abs(s.start - start) <= 4], segs
