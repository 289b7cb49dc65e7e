"""The pybullet world of one simulated episode: table, one or two Franka Pandas, tray, objects, cameras.

`Scene` owns one pybullet client in DIRECT mode for the physics (each worker process makes
its own) plus a second, kinematic-only client that holds a copy of every arm for inverse
kinematics (so the IK seed is the previous *commanded* posture, not the measured one).

Physics, not teleporting:

* the arm joints are under position control (`setJointMotorControlArray(..., POSITION_CONTROL,
  targetPositions, forces, positionGains, velocityGains)` with the Panda's torque limits) and
  the world is advanced by `stepSimulation` at a fixed rate (`set_substeps`: an integer
  number of physics steps per recorded frame, about 240 Hz); what is recorded is read back
  from the simulator (`joint_positions`, `gripper_opening`, `ee_position`), so it lags and
  deviates from the command the way a servoed robot does;
* the fingers are position controlled with a force limit; a grasp is made by contact: while
  the gripper is commanded closed and both fingers touch the same object
  (`getContactPoints`), a fixed constraint (`createConstraint`) between the hand and the object
  is created at their current relative pose (a friction grasp that does not slip);
  commanding the gripper open removes it and the object falls and comes to rest by physics.

Layout: one arm (`ARM_NAMES_1 = ("arm",)`) stands at the origin facing +x; two arms
(`ARM_NAMES_2 = ("left", "right")`, ALOHA-style) stand side by side at y = +/-`TWO_ARM_Y`
facing the same table. Objects are boxes, cylinders or pybullet_data's lego brick.

Cameras (`camera_names(arms, n)`): fixed look-at views ("front", "side", "top"), randomised
per episode, and wrist views ("wrist", "left_wrist", "right_wrist") that ride on a hand.
Rendering is `ER_TINY_RENDERER` and only happens at recorded frames.

Recorded names: `state_names(arms)` / `action_names(arms)`. One arm keeps the historical
names (`joint_0..6`, `gripper_opening`; action `joint_i_target`, `gripper_command`); two arms
use ALOHA-style prefixed names for state and action alike (`left_joint_0..6`, `left_gripper`,
`right_joint_0..6`, `right_gripper`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


def _import_pybullet_quietly():  # pybullet prints a build-time banner on stderr at import
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import pybullet
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return pybullet


pb = _import_pybullet_quietly()
import pybullet_data  # noqa: E402

PHYSICS_HZ = 240  # nominal physics rate; the exact one is fps * substeps (see `substeps_for`)
ARM_JOINTS = list(range(7))
FINGER_JOINTS = [9, 10]
HAND_LINK = 8  # panda_hand: the grasp constraint attaches here
EE_LINK = 11  # panda_grasptarget: between the fingertips
FINGER_OPEN = 0.04  # per finger, metres
GRIPPER_MAX = 2 * FINGER_OPEN
JOINT_FORCES = [87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0]  # the Panda's torque limits (N m)
FINGER_FORCE = 20.0  # N per finger
POSITION_GAIN = 0.2  # pybullet's per-step position gain of the joint servos
VELOCITY_GAIN = 0.3
# null-space IK parameters (from pybullet's panda examples): keep the elbow up and the wrist sane
_LOWER = [-2.9671, -1.8326, -2.9671, -3.1416, -2.9671, -0.0873, -2.9671]
_UPPER = [2.9671, 1.8326, 2.9671, 0.0, 2.9671, 3.8223, 2.9671]
_RANGES = [u - lo for lo, u in zip(_LOWER, _UPPER, strict=True)]
REST_POSE = [0.0, -0.35, 0.0, -2.3, 0.0, 2.0, 0.785]
HOME_OFFSET = (0.35, 0.0, 0.40)  # the home of the grasp frame, relative to an arm's base
ARM_NAMES_1 = ("arm",)
ARM_NAMES_2 = ("left", "right")
TWO_ARM_Y = 0.32

# one arm: the historical names (the default dataset keeps its schema)
STATE_NAMES = [*(f"joint_{i}" for i in range(7)), "gripper_opening"]
ACTION_NAMES = [*(f"joint_{i}_target" for i in range(7)), "gripper_command"]

COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10),
    "green": (0.15, 0.70, 0.20),
    "blue": (0.12, 0.25, 0.85),
    "yellow": (0.92, 0.85, 0.12),
    "purple": (0.55, 0.20, 0.70),
    "orange": (0.95, 0.50, 0.08),
    "cyan": (0.10, 0.75, 0.80),
    "pink": (0.95, 0.45, 0.65),
}
SHAPES = ("cube", "block", "cylinder", "lego brick")
CAMERAS_1 = ("front", "wrist", "side", "top")
CAMERAS_2 = ("front", "side", "left_wrist", "right_wrist")


def arm_names(arms: int) -> tuple[str, ...]:
    if arms == 1:
        return ARM_NAMES_1
    if arms == 2:
        return ARM_NAMES_2
    raise ValueError(f"arms must be 1 or 2, got {arms}")


def state_names(arms: int = 1) -> list[str]:
    if arms == 1:
        return list(STATE_NAMES)
    return [f"{a}_{n}" for a in arm_names(arms) for n in (*(f"joint_{i}" for i in range(7)), "gripper")]


def action_names(arms: int = 1) -> list[str]:
    if arms == 1:
        return list(ACTION_NAMES)
    return state_names(arms)  # ALOHA: the action names the same joints as the state


def camera_names(arms: int, n: int) -> list[str]:
    """The first `n` camera names of the arm layout (`CAMERAS_1` / `CAMERAS_2`)."""
    names = CAMERAS_1 if arms == 1 else CAMERAS_2
    if not 1 <= n <= len(names):
        raise ValueError(f"cameras must be in [1, {len(names)}], got {n}")
    return list(names[:n])


def substeps_for(fps: int) -> int:
    """Physics steps per recorded frame: the smallest integer giving >= PHYSICS_HZ."""
    return max(1, math.ceil(PHYSICS_HZ / fps))


@dataclass
class CameraPose:
    """A fixed look-at camera around the workspace (randomised per episode)."""

    target: tuple[float, float, float]
    distance: float
    yaw: float  # degrees
    pitch: float  # degrees
    fov: float  # degrees

    @classmethod
    def sample(cls, rng: np.random.Generator, view: str = "front", arms: int = 1) -> CameraPose:
        tx = 0.5 + rng.uniform(-0.05, 0.05)
        ty = rng.uniform(-0.05, 0.05)
        far = 0.25 if arms == 2 else 0.0
        if view == "front":  # yaw 90: looking from +x back at the robot
            return cls((tx, ty, rng.uniform(0.02, 0.1)), float(rng.uniform(0.75, 1.05) + far),
                       float(90.0 + rng.uniform(-35.0, 35.0)), float(rng.uniform(-55.0, -30.0)),
                       float(rng.uniform(50.0, 62.0)))
        if view == "side":  # from the -y side of the table
            return cls((tx - 0.05, ty, rng.uniform(0.02, 0.1)), float(rng.uniform(0.8, 1.0) + far),
                       float(rng.choice([0.0, 180.0]) + rng.uniform(-20.0, 20.0)), float(rng.uniform(-35.0, -20.0)),
                       float(rng.uniform(50.0, 60.0)))
        if view == "top":
            return cls((tx - 0.05, ty, 0.0), float(rng.uniform(0.9, 1.1) + far), float(90.0 + rng.uniform(-10, 10)),
                       float(rng.uniform(-85.0, -75.0)), float(rng.uniform(50.0, 58.0)))
        raise ValueError(f"unknown fixed camera view {view!r}")

    @classmethod
    def nominal(cls, view: str = "front", arms: int = 1) -> CameraPose:
        """The middle of `sample`'s ranges for `view`: one pose for every scene (a fixed camera, as a robot
        cell mounts it)."""
        far = 0.25 if arms == 2 else 0.0
        if view == "front":
            return cls((0.5, 0.0, 0.06), 0.9 + far, 90.0, -42.5, 56.0)
        if view == "side":
            return cls((0.45, 0.0, 0.06), 0.9 + far, 0.0, -27.5, 55.0)
        if view == "top":
            return cls((0.45, 0.0, 0.0), 1.0 + far, 90.0, -80.0, 54.0)
        raise ValueError(f"unknown fixed camera view {view!r}")


@dataclass
class SceneObject:
    """A coloured object resting on the table."""

    body: int
    shape: str  # one of SHAPES (the noun used in task text)
    color: str
    half: tuple[float, float, float]  # half extents x, y, z of its bounding box (metres)
    yaw: float

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"

    @property
    def height(self) -> float:
        return 2.0 * self.half[2]

    @property
    def grip_width(self) -> float:
        """The finger gap when closed on the object (across its narrower horizontal side)."""
        return float(min(2.0 * min(self.half[0], self.half[1]), GRIPPER_MAX * 0.9))


@dataclass
class Arm:
    """One Panda: its body in the physics client, its kinematic copy, its grasp state."""

    name: str
    body: int
    ik_body: int
    base: np.ndarray
    home: np.ndarray
    q_cmd: np.ndarray  # the last commanded joint targets (the IK seed)
    width_cmd: float = GRIPPER_MAX
    closed: bool = False  # the gripper is commanded closed
    held: SceneObject | None = None
    constraint: int | None = None
    graspable: list[SceneObject] = field(default_factory=list)


def lowpoly_panda_urdf() -> str:
    """Path of a copy of pybullet_data's panda.urdf whose visual meshes are the (20x lighter)
    collision meshes: TinyRenderer time is dominated by triangle count. Cached per user."""
    import os
    import tempfile

    src_dir = os.path.join(pybullet_data.getDataPath(), "franka_panda")
    out_dir = os.path.join(tempfile.gettempdir(), f"carve-sim-{os.getuid()}")
    out = os.path.join(out_dir, "panda_lowpoly.urdf")
    if os.path.exists(out):
        return out
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(src_dir, "panda.urdf")) as f:
        text = f.read()
    coll = os.path.join(src_dir, "meshes", "collision")
    text = text.replace("package://meshes/visual/", coll + "/").replace("package://meshes/collision/", coll + "/")
    tmp = f"{out}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, out)
    return out


_LINK_SHADES = {-1: 0.92, 0: 0.92, 1: 0.92, 2: 0.92, 3: 0.92, 4: 0.92, 5: 0.92, 6: 0.25, 7: 0.25, 8: 0.92,
                9: 0.25, 10: 0.25}


class Scene:
    """The physics client (robots, tray, objects) and the kinematic client (IK copies of the arms)."""

    def __init__(self, rng: np.random.Generator, *, arms: int = 1, cameras: list[str] | None = None,
                 camera_jitter: bool = True):
        self.client = pb.connect(pb.DIRECT)
        self.kin = pb.connect(pb.DIRECT)
        c = self.client
        pb.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=c)
        pb.setGravity(0, 0, -9.81, physicsClientId=c)
        self.dt = 1.0 / PHYSICS_HZ
        pb.setTimeStep(self.dt, physicsClientId=c)
        self.plane = pb.loadURDF("plane.urdf", physicsClientId=c)
        shade = rng.uniform(0.55, 0.85)
        pb.changeVisualShape(self.plane, -1, rgbaColor=[shade, shade * 0.95, shade * 0.88, 1], physicsClientId=c)
        names = arm_names(arms)
        bases = [(0.0, 0.0, 0.0)] if arms == 1 else [(0.0, TWO_ARM_Y, 0.0), (0.0, -TWO_ARM_Y, 0.0)]
        self.arms: list[Arm] = []
        for name, base in zip(names, bases, strict=True):
            self.arms.append(self._load_arm(name, np.asarray(base, dtype=np.float64)))
        self.camera_names = list(cameras) if cameras is not None else ["front"]
        self.fixed_cameras: dict[str, CameraPose] = {}
        self._views: dict[str, tuple[list[float], list[float]]] = {}
        for cam in self.camera_names:
            if cam.endswith("wrist"):
                continue
            pose = CameraPose.sample(rng, cam, arms)  # drawn either way: the scene's rng stream stays the same
            if not camera_jitter:
                pose = CameraPose.nominal(cam, arms)
            self.fixed_cameras[cam] = pose
            view = pb.computeViewMatrixFromYawPitchRoll(pose.target, pose.distance, pose.yaw, pose.pitch, 0.0, 2,
                                                        physicsClientId=c)
            proj = pb.computeProjectionMatrixFOV(pose.fov, 1.0, 0.05, 5.0, physicsClientId=c)
            self._views[cam] = (view, proj)
        self._wrist_proj = pb.computeProjectionMatrixFOV(75.0, 1.0, 0.01, 3.0, physicsClientId=c)
        self.objects: list[SceneObject] = []
        self.tray: int | None = None
        self.tray_pos: tuple[float, float] | None = None
        self.tray_half = 0.0
        self.ik_iterations = 30

    # --- world building -------------------------------------------------------------------
    def _load_arm(self, name: str, base: np.ndarray) -> Arm:
        c = self.client
        body = pb.loadURDF(lowpoly_panda_urdf(), base.tolist(), useFixedBase=True, physicsClientId=c)
        for link, shade in _LINK_SHADES.items():  # Panda colours: white links, dark wrist and fingers
            pb.changeVisualShape(body, link, rgbaColor=[shade, shade, shade * 1.02 if shade < 0.5 else shade, 1],
                                 physicsClientId=c)
        for j in FINGER_JOINTS:
            pb.changeDynamics(body, j, lateralFriction=1.2, physicsClientId=c)
        ik_body = pb.loadURDF(lowpoly_panda_urdf(), base.tolist(), useFixedBase=True, physicsClientId=self.kin)
        home = base + np.asarray(HOME_OFFSET)
        arm = Arm(name=name, body=body, ik_body=ik_body, base=base, home=home, q_cmd=np.asarray(REST_POSE))
        self._reset_kin(arm, arm.q_cmd)
        q = arm.q_cmd
        for _ in range(3):
            q = self._ik(arm, home, 0.0, rest=REST_POSE)
            self._reset_kin(arm, q)
        arm.q_cmd = q
        for j, v in zip(ARM_JOINTS, q, strict=True):
            pb.resetJointState(body, j, float(v), physicsClientId=c)
        for j in FINGER_JOINTS:
            pb.resetJointState(body, j, FINGER_OPEN, physicsClientId=c)
        self._servo(arm, q, np.zeros(7), GRIPPER_MAX)
        return arm

    def add_object(self, shape: str, pos: tuple[float, float], size: float, yaw: float, color: str) -> SceneObject:
        """Add a `shape` ("cube", "block", "cylinder", "lego brick") of about `size` metres."""
        c = self.client
        rgba = [*COLORS[color], 1.0]
        if shape == "lego brick":
            scale = size / 0.032
            half = (0.016 * scale, 0.016 * scale, 0.0115 * scale)
            body = pb.loadURDF(
                "lego/lego.urdf", [pos[0], pos[1], half[2] + 0.002], pb.getQuaternionFromEuler([0, 0, yaw]),
                globalScaling=scale, physicsClientId=c,
            )
            pb.changeVisualShape(body, -1, rgbaColor=rgba, physicsClientId=c)
            pb.changeDynamics(body, -1, mass=0.1, physicsClientId=c)
        else:
            if shape == "cube":
                half = (size / 2, size / 2, size / 2)
            elif shape == "block":
                half = (size * 0.9, size / 2, size * 0.4)
            elif shape == "cylinder":
                half = (size / 2, size / 2, size * 0.6)
            else:
                raise ValueError(f"unknown object shape {shape!r}; use one of {SHAPES}")
            if shape == "cylinder":
                col = pb.createCollisionShape(pb.GEOM_CYLINDER, radius=half[0], height=2 * half[2], physicsClientId=c)
                vis = pb.createVisualShape(
                    pb.GEOM_CYLINDER, radius=half[0], length=2 * half[2], rgbaColor=rgba, physicsClientId=c
                )
            else:
                col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=half, physicsClientId=c)
                vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=half, rgbaColor=rgba, physicsClientId=c)
            body = pb.createMultiBody(
                0.1, col, vis, [pos[0], pos[1], half[2] + 0.001], pb.getQuaternionFromEuler([0, 0, yaw]),
                physicsClientId=c,
            )
        pb.changeDynamics(body, -1, lateralFriction=0.9, spinningFriction=0.005, rollingFriction=0.0005,
                          physicsClientId=c)
        obj = SceneObject(body=body, shape=shape, color=color, half=half, yaw=yaw)
        self.objects.append(obj)
        return obj

    def add_tray(self, pos: tuple[float, float], scale: float, rng: np.random.Generator) -> None:
        c = self.client
        self.tray = pb.loadURDF("tray/traybox.urdf", [pos[0], pos[1], 0.0], globalScaling=scale, physicsClientId=c)
        tint = rng.uniform(0.6, 1.0, size=3)
        pb.changeVisualShape(self.tray, -1, rgbaColor=[*tint, 1.0], physicsClientId=c)
        self.tray_pos = pos
        self.tray_half = 0.3 * scale

    def settle_world(self, seconds: float = 0.5) -> None:
        """Let objects (and the servoed arms) come to rest before the episode (not recorded)."""
        for _ in range(round(seconds / self.dt)):
            self.step()

    def set_substeps(self, fps: int) -> int:
        """Use `substeps_for(fps)` physics steps per recorded frame; returns that number."""
        n = substeps_for(fps)
        self.dt = 1.0 / (fps * n)
        pb.setTimeStep(self.dt, physicsClientId=self.client)
        return n

    # --- control --------------------------------------------------------------------------
    def _reset_kin(self, arm: Arm, q: np.ndarray) -> None:
        for j, v in zip(ARM_JOINTS, q, strict=True):
            pb.resetJointState(arm.ik_body, j, float(v), physicsClientId=self.kin)

    def _ik(self, arm: Arm, pos: np.ndarray, yaw: float, rest: list[float] | None = None) -> np.ndarray:
        orn = pb.getQuaternionFromEuler([math.pi, 0.0, yaw])
        target = [float(v) for v in pos]
        if rest is not None:
            half = FINGER_OPEN / 2
            # null-space IK needs limits for every movable joint: 7 arm joints + 2 fingers
            q = pb.calculateInverseKinematics(
                arm.ik_body, EE_LINK, target, orn,
                lowerLimits=[*_LOWER, 0.0, 0.0], upperLimits=[*_UPPER, FINGER_OPEN, FINGER_OPEN],
                jointRanges=[*_RANGES, FINGER_OPEN, FINGER_OPEN], restPoses=[*rest, half, half],
                maxNumIterations=200, residualThreshold=1e-12, physicsClientId=self.kin,
            )
        else:
            q = pb.calculateInverseKinematics(
                arm.ik_body, EE_LINK, target, orn, maxNumIterations=self.ik_iterations, residualThreshold=1e-7,
                physicsClientId=self.kin,
            )
        return np.clip(np.asarray(q[:7], dtype=np.float64), _LOWER, _UPPER)

    def ik(self, arm: Arm, pos: np.ndarray, yaw: float) -> np.ndarray:
        """Joint angles putting `arm`'s grasp frame at `pos`, pointing down, rotated `yaw` rad.

        Damped least squares from the last commanded posture (kept in the kinematic copy), so
        the solution moves continuously with the target and a still target gives still joints."""
        self._reset_kin(arm, arm.q_cmd)
        return self._ik(arm, pos, yaw)

    def _servo(self, arm: Arm, q: np.ndarray, qd: np.ndarray, width: float) -> None:
        c = self.client
        pb.setJointMotorControlArray(
            arm.body, ARM_JOINTS, pb.POSITION_CONTROL, targetPositions=[float(v) for v in q],
            targetVelocities=[float(v) for v in qd], forces=JOINT_FORCES, positionGains=[POSITION_GAIN] * 7,
            velocityGains=[VELOCITY_GAIN] * 7, physicsClientId=c,
        )
        half = float(np.clip(width / 2.0, 0.0, FINGER_OPEN))
        pb.setJointMotorControlArray(
            arm.body, FINGER_JOINTS, pb.POSITION_CONTROL, targetPositions=[half, half],
            forces=[FINGER_FORCE, FINGER_FORCE], physicsClientId=c,
        )

    def command(self, arm: Arm, pos: np.ndarray, yaw: float, width: float, closed: bool) -> np.ndarray:
        """Servo `arm` towards the hand pose `pos`/`yaw` and the finger gap `width`; `closed` is
        the operator's gripper command (a grasp is made on contact, released on open).
        Returns the commanded joint targets."""
        q = self.ik(arm, pos, yaw)
        self._apply(arm, q, width, closed)
        return q

    def command_joints(self, arm: Arm, q: np.ndarray, width: float, closed: bool) -> None:
        """Servo `arm` to the joint targets `q` and the finger gap `width` (no IK: what an agent
        acting in `sim.env` commands); `closed` is the gripper command, as in `command`."""
        self._apply(arm, np.clip(np.asarray(q, dtype=np.float64), _LOWER, _UPPER), width, closed)

    def _apply(self, arm: Arm, q: np.ndarray, width: float, closed: bool) -> None:
        """Servo to joint targets `q` and finger gap `width`; release a held object when the
        gripper command turns from closed to open."""
        self._servo(arm, q, np.zeros(7), width)
        arm.q_cmd = q
        arm.width_cmd = float(width)
        if arm.closed and not closed:
            self.release(arm)
        arm.closed = bool(closed)

    def object_pose(self, obj: SceneObject) -> np.ndarray:
        """(7,) position and quaternion (x, y, z, w) of `obj`."""
        pos, orn = pb.getBasePositionAndOrientation(obj.body, physicsClientId=self.client)
        return np.asarray([*pos, *orn], dtype=np.float64)

    def step(self) -> None:
        """One physics step, then grasps by contact for every arm commanded closed."""
        pb.stepSimulation(physicsClientId=self.client)
        for arm in self.arms:
            if arm.closed and arm.held is None:
                obj = self._touching_both_fingers(arm)
                if obj is not None:
                    self.attach(arm, obj)

    def _touching_both_fingers(self, arm: Arm) -> SceneObject | None:
        c = self.client
        for obj in arm.graspable:
            if any(a.held is obj for a in self.arms):
                continue
            if all(pb.getContactPoints(bodyA=arm.body, bodyB=obj.body, linkIndexA=f, physicsClientId=c)
                   for f in FINGER_JOINTS):
                return obj
        return None

    def attach(self, arm: Arm, obj: SceneObject) -> None:
        """A fixed constraint between the hand and `obj` at their current relative pose."""
        c = self.client
        hand = pb.getLinkState(arm.body, HAND_LINK, computeForwardKinematics=True, physicsClientId=c)
        obj_pos, obj_orn = pb.getBasePositionAndOrientation(obj.body, physicsClientId=c)
        inv_pos, inv_orn = pb.invertTransform(hand[0], hand[1])
        rel_pos, rel_orn = pb.multiplyTransforms(inv_pos, inv_orn, obj_pos, obj_orn)
        cid = pb.createConstraint(
            arm.body, HAND_LINK, obj.body, -1, pb.JOINT_FIXED, [0, 0, 0], rel_pos, [0, 0, 0],
            parentFrameOrientation=rel_orn, physicsClientId=c,
        )
        pb.changeConstraint(cid, maxForce=60.0, physicsClientId=c)
        arm.held, arm.constraint = obj, cid

    def release(self, arm: Arm) -> None:
        if arm.constraint is not None:
            pb.removeConstraint(arm.constraint, physicsClientId=self.client)
        arm.held, arm.constraint = None, None

    # --- measurement ----------------------------------------------------------------------
    def joint_positions(self, arm: Arm) -> np.ndarray:
        states = pb.getJointStates(arm.body, ARM_JOINTS, physicsClientId=self.client)
        return np.asarray([s[0] for s in states], dtype=np.float64)

    def gripper_opening(self, arm: Arm) -> float:
        """The finger gap (m) measured from the two finger joints."""
        states = pb.getJointStates(arm.body, FINGER_JOINTS, physicsClientId=self.client)
        return float(states[0][0] + states[1][0])

    def ee_position(self, arm: Arm) -> np.ndarray:
        st = pb.getLinkState(arm.body, EE_LINK, computeForwardKinematics=True, physicsClientId=self.client)
        return np.asarray(st[4], dtype=np.float64)

    def object_position(self, obj: SceneObject) -> np.ndarray:
        return np.asarray(pb.getBasePositionAndOrientation(obj.body, physicsClientId=self.client)[0])

    # --- rendering ------------------------------------------------------------------------
    def _wrist_view(self, arm: Arm) -> list[float]:
        st = pb.getLinkState(arm.body, HAND_LINK, computeForwardKinematics=True, physicsClientId=self.client)
        pos = np.asarray(st[4])
        rot = np.asarray(pb.getMatrixFromQuaternion(st[5])).reshape(3, 3)
        eye = pos + rot @ np.array([0.09, 0.0, -0.03])  # behind the fingers, on the hand's x side
        target = pos + rot @ np.array([0.0, 0.0, 0.25])  # along the approach axis, past the fingertips
        up = rot @ np.array([1.0, 0.0, 0.0])
        return list(pb.computeViewMatrix(eye.tolist(), target.tolist(), up.tolist(), physicsClientId=self.client))

    def render(self, camera: str, size: int) -> np.ndarray:
        """An RGB frame (size, size, 3) uint8 from `camera` (one of `self.camera_names`)."""
        if camera.endswith("wrist"):
            arm_name = camera[: -len("_wrist")] if "_" in camera else self.arms[0].name
            arm = next(a for a in self.arms if a.name == arm_name)
            view, proj = self._wrist_view(arm), self._wrist_proj
        else:
            view, proj = self._views[camera]
        img = pb.getCameraImage(
            size, size, view, proj, renderer=pb.ER_TINY_RENDERER, shadow=0,
            lightDirection=[0.4, -0.3, 1.0], physicsClientId=self.client,
        )
        rgba = np.reshape(np.asarray(img[2], dtype=np.uint8), (size, size, 4))
        return np.ascontiguousarray(rgba[:, :, :3])

    def close(self) -> None:
        for attr in ("client", "kin"):
            cid = getattr(self, attr)
            if cid is not None and cid >= 0:
                pb.disconnect(physicsClientId=cid)
                setattr(self, attr, -1)
