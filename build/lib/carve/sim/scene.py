"""The pybullet world of one simulated episode: ground, Franka Panda, tray, coloured objects, camera.

`Scene` owns one pybullet client in DIRECT mode (each worker process makes its own) and
exposes the few operations the scripted controller (`sim/tasks.py`) needs:

* `add_object(...)` / `add_tray(...)`: objects with a randomised shape, colour and size
  (boxes and cylinders built from primitives, or pybullet_data's lego brick),
* `ik(pos, yaw)` / `solve(pos, yaw)`: joint angles putting the grasp frame at `pos` with the
  gripper pointing down (the pybullet data Panda, drawn with its light collision meshes),
* `drive(q1, width1, fps)`: one recorded frame of motion: the arm is moved kinematically
  from its current joints to `q1` (and the finger gap to `width1`) over a few sub-steps
  while the physics of the objects runs (teleoperation-style tracking: the arm reaches
  its target),
* `grasp(obj)` / `release()`: a held object follows the hand rigidly (grasp assist),
* `observe()`: the recorded state vector (see `STATE_NAMES`),
* `render(size)`: an RGB frame from the episode's randomised camera (`ER_TINY_RENDERER`).

State layout (`STATE_NAMES`): the 7 arm joint angles (rad) and `gripper_opening` (sum of
the two finger joint positions, metres, 0 = closed, 0.08 = fully open).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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

PHYSICS_HZ = 240
STATE_NAMES = [*(f"joint_{i}" for i in range(7)), "gripper_opening"]
ACTION_NAMES = [*(f"joint_{i}_target" for i in range(7)), "gripper_command"]
ARM_JOINTS = list(range(7))
FINGER_JOINTS = [9, 10]
EE_LINK = 11  # panda_grasptarget: between the fingertips
FINGER_OPEN = 0.04  # per finger, metres
GRIPPER_MAX = 2 * FINGER_OPEN
SUBSTEPS = 4  # kinematic arm updates per recorded frame
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
SHAPES = ("cube", "block", "cylinder", "lego brick")


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
            distance=float(rng.uniform(0.75, 1.05)),
            yaw=float(90.0 + rng.uniform(-35.0, 35.0)),  # 90 = looking from +x back at the robot
            pitch=float(rng.uniform(-55.0, -30.0)),
            fov=float(rng.uniform(50.0, 62.0)),
        )


@dataclass
class SceneObject:
    """A coloured object resting on the ground."""

    body: int
    shape: str  # one of SHAPES (the noun used in task text)
    color: str
    half: tuple[float, float, float]  # half extents x, y, z of its bounding box (metres)
    yaw: float

    @property
    def height(self) -> float:
        return 2.0 * self.half[2]

    @property
    def grip_width(self) -> float:
        """The finger gap when closed on the object (across its narrower horizontal side)."""
        return float(min(2.0 * min(self.half[0], self.half[1]), GRIPPER_MAX * 0.9))


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
    """One pybullet DIRECT client holding the robot, the tray and the objects of one episode."""

    def __init__(self, rng: np.random.Generator, *, home: tuple[float, float, float] = (0.35, 0.0, 0.40)):
        self.client = pb.connect(pb.DIRECT)
        c = self.client
        pb.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=c)
        pb.setGravity(0, 0, -9.81, physicsClientId=c)
        pb.setTimeStep(1.0 / PHYSICS_HZ, physicsClientId=c)
        self.plane = pb.loadURDF("plane.urdf", physicsClientId=c)
        shade = rng.uniform(0.55, 0.85)
        pb.changeVisualShape(self.plane, -1, rgbaColor=[shade, shade * 0.95, shade * 0.88, 1], physicsClientId=c)
        self.robot = pb.loadURDF(lowpoly_panda_urdf(), [0, 0, 0], useFixedBase=True, physicsClientId=c)
        for link, shade in _LINK_SHADES.items():  # Panda colours: white links, dark wrist and fingers
            pb.changeVisualShape(self.robot, link, rgbaColor=[shade, shade, shade * 1.02 if shade < 0.5 else shade, 1],
                                 physicsClientId=c)
        for j in [*ARM_JOINTS, *FINGER_JOINTS]:  # the arm is driven kinematically: no gravity sag
            pb.setJointMotorControl2(self.robot, j, pb.VELOCITY_CONTROL, force=0, physicsClientId=c)
        self.camera = CameraPose.sample(rng)
        self.objects: list[SceneObject] = []
        self.tray: int | None = None
        self.tray_pos: tuple[float, float] | None = None
        self.tray_half = 0.0
        self.home = np.asarray(home, dtype=np.float64)
        self._held: tuple[int, tuple, tuple] | None = None
        self.ik_iterations = 50
        self.width = GRIPPER_MAX
        self.q = np.asarray(REST_POSE, dtype=np.float64)
        self._set_robot(self.q, self.width)  # the IK solver starts from the current joints
        for _ in range(3):
            self.q = self.ik(home, 0.0, REST_POSE)
            self._set_robot(self.q, self.width)
        self._view = pb.computeViewMatrixFromYawPitchRoll(
            self.camera.target, self.camera.distance, self.camera.yaw, self.camera.pitch, 0.0, 2, physicsClientId=c
        )
        self._proj = pb.computeProjectionMatrixFOV(self.camera.fov, 1.0, 0.05, 5.0, physicsClientId=c)

    # --- world building -------------------------------------------------------------------
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

    def settle_world(self, steps: int = 60) -> None:
        """Let objects come to rest before the episode starts (not recorded)."""
        for _ in range(steps):
            self._set_robot(self.q, self.width)
            pb.stepSimulation(physicsClientId=self.client)

    # --- control --------------------------------------------------------------------------
    def ik(self, pos: tuple[float, float, float] | np.ndarray, yaw: float, rest: list[float] | None = None) -> np.ndarray:
        """Joint angles for the grasp frame at `pos`, gripper pointing down, rotated `yaw` rad.

        With `rest`, null-space IK pulls the arm towards that posture (used once, for the home
        pose). Without it, plain damped least squares from the current joints: the solution
        moves continuously with the target and a still target gives still joints (a
        null-space pull would make the arm creep while the operator holds it still)."""
        orn = pb.getQuaternionFromEuler([math.pi, 0.0, yaw])
        target = [float(v) for v in pos]
        if rest is not None:
            half = FINGER_OPEN / 2
            # null-space IK needs limits for every movable joint: 7 arm joints + 2 fingers
            q = pb.calculateInverseKinematics(
                self.robot, EE_LINK, target, orn,
                lowerLimits=[*_LOWER, 0.0, 0.0], upperLimits=[*_UPPER, FINGER_OPEN, FINGER_OPEN],
                jointRanges=[*_RANGES, FINGER_OPEN, FINGER_OPEN], restPoses=[*rest, half, half],
                maxNumIterations=200, residualThreshold=1e-12, physicsClientId=self.client,
            )
        else:
            q = pb.calculateInverseKinematics(
                self.robot, EE_LINK, target, orn, maxNumIterations=self.ik_iterations, residualThreshold=1e-6,
                physicsClientId=self.client,
            )
        return np.clip(np.asarray(q[:7], dtype=np.float64), _LOWER, _UPPER)

    def solve(self, pos: np.ndarray, yaw: float, passes: int = 2) -> np.ndarray:
        """IK iterated to a fixed point, so that a still target gives still joints (the
        null-space pull of a single IK call would make the arm creep while it should dwell)."""
        c = self.client
        q = self.q
        for _ in range(passes):
            q_new = self.ik(pos, yaw)
            done = float(np.max(np.abs(q_new - q))) < 1e-4
            q = q_new
            if done:
                break
            for j, v in zip(ARM_JOINTS, q, strict=True):
                pb.resetJointState(self.robot, j, float(v), physicsClientId=c)
        for j, v in zip(ARM_JOINTS, self.q, strict=True):
            pb.resetJointState(self.robot, j, float(v), physicsClientId=c)
        return q

    def _set_robot(self, q: np.ndarray, width: float) -> None:
        c = self.client
        for j, v in zip(ARM_JOINTS, q, strict=True):
            pb.resetJointState(self.robot, j, float(v), physicsClientId=c)
        for j in FINGER_JOINTS:
            pb.resetJointState(self.robot, j, float(width) / 2.0, physicsClientId=c)
        if self._held is not None:
            body, rel_pos, rel_orn = self._held
            hand = pb.getLinkState(self.robot, EE_LINK, computeForwardKinematics=True, physicsClientId=c)
            pos, orn = pb.multiplyTransforms(hand[4], hand[5], rel_pos, rel_orn)
            pb.resetBasePositionAndOrientation(body, pos, orn, physicsClientId=c)
            pb.resetBaseVelocity(body, [0, 0, 0], [0, 0, 0], physicsClientId=c)

    def drive(self, q1: np.ndarray, width1: float, fps: int) -> None:
        """Move from the current joints/finger gap to `q1`/`width1` over one frame (1/fps s)."""
        q0, w0 = self.q, self.width
        steps = max(1, PHYSICS_HZ // fps)
        per = max(1, steps // SUBSTEPS)
        done = 0
        for k in range(1, SUBSTEPS + 1):
            a = k / SUBSTEPS
            self._set_robot(q0 + (q1 - q0) * a, w0 + (width1 - w0) * a)
            n = per if k < SUBSTEPS else steps - done
            for _ in range(n):
                pb.stepSimulation(physicsClientId=self.client)
            done += n
        self.q = np.asarray(q1, dtype=np.float64)
        self.width = float(width1)
        self._set_robot(self.q, self.width)

    def grasp(self, obj: SceneObject) -> None:
        """Grasp assist: from now on `obj` follows the hand rigidly (as a firm teleop grasp does)."""
        c = self.client
        hand = pb.getLinkState(self.robot, EE_LINK, computeForwardKinematics=True, physicsClientId=c)
        obj_pos, obj_orn = pb.getBasePositionAndOrientation(obj.body, physicsClientId=c)
        inv_pos, inv_orn = pb.invertTransform(hand[4], hand[5])
        rel_pos, rel_orn = pb.multiplyTransforms(inv_pos, inv_orn, obj_pos, obj_orn)
        self._held = (obj.body, rel_pos, rel_orn)

    def release(self) -> None:
        self._held = None

    # --- observation ----------------------------------------------------------------------
    def ee_position(self) -> np.ndarray:
        st = pb.getLinkState(self.robot, EE_LINK, computeForwardKinematics=True, physicsClientId=self.client)
        return np.asarray(st[4], dtype=np.float64)

    def observe(self) -> np.ndarray:
        return np.asarray([*self.q, self.width], dtype=np.float32)

    def object_position(self, obj: SceneObject) -> np.ndarray:
        return np.asarray(pb.getBasePositionAndOrientation(obj.body, physicsClientId=self.client)[0])

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
