"""Simulate ACT's scripted bimanual experts in gym-aloha and dump one .npz per episode.

Runs in a separate venv with gym-aloha (MuJoCo + dm_control), NOT in Carve's venv; see README.md:

    MUJOCO_GL=egl /work/venv-aloha-mj2/bin/python simulate.py --out /tmp/aloha-sim --tasks transfer_cube --episodes 10
    MUJOCO_GL=egl /work/venv-aloha-mj2/bin/python simulate.py --out /tmp/aloha-sim --tasks insertion --episodes 10

(gym-aloha 0.1.5 installed --no-deps on MuJoCo 2.3.7 + dm-control 1.0.14: under gym-aloha's pinned
MuJoCo 3.x the mocap end effector does not follow its target and the experts never succeed.)

What it does, per episode (exactly the procedure of ACT's `record_sim_episodes.py`):

1. build the end-effector (mocap) task of gym-aloha (`gym_aloha.tasks.sim_end_effector`, assets
   `bimanual_viperx_end_effector_*.xml`) as a dm_control `control.Environment` with DT = 0.02 s
   (gym-aloha's `AlohaEnv` raises NotImplementedError for the EE tasks, so we build it the way ACT's
   `ee_sim_env.make_ee_sim_env` does);
2. roll out ACT's scripted policy (PickAndTransferPolicy / InsertionPolicy, ported below) for 400 steps;
3. take the joint trajectory (qpos of each step) and replace the gripper entries with the normalised
   gripper *command* (PUPPET_GRIPPER_POSITION_NORMALIZE_FN of the gripper ctrl);
4. replay that joint trajectory as actions in gym-aloha's joint-space task (`gym_aloha.tasks.sim`,
   `bimanual_viperx_{transfer_cube,insertion}.xml`) with the same object poses, recording per step
   qpos (14), qvel (14), action (14) and small camera images; truncate to 400 steps like ACT.

Object poses are sampled by gym-aloha's own `sample_box_pose(seed)` / `sample_insertion_pose(seed)`
with a per-episode seed (ACT samples them unseeded).

Ground truth comes from the scripted expert's own waypoints (never from any Carve rule): see
`waypoint_truth()`. Each .npz also stores the waypoints themselves (JSON) and the per-step rewards.
"""

# ---------------------------------------------------------------------------------------------------
# The scripted policies (BasePolicy, PickAndTransferPolicy, InsertionPolicy) are copied from
# ACT, https://github.com/tonyzhaozh/act/blob/main/scripted_policy.py
#   MIT License, Copyright (c) 2023 Tony Z. Zhao
#   Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
#   associated documentation files (the "Software"), to deal in the Software without restriction,
#   including without limitation the rights to use, copy, modify, merge, publish, distribute,
#   sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
#   furnished to do so, subject to the following conditions: The above copyright notice and this
#   permission notice shall be included in all copies or substantial portions of the Software.
#   THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED.
# Changes: IPython/matplotlib/ACT-env imports removed; the waypoint lists are unchanged.
# ---------------------------------------------------------------------------------------------------

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
from pyquaternion import Quaternion


