"""Motion cues of one arm, in physical units: speed, pauses, and waypoints where motion changes.

All thresholds are in seconds and in m/s (Cartesian end-effector columns) or rad/s (joints),
resolved from the episode's fps, so the same configuration serves 10 fps and 50 fps.

* `smooth(x, fps, sigma_s)`: Gaussian smoothing in time (hand tremor and sensor noise are
  faster than a manipulation phase), `speed(x, fps)`: the norm of its time derivative.
* `sharpen_onset`: an onset found on the smoothed speed, moved to where the raw speed starts
  to rise (smoothing spreads a movement's start backwards).
* `pause_boundaries`: where the arm, after standing still (speed below the pause speed for at
  least `pause_min_s`), starts moving again: the onset of the next movement.
* `motion_starts`: after a gripper closes or opens, the arm holds (the fingers need it still)
  and then moves off: the onset of that move (the speed minimum before the arm first exceeds
  the moving speed) ends the grasp or release. It does not need the arm to be perfectly still,
  so hand tremor during the hold does not hide it.
* `waypoint_boundaries`: the waypoints of Automatic Waypoint Extraction (AWE; Shi, Sharma,
  Zhao, Finn, "Waypoint-Based Imitation Learning for Robotic Manipulation", CoRL 2023). AWE's
  greedy selection keeps adding the frame whose position lies farthest from the polyline
  through the waypoints chosen so far until every frame lies within an error budget; here the
  budget is `waypoint_error_m` / `waypoint_error_rad` and the initial waypoints are the
  episode's ends plus the gripper and pause boundaries already found, as in AWE. A waypoint
  only becomes an event boundary where the motion really changes: the direction of the path
  turns by at least `turn_deg`, or the arm slows to a velocity minimum (below `dip_ratio` of
  the peak speeds on both sides). A single curved reach thus stays one event while
  lift -> move -> lower, blended without a stop, becomes three.
* `speed_steps`: where the arm's speed moves from one sustained level to another at least
  `speed_step_ratio` times faster or slower (each level steady within `speed_step_steady` over
  `speed_step_window_s`, the change completed within `speed_step_transition_s`): a controller
  moving through waypoints at constant speed (scripted experts, motion planners, waypoint
  policies) changes phase this way without a stop, a turn a joint-space path shows, or a dip.
  Human motion has bell-shaped speed profiles with no steady levels either side, so the rule
  stays silent on teleoperation. The boundary is the onset of the change.
* `final_stop`: the same step from a steady level down to a rest that lasts to the episode's
  end (a controller's final "stay": nothing resumes, so the pause rule never marks it).
* `command_lag` / `command_start`: where the actions are absolute targets of the arm's positions
  (a joint-position controller, a leader arm) that the measured positions follow with a lag (up to
  `command_lead_s`), a movement starts where its command starts.
* `turns_in_place`: a hand that stands still (its position below the pause speed for at least
  `pause_min_s`) while its orientation or joints turn at the moving speed for `pause_min_s` (a knob
  turned, a peg stood upright, a pour) starts a movement where that turning starts; where the turning
  stops, the hand's next move starts another (`motion_starts` from that frame), as after a grasp.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.ndimage import gaussian_filter1d

from carve.core.config import SegmentConfig

PAUSE = "pause"
MOTION = "motion_change"
MOTION_START = "motion_start"
SPEED = "speed_change"
_FLAT = 0.01  # a command's speed within this fraction of the next frame's does not rise (`command_start`)
_ONSET_DEV = 0.1  # a speed step starts where the speed leaves its former level by more than this fraction


def smooth(x: np.ndarray, fps: float, sigma_s: float) -> np.ndarray:
    """Gaussian smoothing along time with a width in seconds (no-op for sigma below half a frame)."""
    sigma = sigma_s * fps
    if x.shape[0] < 3 or sigma < 0.5:
        return x
    return gaussian_filter1d(x, sigma=sigma, axis=0, mode="nearest")


def speed(x: np.ndarray, fps: float) -> np.ndarray:
    """Per-frame speed (units per second) of a (T, k) signal, by central differences."""
    if x.shape[0] < 2 or x.shape[1] == 0:
        return np.zeros(x.shape[0])
    return np.linalg.norm(np.gradient(x, axis=0), axis=1) * fps


def turn_speed(x: np.ndarray, kind: str, fps: float, sigma_s: float) -> np.ndarray:
    """Per-frame turning speed (rad/s) of an arm's turn columns (`ArmLayout.turn_signal`): the smoothed
    speed of Euler angles or joints, as `speed`; for a quaternion (T, 4), the angle between the
    orientations a frame before and after (central, one-sided at the ends), on the smoothed, renormalised
    quaternions whose signs are first made continuous (q and -q are one orientation)."""
    n = x.shape[0]
    if kind != "quat":
        return speed(smooth(x, fps, sigma_s), fps)
    if n < 2 or x.shape[1] != 4:
        return np.zeros(n)
    q = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    flip = np.cumprod(np.where(np.einsum("ij,ij->i", q[1:], q[:-1]) < 0, -1.0, 1.0))
    q[1:] *= flip[:, None]  # each quaternion on the side of its predecessor
    q = smooth(q, fps, sigma_s)
    q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    lo, hi = np.r_[0, np.arange(n - 1)], np.r_[np.arange(1, n), n - 1]  # neighbours, one-sided at the ends
    dot = np.clip(np.abs(np.einsum("ij,ij->i", q[lo], q[hi])), 0.0, 1.0)
    return 2.0 * np.arccos(dot) * fps / (hi - lo)


def thresholds(kind: str, cfg: SegmentConfig) -> tuple[float, float]:
    """(pause speed, waypoint error) for a motion kind: m/s and m, or rad/s and rad."""
    if kind == "cartesian":
        return cfg.pause_speed_m_s, cfg.waypoint_error_m
    return cfg.pause_speed_rad_s, cfg.waypoint_error_rad


def move_speed(kind: str, cfg: SegmentConfig) -> float:
    """The speed above which the arm is clearly moving (m/s or rad/s)."""
    return cfg.move_speed_m_s if kind == "cartesian" else cfg.move_speed_rad_s


def motion_starts(sp: np.ndarray, fps: float, after: list[int], until: list[int], moving: float,
                  cfg: SegmentConfig, raw: np.ndarray | None = None) -> list[tuple[int, str]]:
    """(frame, "motion_start"): for each gripper transition at `after[i]`, the onset of the first
    sustained move (speed >= `moving` for `pause_min_s`) between `min_len_s` after it and the next
    transition (`until[i]`), walked back to the speed minimum that precedes it (the search starts
    0.1 s after the transition; an arm that never slows below half the moving speed between the
    transition and that onset, in the smoothed speed or in the `raw` one when given, never held,
    and starts nothing)."""
    n = len(sp)
    hold = max(1, round(cfg.pause_min_s * fps))
    settle = max(1, round(0.1 * fps))  # the transition's own first frames
    fast = np.convolve((sp >= moving).astype(np.int32), np.ones(hold, np.int32), mode="full")[hold - 1 : hold - 1 + n]
    out = []
    for t0, t1 in zip(after, until, strict=True):
        lo = t0 + settle
        hi = min(t1, n)
        run_end = np.flatnonzero(fast[lo:hi] >= hold)  # windows ending here are all fast
        if len(run_end) == 0:
            continue
        k = lo + int(run_end[0]) - hold + 1  # first frame of the sustained move
        k = max(k, lo)
        k = onset(sp, k, lo, hold_level(sp[lo:k], moving))
        held = float(np.min(sp[t0 : k + 1])) < 0.5 * moving
        if raw is not None:  # a hold shorter than the smoothing kernel shows in the raw speed only
            held = held or float(np.min(raw[t0 : k + 1])) < 0.5 * moving
        if not held:
            continue  # the arm never slowed to a hold after the transition: no new movement starts here
        out.append((int(k), MOTION_START))
    return out


def turns_in_place(sp: np.ndarray, turn_sp: np.ndarray, still: np.ndarray, fps: float,
                   cfg: SegmentConfig) -> list[tuple[int, int]]:
    """The hand turning without moving: inside each stretch where the hand's position stands still
    (`still`, the `still_mask` of its speed `sp`), every run where the turning speed `turn_sp` (rad/s:
    orientation or joints) holds `move_speed_rad_s` for `pause_min_s`. Returns [onset, end) of each
    turn: the onset walked back down to the hold level, not before the stretch (or the turn before it)
    starts; the end where its speed is back below `pause_speed_rad_s`, from which the hand's next move
    is found as after a gripper transition (`motion_starts`)."""
    n = len(sp)
    hold = max(1, round(cfg.pause_min_s * fps))
    moving, rest = cfg.move_speed_rad_s, cfg.pause_speed_rad_s
    spans: list[tuple[int, int]] = []
    starts, stops = runs(still)
    for a, e in zip(starts, stops, strict=True):
        k, e = int(a), int(e)
        while k < e:
            fast = np.convolve((turn_sp[k:e] >= moving).astype(np.int32), np.ones(hold, np.int32), mode="valid")
            first = np.flatnonzero(fast >= hold)
            if len(first) == 0:
                break
            f = k + int(first[0])  # first frame of the sustained turn
            on = onset(turn_sp, f, k, hold_level(turn_sp[k:f], moving))
            end = f + hold
            while end < n and turn_sp[end] >= rest:
                end += 1
            spans.append((int(on), int(min(end, n - 1))))  # an onset at 0 is no boundary (dropped later)
            k = end
    return spans


def runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the runs of True in a boolean array, ends exclusive."""
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]]).astype(np.int8)
    d = np.diff(m)
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def still_mask(sp: np.ndarray, fps: float, pause_speed: float, cfg: SegmentConfig) -> np.ndarray:
    """Frames inside pauses: speed below `pause_speed` for at least `pause_min_s`."""
    starts, ends = runs(sp < pause_speed)
    out = np.zeros(len(sp), dtype=bool)
    min_len = max(2, round(cfg.pause_min_s * fps))
    for a, e in zip(starts, ends, strict=True):
        if e - a >= min_len:
            out[a:e] = True
    return out


