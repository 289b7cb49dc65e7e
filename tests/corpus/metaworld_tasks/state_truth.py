"""A second caption truth for the Meta-World sets, checked against the simulator's state (`truth_state.json`).

Runs in the simulator venv (metaworld 3.1.1, ../metaworld/requirements-metaworld.txt), NOT Carve's venv:

    /work/venv-metaworld/bin/python tests/corpus/metaworld_tasks/state_truth.py tests/corpus/metaworld_heldout2 ...
    /work/venv-metaworld/bin/python tests/corpus/metaworld_tasks/state_truth.py --resistance tests/corpus/metaworld_*

The primary truth (`truth_carve.json`) names each frame by the `if` arm of the expert's position function
that ran (simulate.py): a sub-goal, not what physically happened. Two of its sets' READMEs record where the
two part ways: `door-lock-v3`'s lock turns while its expert is in "descend to the lock" (its "turn the lock"
arm never runs), and soccer's expert drives the ball while in "reach behind the ball". The naming rule of
simulate.py gives the task's own action to "the arm that moves the articulated object"; this script applies
that rule to each frame with the simulator's state instead of to each arm from the source.

Every episode of the set is simulated again from its recorded MT1 seed and variation (no rendering), and its
hand positions and gripper are checked equal to the dataset's `observation.state` (max abs difference under
1e-4, else it stops). Per control step it reads MuJoCo's contacts and the positions of the scene's movable
bodies (any body with a joint, the robot's and the mocap excepted). Per recorded frame k (control steps 4k to
4k + 3):

* a body **moves** when one of its geoms moved faster than `MOTION_SPEED` (1 cm/s, the same constant as
  `carve.sim.object_truth`, chosen there from physics) from step 4k to 4k + 4;
* a body is **touched** when the robot's geoms touch it in one of the frame's steps, or it touches a body the
  robot touches (a tool's contact: the thermos the held stick pushes);
* a free body (a free joint: a puck, a ball, a stick) touched by both finger pads is **carried**, not worked;
* the frame **works the part** when a touched body that is not carried moves.

Only tasks whose instruction works a part of the scene are relabelled: the instruction's verb class (Carve's
`captioners/verb_classes.py`, the scoring's own table, loaded by path) is pull, push, turn or wipe.
Pick-and-place tasks keep the expert's names. In those tasks:

1. a frame named as an approach or a carry (class reach or lift) that works the part is the task's action,
   named by the instruction ("lock the door", "kick the ball into the goal");
2. a frame named as the action in which the robot touches nothing and nothing moves, before the episode's
   first frame that works the part, is the approach to it ("reach toward the part"); in an episode where no
   frame works a part (a swept cube carried in the fingers) rule 2 changes nothing.

Nothing else changes: grasps, releases, carries without contact, the expert's re-approaches and holds keep
their names. Equal neighbours merge. Writes `truth_state.json` (Carve's `ground_truth_events.json` form) beside
the set's other truths, and prints per task how many frames each rule relabelled.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
os.environ.setdefault("MUJOCO_GL", "egl")  # nothing is rendered; simulate.py would ask for osmesa
sys.path.insert(0, str(HERE))
import simulate as mwt  # noqa: E402  (the task table: policies and instructions)

MOTION_SPEED = 0.01  # m/s, carve.sim.object_truth.MOTION_SPEED
STEP_STRIDE = 4  # control steps per recorded frame (simulate.py)
STATE_TOL = 1e-4
PART_CLASSES = ("pull", "push", "turn", "wipe")
# Carve's own verb classes (the scoring's), loaded by path: the module needs only the standard library
_vc = importlib.util.spec_from_file_location(
    "carve_verb_classes", HERE.parents[2] / "src" / "carve" / "captioners" / "verb_classes.py")
verb_classes = importlib.util.module_from_spec(_vc)
_vc.loader.exec_module(verb_classes)
verb_class = verb_classes.verb_class


def _scene(model) -> tuple[set[int], dict[int, int], set[int], dict[int, list[int]], tuple[int, int]]:
    """(robot bodies, every other body -> the movable body it is part of (0: static), free movable bodies,
    movable body -> its geoms and its welded children's, (left pad, right pad))."""
    import mujoco

    hand = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "hand")
    root = model.body_rootid[hand]
    robot = {b for b in range(model.nbody) if model.body_rootid[b] == root}
    robot |= {b for b in range(model.nbody) if model.body_mocapid[b] >= 0}

    def unit(b: int) -> int:
        """The body that moves `b`: itself or its nearest ancestor with a joint (0: the world, static)."""
        while b > 0 and model.body_jntnum[b] == 0:
            b = model.body_parentid[b]
        return int(b)

    owner = {b: unit(b) for b in range(model.nbody) if b not in robot}
    scene = {u for u in owner.values() if u > 0}
    free = {int(model.jnt_bodyid[j]) for j in range(model.njnt) if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE}
    geoms = {u: [g for g in range(model.ngeom) if owner.get(int(model.geom_bodyid[g])) == u] for u in scene}
    pads = (mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "leftpad"),
            mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "rightpad"))
    return robot, owner, free & scene, geoms, pads


