"""`SimEnv`: the `carve synth` world as an environment an agent acts in (closed-loop evaluation).

    env = SimEnv(fps=12)
    obs = env.reset("pick_place", seed=7)
    while True:
        obs, reward, done, info = env.step(action)       # action: the dataset's action columns
        if done:
            break
    info["success"], info["progress"]                     # predicate now, 0..100 phases achieved

Same scenes and physics as `carve synth` (`sim/scene.py`, `sim/tasks.py`): `reset` builds the
scene exactly as `run_episode` does (same rng stream, the task's planner, the world settled,
the servos settled on the start pose at the control rate), so the first observation is the
recorded episode's first state. What the scripted operator would do is not used to act.

Seeds. `reset(task, seed)` gives the scene of `run_episode(task, seed, ...)` with the same
`arms`/`cameras` (the cameras' poses are drawn from the scene's rng, so their count is part of
the scene; style, fps and operator noise are not). Episode `i` of `carve synth --seed S --tasks
T1 T2 ...` is `reset(T[i % len(T)], episode_seed(S, i))` (`synth_episode(S, i, tasks)` returns
that pair); `carve synth`'s default conditions (one camera and 12 fps for dwell with one arm,
two cameras and 30 fps otherwise) are this env's defaults too (`style` picks them; it changes nothing else).

Actions (`action_names(arms)`, the dataset's columns). Per arm: 7 joint position targets
(radians, clipped to the Panda's limits) for one control period (1/fps s = `substeps` physics
steps at ~240 Hz, the recorder's rate). The recorder re-commands the operator's smooth
trajectory at every physics step, so a recorded action is the target at the *start* of its
period; between actions the env's joint targets follow `hold`:
* `"foh"` (default, first-order hold): the target starts at the action and moves on at the
  rate of the last two actions (capped at `MAX_JOINT_SPEED`), which is what the recorder's
  trajectory does; replaying recorded actions tracks the recording to a few 0.01 rad;
* `"linear"`: ramps from the previous action to this one over the period (continuous, one
  period of lag); `"zoh"`: holds the action (steps make the servos overshoot at 10-12 fps).
Then the gripper:
* one arm, `gripper_command` (1 = close, 0 = open; > 0.5 counts as close): the finger gap is
  driven to 0 (closed) or fully open at `GRIPPER_SPEED` m/s, like the operator's ramps; a
  grasp is made when both fingers touch a task object while closed (the scene's contact
  constraint), and opening releases it;
* two arms, `<arm>_gripper` (the commanded finger gap in metres, as the ALOHA-style dataset
  records it): the gap is servoed to it, and the close/open command is read off its direction
  with a `GAP_HYSTERESIS` Schmitt trigger: closed once the gap has dropped that far below its
  running maximum since the last opening, open once it has risen that far above its running
  minimum since the last closing.

Observation: `state` (float32, as recorded: per arm 7 measured joint angles and the measured
finger gap), `images` ({camera: (size, size, 3) uint8}; `{}` with `render=False`), `task` (the
task text), and with `privileged=True` `privileged`: {"objects": {name: (7,) pose}, "held":
[bool per task object], "target": (3,) the goal point (tray centre, base cube top, push
target), "object_state": float32 vector of the task objects' poses then the target} for a
state-based pilot policy.

Success and progress (`info`). Per task object a goal with phases:
* into the tray (`pick_place`, `two_object` both objects, `bimanual_pick_place` both) and onto
  the other cube (`stack`): grasped, lifted (held and `LIFT_HEIGHT` above its start), over
  target (held above the tray / the base cube's footprint), placed (resting in the tray / on
  the cube: inside the tray's walls and below their top / centred on the cube within its half
  width and resting at its top), released (placed and no hand holds it);
* `push`: reached (the hand beside the object, low), contact (moved 1 cm along the push
  direction), halfway, pushed (moved at least `PUSH_TARGET` along the direction).
Every phase but the last of a goal is latched (achieved once, it stays achieved); the last is
the goal's predicate now. `success` = every goal's last phase holds now; `progress` = 100 x
achieved phases / all phases, and 100 on success. `reward` is the change of progress / 100.
`done` when success has held for `SUCCESS_HOLD_S` (so a cube that topples off is not a
success) or at the time limit (`max_seconds`, default per task `MAX_SECONDS`).
Deterministic: the same seed and actions give the same observations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from carve.sim.operator import OperatorNoise
from carve.sim.scene import GRIPPER_MAX, Scene, SceneObject, action_names, camera_names, state_names
from carve.sim.synth import default_cameras, default_fps, episode_seed
from carve.sim.tasks import (
    _PLANNERS,
    ALL_TASK_TYPES,
    FPS_RANGE,
    PUSH_DIRECTIONS,
    STYLES,
    TWO_ARM_TASK_TYPES,
    SimEpisode,
    _Plan,
)

GRIPPER_SPEED = 0.15  # m/s of finger gap for the binary gripper command (a full stroke in ~0.5 s)
GAP_HYSTERESIS = 0.004  # m: the close/open trigger of a width-commanded gripper
LIFT_HEIGHT = 0.03  # m above the object's start height counts as lifted
PUSH_TARGET = 0.05  # m along the push direction counts as pushed (recorded pushes move 8-15 cm)
SUCCESS_HOLD_S = 0.3  # s the success predicate must hold before the episode ends
MAX_SECONDS = {"pick_place": 20.0, "stack": 20.0, "push": 12.0, "two_object": 35.0, "bimanual_pick_place": 35.0}
HOLDS = ("foh", "linear", "zoh")
MAX_JOINT_SPEED = 2.5  # rad/s: the cap on the rate a first-order hold carries on at (the Panda: 2.2-2.6)
TRAY_PHASES = ("grasped", "lifted", "over_target", "placed", "released")
PUSH_PHASES = ("reached", "contact", "halfway", "pushed")


def arms_for(task: str) -> int:
    """1 or 2: the arm count a task type runs with."""
    if task not in ALL_TASK_TYPES:
        raise ValueError(f"unknown task type {task!r}; use one of {', '.join(ALL_TASK_TYPES)}")
    return 2 if task in TWO_ARM_TASK_TYPES else 1


def synth_episode(seed: int, index: int, tasks: list[str] | tuple[str, ...]) -> tuple[str, int]:
    """(task type, episode seed) of episode `index` of `carve synth --seed seed --tasks *tasks`."""
    return str(tasks[index % len(tasks)]), episode_seed(seed, index)


@dataclass
class Goal:
    """What one task object has to reach, and which of its phases were achieved."""

    kind: str  # "tray" | "on" | "push"
    obj: SceneObject
    start: np.ndarray  # (3,) position at reset
    base: SceneObject | None = None  # "on": the cube to stack on
    direction: np.ndarray | None = None  # "push": unit (2,) direction
    achieved: dict[str, bool] = field(default_factory=dict)

    @property
    def phases(self) -> tuple[str, ...]:
        return PUSH_PHASES if self.kind == "push" else TRAY_PHASES


class SimEnv:
    """The `carve synth` world, stepped by an agent's actions (see the module docstring)."""

    def __init__(self, *, fps: int | None = None, style: str = "dwell", cameras: int | None = None,
                 size: int = 128, render: bool = True, privileged: bool = False,
                 max_seconds: float | None = None, terminate_on_success: bool = True, hold: str = "foh",
                 camera_jitter: bool = True):
        if hold not in HOLDS:
            raise ValueError(f"unknown hold {hold!r}; use one of {', '.join(HOLDS)}")
        self.hold = hold
        if style not in STYLES:
            raise ValueError(f"unknown style {style!r}; use one of {', '.join(STYLES)}")
        if fps is not None and not FPS_RANGE[0] <= fps <= FPS_RANGE[1]:
            raise ValueError(f"fps must be in [{FPS_RANGE[0]}, {FPS_RANGE[1]}], got {fps}")
        if size < 16:
            raise ValueError(f"size must be >= 16 pixels, got {size}")
        self._fps, self.style, self._cameras = fps, style, cameras
        self.size, self.render, self.privileged = int(size), bool(render), bool(privileged)
        self._max_seconds = max_seconds
        self.terminate_on_success = bool(terminate_on_success)
        self.camera_jitter = bool(camera_jitter)  # False: every scene's fixed cameras at CameraPose.nominal
        self.scene: Scene | None = None
        self.task_type = ""
        self.task = ""
        self.seed = 0
        self.arms = 1
        self.fps = fps or 12
        self.camera_names: list[str] = []
        self.substeps = 1
        self.max_steps = 0
        self.goals: list[Goal] = []
        self._plan: _Plan | None = None
        self._t = 0
        self._done = True
        self._progress = 0.0
        self._streak = 0
        self._grip: list[dict[str, Any]] = []  # per arm: finger gap command, closed, trigger lo/hi
        self._q_prev: list[np.ndarray] = []  # per arm: the previous action's joint targets

    # --- names ----------------------------------------------------------------------------
    @property
    def state_names(self) -> list[str]:
        return state_names(self.arms)

    @property
    def action_names(self) -> list[str]:
        return action_names(self.arms)

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    # --- episode --------------------------------------------------------------------------
    def reset(self, task: str, seed: int) -> dict[str, Any]:
        """Build the scene of `run_episode(task, seed)` and return the first observation."""
        self.close()
        arms = arms_for(task)
        self.task_type, self.seed, self.arms = task, int(seed), arms
        self.fps = int(self._fps or default_fps(self.style, arms))
        n_cams = int(self._cameras or default_cameras(self.style, arms))
        self.camera_names = camera_names(arms, n_cams)
        rng = np.random.default_rng(self.seed)
        noise = OperatorNoise(0.0, self.seed)  # the operator's noise shapes its plan, not the scene
        scene = Scene(rng, arms=arms, cameras=self.camera_names, camera_jitter=self.camera_jitter)
        self.scene = scene
        planned = _PLANNERS[task](scene, rng, self.style, noise, rng)
        self._plan = planned
        self.task = planned.task
        for arm, objs in zip(scene.arms, planned.graspable, strict=True):
            arm.graspable = list(objs)
        self.substeps = scene.set_substeps(self.fps)
        self._grip = []
        for arm, plan in zip(scene.arms, planned.plans, strict=True):  # as the recorder starts
            pos, yaw = plan.pose(0.0)
            pos[2] = max(pos[2], 0.008)
            width, closed = plan.width(0.0), plan.closed(0.0)
            scene.command(arm, pos, yaw, width, closed)
            self._grip.append({"width": width, "closed": closed, "lo": width, "hi": width})
        self._q_prev = [arm.q_cmd.copy() for arm in scene.arms]
        scene.settle_world(0.25)
        self.goals = self._make_goals(planned)
        max_s = self._max_seconds if self._max_seconds is not None else MAX_SECONDS[task]
        self.max_steps = max(1, math.ceil(max_s * self.fps))
        self._t, self._done, self._streak = 0, False, 0
        self._progress = self._evaluate()[1]
        return self._observe()

    def _make_goals(self, planned: _Plan) -> list[Goal]:
        scene = self.scene
        assert scene is not None
        objs = planned.tracked
        start = {id(o): scene.object_position(o) for o in objs}
        if self.task_type == "stack":
            top, base = objs
            return [Goal("on", top, start[id(top)], base=base)]
        if self.task_type == "push":
            (obj,) = objs
            direction = planned.task.rsplit(" ", 1)[-1]
            return [Goal("push", obj, start[id(obj)], direction=np.asarray(PUSH_DIRECTIONS[direction], float))]
        return [Goal("tray", o, start[id(o)]) for o in objs]

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, dict[str, Any]]:
        """Apply `action` for one control period (1/fps s); (observation, reward, done, info)."""
        scene = self.scene
        if scene is None or self._done:
            raise RuntimeError("step() before reset() or after the episode ended; call reset()")
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (self.action_dim,):
            raise ValueError(f"action must have {self.action_dim} values ({', '.join(self.action_names)}), "
                             f"got {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"action has NaN/inf values: {a.tolist()}")
        binary = self.arms == 1
        targets = []
        for i in range(self.arms):
            q, g = a[i * 8: i * 8 + 7], float(a[i * 8 + 7])
            grip = self._grip[i]
            if binary:
                grip["closed"] = g > 0.5
                goal = 0.0 if grip["closed"] else GRIPPER_MAX
            else:
                goal = float(np.clip(g, 0.0, GRIPPER_MAX))
                self._trigger(grip, goal)
            targets.append((q, goal))
        dw = GRIPPER_SPEED * scene.dt
        n = self.substeps
        cap = MAX_JOINT_SPEED / self.fps
        rate = [np.clip(q - prev, -cap, cap) for (q, _), prev in zip(targets, self._q_prev, strict=True)]
        for j in range(n):
            for i, (arm, grip, (q, goal)) in enumerate(zip(scene.arms, self._grip, targets, strict=True)):
                if binary:
                    grip["width"] += float(np.clip(goal - grip["width"], -dw, dw))
                else:
                    grip["width"] = goal
                prev = self._q_prev[i]
                if self.hold == "linear":
                    qj = prev + (q - prev) * (j + 1) / n
                elif self.hold == "foh":
                    qj = q + rate[i] * j / n
                else:
                    qj = q
                scene.command_joints(arm, qj, grip["width"], grip["closed"])
            scene.step()
        self._q_prev = [t[0] for t in targets]
        self._t += 1
        success, progress, phases = self._evaluate()
        reward = (progress - self._progress) / 100.0
        self._progress = progress
        self._streak = self._streak + 1 if success else 0
        need = max(1, math.ceil(SUCCESS_HOLD_S * self.fps))
        finished = self.terminate_on_success and self._streak >= need
        timeout = self._t >= self.max_steps
        self._done = finished or timeout
        info = {"success": success, "progress": progress, "phases": phases, "step": self._t,
                "time_limit": timeout and not finished}
        return self._observe(), reward, self._done, info

    @staticmethod
    def _trigger(grip: dict[str, Any], width: float) -> None:
        """The close/open command of a width-commanded gripper (Schmitt trigger on the gap's direction)."""
        if grip["closed"]:
            grip["lo"] = min(grip["lo"], width)
            if width > grip["lo"] + GAP_HYSTERESIS:
                grip["closed"], grip["hi"] = False, width
        else:
            grip["hi"] = max(grip["hi"], width)
            if width < grip["hi"] - GAP_HYSTERESIS:
                grip["closed"], grip["lo"] = True, width

    # --- success and progress -------------------------------------------------------------
    def _held(self, obj: SceneObject) -> bool:
        assert self.scene is not None
        return any(arm.held is obj for arm in self.scene.arms)

    def _in_tray(self, p: np.ndarray, footprint_only: bool = False) -> bool:
        scene = self.scene
        assert scene is not None and scene.tray_pos is not None
        scale = scene.tray_half / 0.3  # traybox.urdf: walls at +/-0.25, about 0.13 high, at scale 1
        inside = abs(p[0] - scene.tray_pos[0]) < 0.25 * scale and abs(p[1] - scene.tray_pos[1]) < 0.25 * scale
        return inside if footprint_only else inside and -0.01 < p[2] < 0.13 * scale + 0.02

    def _goal_state(self, g: Goal) -> dict[str, bool]:
        """The phases of `g` that hold now."""
        scene = self.scene
        assert scene is not None
        p = scene.object_position(g.obj)
        held = self._held(g.obj)
        if g.kind == "push":
            assert g.direction is not None
            moved = float(np.dot(p[:2] - g.start[:2], g.direction))
            ee = scene.ee_position(scene.arms[0])
            radius = max(g.obj.half[0], g.obj.half[1])
            near = float(np.linalg.norm(ee[:2] - p[:2])) < radius + 0.06 and ee[2] < p[2] + g.obj.half[2] + 0.05
            return {"reached": near, "contact": moved > 0.01, "halfway": moved >= PUSH_TARGET / 2,
                    "pushed": moved >= PUSH_TARGET}
        lifted = held and p[2] > g.start[2] + LIFT_HEIGHT
        if g.kind == "tray":
            over = held and self._in_tray(p, footprint_only=True)
            placed = self._in_tray(p)
        else:
            assert g.base is not None
            b = scene.object_position(g.base)
            centred = float(np.linalg.norm(p[:2] - b[:2])) < max(g.base.half[0], g.base.half[1]) + 0.005
            over = held and centred and p[2] > b[2] + g.base.half[2]
            dz = p[2] - b[2]
            placed = centred and g.base.half[2] + 0.5 * g.obj.half[2] < dz < g.base.half[2] + g.obj.half[2] + 0.02
        return {"grasped": held, "lifted": lifted, "over_target": over, "placed": placed,
                "released": placed and not held}

    def _evaluate(self) -> tuple[bool, float, dict[str, bool]]:
        phases: dict[str, bool] = {}
        done = total = 0
        success = True
        for g in self.goals:
            now = self._goal_state(g)
            last = g.phases[-1]
            for name in g.phases[:-1]:
                g.achieved[name] = g.achieved.get(name, False) or now[name]
            g.achieved[last] = now[last]
            success = success and now[last]
            for name in g.phases:
                phases[f"{g.obj.name}:{name}"] = g.achieved[name]
            done += sum(g.achieved[n] for n in g.phases)
            total += len(g.phases)
        return success, 100.0 if success else 100.0 * done / max(total, 1), phases

    @property
    def success(self) -> bool:
        return self._evaluate()[0] if self.scene is not None else False

    # --- observation ----------------------------------------------------------------------
    def _observe(self) -> dict[str, Any]:
        scene = self.scene
        assert scene is not None
        state: list[float] = []
        for arm in scene.arms:
            state.extend([*scene.joint_positions(arm), max(0.0, scene.gripper_opening(arm))])
        obs: dict[str, Any] = {
            "state": np.asarray(state, dtype=np.float32),
            "images": {c: scene.render(c, self.size) for c in self.camera_names} if self.render else {},
            "task": self.task,
        }
        if self.privileged:
            obs["privileged"] = self._privileged()
        return obs

    def _privileged(self) -> dict[str, Any]:
        scene = self.scene
        assert scene is not None and self._plan is not None
        objs = self._plan.tracked
        poses = {o.name: scene.object_pose(o) for o in objs}
        g = self.goals[0]
        if g.kind == "push":
            assert g.direction is not None
            target = g.start + np.array([*g.direction, 0.0]) * PUSH_TARGET
        elif g.kind == "on":
            assert g.base is not None
            target = scene.object_position(g.base) + np.array([0.0, 0.0, g.base.half[2]])
        else:
            assert scene.tray_pos is not None
            target = np.array([*scene.tray_pos, 0.0])
        flat = np.concatenate([*(poses[o.name] for o in objs), target]).astype(np.float32)
        return {"objects": poses, "held": [self._held(o) for o in objs], "target": target, "object_state": flat}

    def close(self) -> None:
        if self.scene is not None:
            self.scene.close()
            self.scene = None
        self._done = True

    def __enter__(self) -> SimEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: pybullet may be gone
            pass


def replay(ep: SimEpisode, seed: int, *, hold: str = "foh") -> dict[str, Any]:
    """Replay a recorded episode's actions open loop in a `SimEnv` of its conditions (the replay
    gate): {"success", "progress", "steps", "first_state_err", "max_state_err"} (state errors
    against the recording, max abs over the dims, while the replay runs)."""
    env = SimEnv(fps=ep.fps, style=ep.style, cameras=len(ep.cameras), render=False, hold=hold,
                 max_seconds=max(MAX_SECONDS[ep.task_type], ep.length / ep.fps + 1.0))
    try:
        obs = env.reset(ep.task_type, seed)
        if obs["task"] != ep.task:
            raise RuntimeError(f"{ep.task_type} seed {seed}: the env built {obs['task']!r}, the recording is "
                               f"{ep.task!r} (different scene)")
        first = float(np.abs(obs["state"] - ep.state[0]).max())
        err, info = 0.0, {"success": False, "progress": 0.0, "step": 0}
        for k, a in enumerate(ep.action):
            obs, _, done, info = env.step(a)
            if k + 1 < ep.length:
                err = max(err, float(np.abs(obs["state"] - ep.state[k + 1]).max()))
            if done:
                break
        return {"success": bool(info["success"]), "progress": float(info["progress"]), "steps": int(info["step"]),
                "first_state_err": first, "max_state_err": err}
    finally:
        env.close()
