"""Scripted teleoperation of the simulated Panda: the four task types and their phase schedules.

`run_episode(task_type, seed, fps=..., size=..., operator_noise=...)` builds a randomised
`Scene`, drives the arm with a scripted controller the way a teleoperator would (smooth
minimum-jerk motions along curved paths, a little hand tremor, brief dwells between phases)
and records, per frame: the state (7 joint angles + gripper opening), the action (the joint
targets commanded for the next frame + the gripper command: 1 = close, 0 = open), an RGB
frame, and which phase the command belongs to. The phase schedule is the controller's own:
phase k starts at the frame where its first command is issued; a dwell belongs to the phase
it follows. The ground truth of `carve synth` is exactly this schedule.

Operator noise (`operator_noise` in [0, 1], default 0 = the clean scripted operator, whose
episodes are bit-identical to those of earlier versions). Above 0, `OperatorNoise` makes
the operator behave like a human teleoperator; every effect scales with the level:

* hand drift: a smooth, low-frequency (~0.5-2 Hz) random offset of the commanded
  end-effector target (about 2.5 mm rms horizontally at level 1, half that vertically),
  present while moving *and* while holding still (it builds up from zero at the start);
* speed variation: each motion (and gripper actuation) gets its own duration factor
  (log-normal) and an asymmetric velocity profile (a monotone time warp of minimum jerk),
  and its path bends sideways by a random control-point offset;
* hesitations: occasionally (probability ~0.4 x level per motion) the hand slows down
  mid-motion to 15-50% of its speed for 0.25-0.6 s, never to a full stop;
* variable dwells: the pauses at the real phase changes are stretched or shortened by a
  log-normal factor (never below the clean minimum of 2 frames).

The noise draws come from their own stream derived from the episode seed, so a seed gives
the same scene, task and nominal plan at every noise level; only the execution differs.
The phase schedule is still recorded from what is executed, so the ground truth stays exact.

Task types and their phases:
* `pick_place`  reach grasp lift move place release retreat
* `stack`       the same, placing one cube on another
* `push`        reach push retreat (gripper closed throughout: no grasp)
* `two_object`  reach grasp lift move place release, twice, then retreat
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from carve.sim.scene import COLORS, GRIPPER_MAX, SHAPES, Scene, SceneObject

PHASE_NAMES = ("reach", "grasp", "lift", "move", "place", "release", "retreat", "push")
TASK_TYPES = ("pick_place", "stack", "push", "two_object")
PUSH_DIRECTIONS = {"left": (0.0, 1.0), "right": (0.0, -1.0), "front": (1.0, 0.0), "back": (-1.0, 0.0)}


@dataclass
class Phase:
    """One controller phase: frames [start, end)."""

    name: str
    start: int
    end: int


@dataclass
class SimEpisode:
    """A recorded episode with its ground-truth phase schedule."""

    task: str
    task_type: str
    state: np.ndarray  # (T, 8) float32
    action: np.ndarray  # (T, 8) float32
    frames: np.ndarray  # (T, size, size, 3) uint8, or (T, 0, 0, 3) when not rendered
    phases: list[Phase] = field(default_factory=list)

    @property
    def length(self) -> int:
        return int(self.state.shape[0])

    @property
    def boundaries(self) -> list[int]:
        return [p.start for p in self.phases[1:]]

    def ground_truth(self, episode_index: int) -> dict[str, Any]:
        """This episode's entry in `ground_truth_events.json`."""
        return {
            "episode_index": int(episode_index),
            "task": self.task,
            "task_type": self.task_type,
            "length": self.length,
            "boundaries": self.boundaries,
            "phases": [{"name": p.name, "start": p.start, "end": p.end} for p in self.phases],
        }


def _min_jerk(s: np.ndarray | float) -> np.ndarray | float:
    return 10 * s**3 - 15 * s**4 + 6 * s**5


def _bezier(p0: np.ndarray, c: np.ndarray, p1: np.ndarray, s: float) -> np.ndarray:
    return (1 - s) ** 2 * p0 + 2 * (1 - s) * s * c + s**2 * p1


NOISE_STREAM = 0x6E6F6973  # mixed into the episode seed to derive the operator-noise stream