def simulate_state(env_name: str, seed: int, variation: int, n_frames: int) -> dict[str, np.ndarray]:
    """Re-run the expert; per frame: hand state (4), works-the-part, touches-anything, anything-moves."""
    import metaworld
    import metaworld.policies as P

    spec = mwt.TASKS[env_name]
    mt1 = metaworld.MT1(env_name, seed=seed)
    env = mt1.train_classes[env_name]()
    env.set_task(mt1.train_tasks[variation])
    obs, _ = env.reset()
    policy = getattr(P, spec["policy"])()
    model, data = env.model, env.data
    robot, owner, free, geoms, pads = _scene(model)
    scene = set(geoms)
    n_steps = n_frames * STEP_STRIDE
    hand, touch_steps, pos = [], [], []
    for k in range(n_steps + STEP_STRIDE):
        if k % STEP_STRIDE == 0:
            pos.append({b: data.geom_xpos[g].copy() if (g := geoms[b]) else data.xpos[b][None].copy() for b in scene})
        if k == n_steps:
            break
        hand.append(obs[:4].copy())
        touched: dict[int, set[int]] = {}  # scene body -> robot bodies touching it
        pairs: set[tuple[int, int]] = set()
        for c in data.contact[: data.ncon]:
            b1, b2 = int(model.geom_bodyid[c.geom1]), int(model.geom_bodyid[c.geom2])
            for a, b in ((b1, b2), (b2, b1)):
                if a in robot and owner.get(b, 0) > 0:
                    touched.setdefault(owner[b], set()).add(a)
            b1, b2 = owner.get(b1, 0), owner.get(b2, 0)
            if b1 > 0 and b2 > 0 and b1 != b2:
                pairs.add((b1, b2))
        touch_steps.append((touched, pairs))
        obs, *_ = env.step(np.clip(policy.get_action(obs), -1.0, 1.0).astype(np.float32))
    env.close()
    fps = 80 / STEP_STRIDE
    works = np.zeros(n_frames, bool)
    touches = np.zeros(n_frames, bool)
    moves = np.zeros(n_frames, bool)
    for f in range(n_frames):
        moving = {b for b in scene
                  if np.linalg.norm(pos[f + 1][b] - pos[f][b], axis=-1).max() * fps > MOTION_SPEED}
        direct: set[int] = set()
        carried: set[int] = set()
        via_tool: set[int] = set()
        for touched, pairs in touch_steps[f * STEP_STRIDE:(f + 1) * STEP_STRIDE]:
            direct |= set(touched)
            carried |= {b for b, who in touched.items() if b in free and set(pads) <= who}
            for a, b in pairs:
                if a in touched:
                    via_tool.add(b)
                if b in touched:
                    via_tool.add(a)
        contact = direct | via_tool
        works[f] = bool((contact - carried) & moving)
        touches[f] = bool(contact)
        moves[f] = bool(moving)
    return {"hand": np.asarray(hand)[::STEP_STRIDE], "works": works, "touches": touches, "moves": moves}


def frame_names(phases: list[dict], n: int) -> list[str]:
    names = [""] * n
    for p in phases:
        for f in range(p["start"], p["end"]):
            names[f] = p["name"]
    return names


def relabel(names: list[str], st: dict[str, np.ndarray], instruction: str) -> tuple[list[str], int, int]:
    """The frame names under rules 1 and 2 of the module doc; (names, frames by rule 1, frames by rule 2)."""
    out = list(names)
    works, touches, moves = st["works"], st["touches"], st["moves"]
    first = int(np.flatnonzero(works)[0]) if works.any() else 0  # never worked: no approach to it
    r1 = r2 = 0
    for f, nm in enumerate(names):
        cls = verb_class(nm)
        if cls in ("reach", "lift") and works[f]:
            out[f] = instruction
            r1 += 1
        elif cls in PART_CLASSES and not touches[f] and not moves[f] and f < first:
            out[f] = "reach toward the part"
            r2 += 1
    return out, r1, r2


def phases_of(names: list[str], fps: float) -> tuple[list[int], list[dict]]:
    bounds, phases, start = [], [], 0
    for f in range(1, len(names) + 1):
        if f == len(names) or names[f] != names[start]:
            phases.append({"name": names[start], "start": start, "end": f,
                           "start_s": round(start / fps, 4), "end_s": round(f / fps, 4)})
            if f < len(names):
                bounds.append(f)
            start = f
    return bounds, phases