class BasePolicy:
    def __init__(self, inject_noise=False):
        self.inject_noise = inject_noise
        self.step_count = 0
        self.left_trajectory = None
        self.right_trajectory = None

    def generate_trajectory(self, ts_first):
        raise NotImplementedError

    @staticmethod
    def interpolate(curr_waypoint, next_waypoint, t):
        t_frac = (t - curr_waypoint["t"]) / (next_waypoint["t"] - curr_waypoint["t"])
        curr_xyz = curr_waypoint["xyz"]
        curr_quat = curr_waypoint["quat"]
        curr_grip = curr_waypoint["gripper"]
        next_xyz = next_waypoint["xyz"]
        next_quat = next_waypoint["quat"]
        next_grip = next_waypoint["gripper"]
        xyz = curr_xyz + (next_xyz - curr_xyz) * t_frac
        quat = curr_quat + (next_quat - curr_quat) * t_frac
        gripper = curr_grip + (next_grip - curr_grip) * t_frac
        return xyz, quat, gripper

    def __call__(self, ts):
        # generate trajectory at first timestep, then open-loop execution
        if self.step_count == 0:
            self.generate_trajectory(ts)
            # (Carve corpus) keep an untouched copy of the waypoints for the ground truth
            self.waypoints = {
                "left": copy.deepcopy(self.left_trajectory),
                "right": copy.deepcopy(self.right_trajectory),
            }

        # obtain left and right waypoints
        if self.left_trajectory[0]["t"] == self.step_count:
            self.curr_left_waypoint = self.left_trajectory.pop(0)
        next_left_waypoint = self.left_trajectory[0]

        if self.right_trajectory[0]["t"] == self.step_count:
            self.curr_right_waypoint = self.right_trajectory.pop(0)
        next_right_waypoint = self.right_trajectory[0]

        # interpolate between waypoints to obtain current pose and gripper command
        left_xyz, left_quat, left_gripper = self.interpolate(
            self.curr_left_waypoint, next_left_waypoint, self.step_count
        )
        right_xyz, right_quat, right_gripper = self.interpolate(
            self.curr_right_waypoint, next_right_waypoint, self.step_count
        )

        # Inject noise
        if self.inject_noise:
            scale = 0.01
            left_xyz = left_xyz + np.random.uniform(-scale, scale, left_xyz.shape)
            right_xyz = right_xyz + np.random.uniform(-scale, scale, right_xyz.shape)

        action_left = np.concatenate([left_xyz, left_quat, [left_gripper]])
        action_right = np.concatenate([right_xyz, right_quat, [right_gripper]])

        self.step_count += 1
        return np.concatenate([action_left, action_right])


class PickAndTransferPolicy(BasePolicy):
    def generate_trajectory(self, ts_first):
        init_mocap_pose_right = ts_first.observation["mocap_pose_right"]
        init_mocap_pose_left = ts_first.observation["mocap_pose_left"]

        box_info = np.array(ts_first.observation["env_state"])
        box_xyz = box_info[:3]
        box_quat = box_info[3:]  # noqa: F841
        # print(f"Generate trajectory for {box_xyz=}")

        gripper_pick_quat = Quaternion(init_mocap_pose_right[3:])
        gripper_pick_quat = gripper_pick_quat * Quaternion(axis=[0.0, 1.0, 0.0], degrees=-60)

        meet_left_quat = Quaternion(axis=[1.0, 0.0, 0.0], degrees=90)

        meet_xyz = np.array([0, 0.5, 0.25])

        self.left_trajectory = [
            {"t": 0, "xyz": init_mocap_pose_left[:3], "quat": init_mocap_pose_left[3:], "gripper": 0},  # sleep
            {"t": 100, "xyz": meet_xyz + np.array([-0.1, 0, -0.02]), "quat": meet_left_quat.elements, "gripper": 1},  # approach meet position
            {"t": 260, "xyz": meet_xyz + np.array([0.02, 0, -0.02]), "quat": meet_left_quat.elements, "gripper": 1},  # move to meet position
            {"t": 310, "xyz": meet_xyz + np.array([0.02, 0, -0.02]), "quat": meet_left_quat.elements, "gripper": 0},  # close gripper
            {"t": 360, "xyz": meet_xyz + np.array([-0.1, 0, -0.02]), "quat": np.array([1, 0, 0, 0]), "gripper": 0},  # move left
            {"t": 400, "xyz": meet_xyz + np.array([-0.1, 0, -0.02]), "quat": np.array([1, 0, 0, 0]), "gripper": 0},  # stay
        ]

        self.right_trajectory = [
            {"t": 0, "xyz": init_mocap_pose_right[:3], "quat": init_mocap_pose_right[3:], "gripper": 0},  # sleep
            {"t": 90, "xyz": box_xyz + np.array([0, 0, 0.08]), "quat": gripper_pick_quat.elements, "gripper": 1},  # approach the cube
            {"t": 130, "xyz": box_xyz + np.array([0, 0, -0.015]), "quat": gripper_pick_quat.elements, "gripper": 1},  # go down
            {"t": 170, "xyz": box_xyz + np.array([0, 0, -0.015]), "quat": gripper_pick_quat.elements, "gripper": 0},  # close gripper
            {"t": 200, "xyz": meet_xyz + np.array([0.05, 0, 0]), "quat": gripper_pick_quat.elements, "gripper": 0},  # approach meet position
            {"t": 220, "xyz": meet_xyz, "quat": gripper_pick_quat.elements, "gripper": 0},  # move to meet position
            {"t": 310, "xyz": meet_xyz, "quat": gripper_pick_quat.elements, "gripper": 1},  # open gripper
            {"t": 360, "xyz": meet_xyz + np.array([0.1, 0, 0]), "quat": gripper_pick_quat.elements, "gripper": 1},  # move to right
            {"t": 400, "xyz": meet_xyz + np.array([0.1, 0, 0]), "quat": gripper_pick_quat.elements, "gripper": 1},  # stay
        ]


