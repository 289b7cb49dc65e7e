"""Simulated teleoperation episodes: the task types, their plans, and the physics rollout.

`run_episode(task_type, seed, fps=..., size=..., style=..., arms=..., cameras=...,
operator_noise=..., noise_seed=..., plan_seed=...)` builds a randomised `Scene`, plans what
the operator commands (`sim.operator.ArmPlan`, in seconds), and runs it under physics: at each physics step the
commanded hand pose (plus tremor) goes through IK to the joint servos, grasps are made by
contact; at each recorded frame (1/fps) it reads back the measured state and renders every
camera. Recorded per frame:

* state: per arm the 7 measured joint angles and the measured finger gap (m, with
  gripper-sensor noise);
* action: per arm the 7 commanded joint targets at that frame and the gripper command: one
  arm records the binary command (1 = close, 0 = open, `gripper_command`); two arms record
  the commanded finger gap in metres, as an ALOHA leader arm does (`left_gripper`, ...);
* one RGB frame per camera (`observation.images.<name>`).

The ground truth is the operator's phase schedule, sampled at the dataset's fps: a phase
starts at the first frame at or after its planned start time (see `sim/operator.py` for
where a phase starts); phases are per arm and carry an `arm` field.

Task types (`TASK_TYPES`, one arm) and their phases:
* `pick_place`  reach grasp lift move place release retreat
* `stack`       the same, placing one cube on another
* `push`        reach push retreat (gripper closed throughout: no grasp)
* `two_object`  reach grasp lift move place release, twice, then retreat
Two arms (`TWO_ARM_TASK_TYPES`):
* `bimanual_pick_place`  each arm puts its own object into the shared tray (pick_place
  phases per arm); the right arm starts while the left one is placing, releasing or
  retreating, so their activity overlaps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from carve.sim.operator import MIN_PHASE, PHASE_NAMES, STYLES, ArmPlan, OperatorNoise
from carve.sim.scene import (
    COLORS,
    GRIPPER_MAX,
    SHAPES,
    Scene,
    SceneObject,
    action_names,
    arm_names,
    camera_names,
    state_names,
)

TASK_TYPES = ("pick_place", "stack", "push", "two_object")
TWO_ARM_TASK_TYPES = ("bimanual_pick_place",)
ALL_TASK_TYPES = TASK_TYPES + TWO_ARM_TASK_TYPES
PUSH_DIRECTIONS = {"left": (0.0, 1.0), "right": (0.0, -1.0), "front": (1.0, 0.0), "back": (-1.0, 0.0)}
MIN_ARM_GAP = 0.3  # s: phase changes of different arms are at least this far apart
FPS_RANGE = (10, 50)
__all__ = [
    "ALL_TASK_TYPES",
    "MIN_PHASE",
    "PHASE_NAMES",
    "STYLES",
    "TASK_TYPES",
    "TWO_ARM_TASK_TYPES",
    "Phase",
    "SimEpisode",
    "run_episode",
    "task_types_for",
]


def task_types_for(arms: int) -> tuple[str, ...]:
    return TASK_TYPES if arms == 1 else TWO_ARM_TASK_TYPES


@dataclass
class Phase:
    """One phase of one arm: frames [start, end) and seconds [start_s, end_s)."""

    name: str
    start: int
    end: int
    arm: str = "arm"
    start_s: float = 0.0
    end_s: float = 0.0
    obj: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "start": self.start, "end": self.end, "arm": self.arm,
                "start_s": round(self.start_s, 4), "end_s": round(self.end_s, 4), "object": self.obj}


@dataclass
class SimEpisode:
    """A recorded episode with its ground-truth phase schedule and the simulator's own traces."""

    task: str
    task_type: str
    fps: int
    style: str
    arms: list[str]
    cameras: list[str]  # feature keys, observation.images.<name>
    state: np.ndarray  # (T, Ds) float32
    action: np.ndarray  # (T, Da) float32
    frames: dict[str, np.ndarray]  # key -> (T, H, W, 3) uint8 (empty dict when not rendered)
    phases: list[Phase] = field(default_factory=list)  # all arms, sorted by start
    duration_s: float = 0.0
    ee_cmd: np.ndarray | None = None  # (T, arms, 3) commanded grasp-frame position (with tremor)
    ee_meas: np.ndarray | None = None  # (T, arms, 3) measured grasp-frame position
    objects: dict[str, np.ndarray] = field(default_factory=dict)  # task object name -> (T, 3) position
    held: np.ndarray | None = None  # (T, arms) bool: the arm holds an object (grasp constraint)

    @property
    def length(self) -> int:
        return int(self.state.shape[0])

    @property
    def state_names(self) -> list[str]:
        return state_names(len(self.arms))

    @property
    def action_names(self) -> list[str]:
        return action_names(len(self.arms))

    def arm_phases(self, arm: str) -> list[Phase]:
        return [p for p in self.phases if p.arm == arm]

    def arm_boundaries(self, arm: str) -> list[int]:
        return [p.start for p in self.arm_phases(arm) if p.start > 0]

    @property
    def boundaries(self) -> list[int]:
        """The union over arms of the frames where a phase starts (0 excluded)."""
        return sorted({p.start for p in self.phases if 0 < p.start < self.length})

    def ground_truth(self, episode_index: int) -> dict[str, Any]:
        """This episode's entry in `ground_truth_events.json`."""
        return {
            "episode_index": int(episode_index),
            "task": self.task,
            "task_type": self.task_type,
            "length": self.length,
            "fps": self.fps,
            "duration_s": round(self.duration_s, 4),
            "style": self.style,
            "arms": list(self.arms),
            "cameras": list(self.cameras),
            "boundaries": self.boundaries,
            "arm_boundaries": {a: self.arm_boundaries(a) for a in self.arms},
            "phases": [p.to_json() for p in self.phases],
        }