def hold_level(sp: np.ndarray, moving: float, cap: float = 0.2) -> float:
    """The speed of a holding arm (tremor, sensor noise): median + 3 MAD of `sp`, within 0.05..`cap` x moving."""
    if len(sp) == 0:
        return cap * moving
    med = float(np.median(sp))
    return float(np.clip(med + 3.0 * float(np.median(np.abs(sp - med))), 0.05 * moving, cap * moving))


def onset(sp: np.ndarray, k: int, lo: int, floor: float) -> int:
    """Walk back from a moving frame `k` (not before `lo`) while the speed still falls, down to the
    holding level `floor`: the frame where the movement starts."""
    while k > lo and sp[k - 1] > floor and sp[k - 1] < sp[k]:
        k -= 1
    return k


def sharpen_onset(raw: np.ndarray, k: int, moving: float, hold: int) -> int:
    """Smoothing spreads the start of a movement backwards by about the kernel's width, so an onset
    found on the smoothed speed lies early. Move it forward to the first frame whose raw
    (unsmoothed) speed leaves the hold level of the `hold` raw frames before it, never past the
    first frame of clear motion (raw speed >= `moving`, within 2 x `hold` frames). Noisy raw speed
    keeps the onset where it is."""
    n = min(len(raw), k + 2 * hold)
    end = k
    while end < n and raw[end] < moving:
        end += 1
    floor = hold_level(raw[max(0, k - hold) : k], moving, cap=0.5)  # a creeping hold is still a hold (`motion_starts`)
    j = k
    while j < end and raw[j] <= floor:
        j += 1
    return j if j < end or end < n else k  # up to the first frame of clear motion, when there is one


