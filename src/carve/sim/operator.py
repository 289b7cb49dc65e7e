"""The simulated teleoperator: what one hand commands over time, and its phase schedule.

Owns `ArmPlan` (the commands of one arm as functions of time, in seconds), the two operator
styles, and `OperatorNoise` (the human imperfections). A plan is built before the episode
runs (the operator is open loop), so its timing does not depend on the frame rate: the
recorder samples it at any fps and the physics tracks it at ~240 Hz.

Motion model. A hand motion is a minimum-jerk sub-movement (Flash & Hogan 1985) along a
cubic Bezier path; the commanded position is the superposition of the sub-movements'
displacements (Flash & Henis 1991, "Arm trajectory modifications during reaching towards
visual targets"). Two operator styles (`STYLES`):

* `dwell`: every motion and gripper actuation ends in a short hold (0.2-0.4 s) before the
  next phase starts, like the scripted operator of earlier versions;
* `blended`: continuous motion through via-points: lift -> move -> lower (place) overlap
  (the next sub-movement starts once the previous one has passed its peak speed and slowed
  to 75-90% of it), so the hand never stops between them; it stops only to grasp and to
  release (and at the end of the reach onto an object). Push episodes blend reach -> push
  -> retreat with later hand-offs (15-30% and 30-50% of the peak speed), and after a
  release the hand leaves before the fingers are fully open.

Ground truth (`PlannedPhase`): a phase starts where the operator's phase changes: at the
first command of the phase (a motion's start, a gripper command), or, where two motions
overlap, at the moment the new sub-movement becomes the faster of the two (the via-point
where the direction of travel turns over). A hold belongs to the phase it follows.

`OperatorNoise(level, seed)` scales every imperfection by `level` in [0, 1] (0 = the clean
scripted operator): per-episode speed (log-normal factor) and per-motion duration jitter, an
asymmetric velocity profile and occasional mid-motion hesitations (slowing to 15-50% speed,
never stopping), sideways path bends, variable holds, band-limited hand tremor on the
commanded position (0.2-2 Hz, about 2.5 mm rms horizontally at level 1) and gripper-sensor
noise (N(0, 0.5 mm) at level 1) on the measured opening. Its draws come from their own stream
derived from the episode seed, so the scene and the nominal plan are the same at every level.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

STYLES = ("dwell", "blended")
PHASE_NAMES = ("reach", "grasp", "lift", "move", "place", "release", "retreat", "push")
NOISE_STREAM = 0x6E6F6973  # mixed into the episode seed to derive the operator-noise stream
SENSOR_STREAM = 0x73656E73  # ... and the gripper-sensor stream
MIN_PHASE = 0.2  # s: no phase is shorter (>= 2 frames at 10 fps)
_GRID = np.linspace(0.0, 1.0, 257)


def min_jerk(s: np.ndarray | float) -> np.ndarray | float:
    return 10 * s**3 - 15 * s**4 + 6 * s**5


@dataclass
class Motion:
    """One minimum-jerk sub-movement of the hand starting at `t0` for `dur` seconds: a
    displacement `delta` along a cubic Bezier with control points `c1`, `c2` (all relative
    to the sub-movement's start point) and a yaw change `dyaw`."""

    t0: float
    dur: float
    delta: np.ndarray
    c1: np.ndarray
    c2: np.ndarray
    dyaw: float = 0.0
    warp: np.ndarray | None = None  # progress warp sampled on _GRID (noise), None = plain min-jerk

    @property
    def t1(self) -> float:
        return self.t0 + self.dur

    def progress(self, t: np.ndarray | float) -> np.ndarray:
        u = np.clip((np.asarray(t, dtype=np.float64) - self.t0) / self.dur, 0.0, 1.0)
        if self.warp is not None:
            u = np.interp(u, _GRID, self.warp)
        return np.asarray(min_jerk(u))

    def displacement(self, t: np.ndarray | float) -> np.ndarray:
        """(..., 3) displacement from the sub-movement's start point at time(s) `t`."""
        s = self.progress(t)[..., None]
        return 3 * (1 - s) ** 2 * s * self.c1 + 3 * (1 - s) * s**2 * self.c2 + s**3 * self.delta

    def speed(self, t: np.ndarray, h: float = 1e-3) -> np.ndarray:
        return np.linalg.norm(self.displacement(t + h) - self.displacement(t - h), axis=-1) / (2 * h)


@dataclass
class GripRamp:
    """A gripper command at `t0`: the commanded finger gap goes from `w0` to `w1` over `dur` s."""

    t0: float
    dur: float
    w0: float
    w1: float
    close: bool


@dataclass
class PlannedPhase:
    name: str
    t: float  # start, seconds
    obj: str | None = None  # the object acted on ("red cube"), None for a retreat


class OperatorNoise:
    """Human-teleoperator imperfections at `level` in [0, 1] (see the module docstring)."""

    SPEED_SIGMA = 0.2  # log-normal sigma of the per-episode speed factor at level 1
    JITTER_SIGMA = 0.15  # ... of each motion's own duration factor
    SKEW = 0.45  # max asymmetry of the velocity profile at level 1
    BEND = 0.08  # sideways bend of a path, as a fraction of its length (rms, level 1)
    HESITATION_P = 0.3  # chance of one hesitation per motion at level 1
    HOLD_SIGMA = 0.45  # log-normal sigma of a hold's length factor at level 1
    TREMOR_XY = 0.0025  # m rms of the hand tremor at level 1 (horizontal)
    TREMOR_Z = 0.00125  # m rms (vertical: operators hold height better)
    TREMOR_BAND = (0.2, 2.0)  # Hz
    TREMOR_HZ = 100.0  # the rate the tremor is synthesised at (then interpolated)
    GRIPPER_SIGMA = 0.0005  # m, gripper-sensor noise at level 1

    def __init__(self, level: float, seed: int):
        if not 0.0 <= level <= 1.0:
            raise ValueError(f"operator noise must be in [0, 1], got {level}")
        self.level = float(level)
        self.rng = np.random.default_rng([int(seed), NOISE_STREAM])
        self.sensor_rng = np.random.default_rng([int(seed), SENSOR_STREAM])
        self.episode_speed = self._factor(self.SPEED_SIGMA, 0.8, 1.25)

    def _factor(self, sigma: float, lo: float, hi: float) -> float:
        if self.level == 0.0:
            return 1.0
        return float(np.clip(np.exp(self.rng.normal(0.0, sigma * self.level)), lo, hi))

    def duration(self, secs: float) -> float:
        """A motion's duration after the episode's speed and this motion's jitter."""
        return secs * self.episode_speed * self._factor(self.JITTER_SIGMA, 0.8, 1.25)

    def hold(self, secs: float, minimum: float = 0.15) -> float:
        return max(minimum, secs * self._factor(self.HOLD_SIGMA, 0.5, 3.0)) if self.level else secs

    def bend(self, delta: np.ndarray, ctrl: np.ndarray) -> np.ndarray:
        """The Bezier control point pushed sideways (horizontally) by a random amount."""
        if self.level == 0.0:
            return ctrl
        norm = float(np.linalg.norm(delta[:2]))
        if norm > 1e-6:
            side = np.array([-delta[1], delta[0]]) / norm
        else:  # a vertical motion: any horizontal direction
            ang = self.rng.uniform(0.0, 2 * np.pi)
            side = np.array([np.cos(ang), np.sin(ang)])
        out = ctrl.copy()
        out[:2] += side * self.rng.normal(0.0, self.BEND * self.level) * float(np.linalg.norm(delta))
        return out

    def warp(self, dur: float) -> tuple[np.ndarray | None, float]:
        """A progress warp on _GRID (skewed velocity profile, maybe a hesitation) and the
        duration it takes (a hesitation costs time). (None, dur) at level 0."""
        if self.level == 0.0:
            return None, dur
        w = np.ones_like(_GRID)
        if dur >= 0.6 and self.rng.random() < self.HESITATION_P * self.level:
            depth = self.rng.uniform(0.5, 0.85)  # slows to 15-50% of the speed, never stops
            width = self.rng.uniform(0.25, 0.6) / dur  # as a fraction of the motion
            mid = self.rng.uniform(0.3, 0.7)
            x = (_GRID - (mid - width / 2)) / width
            inside = (x >= 0) & (x <= 1)
            w[inside] -= depth * 0.5 * (1 - np.cos(2 * np.pi * x[inside]))
            dur = dur * (1.0 + depth * width / 2)
        cum = np.concatenate([[0.0], np.cumsum((w[1:] + w[:-1]) / 2)])
        u = cum / cum[-1]
        skew = self.rng.uniform(-self.SKEW, self.SKEW) * self.level
        u = u + skew * np.sin(np.pi * u) / np.pi  # monotone: du'/du = 1 + skew cos(pi u) > 0
        u[0], u[-1] = 0.0, 1.0
        return u, dur

    def tremor(self, horizon: float) -> Tremor:
        """Band-limited tremor of one hand over [0, horizon] s (zero at level 0)."""
        from scipy.signal import butter, sosfiltfilt

        n = int(np.ceil(horizon * self.TREMOR_HZ)) + 2
        if self.level == 0.0:
            return Tremor(np.zeros((n, 3)), self.TREMOR_HZ)
        sos = butter(2, self.TREMOR_BAND, btype="bandpass", fs=self.TREMOR_HZ, output="sos")
        pad = int(2 * self.TREMOR_HZ)
        x = sosfiltfilt(sos, self.rng.normal(0.0, 1.0, (n + 2 * pad, 3)), axis=0)[pad:-pad]
        x = x / np.maximum(x.std(axis=0), 1e-12)
        x *= self.level * np.array([self.TREMOR_XY, self.TREMOR_XY, self.TREMOR_Z])
        ramp = np.clip(np.arange(n) / (0.5 * self.TREMOR_HZ), 0.0, 1.0)  # registered at the start
        return Tremor(x * ramp[:, None], self.TREMOR_HZ)

    def gripper_sensor(self, n: int = 1) -> np.ndarray:
        """Additive noise (m) of the measured gripper opening."""
        if self.level == 0.0:
            return np.zeros(n)
        return self.sensor_rng.normal(0.0, self.GRIPPER_SIGMA * self.level, n)


@dataclass
class Tremor:
    samples: np.ndarray  # (N, 3) m at `hz`
    hz: float

    def __call__(self, t: float) -> np.ndarray:
        x = t * self.hz
        i = int(np.clip(np.floor(x), 0, len(self.samples) - 2))
        a = float(np.clip(x - i, 0.0, 1.0))
        return self.samples[i] * (1 - a) + self.samples[i + 1] * a


@dataclass
class ArmPlan:
    """What one arm's operator commands, as functions of time, plus the phase schedule.

    Built step by step (`begin`, `move`, `grip`, `hold`, `pause`); `t` is the planning cursor
    (when the hand is free for the next command). `pose(t)`, `width(t)`, `closed(t)` are the
    nominal commands (tremor is added by the recorder)."""

    arm: str
    start_pos: np.ndarray
    start_yaw: float
    start_width: float
    style: str
    rng: np.random.Generator
    noise: OperatorNoise
    start_closed: bool = False
    t: float = 0.0
    motions: list[Motion] = field(default_factory=list)
    ramps: list[GripRamp] = field(default_factory=list)
    phases: list[PlannedPhase] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"unknown operator style {self.style!r}; use one of {', '.join(STYLES)}")
        self.pos = np.asarray(self.start_pos, dtype=np.float64).copy()  # where the hand ends up
        self.yaw = float(self.start_yaw)
        self.cur_width = float(self.start_width)
        self._last_motion: Motion | None = None  # the motion a next one may blend with

    @property
    def blended(self) -> bool:
        return self.style == "blended"

    # --- building -------------------------------------------------------------------------
    def begin(self, name: str, obj: str | None = None, t: float | None = None) -> None:
        assert name in PHASE_NAMES, name
        self.phases.append(PlannedPhase(name, self.t if t is None else float(t), obj))

    def hold(self, secs: float) -> None:
        """Hold still (up to tremor) for `secs`."""
        self.t += float(secs)
        self._last_motion = None

    def pause(self, lo: float = 0.2, hi: float = 0.4) -> None:
        """The dwell style's stop after a phase (nothing in the blended style)."""
        if not self.blended:
            self.hold(self.noise.hold(float(self.rng.uniform(lo, hi))))

    def react(self) -> None:
        """A brief reaction time (blended style) before the next command."""
        if self.blended:
            self.hold(float(self.rng.uniform(0.05, 0.15)))

    def move(self, name: str | None, target: np.ndarray, secs: tuple[float, float], *, arc: float = 0.0,
             rise: float = 0.0, descend: float = 0.0, yaw: float | None = None, blend: bool = False,
             overlap: tuple[float, float] = (0.75, 0.9), obj: str | None = None) -> Motion:
        """A minimum-jerk motion to `target` taking `secs` (a range, drawn), bulging up by `arc`;
        `rise` / `descend` (m) make it leave straight up / arrive straight down (out of a tray,
        onto an object).

        With `blend` (blended style only) it starts while the previous motion is decelerating,
        once that one's speed has dropped to a fraction (drawn from `overlap`) of its peak; the
        phase `name` then starts at their crossover (see the module docstring)."""
        dur = self.noise.duration(float(self.rng.uniform(*secs)))
        target = np.asarray(target, dtype=np.float64)
        delta = target - self.pos
        ctrl = delta / 2
        ctrl[2] += arc
        ctrl = self.noise.bend(delta, ctrl)  # the quadratic Bezier's control point, as a cubic:
        c1 = 2 * ctrl / 3
        c2 = delta / 3 + 2 * ctrl / 3
        if rise:  # leave straight up: the first control point above the start
            c1 = np.array([0.0, 0.0, max(c1[2], 0.0) + rise])
        if descend:  # arrive straight down: the second control point above the target
            c2 = np.array([delta[0], delta[1], max(c2[2], delta[2]) + descend])
        warp, dur = self.noise.warp(dur)
        dyaw = 0.0 if yaw is None else float(yaw) - self.yaw
        prev = self._last_motion if (blend and self.blended) else None
        if prev is not None:
            t0 = handoff(prev, float(self.rng.uniform(*overlap)))
        else:
            t0 = self.t
        m = Motion(t0=t0, dur=dur, delta=delta, c1=c1, c2=c2, dyaw=dyaw, warp=warp)
        if name:
            start = t0
            if prev is not None:  # where the new sub-movement takes over; never a sliver of a phase
                start = max(crossover(prev, m), (self.phases[-1].t if self.phases else 0.0) + MIN_PHASE)
            self.begin(name, obj, start)
        self.motions.append(m)
        self.pos = target.copy()
        self.yaw += dyaw
        self.t = max(self.t, m.t1)
        self._last_motion = m
        return m

    def grip(self, name: str, close: bool, width: float, secs: tuple[float, float], obj: str | None = None,
             early: tuple[float, float] | None = None) -> None:
        """Command the gripper closed/open, the finger gap ramping to `width` over `secs`.

        `early` (blended style): the next command may start at this fraction range of the
        ramp (an operator starts retreating before the fingers are fully open)."""
        self.begin(name, obj)
        dur = self.noise.duration(float(self.rng.uniform(*secs)))
        self.ramps.append(GripRamp(self.t, dur, self.cur_width, float(width), bool(close)))
        self.cur_width = float(width)
        if early is not None and self.blended:
            self.hold(max(MIN_PHASE, dur * float(self.rng.uniform(*early))))
        else:
            self.hold(dur)

    def shifted(self, dt: float) -> ArmPlan:
        """The same plan starting `dt` seconds later (the arm holds its start pose until then)."""
        for m in self.motions:
            m.t0 += dt
        for r in self.ramps:
            r.t0 += dt
        for p in self.phases:
            p.t += dt
        self.t += dt
        return self

    # --- evaluation -----------------------------------------------------------------------
    @property
    def end(self) -> float:
        return self.t

    def pose(self, t: float) -> tuple[np.ndarray, float]:
        pos = self.start_pos.astype(np.float64).copy()
        yaw = float(self.start_yaw)
        for m in self.motions:
            if t <= m.t0:
                continue
            if t >= m.t1:
                pos += m.delta
                yaw += m.dyaw
                continue
            pos += m.displacement(t)
            yaw += m.dyaw * float(m.progress(t))
        return pos, yaw

    def width(self, t: float) -> float:
        w = float(self.start_width)
        for r in self.ramps:
            if t <= r.t0:
                continue
            w += (r.w1 - r.w0) * float(min_jerk(min((t - r.t0) / r.dur, 1.0)))
        return w

    def closed(self, t: float) -> bool:
        state = self.start_closed
        for r in self.ramps:
            if t >= r.t0:
                state = r.close
        return state

    def phase_spans(self, end: float) -> list[tuple[PlannedPhase, float]]:
        """(phase, end time) with the last phase running to `end`."""
        out = []
        for i, p in enumerate(self.phases):
            nxt = self.phases[i + 1].t if i + 1 < len(self.phases) else end
            out.append((p, nxt))
        return out


def handoff(a: Motion, frac: float, step: float = 1e-3) -> float:
    """The first time after `a`'s speed peak at which its speed has dropped to `frac` of the peak."""
    ts = np.arange(a.t0, a.t1 + step / 2, step)
    v = a.speed(ts)
    peak = int(np.argmax(v))
    below = np.nonzero(v[peak:] <= frac * v[peak])[0]
    return float(ts[peak + below[0]]) if len(below) else a.t1


def crossover(a: Motion, b: Motion, step: float = 1e-3) -> float:
    """The first time in the overlap of `a` and `b` at which `b` moves the hand faster than `a`."""
    lo, hi = b.t0, max(a.t1, b.t0 + step)
    ts = np.arange(lo, hi + step / 2, step)
    faster = b.speed(ts) >= a.speed(ts)
    if not faster.any():
        return float(hi)
    return float(ts[int(np.argmax(faster))])