class OperatorNoise:
    """Human-teleoperator imperfections at `level` in (0, 1] (see the module docstring).

    Owns its own random stream (derived from the episode seed), so adding noise never shifts
    the draws that build the scene and the nominal plan."""

    DRIFT_XY = 0.0025  # m rms of the hand drift at level 1 (horizontal)
    DRIFT_Z = 0.00125  # m rms (vertical: operators hold height better)
    DRIFT_TAU = 0.25  # s, time constant of each of the drift's two low-pass stages
    SPEED_SIGMA = 0.25  # log-normal sigma of a motion's duration factor at level 1
    SKEW = 0.45  # max asymmetry of the velocity profile at level 1
    BEND = 0.08  # sideways bend of a path, as a fraction of its length (rms, level 1)
    HESITATION_P = 0.4  # chance of one hesitation per motion at level 1
    DWELL_SIGMA = 0.45  # log-normal sigma of a dwell's length factor at level 1

    def __init__(self, level: float, seed: int, fps: int):
        if not 0.0 < level <= 1.0:
            raise ValueError(f"operator noise must be in (0, 1], got {level}")
        self.level = float(level)
        self.fps = int(fps)
        self.rng = np.random.default_rng([int(seed), NOISE_STREAM])
        self._a = float(np.exp(-1.0 / (self.DRIFT_TAU * self.fps)))
        # two cascaded AR(1) stages; x2 has variance (1 + a^2) / (1 + a)^2 when x1 has variance 1
        self._gain = (1.0 + self._a) / np.sqrt(1.0 + self._a**2)
        # the teleop session starts registered to the robot: the drift builds up from zero
        # (over ~2 DRIFT_TAU) instead of starting with an offset, which would jump the first frame
        self._x1 = np.zeros(3)
        self._x2 = np.zeros(3)
        self._amp = self.level * np.array([self.DRIFT_XY, self.DRIFT_XY, self.DRIFT_Z])

    def _advance(self) -> None:
        a = self._a
        self._x1 = a * self._x1 + np.sqrt(1.0 - a * a) * self.rng.normal(0.0, 1.0, 3)
        self._x2 = a * self._x2 + (1.0 - a) * self._x1

    def drift(self) -> np.ndarray:
        """The hand's drift (m, xyz) for the next command: smooth, zero-mean, low-frequency."""
        self._advance()
        return self._x2 * self._gain * self._amp

    def _factor(self, sigma: float, lo: float, hi: float) -> float:
        return float(np.clip(np.exp(self.rng.normal(0.0, sigma * self.level)), lo, hi))

    def duration(self, n: int) -> int:
        """A motion's frame count after this operator's speed variation for it."""
        return max(2, round(n * self._factor(self.SPEED_SIGMA, 0.6, 1.6)))

    def dwell(self, n: int) -> int:
        """A dwell's frame count: stretched or shortened, never below the clean minimum of 2."""
        return max(2, round(n * self._factor(self.DWELL_SIGMA, 0.5, 3.0)))

    def bend(self, p0: np.ndarray, p1: np.ndarray, c: np.ndarray) -> np.ndarray:
        """The Bezier control point `c` pushed sideways (horizontally) by a random amount."""
        d = p1[:2] - p0[:2]
        norm = float(np.linalg.norm(d))
        if norm > 1e-6:
            side = np.array([-d[1], d[0]]) / norm
        else:  # a vertical motion: any horizontal direction
            ang = self.rng.uniform(0.0, 2 * np.pi)
            side = np.array([np.cos(ang), np.sin(ang)])
        length = float(np.linalg.norm(p1 - p0))
        out = c.copy()
        out[:2] += side * self.rng.normal(0.0, self.BEND * self.level) * length
        return out

    def progress(self, n: int) -> list[float]:
        """Normalised progress (0, 1] per frame of a motion planned for `n` frames: a speed
        factor, an asymmetric time warp and, sometimes, a mid-motion hesitation that slows the
        hand to 15-50% of its speed (never a stop), which makes the motion a little longer."""
        m = self.duration(n)
        w = np.ones(m)
        if m >= 8 and self.rng.random() < self.HESITATION_P * self.level:
            depth = self.rng.uniform(0.5, 0.85)
            width = max(3, round(self.rng.uniform(0.25, 0.6) * self.fps))
            extra = round(depth * width / 2)  # the frames the slow-down costs
            w = np.ones(m + extra)
            mid = round(self.rng.uniform(0.3, 0.7) * (m + extra))
            j0 = max(1, mid - width // 2)
            j = np.arange(len(w))
            inside = (j >= j0) & (j <= j0 + width)
            w[inside] -= depth * 0.5 * (1 - np.cos(2 * np.pi * (j[inside] - j0) / width))
        u = np.cumsum(w) / float(np.sum(w))
        skew = self.rng.uniform(-self.SKEW, self.SKEW) * self.level
        u = u + skew * np.sin(np.pi * u) / np.pi  # monotone: du'/du = 1 + skew cos(pi u) > 0
        u[-1] = 1.0
        return [float(v) for v in u]


class _Recorder:
    """Issues one command per frame and records observation, action, frame and phase."""

    def __init__(self, scene: Scene, rng: np.random.Generator, fps: int, size: int, render: bool,
                 noise: OperatorNoise | None = None):
        self.scene, self.rng, self.fps, self.size, self.render = scene, rng, fps, size, render
        self.noise = noise
        # the joint tremor draws from the noise stream when there is one (the main stream then
        # sees exactly the draws of the clean operator: same scene, same nominal plan)
        self._tremor_rng = rng if noise is None else noise.rng
        self.states: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.frames: list[np.ndarray] = []
        self.phases: list[Phase] = []
        self.pos = scene.ee_position()
        self.yaw = 0.0
        self.width = scene.width
        self.grip_cmd = 0.0
        self._tremor = np.zeros(7)
        self._pose: tuple[float, ...] = ()
        self._q_nominal = scene.q.copy()

    @property
    def t(self) -> int:
        return len(self.states)

    def frames_for(self, lo_s: float, hi_s: float) -> int:
        return max(2, round(self.rng.uniform(lo_s, hi_s) * self.fps))

    def begin(self, name: str) -> None:
        assert name in PHASE_NAMES, name
        if self.phases:
            self.phases[-1].end = self.t
        self.phases.append(Phase(name, self.t, self.t))

    def tick(self, pos: np.ndarray, yaw: float, width: float) -> None:
        """Record the current observation, then command the hand to `pos`/`yaw`/`width`."""
        self.states.append(self.scene.observe())
        if self.render:
            self.frames.append(self.scene.render(self.size))
        cmd = np.asarray(pos, dtype=np.float64)
        if self.noise is not None:  # the operator's hand drifts around the intended target
            cmd = cmd + self.noise.drift()
            cmd[2] = max(cmd[2], 0.008)  # the fingertips stay above the table
        pose = (*np.round(cmd, 9), round(float(yaw), 9))
        if pose != self._pose:  # a held pose keeps its joints: the arm does not creep while dwelling
            self._q_nominal = self.scene.solve(cmd, yaw)
            self._pose = pose
        # hand tremor: a slowly varying offset of ~1 mrad per joint, as in real teleoperation
        self._tremor = 0.7 * self._tremor + self._tremor_rng.normal(0.0, 0.0006, 7)
        q1 = self._q_nominal + self._tremor
        self.actions.append(np.asarray([*q1, self.grip_cmd], dtype=np.float32))
        self.scene.drive(q1, width, self.fps)
        self.pos, self.yaw, self.width = np.asarray(pos, dtype=np.float64), yaw, width

    def move(self, name: str | None, target: np.ndarray, secs: tuple[float, float], *,
             arc: float = 0.0, yaw: float | None = None) -> None:
        """A smooth minimum-jerk motion to `target`, bulging up by `arc` metres mid-way."""
        if name:
            self.begin(name)
        n = self.frames_for(*secs)
        p0, p1 = self.pos.copy(), np.asarray(target, dtype=np.float64)
        c = (p0 + p1) / 2
        c[2] += arc
        y0, y1 = self.yaw, self.yaw if yaw is None else yaw
        if self.noise is None:
            progress = [i / n for i in range(1, n + 1)]
        else:
            c = self.noise.bend(p0, p1, c)
            progress = self.noise.progress(n)
        for u in progress:
            s = float(_min_jerk(u))
            self.tick(_bezier(p0, c, p1, s), y0 + (y1 - y0) * s, self.width)

    def gripper(self, name: str, close: bool, width: float, secs: tuple[float, float]) -> None:
        """Close or open the fingers to `width` while the arm holds still."""
        self.begin(name)
        self.grip_cmd = 1.0 if close else 0.0
        n = self.frames_for(*secs)
        if self.noise is not None:
            n = self.noise.duration(n)
        w0 = self.width
        for i in range(1, n + 1):
            s = float(_min_jerk(i / n))
            self.tick(self.pos, self.yaw, w0 + (width - w0) * s)

    def dwell(self, secs: tuple[float, float] = (0.2, 0.4)) -> None:
        """Hold still (up to the operator's drift) at a phase change."""
        n = self.frames_for(*secs)
        if self.noise is not None:
            n = self.noise.dwell(n)
        for _ in range(n):
            self.tick(self.pos, self.yaw, self.width)

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Phase]]:
        self.phases[-1].end = self.t
        frames = (np.stack(self.frames) if self.frames
                  else np.zeros((self.t, 0, 0, 3), dtype=np.uint8))
        return np.stack(self.states), np.stack(self.actions), frames, self.phases