def pause_boundaries(sp: np.ndarray, still: np.ndarray, fps: float, cfg: SegmentConfig,
                     moving: float) -> list[tuple[int, str]]:
    """(frame, "pause") where motion resumes after each pause inside the episode: only where the
    arm then really moves (reaches `moving` before its next pause), not where it jitters or creeps;
    `still` is `still_mask` of the same speed. The boundary is the onset of that move (`onset`), the
    same frame the motion-start rule finds. The move may ramp up slowly (a planned, time-optimal
    trajectory from rest: a quarter of a second and more to reach `moving`)."""
    n = len(sp)
    if n < 3:
        return []
    starts, ends = runs(still)
    out = []
    for i, (a, e) in enumerate(zip(starts, ends, strict=True)):
        if a == 0 or e >= n:
            continue  # idle at the very start or end is not a joint between two events
        horizon = int(starts[i + 1]) if i + 1 < len(starts) else n  # before the arm stops again
        fast = np.flatnonzero(sp[int(e) : horizon] >= moving)
        if len(fast) == 0:
            continue
        out.append((onset(sp, int(e) + int(fast[0]), int(a) + 1, hold_level(sp[a:e], moving)), PAUSE))
    return out


def _seg_dist(x: np.ndarray, a: int, b: int) -> np.ndarray:
    """Distance of x[a+1:b] to the segment x[a] -> x[b]."""
    p, q = x[a], x[b]
    d = q - p
    pts = x[a + 1 : b] - p
    dd = float(d @ d)
    if dd <= 1e-18:
        return np.linalg.norm(pts, axis=1)
    t = np.clip(pts @ d / dd, 0.0, 1.0)
    return np.linalg.norm(pts - t[:, None] * d, axis=1)