# --------------------------------------------------------------------------------------------
# World sampling


def _sample_positions(rng: np.random.Generator, n: int, xr: tuple[float, float], yr: tuple[float, float],
                      min_dist: float = 0.09, taken: list[np.ndarray] | None = None) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    others = list(taken or [])
    if n == 0:
        return out
    for _ in range(500):
        p = np.array([rng.uniform(*xr), rng.uniform(*yr)])
        if all(np.linalg.norm(p - q) >= min_dist for q in [*out, *others]):
            out.append(p)
            if len(out) == n:
                return out
    raise RuntimeError(f"could not place {n} objects apart")


def _add_objects(scene: Scene, rng: np.random.Generator, shapes: list[str], positions: list[np.ndarray],
                 colors: list[str], size: tuple[float, float] = (0.035, 0.05)) -> list[SceneObject]:
    return [scene.add_object(shape, (float(p[0]), float(p[1])), float(rng.uniform(*size)),
                             float(rng.uniform(-0.6, 0.6)), colors[i])
            for i, (shape, p) in enumerate(zip(shapes, positions, strict=True))]


def _build_world(scene: Scene, rng: np.random.Generator, shapes: list[str], with_tray: bool = True
                 ) -> list[SceneObject]:
    """One arm: the tray on one side, the objects (and 0-2 distractors) on the other."""
    side = float(rng.choice([-1.0, 1.0]))
    if with_tray:
        scene.add_tray((float(rng.uniform(0.45, 0.58)), side * float(rng.uniform(0.27, 0.33))),
                       float(rng.uniform(0.42, 0.5)), rng)
    n_distractors = int(rng.integers(0, 3))
    colors = [str(c) for c in rng.permutation(list(COLORS))]
    ys = (-side * 0.26, -side * 0.02) if side > 0 else (-side * 0.02, -side * 0.26)
    positions = _sample_positions(rng, len(shapes) + n_distractors, (0.42, 0.62), ys)
    objs = _add_objects(scene, rng, shapes, positions[: len(shapes)], colors)
    _add_objects(scene, rng, [str(rng.choice(SHAPES)) for _ in range(n_distractors)], positions[len(shapes):],
                 colors[len(shapes):], (0.03, 0.045))
    scene.settle_world()
    return objs


def _random_shape(rng: np.random.Generator) -> str:
    return str(rng.choice(SHAPES))


# --------------------------------------------------------------------------------------------
# Plans