class InsertionPolicy(BasePolicy):
    def generate_trajectory(self, ts_first):
        init_mocap_pose_right = ts_first.observation["mocap_pose_right"]
        init_mocap_pose_left = ts_first.observation["mocap_pose_left"]

        peg_info = np.array(ts_first.observation["env_state"])[:7]
        peg_xyz = peg_info[:3]
        peg_quat = peg_info[3:]  # noqa: F841

        socket_info = np.array(ts_first.observation["env_state"])[7:]
        socket_xyz = socket_info[:3]
        socket_quat = socket_info[3:]  # noqa: F841

        gripper_pick_quat_right = Quaternion(init_mocap_pose_right[3:])
        gripper_pick_quat_right = gripper_pick_quat_right * Quaternion(axis=[0.0, 1.0, 0.0], degrees=-60)

        gripper_pick_quat_left = Quaternion(init_mocap_pose_right[3:])
        gripper_pick_quat_left = gripper_pick_quat_left * Quaternion(axis=[0.0, 1.0, 0.0], degrees=60)

        meet_xyz = np.array([0, 0.5, 0.15])
        lift_right = 0.00715

        self.left_trajectory = [
            {"t": 0, "xyz": init_mocap_pose_left[:3], "quat": init_mocap_pose_left[3:], "gripper": 0},  # sleep
            {"t": 120, "xyz": socket_xyz + np.array([0, 0, 0.08]), "quat": gripper_pick_quat_left.elements, "gripper": 1},  # approach the cube
            {"t": 170, "xyz": socket_xyz + np.array([0, 0, -0.03]), "quat": gripper_pick_quat_left.elements, "gripper": 1},  # go down
            {"t": 220, "xyz": socket_xyz + np.array([0, 0, -0.03]), "quat": gripper_pick_quat_left.elements, "gripper": 0},  # close gripper
            {"t": 285, "xyz": meet_xyz + np.array([-0.1, 0, 0]), "quat": gripper_pick_quat_left.elements, "gripper": 0},  # approach meet position
            {"t": 340, "xyz": meet_xyz + np.array([-0.05, 0, 0]), "quat": gripper_pick_quat_left.elements, "gripper": 0},  # insertion
            {"t": 400, "xyz": meet_xyz + np.array([-0.05, 0, 0]), "quat": gripper_pick_quat_left.elements, "gripper": 0},  # insertion
        ]

        self.right_trajectory = [
            {"t": 0, "xyz": init_mocap_pose_right[:3], "quat": init_mocap_pose_right[3:], "gripper": 0},  # sleep
            {"t": 120, "xyz": peg_xyz + np.array([0, 0, 0.08]), "quat": gripper_pick_quat_right.elements, "gripper": 1},  # approach the cube
            {"t": 170, "xyz": peg_xyz + np.array([0, 0, -0.03]), "quat": gripper_pick_quat_right.elements, "gripper": 1},  # go down
            {"t": 220, "xyz": peg_xyz + np.array([0, 0, -0.03]), "quat": gripper_pick_quat_right.elements, "gripper": 0},  # close gripper
            {"t": 285, "xyz": meet_xyz + np.array([0.1, 0, lift_right]), "quat": gripper_pick_quat_right.elements, "gripper": 0},  # approach meet position
            {"t": 340, "xyz": meet_xyz + np.array([0.05, 0, lift_right]), "quat": gripper_pick_quat_right.elements, "gripper": 0},  # insertion
            {"t": 400, "xyz": meet_xyz + np.array([0.05, 0, lift_right]), "quat": gripper_pick_quat_right.elements, "gripper": 0},  # insertion
        ]


