"""Record ManiSkill 3 motion-planning expert episodes, labelled with the expert's own sub-goals
(corpus item `maniskill_heldout`).

Runs in a simulator venv (NOT Carve's venv), fully offline once installed:

    python3 -m venv /work/venv-maniskill
    /work/venv-maniskill/bin/pip install mani_skill==3.0.0b21      # pulls sapien 3.0.3, mplib 0.1.1 (its pin)
    VK_ICD_FILENAMES=... /work/venv-maniskill/bin/python tests/corpus/maniskill_heldout/simulate.py --out /tmp/msk-npz

(README.md says which Vulkan driver renders the camera on a machine without a GPU.)

**The expert.** For each task the solution that ManiSkill ships,
`mani_skill/examples/motionplanning/panda/solutions/<task>.py`, is run unchanged: `solve(env, seed)`
resets the env with that seed and drives a `PandaArmMotionPlanningSolver` (mplib screw / RRT-Connect
plans followed step by step in `pd_joint_pos` control, plus fixed 6-step gripper closes and opens).
Nothing of a solution is re-implemented.

**The truth (sub-goals), derived mechanically.** Before a solution runs, the four planner methods that
move the robot, `PandaArmMotionPlanningSolver.move_to_pose_with_screw`, `move_to_pose_with_RRTConnect`,
`open_gripper` and `close_gripper`, are wrapped (`CallTracer`): each call is recorded with its method
name, whether it was a `dry_run` (a plan only, no step: stack-cube's search for a reachable grasp
angle), and the index of the env step at which it starts and ends. The env is wrapped by `Recorder`, a
`gymnasium.Wrapper` whose `step` records, before stepping, the state, the camera image and the action,
and tags the step with the planner call that is running. The planner calls that executed steps (not
dry runs, not failed plans), in order, are the expert's sub-goals; the task table below gives one name
per such call (`calls`), in the solution's source order, and the run checks that the number of executed
calls equals the number of names (else the episode is an error, not silently relabelled). A call that
executed zero steps is dropped. Consecutive calls with the same name (peg-insertion-side's three
refinements of its pre-insertion pose) are one phase (boundary dropped); the per-call labels stay in
the .npz and in `truth_all.json` (`expert_phases` / `expert_boundaries`: one entry per executed call).

Timing: ManiSkill's Panda tasks step at the env's control frequency, 20 Hz (sim 100 Hz, checked at
run time); every control step is recorded (fps 20):
    state[i]   = the TCP position (x, y, z, world frame, metres), the 7 arm joint positions (rad),
                 and the gripper opening (the sum of the two finger joints, metres), before step i
    image[i]   = the env's render camera (`render_camera`, `env.render()`) before step i
    action[i]  = the action of step i, as `pd_joint_pos` takes it: 7 arm joint targets (rad) and the
                 gripper command (1 open, -1 closed; lift-peg-upright's loose grasp -0.6)
    phase[i]   = the planner call that issued step i
so a call that starts at step k starts a phase at frame k. The episode is the solution's steps, from
its reset to its last planner call; it is kept if the env reports success at any step (the first such
step and the success at the last step are logged), otherwise it is reported and skipped.

**Names.** As `tests/corpus/metaworld_tasks/simulate.py`'s module doc: each sub-goal starts with the
verb that says what the hand does in it: `reach` / `descend` while it approaches (nothing held), `grasp`
for the closing of the fingers on an object, `lift` / `carry` while it moves a held object, `release`
for the opening of the fingers on a held object, and the task's own action (`push`, `pull`, `stack`,
`insert`, `turn`, `lower` ...) for the call that does it. The names were fixed from the solutions'
source before any episode was simulated. The task texts are instructions a teleoperation dataset
would carry.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

CONTROL_HZ = 20

# env id -> solution module (mani_skill.examples.motionplanning.panda.solutions.<module>), instruction, and
# one name per executed planner call in the solution's source order (dry runs excluded; see the module doc).
TASKS: dict[str, dict] = {
    "PullCubeTool-v1": {
        "solution": "pull_cube_tool", "text": "pull the cube toward you with the hook tool",
        "calls": [
            "reach above the hook tool",                          # screw to grasp_pose * (0, 0, -0.05)
            "descend to the hook tool",                           # screw to grasp_pose
            "grasp the hook tool",                                # close_gripper
            "lift the hook tool",                                 # screw up 0.35 m
            "carry the hook tool above the cube",                 # screw to the cube, hook's length + 8 cm short, 0.30 m up
            "carry the hook tool down behind the cube",           # screw to the hook behind the cube (y -0.067)
            "pull the cube toward you with the hook tool",        # screw 0.35 m back toward the robot base
        ],
    },
    "PushCube-v1": {
        "solution": "push_cube", "text": "push the cube to the goal",
        "calls": [
            "close the gripper",                                  # close_gripper (nothing held: a fist to push with)
            "reach behind the cube",                              # screw to 5 cm behind the cube (-x)
            "push the cube to the goal",                          # screw to 12 cm behind the goal's centre
        ],
    },
    "StackCube-v1": {
        "solution": "stack_cube", "text": "stack the red cube on the green cube",
        "calls": [
            # (dry-run screws first: the search for a reachable grasp angle; no step, no phase)
            "reach above the red cube",                           # screw to grasp_pose * (0, 0, -0.05)
            "descend to the red cube",                            # screw to grasp_pose
            "grasp the red cube",                                 # close_gripper
            "lift the red cube",                                  # screw up 0.1 m
            "stack the red cube on the green cube",               # screw to the lift pose + (green top - red)
            "release the red cube",                               # open_gripper
        ],
    },
    "PegInsertionSide-v1": {
        "solution": "peg_insertion_side", "text": "insert the peg into the hole from the side",
        "calls": [
            "reach above the peg",                                # screw to grasp_pose * (0, 0, -0.05)
            "descend to the peg",                                 # screw to grasp_pose
            "grasp the peg",                                      # close_gripper
            "carry the peg in front of the hole",                 # screw to the pre-insertion pose
            "carry the peg in front of the hole",                 # refinement 1 of the pre-insertion pose
            "carry the peg in front of the hole",                 # refinement 2
            "carry the peg in front of the hole",                 # refinement 3
            "insert the peg into the hole",                       # screw to the insertion pose + 5 cm
        ],
    },
    "LiftPegUpright-v1": {
        "solution": "lift_peg_upright", "text": "lift the peg and stand it upright on the table",
        "calls": [
            "reach above the peg",                                # screw to grasp_pose * (0, 0, -0.05)
            "descend to the peg",                                 # screw to grasp_pose (10 cm off the peg's centre)
            "grasp the peg",                                      # close_gripper(gripper_state=-0.6), a loose grip
            "lift the peg",                                       # screw up 0.30 m
            "turn the peg upright",                               # screw: the hand rotated 36 deg about its y axis
            "lower the peg onto the table",                       # screw down 0.10 m
            "release the peg",                                    # open_gripper
        ],
    },
    # reserve: simulated only if one of the five above has no success on seeds 0-2 (README)
    "PickCube-v1": {
        "solution": "pick_cube", "text": "pick up the cube and place it at the goal",
        "calls": [
            "reach above the cube",                               # screw to grasp_pose * (0, 0, -0.05)
            "descend to the cube",                                # screw to grasp_pose
            "grasp the cube",                                     # close_gripper
            "carry the cube to the goal",                         # screw to the goal (in the air)
        ],
    },
}
DEFAULT_TASKS = "PullCubeTool-v1,PushCube-v1,StackCube-v1,PegInsertionSide-v1,LiftPegUpright-v1"
TRACED = ("move_to_pose_with_screw", "move_to_pose_with_RRTConnect", "open_gripper", "close_gripper")


class CallTracer:
    """Wraps the planner methods in TRACED (module doc): every call is appended to `calls` with its start
    and end step; `current` is the index of the running call (-1 outside any)."""

    def __init__(self):
        self.calls: list[dict] = []
        self.current = -1
        self.steps = 0  # set by Recorder

    def install(self):
        from mani_skill.examples.motionplanning.panda import motionplanner

        cls = motionplanner.PandaArmMotionPlanningSolver
        for name in TRACED:
            orig = getattr(cls, name)
            if getattr(orig, "_traced", False):
                orig = orig._orig

            def wrapped(planner, *a, _orig=orig, _name=name, **kw):
                rec = {"method": _name, "dry_run": bool(kw.get("dry_run", False)), "start_step": self.steps}
                self.calls.append(rec)
                outer, self.current = self.current, len(self.calls) - 1
                try:
                    res = _orig(planner, *a, **kw)
                finally:
                    self.current = outer
                rec["end_step"] = self.steps
                rec["failed"] = isinstance(res, int) and res == -1
                return res

            wrapped._traced, wrapped._orig = True, orig
            setattr(cls, name, wrapped)


def _recorder_class():
    import gymnasium as gym

    class Recorder(gym.Wrapper):
        """Records state, image and action before every step, tagged with the running planner call."""

        def __init__(self, env, tracer: CallTracer):
            super().__init__(env)
            self.tracer = tracer
            self.clear()

        def clear(self):
            self.state, self.action, self.image, self.call, self.success = [], [], [], [], []
            self.tracer.calls, self.tracer.current, self.tracer.steps = [], -1, 0

        def reset(self, **kw):
            out = self.env.reset(**kw)
            self.clear()
            return out

        def _state(self) -> np.ndarray:
            u = self.env.unwrapped
            tcp = u.agent.tcp.pose.p[0].cpu().numpy()
            q = u.agent.robot.get_qpos()[0].cpu().numpy()
            return np.concatenate([tcp, q[:7], [q[7] + q[8]]]).astype(np.float32)

        def step(self, action):
            self.state.append(self._state())
            self.image.append(np.asarray(self.env.render()[0].cpu().numpy(), dtype=np.uint8))
            self.action.append(np.asarray(action, dtype=np.float32).reshape(-1))
            self.call.append(self.tracer.current)
            out = self.env.step(action)
            info = out[4]
            self.success.append(bool(np.asarray(info["success"].cpu()).reshape(-1)[0]))
            self.tracer.steps += 1
            return out

    return Recorder


def run_episode(env_id: str, seed: int, width: int, height: int) -> dict:
    import importlib

    import gymnasium as gym
    import mani_skill.envs  # noqa: F401  (registers the envs)

    spec = TASKS[env_id]
    tracer = CallTracer()
    tracer.install()
    base = gym.make(env_id, obs_mode="none", control_mode="pd_joint_pos", render_mode="rgb_array",
                    sim_backend="cpu", render_backend="cpu", max_episode_steps=100000,
                    human_render_camera_configs=dict(width=width, height=height))
    u = base.unwrapped
    assert u.control_freq == CONTROL_HZ and u.sim_freq == 100, (u.control_freq, u.sim_freq)
    env = _recorder_class()(base, tracer)
    solve = importlib.import_module(f"mani_skill.examples.motionplanning.panda.solutions.{spec['solution']}").solve
    try:
        res = solve(env, seed=seed, debug=False, vis=False)
    finally:
        env.close()
    failed = isinstance(res, int) and res == -1
    executed = [k for k, c in enumerate(tracer.calls) if not c["dry_run"] and c["end_step"] > c["start_step"]]
    n = len(env.state)
    ep = {"env_id": env_id, "seed": seed, "failed_plan": failed, "n_steps": n,
          "calls": tracer.calls, "executed": executed,
          "success_step": next((k + 1 for k, s in enumerate(env.success) if s), None),
          "success_at_end": bool(env.success[-1]) if n else False}
    if failed or ep["success_step"] is None:
        return ep
    if len(executed) != len(spec["calls"]):
        raise AssertionError(f"{env_id} seed {seed}: {len(executed)} executed planner calls "
                             f"({[tracer.calls[k]['method'] for k in executed]}), table names {len(spec['calls'])}")
    name_of = {k: spec["calls"][j] for j, k in enumerate(executed)}
    call = np.asarray(env.call, dtype=np.int64)
    assert (call >= 0).all(), "a step outside any planner call"
    step_name = [name_of[int(c)] for c in call]
    # per-call (expert) labels: a boundary wherever the executing call changes
    expert_bounds = [k for k in range(1, n) if call[k] != call[k - 1]]
    expert_phases = [step_name[0]] + [step_name[k] for k in expert_bounds]
    # phases: equal neighbouring names merged
    bounds = [k for k in range(1, n) if step_name[k] != step_name[k - 1]]
    phases = [step_name[0]] + [step_name[k] for k in bounds]
    frame_phase = np.zeros(n, dtype=np.int64)
    for j, b in enumerate(bounds):
        frame_phase[b:] = j + 1
    ep.update({
        "task": spec["text"], "state": np.stack(env.state), "action": np.stack(env.action),
        "image": np.stack(env.image), "frame_call": call, "frame_phase": frame_phase,
        "boundaries": bounds, "phases": phases,
        "expert_boundaries": expert_bounds, "expert_phases": expert_phases,
    })
    return ep


def save(out: Path, idx: int, ep: dict) -> Path:
    meta = {
        "task_name": ep["env_id"], "seed": ep["seed"], "variation": ep["seed"], "task": ep["task"],
        "success_step": ep["success_step"], "success_at_end": ep["success_at_end"],
        "boundaries": ep["boundaries"], "phases": ep["phases"],
        "expert_boundaries": ep["expert_boundaries"], "expert_phases": ep["expert_phases"],
        "change_steps": ep["boundaries"], "step_phase_names": ep["phases"],
        "planner_calls": ep["calls"], "cameras": ["render_camera"],
        "fps": CONTROL_HZ, "control_hz": CONTROL_HZ, "step_stride": 1,
    }
    path = out / f"episode_{idx:03d}.npz"
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), state=ep["state"], action=ep["action"],
                        frame_phase=ep["frame_phase"], frame_call=ep["frame_call"],
                        image_render_camera=ep["image"])
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="directory for episode_NNN.npz (created)")
    ap.add_argument("--tasks", default=DEFAULT_TASKS, help="comma-separated env ids")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--width", type=int, default=96)
    ap.add_argument("--height", type=int, default=72)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    idx = 0
    for env_id in args.tasks.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            try:
                ep = run_episode(env_id, seed, args.width, args.height)
            except AssertionError as e:  # executed planner calls do not match the table (module doc)
                print(f"{env_id} seed {seed}: {e}, skipped", flush=True)
                continue
            if ep["failed_plan"] or ep["success_step"] is None:
                why = "a plan failed" if ep["failed_plan"] else "no success reported"
                print(f"{env_id} seed {seed}: {why} ({ep['n_steps']} steps), skipped", flush=True)
                continue
            path = save(args.out, idx, ep)
            print(f"episode {idx}: {env_id} seed {seed}: {ep['n_steps']} frames, success at step "
                  f"{ep['success_step']}, success at the end {ep['success_at_end']}, boundaries "
                  f"{ep['boundaries']}, phases {ep['phases']}, per-call boundaries {ep['expert_boundaries']} "
                  f"-> {path.name}", flush=True)
            idx += 1
    from importlib.metadata import version

    print(json.dumps({p: version(p) for p in ("mani_skill", "sapien", "mplib", "gymnasium", "torch", "numpy")}
                     | {"episodes": idx}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