def _new_plan(scene: Scene, arm_index: int, style: str, rng: np.random.Generator, noise: OperatorNoise,
              *, closed: bool = False) -> ArmPlan:
    arm = scene.arms[arm_index]
    width = 0.0 if closed else GRIPPER_MAX
    return ArmPlan(arm=arm.name, start_pos=arm.home.copy(), start_yaw=0.0, start_width=width, style=style, rng=rng,
                   noise=noise, start_closed=closed)


def _idle(plan: ArmPlan) -> None:
    """Operators often take a moment before they start moving (part of the first phase)."""
    plan.hold(float(plan.rng.uniform(0.0, 0.2)))


def _pick(plan: ArmPlan, scene: Scene, obj: SceneObject, *, arc: float = 0.12, first: bool = True) -> None:
    """reach -> grasp -> lift."""
    p = scene.object_position(obj)
    grasp_z = max(obj.half[2], 0.018)
    plan.begin("reach", obj.name)
    if first:
        _idle(plan)
    plan.move(None, np.array([p[0], p[1], grasp_z]), (1.2, 1.8), arc=arc, rise=0.0 if first else 0.1,
              descend=0.1, yaw=obj.yaw)
    plan.pause()
    plan.react()
    plan.grip("grasp", True, max(obj.grip_width - 0.012, 0.0), (0.35, 0.5), obj.name)
    plan.pause()
    plan.react()
    plan.move("lift", np.array([p[0], p[1], grasp_z + float(plan.rng.uniform(0.10, 0.15))]), (0.6, 0.9),
              obj=obj.name)
    plan.pause()


def _place_at(plan: ArmPlan, obj: SceneObject, xy: np.ndarray, z: float) -> None:
    """move -> place (lower) -> release; lift, move and place blend in the blended style."""
    hover = max(plan.pos[2], z + 0.08)
    plan.move("move", np.array([xy[0], xy[1], hover]), (1.0, 1.6), arc=0.04, blend=True, obj=obj.name)
    plan.pause()
    plan.move("place", np.array([xy[0], xy[1], z]), (0.6, 0.9), blend=True, obj=obj.name)
    plan.pause()
    plan.react()
    plan.grip("release", False, GRIPPER_MAX, (0.3, 0.45), obj.name, early=(0.6, 0.9))
    plan.pause()


def _retreat(plan: ArmPlan, home: np.ndarray, *, blend: bool = False, overlap: tuple[float, float] = (0.3, 0.5)
             ) -> None:
    target = home + plan.rng.uniform(-0.04, 0.04, 3)
    plan.move("retreat", target, (0.8, 1.2), arc=0.03, rise=0.0 if blend else 0.08, blend=blend, overlap=overlap)
    plan.hold(float(plan.rng.uniform(0.1, 0.3)))


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


def _place_z(scene: Scene, obj: SceneObject) -> float:
    return _tray_floor(scene) + max(obj.half[2], 0.018) + 0.01


@dataclass
class _Plan:
    task: str
    plans: list[ArmPlan]
    graspable: list[list[SceneObject]]  # per arm
    tracked: list[SceneObject]


def _pick_place(scene: Scene, rng: np.random.Generator, style: str, noise: OperatorNoise,
                prng: np.random.Generator) -> _Plan:
    (obj,) = _build_world(scene, rng, [_random_shape(rng)])
    plan = _new_plan(scene, 0, style, prng, noise)
    _pick(plan, scene, obj)
    _place_at(plan, obj, _tray_spot(scene, prng), _place_z(scene, obj))
    _retreat(plan, scene.arms[0].home)
    return _Plan(f"put the {obj.color} {obj.shape} in the tray", [plan], [[obj]], [obj])


def _stack(scene: Scene, rng: np.random.Generator, style: str, noise: OperatorNoise,
           prng: np.random.Generator) -> _Plan:
    top, base = _build_world(scene, rng, ["cube", "cube"], with_tray=False)
    plan = _new_plan(scene, 0, style, prng, noise)
    _pick(plan, scene, top)
    bp = scene.object_position(base)
    _place_at(plan, top, bp[:2], base.height + top.half[2] + 0.008)
    _retreat(plan, scene.arms[0].home)
    return _Plan(f"stack the {top.color} cube on the {base.color} cube", [plan], [[top]], [top, base])