# --------------------------------------------------------------------------------------------
# World sampling


def _sample_positions(rng: np.random.Generator, n: int, side: float, min_dist: float = 0.09) -> list[np.ndarray]:
    """`n` object positions on the table half opposite the tray (`side` = sign of the tray's y)."""
    out: list[np.ndarray] = []
    for _ in range(500):
        p = np.array([rng.uniform(0.42, 0.62), -side * rng.uniform(0.02, 0.26)])
        if all(np.linalg.norm(p - q) >= min_dist for q in out):
            out.append(p)
            if len(out) == n:
                return out
    raise RuntimeError(f"could not place {n} objects apart")


def _build_world(scene: Scene, rng: np.random.Generator, shapes: list[str], with_tray: bool = True
                 ) -> tuple[list[SceneObject], float]:
    side = float(rng.choice([-1.0, 1.0]))
    if with_tray:
        scene.add_tray((float(rng.uniform(0.45, 0.58)), side * float(rng.uniform(0.27, 0.33))),
                       float(rng.uniform(0.42, 0.5)), rng)
    n_distractors = int(rng.integers(0, 3))
    colors = list(rng.permutation(list(COLORS)))
    positions = _sample_positions(rng, len(shapes) + n_distractors, side)
    objs = []
    for i, shape in enumerate(shapes):
        objs.append(scene.add_object(shape, tuple(positions[i]), float(rng.uniform(0.035, 0.05)),
                                     float(rng.uniform(-0.6, 0.6)), colors[i]))
    for j in range(n_distractors):
        k = len(shapes) + j
        scene.add_object(str(rng.choice(SHAPES)), tuple(positions[k]), float(rng.uniform(0.03, 0.045)),
                         float(rng.uniform(-0.6, 0.6)), colors[k])
    scene.settle_world()
    return objs, side


