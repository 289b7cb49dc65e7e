"""Record Meta-World scripted-expert episodes, labelled with the expert's own sub-goals.

Runs in a venv that has the `metaworld` package (NOT Carve's venv), e.g.

    python3 -m venv /work/venv-metaworld
    /work/venv-metaworld/bin/pip install -r tests/corpus/metaworld/requirements-metaworld.txt
    MUJOCO_GL=osmesa /work/venv-metaworld/bin/python tests/corpus/metaworld/simulate.py --out /tmp/mw-npz

For each (task, variation) it builds the Meta-World env of the MT1 benchmark (`metaworld.MT1(name,
seed=SEED)`, variation j = `train_tasks[j]`, i.e. one of the 50 fixed object/goal placements), runs the
task's scripted policy from `metaworld.policies` and writes one `.npz` per episode to --out.

Sub-goal ("phase") labelling is mechanical: every call of `policy.get_action(obs)` runs under
`sys.settrace`, and the lines executed inside the policy's position function (`_desired_pos`, or
`get_action` itself for policies that have no `_desired_pos`, e.g. drawer-open) and inside
`_grab_effort` are recorded. The policy source is parsed with `ast`; every `if`/`elif`/`else` arm of
those functions is numbered in source order (pre-order, nested arms included). The arm of the position
function that executed, taking the innermost one if arms are nested, is the position sub-goal
(`pos_arm`); the arm of `_grab_effort` that executed is the grab sub-goal (`grab_arm`; -1 where the
policy has no `_grab_effort`, i.e. a constant effort). The expert's phase at control step k is the pair
(pos_arm, grab_arm). Nothing of the policy is re-implemented or copied: the branch conditions are the
installed source's, evaluated by the installed code.

Timing: Meta-World steps at 80 Hz (frame_skip 5 x timestep 0.0025 s = 0.0125 s, checked at run time).
The recording keeps every 4th control step (20 fps): recorded frame i is control step k = 4 i:
    state[i]   = obs_k[0:4]                      (hand xyz in metres, normalised finger distance)
    images[i]  = rendered after the step that produced obs_k (i.e. showing obs_k)
    action[i]  = mean of the clipped xyz deltas a_k..a_{k+3}[0:3] (what moves the hand from frame i
                 to frame i+1, in Meta-World's units: 1.0 = 1 cm per control step), and the grab
                 effort a_k[3] commanded at frame i's observation (clipped to [-1, 1])
    phase[i]   = the expert's phase at step k
A phase change at control step k (the first step whose (pos_arm, grab_arm) differs from the step
before) becomes a boundary at recorded frame ceil(k / 4): the first recorded frame at or after it.
Every change is kept, however short the phase and also where the expert re-enters an earlier phase;
only where several changes land on the same recorded frame does that frame start the last of them
(a phase spanning no recorded frame is dropped, equal neighbours merged), so the phase of every
recorded frame is the expert's phase at its control step. The raw per-step labels are in the .npz.

The episode stops 0.5 s (40 control steps) after the env first reports success, or at the env's
500-step limit; episodes in which the expert fails are not written (reported on stdout).
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import math
import os
import sys
import textwrap
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "osmesa")

import numpy as np

STEP_STRIDE = 4  # 80 Hz control -> 20 fps recording
AFTER_SUCCESS_STEPS = 40  # 0.5 s at 80 Hz

# Per task: (env name, policy class name, task text, cameras are shared) and a short name for every arm
# of the position function and of _grab_effort, in the order `arms_of` numbers them (source order).
# The names paraphrase the policy's own comments / target expressions in metaworld 3.1.1. A grab arm is
# named "gripper closing" iff the effort it returns is > 0 (checked at run time).
TASKS: dict[str, dict] = {
    "pick-place-v3": {
        "policy": "SawyerPickPlaceV3Policy",
        "text": "pick up the puck and place it at the goal",
        "pos": ["move above puck", "descend to puck", "wait for grasp", "carry puck to goal"],
        "grab": ["gripper closing", "gripper open"],  # this policy tests "near the puck" first
    },
    "pick-out-of-hole-v3": {
        "policy": "SawyerPickOutOfHoleV3Policy",
        "text": "pick the peg out of the hole and bring it to the goal",
        "pos": ["move above peg", "descend to peg", "lift to goal height", "move peg to goal"],
        "grab": ["gripper open", "gripper closing"],
    },
    "basketball-v3": {
        "policy": "SawyerBasketballV3Policy",
        "text": "pick up the basketball and dunk it in the hoop",
        "pos": ["move above ball", "descend to ball", "lift ball to hoop height", "move ball to hoop"],
        "grab": ["gripper open", "gripper closing"],
    },
    "assembly-v3": {
        "policy": "SawyerAssemblyV3Policy",
        "text": "pick up the wrench and put it on the peg",
        "pos": ["move above wrench", "lower wrench onto peg", "descend to wrench", "lift to peg height",
                "move wrench above peg"],
        "grab": ["gripper open", "gripper closing"],
    },
    "bin-picking-v3": {
        "policy": "SawyerBinPickingV3Policy",
        "text": "pick the cube from the left bin and put it in the right bin",
        "pos": ["move above cube", "descend to cube", "move above target bin", "lift cube",
                "lower cube into bin"],
        "grab": ["gripper open", "gripper closing"],
    },
    "drawer-open-v3": {
        "policy": "SawyerDrawerOpenV3Policy",
        "text": "open the drawer",
        "pos": ["move above handle", "descend to handle", "pull drawer open"],
        "grab": [],
    },
    "button-press-topdown-v3": {
        "policy": "SawyerButtonPressTopdownV3Policy",
        "text": "press the button from the top",
        "pos": ["move above button", "press button down"],
        "grab": [],
    },
}


# --------------------------------------------------------------------------------------------
# Mechanical branch identification


def arms_of(func) -> tuple[list[tuple[int, int]], int]:
    """Line ranges [first, last] (absolute line numbers) of every if/elif/else arm of `func`,
    numbered in source order (pre-order; an `elif` is the nested If of the orelse, its own arm)."""
    src_lines, start = inspect.getsourcelines(func)
    tree = ast.parse(textwrap.dedent("".join(src_lines)))
    off = start - 1
    arms: list[tuple[int, int]] = []

    def visit(node):
        if isinstance(node, ast.If):
            arms.append((node.body[0].lineno + off, node.body[-1].end_lineno + off))
            for child in node.body:
                visit(child)
            if node.orelse:
                if len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If):
                    visit(node.orelse[0])  # elif: its own If, its arms follow in order
                else:
                    arms.append((node.orelse[0].lineno + off, node.orelse[-1].end_lineno + off))
                    for child in node.orelse:
                        visit(child)
        else:
            for child in ast.iter_child_nodes(node):
                visit(child)

    visit(tree)
    return arms, len(arms)


def innermost_arm(lines: set[int], arms: list[tuple[int, int]]) -> int:
    """Index of the innermost (narrowest) arm that contains an executed line; -1 if none."""
    best, width = -1, None
    for i, (a, b) in enumerate(arms):
        if any(a <= ln <= b for ln in lines) and (width is None or b - a < width):
            best, width = i, b - a
    return best


class BranchTracer:
    """Runs `policy.get_action(obs)` under sys.settrace, recording the lines executed in the
    position function and in _grab_effort."""

    def __init__(self, policy):
        cls = type(policy)
        self.pos_func = cls.__dict__.get("_desired_pos") or getattr(cls, "_desired_pos", None)
        if self.pos_func is None:
            self.pos_func = cls.get_action
        if isinstance(self.pos_func, staticmethod):
            self.pos_func = self.pos_func.__func__
        grab = getattr(cls, "_grab_effort", None)
        self.grab_func = grab.__func__ if isinstance(grab, staticmethod) else grab
        self.pos_arms, _ = arms_of(self.pos_func)
        self.grab_arms = arms_of(self.grab_func)[0] if self.grab_func is not None else []
        self.codes = {self.pos_func.__code__: "pos"}
        if self.grab_func is not None:
            self.codes[self.grab_func.__code__] = "grab"
        self.policy = policy

    def __call__(self, obs: np.ndarray) -> tuple[np.ndarray, int, int]:
        seen: dict[str, set[int]] = {"pos": set(), "grab": set()}

        def local(frame, event, arg):
            if event == "line":
                seen[self.codes[frame.f_code]].add(frame.f_lineno)
            return local

        def glob(frame, event, arg):
            if event == "call" and frame.f_code in self.codes:
                return local
            return None

        sys.settrace(glob)
        try:
            action = self.policy.get_action(obs)
        finally:
            sys.settrace(None)
        pos = innermost_arm(seen["pos"], self.pos_arms) if self.pos_arms else 0
        grab = innermost_arm(seen["grab"], self.grab_arms) if self.grab_arms else -1
        if self.pos_arms and pos < 0:
            raise RuntimeError("no arm of the position function executed")
        return np.asarray(action, dtype=np.float64), pos, grab


# --------------------------------------------------------------------------------------------
# Rendering


class Cameras:
    def __init__(self, model, names: list[str], width: int, height: int, rot180: set[str]):
        import mujoco

        self.r = mujoco.Renderer(model, height, width)
        self.names = names
        self.rot180 = rot180

    def __call__(self, data) -> dict[str, np.ndarray]:
        out = {}
        for cam in self.names:
            self.r.update_scene(data, camera=cam)
            img = self.r.render().copy()
            if cam in self.rot180:
                img = img[::-1, ::-1].copy()
            out[cam] = img
        return out

    def close(self):
        self.r.close()


# --------------------------------------------------------------------------------------------
# Episodes


_MT1: dict = {}


def run_episode(name: str, variation: int, seed: int, cams: list[str], width: int, height: int,
                rot180: set[str]) -> dict | None:
    import metaworld
    import metaworld.policies as P

    spec = TASKS[name]
    if (name, seed) not in _MT1:
        _MT1[(name, seed)] = metaworld.MT1(name, seed=seed)
    mt1 = _MT1[(name, seed)]
    env = mt1.train_classes[name]()
    env.set_task(mt1.train_tasks[variation])
    control_dt = env.model.opt.timestep * env.frame_skip
    assert abs(control_dt - 0.0125) < 1e-9, control_dt  # 80 Hz
    obs, _ = env.reset()
    policy = getattr(P, spec["policy"])()
    tracer = BranchTracer(policy)
    assert len(tracer.pos_arms) == len(spec["pos"]), (name, tracer.pos_arms, spec["pos"])
    assert len(tracer.grab_arms) == len(spec["grab"]), (name, tracer.grab_arms, spec["grab"])
    render = Cameras(env.model, cams, width, height, rot180)

    steps_obs, steps_act, steps_pos, steps_grab = [], [], [], []
    images: dict[str, list[np.ndarray]] = {c: [] for c in cams}
    success_step = None
    k = 0
    while True:
        action, pos, grab = tracer(obs)
        if grab >= 0 and (action[3] > 0) != (spec["grab"][grab] == "gripper closing"):
            raise AssertionError(f"{name}: grab arm {grab} named {spec['grab'][grab]!r} returned {action[3]}")
        clipped = np.clip(action, -1.0, 1.0)
        if k % STEP_STRIDE == 0:
            for c, img in render(env.data).items():
                images[c].append(img)
        steps_obs.append(obs.copy())
        steps_act.append(clipped)
        steps_pos.append(pos)
        steps_grab.append(grab)
        obs, _, _, truncated, info = env.step(clipped.astype(np.float32))
        k += 1
        if success_step is None and info["success"] > 0.5:
            success_step = k  # obs_k is the first successful observation
        done_after_success = success_step is not None and k >= success_step + AFTER_SUCCESS_STEPS
        if truncated or k >= env.max_path_length or done_after_success:
            break
    render.close()
    env.close()
    if success_step is None:
        return None

    n_steps = len(steps_obs)
    # record only complete windows of STEP_STRIDE steps (so each frame's action averages 4 deltas)
    n_frames = n_steps // STEP_STRIDE
    n_steps = n_frames * STEP_STRIDE
    o = np.asarray(steps_obs[:n_steps])
    a = np.asarray(steps_act[:n_steps])
    pos = np.asarray(steps_pos[:n_steps], dtype=np.int64)
    grab = np.asarray(steps_grab[:n_steps], dtype=np.int64)
    frames = np.arange(n_frames) * STEP_STRIDE
    state = o[frames, 0:4].astype(np.float32)
    act = np.concatenate(
        [a[:, 0:3].reshape(n_frames, STEP_STRIDE, 3).mean(axis=1), a[frames, 3:4]], axis=1
    ).astype(np.float32)

    # phases at control-step resolution
    key = list(zip(pos.tolist(), grab.tolist(), strict=True))
    change_steps = [kk for kk in range(1, n_steps) if key[kk] != key[kk - 1]]
    step_phases = [key[0]] + [key[kk] for kk in change_steps]
    # map to recorded frames: first recorded frame at/after the change step
    frame_bounds = [math.ceil(kk / STEP_STRIDE) for kk in change_steps]
    # several changes can land on the same frame (a phase shorter than one frame interval): the
    # frame then starts the LAST of them; phases that last 0 recorded frames are dropped
    bounds, phases = [], [step_phases[0]]
    for b, ph in zip(frame_bounds, step_phases[1:], strict=True):
        if b >= n_frames:
            continue
        if bounds and bounds[-1] == b:
            phases[-1] = ph
        elif b == 0:
            phases[0] = ph
        else:
            bounds.append(b)
            phases.append(ph)
    # merge neighbours that became equal after dropping a zero-length phase
    mb, mp = [], [phases[0]]
    for b, ph in zip(bounds, phases[1:], strict=True):
        if ph == mp[-1]:
            continue
        mb.append(b)
        mp.append(ph)
    bounds, phases = mb, mp

    def phase_name(ph: tuple[int, int]) -> str:
        p, g = ph
        text = spec["pos"][p]
        if g >= 0:
            text += f" ({spec['grab'][g]})"
        return text

    frame_phase = np.zeros(n_frames, dtype=np.int64)
    for j, b in enumerate(bounds):
        frame_phase[b:] = j + 1
    return {
        "task_name": name,
        "variation": variation,
        "seed": seed,
        "task": spec["text"],
        "state": state,
        "action": act,
        "images": {c: np.stack(v[:n_frames]) for c, v in images.items()},
        "step_obs": o.astype(np.float32),
        "step_action": a.astype(np.float32),
        "step_pos_arm": pos,
        "step_grab_arm": grab,
        "success_step": success_step,
        "boundaries": bounds,
        "phase_keys": phases,
        "phases": [phase_name(p) for p in phases],
        "frame_phase": frame_phase,
        "change_steps": change_steps,
        "step_phase_names": [phase_name(p) for p in step_phases],
    }


def save(out: Path, idx: int, ep: dict, cams: list[str]) -> Path:
    meta = {
        k: ep[k]
        for k in ("task_name", "variation", "seed", "task", "success_step", "boundaries", "phases",
                  "change_steps", "step_phase_names")
    }
    meta["phase_keys"] = [list(p) for p in ep["phase_keys"]]
    meta["cameras"] = cams
    meta["fps"] = 80 // STEP_STRIDE
    meta["control_hz"] = 80
    meta["step_stride"] = STEP_STRIDE
    arrays = {
        "state": ep["state"], "action": ep["action"], "frame_phase": ep["frame_phase"],
        "step_obs": ep["step_obs"], "step_action": ep["step_action"],
        "step_pos_arm": ep["step_pos_arm"], "step_grab_arm": ep["step_grab_arm"],
    }
    for c in cams:
        arrays[f"image_{c}"] = ep["images"][c]
    path = out / f"episode_{idx:03d}.npz"
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), **arrays)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="directory for episode_NNN.npz (created)")
    ap.add_argument("--tasks", default="pick-place-v3:4,basketball-v3:4,assembly-v3:4,pick-out-of-hole-v3:3,"
                    "bin-picking-v3:3,drawer-open-v3:3,button-press-topdown-v3:3",
                    help="comma-separated NAME:COUNT (COUNT successful episodes of task NAME)")
    ap.add_argument("--max-tries", type=int, default=12, help="variations tried per task at most")
    ap.add_argument("--seed", type=int, default=0, help="MT1 benchmark seed (fixes the 50 placements)")
    ap.add_argument("--cameras", default="corner,behindGripper")
    ap.add_argument("--rot180", default="corner", help="cameras to turn by 180 degrees (Meta-World's "
                    "fixed 'corner' camera renders upside down)")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--height", type=int, default=96)
    args = ap.parse_args(argv)

    import mujoco

    cams = args.cameras.split(",")
    rot180 = set(filter(None, args.rot180.split(",")))
    args.out.mkdir(parents=True, exist_ok=True)
    idx = 0
    for item in args.tasks.split(","):
        name, count = item.split(":")
        got = 0
        for variation in range(args.max_tries):
            if got >= int(count):
                break
            ep = run_episode(name, variation, args.seed, cams, args.width, args.height, rot180)
            if ep is None:
                print(f"{name} variation {variation}: expert failed within 500 steps, skipped")
                continue
            path = save(args.out, idx, ep, cams)
            print(f"episode {idx}: {name} variation {variation}: {len(ep['state'])} frames, "
                  f"success at step {ep['success_step']}, boundaries {ep['boundaries']}, "
                  f"phases {ep['phases']} -> {path.name}")
            idx += 1
            got += 1
    from importlib.metadata import version

    print(json.dumps({"metaworld": version("metaworld"), "mujoco": mujoco.__version__,
                      "numpy": np.__version__, "episodes": idx}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