def awe_waypoints(x: np.ndarray, err: float, initial: list[int]) -> list[int]:
    """AWE greedy waypoint selection (geometric reconstruction error), from `initial` waypoints."""
    n = x.shape[0]
    wps = sorted({0, n - 1, *(int(i) for i in initial if 0 <= i < n)})
    stack = list(itertools.pairwise(wps))
    out = set(wps)
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        dist = _seg_dist(x, a, b)
        k = int(np.argmax(dist))
        if dist[k] <= err:
            continue
        m = a + 1 + k
        out.add(m)
        stack += [(a, m), (m, b)]
    return sorted(out)


def _turn_deg(x: np.ndarray, prev: int, cur: int, nxt: int) -> float:
    u, v = x[cur] - x[prev], x[nxt] - x[cur]
    nu, nv = float(np.linalg.norm(u)), float(np.linalg.norm(v))
    if nu < 1e-12 or nv < 1e-12:
        return 0.0
    return float(np.degrees(np.arccos(np.clip(u @ v / (nu * nv), -1.0, 1.0))))


def waypoint_boundaries(x: np.ndarray, sp: np.ndarray, still: np.ndarray, err: float, fixed: list[int], fps: float,
                        cfg: SegmentConfig) -> list[tuple[int, str]]:
    """(frame, "motion_change") at AWE waypoints where the motion turns or slows to a minimum."""
    n = x.shape[0]
    if n < 5 or x.shape[1] == 0:
        return []
    wps = awe_waypoints(x, err, fixed)
    fixed_set = set(fixed)
    out = []
    for i in range(1, len(wps) - 1):
        w = wps[i]
        if w in fixed_set or still[w]:
            continue  # already a boundary, or inside a pause (the pause rule owns those)
        turn = _turn_deg(x, wps[i - 1], w, wps[i + 1])
        before = float(sp[wps[i - 1] : w + 1].max())
        after = float(sp[w : wps[i + 1] + 1].max())
        dip = sp[w] < cfg.dip_ratio * min(before, after)
        if turn >= cfg.turn_deg or dip:
            out.append((_apex(x, sp, w, wps[i - 1], wps[i + 1], fps, cfg), MOTION))
    return out


def _apex(x: np.ndarray, sp: np.ndarray, w: int, prev: int, nxt: int, fps: float, cfg: SegmentConfig) -> int:
    """The frame of a rounded corner where the path turns fastest, within `refractory_s` of the
    waypoint `w` (the waypoint itself sits where the path is farthest from a chord, which a
    lopsided chord pulls away from the corner)."""
    r = max(1, round(cfg.refractory_s * fps))
    a, b = max(prev + 1, w - r), min(nxt - 1, w + r)
    if b - a < 2:
        return w
    v = np.gradient(x[max(a - 1, 0) : b + 2], axis=0)
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    u = v / np.maximum(norm, 1e-12)
    turn = np.linalg.norm(np.gradient(u, axis=0), axis=1)
    turn[norm[:, 0] < 1e-9] = 0.0
    off = max(a - 1, 0)
    inner = turn[a - off : b - off + 1]
    return int(a + np.argmax(inner)) if inner.size else w


def _step_frames(fps: float, cfg: SegmentConfig) -> tuple[int, int]:
    """(frames a steady level is read over, frames a change between levels may take) at `fps`."""
    return max(3, round(cfg.speed_step_window_s * fps)), max(1, round(cfg.speed_step_transition_s * fps))


def speed_steps(sp: np.ndarray, fps: float, pause_speed: float, moving: float,
                cfg: SegmentConfig) -> list[tuple[int, str]]:
    """(frame, "speed_change") where the speed `sp` steps between two steady moving levels (see
    the module doc). Both levels are above `pause_speed` (a stop is the pause rule's), the faster
    one at least half of `moving`; the frame is the first after the former level where the speed
    leaves it by more than `_ONSET_DEV`."""
    n = len(sp)
    w, g = _step_frames(fps, cfg)
    if n < 2 * w + g:
        return []
    win = np.lib.stride_tricks.sliding_window_view(np.asarray(sp, dtype=np.float64), w)  # win[i] = sp[i:i+w]
    med = np.median(win, axis=1)
    steady = (win.max(axis=1) - win.min(axis=1)) <= cfg.speed_step_steady * np.maximum(med, 1e-12)
    t = np.arange(w, n - g - w + 1)  # before = sp[t-w:t] (window t-w), after = sp[t+g:t+g+w] (window t+g)
    mb, ma = med[t - w], med[t + g]
    lo, hi = np.minimum(mb, ma), np.maximum(mb, ma)
    ok = (steady[t - w] & steady[t + g] & (lo > pause_speed) & (hi >= 0.5 * moving)
          & (hi >= cfg.speed_step_ratio * lo))
    out = []
    for e in runs(ok)[1]:
        k = int(t[e - 1])  # the last frame whose before-window is still the former level
        level = float(mb[e - 1])
        stop = min(n - 1, k + g)
        while k < stop and abs(sp[k] - level) <= _ONSET_DEV * level:
            k += 1
        out.append((k, SPEED))
    return out


