"""Scripted teleoperation of the simulated Panda: the four task types and their phase schedules.

`run_episode(task_type, seed, fps=..., size=...)` builds a randomised `Scene`, drives the arm
with a scripted controller the way a teleoperator would (smooth minimum-jerk motions along
curved paths, a little hand tremor, brief dwells between phases) and records, per frame:
the state (7 joint angles + gripper opening), the action (the joint targets commanded for
the next frame + the gripper command: 1 = close, 0 = open), an RGB frame, and which phase
the command belongs to. The phase schedule is the controller's own: phase k starts at the
frame where its first command is issued; a dwell belongs to the phase it follows. The
ground truth of `carve synth` is exactly this schedule.

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

from sim.scene import COLORS, GRIPPER_MAX, SHAPES, Scene, SceneObject

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


class _Recorder:
    """Issues one command per frame and records observation, action, frame and phase."""

    def __init__(self, scene: Scene, rng: np.random.Generator, fps: int, size: int, render: bool):
        self.scene, self.rng, self.fps, self.size, self.render = scene, rng, fps, size, render
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
        pose = (*np.round(np.asarray(pos, dtype=np.float64), 9), round(float(yaw), 9))
        if pose != self._pose:  # a held pose keeps its joints: the arm does not creep while dwelling
            self._q_nominal = self.scene.solve(np.asarray(pos, dtype=np.float64), yaw)
            self._pose = pose
        # hand tremor: a slowly varying offset of ~1 mrad per joint, as in real teleoperation
        self._tremor = 0.7 * self._tremor + self.rng.normal(0.0, 0.0006, 7)
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
        for i in range(1, n + 1):
            s = float(_min_jerk(i / n))
            self.tick(_bezier(p0, c, p1, s), y0 + (y1 - y0) * s, self.width)

    def gripper(self, name: str, close: bool, width: float, secs: tuple[float, float]) -> None:
        """Close or open the fingers to `width` while the arm holds still."""
        self.begin(name)
        self.grip_cmd = 1.0 if close else 0.0
        n = self.frames_for(*secs)
        w0 = self.width
        for i in range(1, n + 1):
            s = float(_min_jerk(i / n))
            self.tick(self.pos, self.yaw, w0 + (width - w0) * s)

    def dwell(self, secs: tuple[float, float] = (0.2, 0.4)) -> None:
        for _ in range(self.frames_for(*secs)):
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


def run_episode(task_type: str, seed: int, *, fps: int = 12, size: int = 128, render: bool = True) -> SimEpisode:
    """Simulate one episode of `task_type` (see TASK_TYPES) from `seed`."""
    if task_type not in _CONTROLLERS:
        raise ValueError(f"unknown task type {task_type!r}; use one of {', '.join(TASK_TYPES)}")
    rng = np.random.default_rng(seed)
    scene = Scene(rng)
    try:
        rec = _Recorder(scene, rng, fps, size, render)
        task = _CONTROLLERS[task_type](rec)
        state, action, frames, phases = rec.finish()
    finally:
        scene.close()
    return SimEpisode(task=task, task_type=task_type, state=state, action=action, frames=frames, phases=phases)
