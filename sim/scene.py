"""The pybullet world of one simulated episode: ground, Franka Panda, tray, coloured boxes, camera.

`Scene` owns one pybullet client in DIRECT mode (each worker process makes its own) and
exposes the few operations the scripted controller needs:

* `add_box(...)` / `add_tray(...)`: objects with a randomised colour and size,
* `command(ee_target, gripper_closed)`: one control tick (IK of the end-effector target with
  the gripper pointing down, joint position control, finger position control),
* `step()`: one 240 Hz physics step,
* `observe()`: the recorded state vector (see `STATE_NAMES`),
* `render(size)`: an RGB frame from the episode's randomised camera (`ER_TINY_RENDERER`).

State layout (`STATE_NAMES`): the 7 arm joint angles (rad), `gripper_width` (sum of the two
finger joint positions, metres, 0 = closed, 0.08 = fully open), and the world position of
the grasp frame between the fingertips (`ee_x, ee_y, ee_z`, metres).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pybullet as pb
import pybullet_data

PHYSICS_HZ = 240
STATE_NAMES = [*(f"joint_{i}" for i in range(7)), "gripper_width", "ee_x", "ee_y", "ee_z"]
ARM_JOINTS = list(range(7))
FINGER_JOINTS = [9, 10]
EE_LINK = 11  # panda_grasptarget: between the fingertips
FINGER_OPEN = 0.04  # per finger, metres
ARM_FORCES = [87.0] * 4 + [12.0] * 3
FINGER_FORCE = 40.0
# null-space IK parameters (from pybullet's panda examples): keep the elbow up and the wrist sane
_LOWER = [-2.9671, -1.8326, -2.9671, -3.1416, -2.9671, -0.0873, -2.9671]
_UPPER = [2.9671, 1.8326, 2.9671, 0.0, 2.9671, 3.8223, 2.9671]
_RANGES = [u - lo for lo, u in zip(_LOWER, _UPPER, strict=True)]
REST_POSE = [0.0, -0.35, 0.0, -2.3, 0.0, 2.0, 0.785]

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


@dataclass
class CameraPose:
    """A look-at camera around the workspace (randomised per episode)."""

    target: tuple[float, float, float]
    distance: float
    yaw: float  # degrees
    pitch: float  # degrees
    fov: float  # degrees

    @classmethod
    def sample(cls, rng: np.random.Generator) -> CameraPose:
        return cls(
            target=(0.5 + rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05), rng.uniform(0.02, 0.1)),
            distance=float(rng.uniform(0.85, 1.2)),
            yaw=float(90.0 + rng.uniform(-35.0, 35.0)),  # 90 = looking from +x back at the robot
            pitch=float(rng.uniform(-55.0, -30.0)),
            fov=float(rng.uniform(50.0, 62.0)),
        )


@dataclass
class Box:
    """A coloured box resting on the ground."""

    body: int
    color: str
    half: tuple[float, float, float]  # half extents x, y, z (metres)
    yaw: float

    @property
    def height(self) -> float:
        return 2.0 * self.half[2]


class Scene:
    """One pybullet DIRECT client holding the robot, the tray and the objects of one episode."""

    def __init__(self, rng: np.random.Generator, *, home: tuple[float, float, float] = (0.35, 0.0, 0.45)):
        self.client = pb.connect(pb.DIRECT)
        c = self.client
        pb.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=c)
        pb.setGravity(0, 0, -9.81, physicsClientId=c)
        pb.setTimeStep(1.0 / PHYSICS_HZ, physicsClientId=c)
        self.plane = pb.loadURDF("plane.urdf", physicsClientId=c)
        shade = rng.uniform(0.55, 0.85)
        pb.changeVisualShape(self.plane, -1, rgbaColor=[shade, shade * 0.95, shade * 0.88, 1], physicsClientId=c)
        self.robot = pb.loadURDF("franka_panda/panda.urdf", [0, 0, 0], useFixedBase=True, physicsClientId=c)
        for j in FINGER_JOINTS:
            pb.changeDynamics(self.robot, j, lateralFriction=1.5, spinningFriction=0.01, physicsClientId=c)
        self.camera = CameraPose.sample(rng)
        self.boxes: list[Box] = []
        self.tray: int | None = None
        self.tray_pos: tuple[float, float] | None = None
        self.tray_half = 0.0
        self._grasp_cid: int | None = None
        self.yaw = 0.0  # gripper yaw about the vertical, follows the object being handled
        home_q = self.ik(home, 0.0, REST_POSE)
        for j, q in zip(ARM_JOINTS, home_q, strict=True):
            pb.resetJointState(self.robot, j, q, physicsClientId=c)
        for j in FINGER_JOINTS:
            pb.resetJointState(self.robot, j, FINGER_OPEN, physicsClientId=c)
        self._q_target = list(home_q)
        self._view = pb.computeViewMatrixFromYawPitchRoll(
            self.camera.target, self.camera.distance, self.camera.yaw, self.camera.pitch, 0.0, 2, physicsClientId=c
        )
        self._proj = pb.computeProjectionMatrixFOV(self.camera.fov, 1.0, 0.05, 5.0, physicsClientId=c)

    # --- world building -------------------------------------------------------------------
    def add_box(
        self, pos: tuple[float, float], half: tuple[float, float, float], yaw: float, color: str, mass: float = 0.1
    ) -> Box:
        c = self.client
        col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=half, physicsClientId=c)
        vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=half, rgbaColor=[*COLORS[color], 1.0], physicsClientId=c)
        body = pb.createMultiBody(
            mass, col, vis, [pos[0], pos[1], half[2] + 0.001], pb.getQuaternionFromEuler([0, 0, yaw]), physicsClientId=c
        )
        pb.changeDynamics(body, -1, lateralFriction=1.2, spinningFriction=0.005, rollingFriction=0.0005, physicsClientId=c)
        box = Box(body=body, color=color, half=half, yaw=yaw)
        self.boxes.append(box)
        return box

    def add_tray(self, pos: tuple[float, float], scale: float, rng: np.random.Generator) -> None:
        c = self.client
        self.tray = pb.loadURDF("tray/traybox.urdf", [pos[0], pos[1], 0.0], globalScaling=scale, physicsClientId=c)
        tint = rng.uniform(0.6, 1.0, size=3)
        pb.changeVisualShape(self.tray, -1, rgbaColor=[*tint, 1.0], physicsClientId=c)
        self.tray_pos = pos
        self.tray_half = 0.3 * scale

    def settle_world(self, steps: int = 60) -> None:
        """Let objects come to rest before the episode starts (not recorded)."""
        for _ in range(steps):
            self.hold()
            pb.stepSimulation(physicsClientId=self.client)

    # --- control --------------------------------------------------------------------------
    def ik(self, pos: tuple[float, float, float] | np.ndarray, yaw: float, rest: list[float] | None = None) -> list[float]:
        orn = pb.getQuaternionFromEuler([math.pi, 0.0, yaw])
        q = pb.calculateInverseKinematics(
            self.robot, EE_LINK, [float(v) for v in pos], orn,
            lowerLimits=_LOWER, upperLimits=_UPPER, jointRanges=_RANGES,
            restPoses=rest if rest is not None else self._rest(yaw),
            maxNumIterations=30, residualThreshold=1e-5, physicsClientId=self.client,
        )
        return list(q[:7])

    def _rest(self, yaw: float) -> list[float]:
        r = list(REST_POSE)
        r[6] = REST_POSE[6] + yaw
        return r

    def command(self, ee_target: np.ndarray, gripper_closed: bool) -> None:
        """Set joint targets for one control tick."""
        c = self.client
        self._q_target = self.ik(ee_target, self.yaw)
        pb.setJointMotorControlArray(
            self.robot, ARM_JOINTS, pb.POSITION_CONTROL, targetPositions=self._q_target, forces=ARM_FORCES,
            positionGains=[0.08] * 7, physicsClientId=c,
        )
        width = 0.0 if gripper_closed else FINGER_OPEN
        pb.setJointMotorControlArray(
            self.robot, FINGER_JOINTS, pb.POSITION_CONTROL, targetPositions=[width, width],
            forces=[FINGER_FORCE, FINGER_FORCE], positionGains=[0.03, 0.03], physicsClientId=c,
        )

    def hold(self) -> None:
        c = self.client
        pb.setJointMotorControlArray(
            self.robot, ARM_JOINTS, pb.POSITION_CONTROL, targetPositions=self._q_target, forces=ARM_FORCES,
            physicsClientId=c,
        )

    def attach(self, box: Box) -> None:
        """Grasp assist: once the fingers have closed on `box`, hold it with a fixed constraint.

        Friction grasps in pybullet slip during fast transport; real teleop grasps do not. The
        fingers still physically close on the box, so `gripper_width` shows the real grasp.
        """
        if self._grasp_cid is not None:
            return
        c = self.client
        hand = pb.getLinkState(self.robot, EE_LINK, physicsClientId=c)
        obj_pos, obj_orn = pb.getBasePositionAndOrientation(box.body, physicsClientId=c)
        inv_pos, inv_orn = pb.invertTransform(hand[4], hand[5])
        rel_pos, rel_orn = pb.multiplyTransforms(inv_pos, inv_orn, obj_pos, obj_orn)
        self._grasp_cid = pb.createConstraint(
            self.robot, EE_LINK, box.body, -1, pb.JOINT_FIXED, [0, 0, 0], rel_pos, [0, 0, 0],
            parentFrameOrientation=rel_orn, physicsClientId=c,
        )
        pb.changeConstraint(self._grasp_cid, maxForce=60.0, physicsClientId=c)

    def detach(self) -> None:
        if self._grasp_cid is not None:
            pb.removeConstraint(self._grasp_cid, physicsClientId=self.client)
            self._grasp_cid = None

    def step(self) -> None:
        pb.stepSimulation(physicsClientId=self.client)

    # --- observation ----------------------------------------------------------------------
    def ee_position(self) -> np.ndarray:
        return np.asarray(pb.getLinkState(self.robot, EE_LINK, physicsClientId=self.client)[4], dtype=np.float64)

    def gripper_width(self) -> float:
        js = pb.getJointStates(self.robot, FINGER_JOINTS, physicsClientId=self.client)
        return float(js[0][0] + js[1][0])

    def observe(self) -> np.ndarray:
        js = pb.getJointStates(self.robot, ARM_JOINTS, physicsClientId=self.client)
        q = [s[0] for s in js]
        return np.asarray([*q, self.gripper_width(), *self.ee_position()], dtype=np.float32)

    def box_position(self, box: Box) -> np.ndarray:
        return np.asarray(pb.getBasePositionAndOrientation(box.body, physicsClientId=self.client)[0])

    def render(self, size: int) -> np.ndarray:
        img = pb.getCameraImage(
            size, size, self._view, self._proj, renderer=pb.ER_TINY_RENDERER, shadow=0,
            lightDirection=[0.4, -0.3, 1.0], physicsClientId=self.client,
        )
        rgba = np.reshape(np.asarray(img[2], dtype=np.uint8), (size, size, 4))
        return np.ascontiguousarray(rgba[:, :, :3])

    def close(self) -> None:
        if self.client is not None and self.client >= 0:
            pb.disconnect(physicsClientId=self.client)
            self.client = -1