def dataset_column(item: Path, column: str) -> dict[int, np.ndarray]:
    """episode_index -> (T, D) values of the set's dataset column (`observation.state`, `action`), in frame order."""
    import pyarrow.parquet as pq

    out: dict[int, list] = {}
    for f in sorted((item / "dataset" / "data").rglob("*.parquet")):
        t = pq.read_table(f, columns=["episode_index", "frame_index", column]).to_pydict()
        for e, k, v in zip(t["episode_index"], t["frame_index"], t[column], strict=True):
            out.setdefault(int(e), []).append((int(k), v))
    return {e: np.asarray([v for _, v in sorted(rows)], dtype=np.float64) for e, rows in out.items()}


def resistance(items: list[Path]) -> None:
    """Print, per part-action task, the hand's achieved motion over its commanded motion (Meta-World's
    `action_scale` 1/100 per control step) on frames that work the part and on the others: how far a
    captioner that reads only the hand and its command could see the contact."""
    ratios: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for item in items:
        meta = {e["episode_index"]: e for e in json.loads((item / "truth.json").read_text())}
        states, actions = dataset_column(item, "observation.state"), dataset_column(item, "action")
        for i, e in meta.items():
            if verb_class(e["task"]) not in PART_CLASSES:
                continue
            mw = e["metaworld"]
            st = simulate_state(mw["env"], mw["mt1_seed"], mw["variation"], len(states[i]))
            made = np.linalg.norm(np.diff(states[i][:, :3], axis=0), axis=1)
            asked = np.linalg.norm(actions[i][:-1, :3], axis=1) * 0.01 * STEP_STRIDE
            ok = asked > 0.002  # the command asks for at least 4 cm/s
            r, w = made[ok] / asked[ok], st["works"][:-1][ok]
            ratios.setdefault(mw["env"], []).append((r[w], r[~w]))
    print("task | frames working the part: n, ratio p10 / p50 / p90 | other moving frames: n, p10 / p50 / p90")
    for env, v in ratios.items():
        a, b = (np.concatenate([x[j] for x in v]) for j in (0, 1))
        q = [" / ".join(f"{x:.2f}" for x in np.percentile(z, [10, 50, 90])) if z.size else "-" for z in (a, b)]
        print(f"{env} | {a.size}, {q[0]} | {b.size}, {q[1]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("item", type=Path, nargs="+", help="Meta-World corpus sets (truth.json, truth_carve.json, dataset/)")
    ap.add_argument("--resistance", action="store_true",
                    help="print the achieved / commanded motion on frames that work a part and on the others "
                         "(writes nothing)")
    args = ap.parse_args(argv)
    if args.resistance:
        resistance(args.item)
        return 0
    for item in args.item:
        write_truth(item)
    return 0


def write_truth(item: Path) -> None:
    """Write `item`/truth_state.json (module doc) and print what each rule changed per task."""
    meta = {e["episode_index"]: e for e in json.loads((item / "truth.json").read_text())}
    carve = json.loads((item / "truth_carve.json").read_text())
    states = dataset_column(item, "observation.state")
    counts: dict[str, list[int]] = {}
    worst = 0.0
    for ep in carve["episodes"]:
        i, n = ep["episode_index"], ep["length"]
        mw = meta[i]["metaworld"]
        st = simulate_state(mw["env"], mw["mt1_seed"], mw["variation"], n)
        err = float(np.abs(st["hand"] - states[i]).max())
        if err > STATE_TOL:
            raise SystemExit(f"episode {i} ({mw['env']}): the re-run differs from the dataset by {err:.2e}")
        worst = max(worst, err)
        names = frame_names(ep["phases"], n)
        c = counts.setdefault(ep["task_type"], [0, 0, 0, 0])
        c[0] += 1
        c[3] += n
        if verb_class(ep["task"]) in PART_CLASSES:
            names, r1, r2 = relabel(names, st, ep["task"])
            c[1] += r1
            c[2] += r2
        ep["boundaries"], ep["phases"] = phases_of(names, ep["fps"])
    carve["generator"] = {**carve.get("generator", {}),
                          "state_truth": "tests/corpus/metaworld_tasks/state_truth.py (module doc: rules 1 and 2)"}
    out = item / "truth_state.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(carve, indent=1) + "\n")
    tmp.replace(out)
    for task, (eps, r1, r2, frames) in counts.items():
        print(f"{task}: {eps} episodes, {frames} frames; rule 1 relabelled {r1}, rule 2 {r2}")
    print(f"wrote {out} (re-runs equal the dataset's hand and gripper to {worst:.1e} at worst)")


if __name__ == "__main__":
    raise SystemExit(main())