# ---------------------------------------------------------------------------------------------------
# End of the code taken from ACT. Everything below is the Carve corpus' own.
# ---------------------------------------------------------------------------------------------------

# Labels of the motion *between* consecutive waypoints, per task and arm: entry i describes the
# segment from waypoint i to waypoint i+1 (ACT's comment on waypoint i+1 names where it goes).
# (name, verb, object); object None = no object involved.
SEGMENT_LABELS = {
    "transfer_cube": {
        "left": [
            ("move to the handover standby pose, opening the gripper", "move", None),  # 0 -> 100
            ("approach the cube at the meet position", "approach", "cube"),  # 100 -> 260
            ("close the gripper on the cube", "grasp", "cube"),  # 260 -> 310
            ("move the cube to the left", "move", "cube"),  # 310 -> 360
            ("hold the cube still", "hold", "cube"),  # 360 -> 400
        ],
        "right": [
            ("approach the cube, opening the gripper", "approach", "cube"),  # 0 -> 90
            ("descend to the cube", "descend", "cube"),  # 90 -> 130
            ("close the gripper on the cube", "grasp", "cube"),  # 130 -> 170
            ("lift the cube toward the meet position", "lift", "cube"),  # 170 -> 200
            ("move the cube to the meet position", "move", "cube"),  # 200 -> 220
            ("open the gripper, handing the cube over", "release", "cube"),  # 220 -> 310
            ("retreat to the right", "retreat", None),  # 310 -> 360
            ("stay still", "hold", None),  # 360 -> 400
        ],
    },
    "insertion": {
        "left": [
            ("approach the socket, opening the gripper", "approach", "socket"),  # 0 -> 120
            ("descend to the socket", "descend", "socket"),  # 120 -> 170
            ("close the gripper on the socket", "grasp", "socket"),  # 170 -> 220
            ("lift the socket to the meet position", "lift", "socket"),  # 220 -> 285
            ("insert: push the socket onto the peg", "insert", "socket"),  # 285 -> 340
            ("hold the socket still", "hold", "socket"),  # 340 -> 400
        ],
        "right": [
            ("approach the peg, opening the gripper", "approach", "peg"),  # 0 -> 120
            ("descend to the peg", "descend", "peg"),  # 120 -> 170
            ("close the gripper on the peg", "grasp", "peg"),  # 170 -> 220
            ("lift the peg to the meet position", "lift", "peg"),  # 220 -> 285
            ("insert: push the peg into the socket", "insert", "peg"),  # 285 -> 340
            ("hold the peg still", "hold", "peg"),  # 340 -> 400
        ],
    },
}

TASK_TEXT = {
    "transfer_cube": "Transfer the cube from the right arm to the left arm",
    "insertion": "Insert the peg into the socket",
}
EPISODE_LEN = {"transfer_cube": 400, "insertion": 400}  # ACT's SIM_TASK_CONFIGS episode_len
FPS = 50  # DT = 0.02 s


def _seg_rates(wps: list[dict]) -> list[np.ndarray]:
    """Per segment i (waypoint i -> i+1): d(xyz, quat, gripper)/dt, the commanded (constant) rate."""
    out = []
    for a, b in itertools.pairwise(wps):
        dt = float(b["t"] - a["t"])
        d = np.concatenate(
            [
                np.asarray(b["xyz"], float) - np.asarray(a["xyz"], float),
                np.asarray(b["quat"], float) - np.asarray(a["quat"], float),
                [float(b["gripper"]) - float(a["gripper"])],
            ]
        )
        out.append(d / dt)
    return out


def arm_boundaries(wps: list[dict], tol: float = 1e-9) -> list[int]:
    """Interior waypoint times (not t=0, not the last) where the arm's commanded rate changes.

    The policy interpolates linearly between waypoints, so the commanded xyz / quat / gripper velocity is
    piecewise constant; a boundary is a waypoint where it changes (xyz, quaternion or gripper rate)."""
    rates = _seg_rates(wps)
    return [
        int(wps[i]["t"])
        for i in range(1, len(wps) - 1)
        if np.max(np.abs(rates[i] - rates[i - 1])) > tol
    ]