def _random_shape(rng: np.random.Generator) -> str:
    return str(rng.choice(SHAPES))


def _uniform(rec: _Recorder, lo: float, hi: float) -> float:
    return float(rec.rng.uniform(lo, hi))


# --------------------------------------------------------------------------------------------
# Controllers


def _pick(rec: _Recorder, obj: SceneObject, *, arc: float = 0.12) -> None:
    """reach (already begun by the caller) -> grasp -> lift."""
    scene = rec.scene
    p = scene.object_position(obj)
    grasp_z = max(obj.half[2], 0.018)
    rec.move(None, np.array([p[0], p[1], grasp_z]), (1.2, 1.8), arc=arc, yaw=obj.yaw)
    rec.dwell()
    rec.gripper("grasp", True, obj.grip_width, (0.35, 0.5))
    scene.grasp(obj)
    rec.dwell()
    rec.move("lift", np.array([p[0], p[1], grasp_z + _uniform(rec, 0.10, 0.15)]), (0.6, 0.9))
    rec.dwell()


def _place_at(rec: _Recorder, obj: SceneObject, xy: np.ndarray, z: float) -> None:
    scene = rec.scene
    hover = max(rec.pos[2], z + 0.08)
    rec.move("move", np.array([xy[0], xy[1], hover]), (1.0, 1.6), arc=0.04)
    rec.dwell()
    rec.move("place", np.array([xy[0], xy[1], z]), (0.6, 0.9))
    rec.dwell()
    scene.release()
    rec.gripper("release", False, GRIPPER_MAX, (0.3, 0.45))
    rec.dwell()


def _retreat(rec: _Recorder) -> None:
    target = rec.scene.home + rec.rng.uniform(-0.04, 0.04, 3)
    rec.move("retreat", target, (0.8, 1.2), arc=0.03)
    rec.dwell((0.1, 0.3))


def _tray_spot(scene: Scene, rng: np.random.Generator, k: int = 0, of: int = 1) -> np.ndarray:
    assert scene.tray_pos is not None
    tx, ty = scene.tray_pos
    r = scene.tray_half * 0.45
    if of == 1:
        return np.array([tx + rng.uniform(-r, r) * 0.5, ty + rng.uniform(-r, r) * 0.5])
    dy = (-1 if k == 0 else 1) * r * 0.8
    return np.array([tx + rng.uniform(-r, r) * 0.4, ty + dy])


def _tray_floor(scene: Scene) -> float:
    return 0.02 * (scene.tray_half / 0.3) + 0.005