def final_stop(sp: np.ndarray, fps: float, pause_speed: float, moving: float,
               cfg: SegmentConfig) -> list[tuple[int, str]]:
    """(frame, "speed_change") where the arm steps from a steady moving level to a rest that lasts
    to the end of the episode: the stop-side counterpart of `speed_steps`, whose lower level must
    be moving (a stop mid-episode is the pause rule's, which marks where motion resumes; at the
    end nothing resumes, so without this rule a controller's final "stay" never starts an event).
    The motion before the rest holds one level for twice `speed_step_window_s` (within
    `speed_step_steady` of its median, the median at least half of `moving`): a step shows two
    steady windows, one per level, and a stop has only the one level to show them; from the first frame
    that leaves it by more than `_ONSET_DEV`, the speed falls without rising again, to
    1 / `speed_step_ratio` of the level within `speed_step_transition_s`, and to below
    `pause_speed` by the last frame. Bell-shaped (human) stops hold no level before them, so the
    rule stays silent on teleoperation, as `speed_steps` does."""
    n = len(sp)
    w, g = _step_frames(fps, cfg)
    if n < w + 2 or sp[-1] >= pause_speed:
        return []
    a = n  # the trailing rest: sp[a:] < pause_speed
    while a > 0 and sp[a - 1] < pause_speed:
        a -= 1
    e = a  # the fall: sp[e - 1:a] never rises
    while e > 1 and sp[e - 2] >= sp[e - 1]:
        e -= 1
    if e < 2 * w or e >= a:
        return []
    win = sp[e - 2 * w : e]  # the level the arm leaves, over two windows: as much evidence as a step's two levels
    med = float(np.median(win))
    if med < 0.5 * moving or med <= pause_speed or float(win.max() - win.min()) > cfg.speed_step_steady * med:
        return []
    level = float(sp[e - 1])  # the speed where the fall starts
    k = e
    while k < a and sp[k] >= (1 - _ONSET_DEV) * level:
        k += 1
    half = np.flatnonzero(sp[k : a + 1] <= level / cfg.speed_step_ratio)
    if len(half) == 0 or half[0] > g:
        return []
    return [(int(k), SPEED)]


def command_lag(x: np.ndarray, cmd: np.ndarray, fps: float, lead: int) -> int:
    """Frames (0 to `lead`) by which measured positions `x` follow their commanded targets `cmd` (the same
    columns, the same units): the shift that best aligns the command's speed with the measured speed over the
    episode (Pearson correlation; the smallest such shift on a tie). 0 when the command is the measurement."""
    n = min(len(x), len(cmd))
    if n < 3 or x.shape[1] == 0:
        return 0
    a, b = speed(cmd[:n], fps), speed(x[:n], fps)
    best, lag = -np.inf, 0
    for shift in range(0, lead + 1):
        if n - shift < 3:
            break
        u, v = a[: n - shift], b[shift:]
        if float(u.std()) < 1e-12 or float(v.std()) < 1e-12:
            continue
        c = float(np.corrcoef(u, v)[0, 1])
        if c > best + 1e-9:
            best, lag = c, shift
    return lag


def command_start(csp: np.ndarray, k: int, lead: int, floor: float) -> int:
    """Where the command of a movement that the measured motion starts at `k` started: walked back from `k`
    while the commanded positions' speed `csp` does not rise going back (to the command's speed minimum
    before the movement, or the frame its command was still at rest, `floor`), at most `lead` frames; `k`
    itself when the command is not moving there (the arm moved without being told: pushed, bumped)."""
    if k <= 0 or k >= len(csp) or csp[k] <= floor:
        return k
    lo = max(0, k - lead)
    j = k
    while j > lo and floor < csp[j - 1] <= csp[j] * (1.0 + _FLAT) + 1e-12:  # a steady command is no rise
        j -= 1
    return j