def _push(scene: Scene, rng: np.random.Generator, style: str, noise: OperatorNoise,
          prng: np.random.Generator) -> _Plan:
    shape = str(rng.choice(["cube", "block", "cylinder"]))
    (obj,) = _build_world(scene, rng, [shape], with_tray=bool(rng.random() < 0.5))
    direction = str(rng.choice(list(PUSH_DIRECTIONS)))
    d = np.array([*PUSH_DIRECTIONS[direction], 0.0])
    plan = _new_plan(scene, 0, style, prng, noise, closed=True)  # a closed fist pushes: no grasp
    p = scene.object_position(obj)
    radius = max(obj.half[0], obj.half[1])
    z = max(obj.half[2] * 0.8, 0.015)
    start = np.array([p[0], p[1], z]) - d * (radius + 0.035)
    yaw = float(np.arctan2(d[1], d[0])) + np.pi / 2  # finger pads face the push direction
    yaw = (yaw + np.pi / 2) % np.pi - np.pi / 2  # the hand is symmetric under a half turn
    plan.begin("reach", obj.name)
    _idle(plan)
    plan.move(None, start, (1.2, 1.8), arc=0.15, descend=0.08, yaw=yaw)
    plan.pause()
    plan.move("push", start + d * float(prng.uniform(0.10, 0.16)), (0.8, 1.2), blend=True, overlap=(0.15, 0.3),
              obj=obj.name)
    plan.pause()
    _retreat(plan, scene.arms[0].home, blend=True, overlap=(0.3, 0.5))
    return _Plan(f"push the {obj.color} {obj.shape} to the {direction}", [plan], [[]], [obj])


def _two_object(scene: Scene, rng: np.random.Generator, style: str, noise: OperatorNoise,
                prng: np.random.Generator) -> _Plan:
    a, b = _build_world(scene, rng, [_random_shape(rng), _random_shape(rng)])
    plan = _new_plan(scene, 0, style, prng, noise)
    for k, obj in enumerate((a, b)):
        _pick(plan, scene, obj, arc=0.12 if k == 0 else 0.06, first=k == 0)
        _place_at(plan, obj, _tray_spot(scene, prng, k, 2), _place_z(scene, obj))
    _retreat(plan, scene.arms[0].home)
    return _Plan(f"put the {a.color} {a.shape} and then the {b.color} {b.shape} in the tray", [plan], [[a, b]], [a, b])


def _bimanual_pick_place(scene: Scene, rng: np.random.Generator, style: str, noise: OperatorNoise,
                         prng: np.random.Generator) -> _Plan:
    """Two arms, a shared tray in the middle; each arm puts the object on its side into it."""
    scene.add_tray((float(rng.uniform(0.47, 0.53)), float(rng.uniform(-0.02, 0.02))), float(rng.uniform(0.42, 0.48)),
                   rng)
    colors = [str(c) for c in rng.permutation(list(COLORS))]
    left_p = _sample_positions(rng, 1, (0.42, 0.6), (0.22, 0.4))
    right_p = _sample_positions(rng, 1, (0.42, 0.6), (-0.4, -0.22))
    n_distractors = int(rng.integers(0, 3))
    extra = _sample_positions(rng, n_distractors, (0.42, 0.62), (0.2, 0.42), taken=[*left_p,
                              *(np.array([p[0], -p[1]]) for p in right_p)])
    extra = [np.array([p[0], p[1] * (1 if k % 2 == 0 else -1)]) for k, p in enumerate(extra)]
    left, right = _add_objects(scene, rng, [_random_shape(rng), _random_shape(rng)], [*left_p, *right_p], colors)
    _add_objects(scene, rng, [str(rng.choice(SHAPES)) for _ in range(n_distractors)], extra, colors[2:],
                 (0.03, 0.045))
    scene.settle_world()
    plans = []
    for i, obj in enumerate((left, right)):
        plan = _new_plan(scene, i, style, prng, noise)
        _pick(plan, scene, obj, first=i == 0)
        spot = np.array(scene.tray_pos) + np.array([prng.uniform(-0.03, 0.03), (1 if i == 0 else -1) * 0.06])
        _place_at(plan, obj, spot, _place_z(scene, obj))
        _retreat(plan, scene.arms[i].home)
        plans.append(plan)
    lp, rp = plans
    starts = {p.name: p.t for p in lp.phases}
    # the right arm starts while the left one finishes (placing, releasing or retreating), at
    # least MIN_ARM_GAP away from every phase change of the left arm
    t_r = float(prng.uniform(starts["place"], starts["retreat"] + 0.5))
    left_t = [p.t for p in lp.phases]
    for _ in range(100):
        right_t = [p.t + t_r for p in rp.phases]
        if min(abs(a - b) for a in left_t for b in right_t) >= MIN_ARM_GAP:
            break
        t_r += 0.05
    rp.shifted(t_r)
    return _Plan(f"put the {left.color} {left.shape} in the tray with the left arm and the "
                 f"{right.color} {right.shape} with the right arm", plans, [[left], [right]], [left, right])