def _pick_place(rec: _Recorder) -> str:
    scene, rng = rec.scene, rec.rng
    (obj,), _ = _build_world(scene, rng, [_random_shape(rng)])
    rec.begin("reach")
    _idle(rec)
    _pick(rec, obj)
    spot = _tray_spot(scene, rng)
    _place_at(rec, obj, spot, _tray_floor(scene) + max(obj.half[2], 0.018) + 0.01)
    _retreat(rec)
    return f"put the {obj.color} {obj.shape} in the tray"


def _stack(rec: _Recorder) -> str:
    scene, rng = rec.scene, rec.rng
    (top, base), _ = _build_world(scene, rng, ["cube", "cube"], with_tray=False)
    rec.begin("reach")
    _idle(rec)
    _pick(rec, top)
    bp = scene.object_position(base)
    _place_at(rec, top, bp[:2], base.height + top.half[2] + 0.008)
    _retreat(rec)
    return f"stack the {top.color} cube on the {base.color} cube"


def _push(rec: _Recorder) -> str:
    scene, rng = rec.scene, rec.rng
    shape = str(rng.choice(["cube", "block", "cylinder"]))
    (obj,), _ = _build_world(scene, rng, [shape], with_tray=bool(rng.random() < 0.5))
    direction = str(rng.choice(list(PUSH_DIRECTIONS)))
    d = np.array([*PUSH_DIRECTIONS[direction], 0.0])
    scene.width = 0.0  # a closed fist pushes; the gripper stays closed for the whole episode
    rec.width = 0.0
    rec.grip_cmd = 1.0
    scene.settle_world(5)
    p = scene.object_position(obj)
    radius = max(obj.half[0], obj.half[1])
    z = max(obj.half[2] * 0.8, 0.015)
    start = np.array([p[0], p[1], z]) - d * (radius + 0.035)
    yaw = float(np.arctan2(d[1], d[0])) + np.pi / 2  # finger pads face the push direction
    yaw = (yaw + np.pi / 2) % np.pi - np.pi / 2  # the hand is symmetric under a half turn
    rec.begin("reach")
    _idle(rec)
    rec.move(None, start, (1.2, 1.8), arc=0.15, yaw=yaw)
    rec.dwell()
    rec.move("push", start + d * _uniform(rec, 0.10, 0.16), (0.8, 1.2))
    rec.dwell()
    _retreat(rec)
    return f"push the {obj.color} {obj.shape} to the {direction}"


def _two_object(rec: _Recorder) -> str:
    scene, rng = rec.scene, rec.rng
    (a, b), _ = _build_world(scene, rng, [_random_shape(rng), _random_shape(rng)])
    rec.begin("reach")
    _idle(rec)
    for k, obj in enumerate((a, b)):
        if k:
            rec.begin("reach")  # the second reach starts from the tray
        _pick(rec, obj, arc=0.12 if k == 0 else 0.06)
        _place_at(rec, obj, _tray_spot(scene, rng, k, 2), _tray_floor(scene) + max(obj.half[2], 0.018) + 0.01)
    _retreat(rec)
    return f"put the {a.color} {a.shape} and then the {b.color} {b.shape} in the tray"


def _idle(rec: _Recorder) -> None:
    """Operators often take a moment before they start moving (part of the first phase)."""
    n = int(rec.rng.integers(0, 3))
    for _ in range(n):
        rec.tick(rec.pos, rec.yaw, rec.width)


_CONTROLLERS = {"pick_place": _pick_place, "stack": _stack, "push": _push, "two_object": _two_object}


def run_episode(task_type: str, seed: int, *, fps: int = 12, size: int = 128, render: bool = True,
                operator_noise: float = 0.0) -> SimEpisode:
    """Simulate one episode of `task_type` (see TASK_TYPES) from `seed`.

    `operator_noise` in [0, 1] adds human-teleoperator imperfections (`OperatorNoise`);
    0 is the clean scripted operator."""
    if task_type not in _CONTROLLERS:
        raise ValueError(f"unknown task type {task_type!r}; use one of {', '.join(TASK_TYPES)}")
    if not 0.0 <= operator_noise <= 1.0:
        raise ValueError(f"operator_noise must be in [0, 1], got {operator_noise}")
    noise = OperatorNoise(operator_noise, seed, fps) if operator_noise > 0 else None
    rng = np.random.default_rng(seed)
    scene = Scene(rng)
    try:
        rec = _Recorder(scene, rng, fps, size, render, noise)
        task = _CONTROLLERS[task_type](rec)
        state, action, frames, phases = rec.finish()
    finally:
        scene.close()
    return SimEpisode(task=task, task_type=task_type, state=state, action=action, frames=frames, phases=phases)