def waypoint_truth(task: str, waypoints: dict[str, list[dict]], merge_frames: int = 2) -> dict:
    """Ground truth at the 50-Hz step index from the expert's waypoints (see README.md)."""
    per_arm = {arm: arm_boundaries(waypoints[arm]) for arm in ("left", "right")}
    # per-arm segments: [start, end) with the label of that segment
    segs = {}
    for arm in ("left", "right"):
        wps = waypoints[arm]
        labels = SEGMENT_LABELS[task][arm]
        assert len(labels) == len(wps) - 1
        segs[arm] = [
            {"start": int(a["t"]), "end": int(b["t"]), "name": lab[0], "verb": lab[1], "object": lab[2]}
            for (a, b), lab in zip(itertools.pairwise(wps), labels, strict=True)
        ]
    # union of both arms' boundaries, merged when within `merge_frames` of each other (keep the first)
    union = sorted(set(per_arm["left"]) | set(per_arm["right"]))
    merged: list[int] = []
    for b in union:
        if merged and b - merged[-1] <= merge_frames:
            continue
        merged.append(b)
    starts = [0, *merged]
    n = EPISODE_LEN[task]

    def seg_at(arm: str, t: int) -> dict:
        return next(s for s in segs[arm] if s["start"] <= t < s["end"])

    phases, info = [], []
    for k, a in enumerate(starts):
        b = starts[k + 1] if k + 1 < len(starts) else n
        # the arm(s) whose own new segment begins here (within the merge window) is the acting arm
        starters = [
            arm
            for arm in ("left", "right")
            if a == 0 or any(abs(a - x) <= merge_frames for x in per_arm[arm])
        ]
        cur = {arm: seg_at(arm, a) for arm in ("left", "right")}
        if len(starters) == 1:
            arm = starters[0]
            s = cur[arm]
            phases.append(f"{arm}: {s['name']}")
            info.append({"arm": arm, "verb": s["verb"], "object": s["object"]})
        else:
            arm = "both"
            verbs = [cur["right"]["verb"], cur["left"]["verb"]]
            objs = [o for o in (cur["right"]["object"], cur["left"]["object"]) if o]
            verb = verbs[0] if verbs[0] == verbs[1] else "+".join(verbs)
            obj = "+".join(dict.fromkeys(objs)) if objs else None
            phases.append(f"right: {cur['right']['name']} | left: {cur['left']['name']}")
            info.append({"arm": arm, "verb": verb, "object": obj})
        info[-1]["start"] = a
        info[-1]["end"] = b
        info[-1]["left"] = {kk: cur["left"][kk] for kk in ("name", "verb", "object")}
        info[-1]["right"] = {kk: cur["right"][kk] for kk in ("name", "verb", "object")}
    return {
        "boundaries": merged,
        "phases": phases,
        "phase_info": info,
        "arms": per_arm,
        "arm_segments": segs,
        "length": n,
        "fps": FPS,
        "task": TASK_TEXT[task],
    }


# ----------------------------------------------------------------------------------- simulation