_PLAN_STREAM = 0x504C414E  # separates a plan_seed's generator from a scene seed's of the same value

_PLANNERS = {"pick_place": _pick_place, "stack": _stack, "push": _push, "two_object": _two_object,
             "bimanual_pick_place": _bimanual_pick_place}


# --------------------------------------------------------------------------------------------
# Rollout


def _frame_of(t: float, fps: int) -> int:
    """The first frame at or after time `t`."""
    return math.ceil(t * fps - 1e-6)


def _phases(plans: list[ArmPlan], end: float, n: int, fps: int) -> list[Phase]:
    out = []
    for plan in plans:
        spans = plan.phase_spans(end)
        for k, (p, t_end) in enumerate(spans):
            start = min(_frame_of(p.t, fps), n)
            stop = n if k + 1 == len(spans) else min(_frame_of(t_end, fps), n)
            out.append(Phase(p.name, start, stop, plan.arm, p.t, t_end, p.obj))
    order = {p.arm: i for i, p in enumerate(plans)}
    out.sort(key=lambda ph: (ph.start, order[ph.arm]))
    return out


def _rollout(scene: Scene, planned: _Plan, fps: int, size: int, cams: list[str], render: bool,
             noise: OperatorNoise) -> dict[str, Any]:
    plans = planned.plans
    arms = scene.arms
    for arm, objs in zip(arms, planned.graspable, strict=True):
        arm.graspable = list(objs)
    end = max(p.end for p in plans)
    n = max(1, _frame_of(end, fps))
    tremors = [noise.tremor(end + 1.0) for _ in plans]
    n_sub = scene.set_substeps(fps)
    binary_gripper = len(arms) == 1

    def command(i: int, t: float) -> tuple[np.ndarray, float, float]:
        plan = plans[i]
        pos, yaw = plan.pose(t)
        pos = pos + tremors[i](t)
        pos[2] = max(pos[2], 0.008)  # the fingertips stay above the table
        width = plan.width(t)
        q = scene.command(arms[i], pos, yaw, width, plan.closed(t))
        return q, width, pos

    for i in range(len(arms)):  # servos settle on the start pose at this physics rate (not recorded)
        command(i, 0.0)
    scene.settle_world(0.25)
    states, actions, ee_cmd, ee_meas, held = [], [], [], [], []
    frames: dict[str, list[np.ndarray]] = {c: [] for c in cams} if render else {}
    tracks: dict[str, list[np.ndarray]] = {o.name: [] for o in planned.tracked}
    for k in range(n):
        t = k / fps
        st, ac, ec, em = [], [], [], []
        sensor = noise.gripper_sensor(len(arms))
        for i, arm in enumerate(arms):
            st.extend([*scene.joint_positions(arm), max(0.0, scene.gripper_opening(arm) + float(sensor[i]))])
            em.append(scene.ee_position(arm))
        for cam in frames:
            frames[cam].append(scene.render(cam, size))
        for o in planned.tracked:
            tracks[o.name].append(scene.object_position(o))
        held.append([arm.held is not None for arm in arms])
        for i in range(len(arms)):
            q, width, pos = command(i, t)
            grip = (1.0 if plans[i].closed(t) else 0.0) if binary_gripper else width
            ac.extend([*q, grip])
            ec.append(pos)
        states.append(np.asarray(st, dtype=np.float32))
        actions.append(np.asarray(ac, dtype=np.float32))
        ee_cmd.append(ec)
        ee_meas.append(em)
        for j in range(n_sub):
            if j:
                for i in range(len(arms)):
                    command(i, t + j * scene.dt)
            scene.step()
    return {
        "state": np.stack(states), "action": np.stack(actions), "end": end, "n": n,
        "frames": {f"observation.images.{c}": np.stack(v) for c, v in frames.items()},
        "ee_cmd": np.asarray(ee_cmd), "ee_meas": np.asarray(ee_meas), "held": np.asarray(held, dtype=bool),
        "objects": {name: np.asarray(v) for name, v in tracks.items()},
    }


def run_episode(task_type: str, seed: int, *, fps: int = 12, size: int = 128, render: bool = True,
                operator_noise: float = 0.0, style: str = "dwell", arms: int = 1, cameras: int = 1,
                noise_seed: int | None = None, plan_seed: int | None = None) -> SimEpisode:
    """Simulate one episode of `task_type` from `seed` (see the module docstring).

    `fps` in FPS_RANGE (the motion takes the same seconds at any rate), `style` in STYLES,
    `arms` 1 or 2 (two arms run `TWO_ARM_TASK_TYPES`), `cameras` views per frame,
    `operator_noise` in [0, 1] (0 = the clean scripted operator).

    `seed` draws the scene (cameras, lighting, objects, tray, the task) and, by default, the
    plan and the operator noise too. `noise_seed` (default: `seed`) seeds the operator noise
    alone: the same seed with another `noise_seed` (and `operator_noise` > 0) is a
    re-recording of the same demonstration by a new take of the operator. `plan_seed`
    (default: none, the plan draws from the scene's generator right after the scene) gives
    the plan (timings, the place spot, lift height, retreat target) its own generator: the
    same seed with another `plan_seed` is a distinct demonstration of the same task in the
    same scene. With both left at None every output is what it was before they existed."""
    if arms not in (1, 2):
        raise ValueError(f"arms must be 1 or 2, got {arms}")
    allowed = task_types_for(arms)
    if task_type not in allowed:
        raise ValueError(f"unknown task type {task_type!r} for {arms} arm(s); use one of {', '.join(allowed)}")
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; use one of {', '.join(STYLES)}")
    if not 0.0 <= operator_noise <= 1.0:
        raise ValueError(f"operator_noise must be in [0, 1], got {operator_noise}")
    if not FPS_RANGE[0] <= fps <= FPS_RANGE[1]:
        raise ValueError(f"fps must be in [{FPS_RANGE[0]}, {FPS_RANGE[1]}], got {fps}")
    cams = camera_names(arms, cameras)
    noise = OperatorNoise(operator_noise, seed if noise_seed is None else noise_seed)
    rng = np.random.default_rng(seed)
    prng = rng if plan_seed is None else np.random.default_rng([int(plan_seed), _PLAN_STREAM])
    scene = Scene(rng, arms=arms, cameras=cams)
    try:
        planned = _PLANNERS[task_type](scene, rng, style, noise, prng)
        rec = _rollout(scene, planned, fps, size, cams, render, noise)
    finally:
        scene.close()
    phases = _phases(planned.plans, rec["end"], rec["n"], fps)
    bad = [p for p in phases if p.end <= p.start]
    if bad:  # MIN_PHASE and MIN_ARM_GAP make this impossible at fps >= 10
        raise RuntimeError(f"{task_type} seed {seed}: phases {bad} have no frame at {fps} fps")
    return SimEpisode(
        task=planned.task, task_type=task_type, fps=fps, style=style, arms=list(arm_names(arms)),
        cameras=[f"observation.images.{c}" for c in cams], state=rec["state"], action=rec["action"],
        frames=rec["frames"], phases=phases, duration_s=rec["n"] / fps, ee_cmd=rec["ee_cmd"],
        ee_meas=rec["ee_meas"], objects=rec["objects"], held=rec["held"],
    )