def make_envs(task: str, cams: list[str], width: int, height: int):
    from dm_control import mujoco
    from dm_control.rl import control
    from gym_aloha.constants import ASSETS_DIR, DT
    from gym_aloha.tasks import sim, sim_end_effector
    from gym_aloha.tasks.sim_end_effector import BimanualViperXEndEffectorTask

    if task == "transfer_cube":
        ee_cls, joint_cls = sim_end_effector.TransferCubeEndEffectorTask, sim.TransferCubeTask
    else:
        ee_cls, joint_cls = sim_end_effector.InsertionEndEffectorTask, sim.InsertionTask

    class EETask(ee_cls):
        """gym-aloha's EE task with a given (seeded) object pose and no 640x480 renders."""

        object_pose = None

        def initialize_episode(self, physics):
            self.initialize_robots(physics)
            pose = np.asarray(self.object_pose, float)
            if task == "transfer_cube":
                i = physics.model.name2id("red_box_joint", "joint")
                np.copyto(physics.data.qpos[i : i + 7], pose)
            else:  # same indexing as gym-aloha's InsertionEndEffectorTask
                for j, name in enumerate(("red_peg_joint", "blue_socket_joint")):
                    jid = physics.model.name2id(name, "joint")
                    idx = 16 + (jid - 16) * 7
                    np.copyto(physics.data.qpos[idx : idx + 7], pose[7 * j : 7 * j + 7])
            BimanualViperXEndEffectorTask.initialize_episode(self, physics)

        def get_observation(self, physics):
            obs = {
                "qpos": self.get_qpos(physics),
                "qvel": self.get_qvel(physics),
                "env_state": self.get_env_state(physics),
                "mocap_pose_left": np.concatenate([physics.data.mocap_pos[0], physics.data.mocap_quat[0]]).copy(),
                "mocap_pose_right": np.concatenate([physics.data.mocap_pos[1], physics.data.mocap_quat[1]]).copy(),
                "gripper_ctrl": physics.data.ctrl.copy(),
            }
            return obs

    class JointTask(joint_cls):
        """gym-aloha's joint-space task rendering only the cameras we keep, at a small size."""

        def get_observation(self, physics):
            return {
                "qpos": self.get_qpos(physics),
                "qvel": self.get_qvel(physics),
                "env_state": self.get_env_state(physics),
                "images": {c: physics.render(height=height, width=width, camera_id=c) for c in cams},
            }

    ee_physics = mujoco.Physics.from_xml_path(str(ASSETS_DIR / f"bimanual_viperx_end_effector_{task}.xml"))
    ee_env = control.Environment(
        ee_physics, EETask(random=False), time_limit=20, control_timestep=DT, n_sub_steps=None, flat_observation=False
    )
    j_physics = mujoco.Physics.from_xml_path(str(ASSETS_DIR / f"bimanual_viperx_{task}.xml"))
    j_env = control.Environment(
        j_physics, JointTask(random=False), time_limit=20, control_timestep=DT, n_sub_steps=None, flat_observation=False
    )
    return ee_env, j_env, sim


def run_episode(task: str, seed: int, cams: list[str], width: int, height: int) -> dict:
    from gym_aloha.constants import normalize_puppet_gripper_position as PUPPET_GRIPPER_POSITION_NORMALIZE_FN
    from gym_aloha.utils import sample_box_pose, sample_insertion_pose

    ee_env, j_env, sim = make_envs(task, cams, width, height)
    if task == "transfer_cube":
        pose = sample_box_pose(seed)
        policy = PickAndTransferPolicy(inject_noise=False)
    else:
        pose = np.concatenate(sample_insertion_pose(seed))
        policy = InsertionPolicy(inject_noise=False)
    ee_env.task.object_pose = pose
    episode_len = EPISODE_LEN[task]

    # 1) roll out the EE-space scripted policy
    ts = ee_env.reset()
    episode = [ts]
    for _ in range(episode_len):
        action = policy(ts)
        ts = ee_env.step(action)
        episode.append(ts)
    ee_rewards = np.array([t.reward for t in episode[1:]], float)
    joint_traj = [t.observation["qpos"].copy() for t in episode]
    # replace gripper pose with gripper control (as ACT does)
    for joint, t in zip(joint_traj, episode, strict=True):
        ctrl = t.observation["gripper_ctrl"]
        joint[6] = PUPPET_GRIPPER_POSITION_NORMALIZE_FN(ctrl[0])
        joint[6 + 7] = PUPPET_GRIPPER_POSITION_NORMALIZE_FN(ctrl[2])
    subtask_info = episode[0].observation["env_state"].copy()  # object pose at step 0

    # 2) replay the joint trajectory in the joint-space env and record
    sim.BOX_POSE[0] = subtask_info
    ts = j_env.reset()
    replay = [ts]
    for t in range(len(joint_traj)):  # this makes the episode 1 step longer; truncated below
        ts = j_env.step(joint_traj[t])
        replay.append(ts)
    rewards = np.array([t.reward for t in replay[1:]], float)
    joint_traj = joint_traj[:-1]
    replay = replay[:-1]
    n_steps = len(joint_traj)
    assert n_steps == episode_len
    out = {
        "qpos": np.stack([r.observation["qpos"] for r in replay[:n_steps]]),
        "qvel": np.stack([r.observation["qvel"] for r in replay[:n_steps]]),
        "action": np.stack(joint_traj),
        "reward": rewards[:n_steps],
        "ee_reward": ee_rewards,
        "object_pose": subtask_info,
        "ee_success": bool(ee_rewards.max() == ee_env.task.max_reward),
        "success": bool(rewards.max() == j_env.task.max_reward),
    }
    for c in cams:
        out[f"images_{c}"] = np.stack([r.observation["images"][c] for r in replay[:n_steps]]).astype(np.uint8)
    out["waypoints"] = {
        arm: [
            {
                "t": int(w["t"]),
                "xyz": np.asarray(w["xyz"], float).tolist(),
                "quat": np.asarray(w["quat"], float).tolist(),
                "gripper": float(w["gripper"]),
            }
            for w in policy.waypoints[arm]
        ]
        for arm in ("left", "right")
    }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="directory for the .npz files (outside the repo)")
    ap.add_argument("--tasks", default="transfer_cube,insertion")
    ap.add_argument("--episodes", type=int, default=10, help="successful episodes to keep per task")
    ap.add_argument("--max-tries", type=int, default=30, help="seeds to try per task at most")
    ap.add_argument("--seed", type=int, default=0, help="episode seeds are seed*1000 + 100*(0 transfer_cube / 1 insertion) + k")
    ap.add_argument("--cams", default="top,angle,right_wrist")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--height", type=int, default=96)
    args = ap.parse_args(argv)

    from importlib.metadata import version

    import mujoco

    versions = {
        "gym-aloha": version("gym-aloha"),
        "mujoco": mujoco.__version__,
        "dm-control": version("dm-control"),
        "numpy": np.__version__,
        "pyquaternion": version("pyquaternion"),
        "python": sys.version.split()[0],
        "MUJOCO_GL": os.environ.get("MUJOCO_GL"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    cams = [c for c in args.cams.split(",") if c]
    log = {"versions": versions, "args": {k: str(v) for k, v in vars(args).items()}, "episodes": [], "skipped": []}
    for task in args.tasks.split(","):
        ti = {"transfer_cube": 0, "insertion": 1}[task]
        kept = 0
        for k in range(args.max_tries):
            if kept >= args.episodes:
                break
            seed = args.seed * 1000 + ti * 100 + k
            t0 = time.time()
            ep = run_episode(task, seed, cams, args.width, args.height)
            dt = time.time() - t0
            msg = (
                f"{task} seed {seed}: ee_success={ep['ee_success']} replay_success={ep['success']} "
                f"max_reward={ep['reward'].max():.0f} ({dt:.1f}s)"
            )
            print(msg, flush=True)
            if not ep["success"]:
                log["skipped"].append({"task": task, "seed": seed, "ee_success": ep["ee_success"]})
                continue
            truth = waypoint_truth(task, ep["waypoints"])
            path = args.out / f"{task}_{kept:02d}.npz"
            arrays = {k2: v for k2, v in ep.items() if isinstance(v, np.ndarray)}
            np.savez_compressed(
                path,
                **arrays,
                meta=json.dumps(
                    {
                        "task_name": task,
                        "task": TASK_TEXT[task],
                        "seed": seed,
                        "episode_in_task": kept,
                        "ee_success": ep["ee_success"],
                        "success": ep["success"],
                        "cams": cams,
                        "waypoints": ep["waypoints"],
                        "truth": truth,
                        "versions": versions,
                    }
                ),
            )
            log["episodes"].append({"task": task, "seed": seed, "file": path.name})
            kept += 1
        if kept < args.episodes:
            print(f"warning: only {kept} successful {task} episodes", file=sys.stderr)
    (args.out / f"simulate_log_{'_'.join(args.tasks.split(','))}.json").write_text(json.dumps(log, indent=2) + "\n")
    print(json.dumps(versions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
