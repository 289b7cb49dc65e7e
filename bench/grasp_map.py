"""How many demonstrations does it take to learn where to grasp? (issue 20, breadth)

The study's policies miss the grasp on the two-object tasks even when they are given the objects' poses
(privileged state): they close the gripper centimetres from the cube the scripted expert closes on. This asks
whether that is the policy's fault or the data's: how precisely can *any* of a few standard regressors learn the
expert's grasp configuration from N demonstrations, at N = the study's ~32 training episodes per task type and
beyond?

Per demonstration of `task` (`sim.tasks.run_episode`, the study's recorder): the input is what a privileged
policy sees at the first step (the state, then the object poses and goal point of `SimEnv(privileged=True)`), the
target the expert's joint targets at its first gripper-close command, as offsets from the first step's joints.
Each regressor is fitted on the first N demonstrations of the study's data seeds (`episode_seed(0, i)`) and
scored on held-out scenes (`episode_seed(30000, i)`) by where its predicted configuration puts the hand:
the distance (cm) between the forward kinematics of the prediction and of the expert's configuration, and
the hand's yaw error (degrees).

    python -m bench.grasp_map                                 # stack, N up to 512, 64 held-out scenes
    python -m bench.grasp_map --task pick_place --max-train 256 --cache /tmp/gm
    python -m bench.grasp_map --policy STUDY/policies/chunk_best-seed0 --scenes 20   # a trained policy's grasps
    python -m bench.grasp_map --policy DIR --task pick_place --camera fixed        # ... of a --camera fixed study

With `--policy` it measures a trained study policy instead, closed loop on the held-out scenes: where the hand
is, relative to the object the task moves first, when the policy first commands the gripper closed (the
expert's own demonstrations close within 0.1 cm of it), and whether that close grasps the object (holds it within the next second).

The demonstrations are cached in `--cache` (keyed on task and counts); recording 576 takes ~8 min on one core.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

SIZES = (32, 64, 128, 256, 512)
TRAIN_BASE, TEST_BASE = 0, 30_000  # the study's data seeds; the pixel study's development base


def other_objects(env: Any) -> int:
    """How many objects of `env`'s scene the task does not move (the distractors)."""
    return len(env.scene.objects) - len(env.goals)


def grasp_step(action: np.ndarray, gripper: int = 7) -> int:
    """Index of the first action that commands the gripper closed (> 0.5); an error when none does."""
    closed = np.flatnonzero(np.asarray(action)[:, gripper] > 0.5)
    if not len(closed):
        raise ValueError("the demonstration never closes the gripper")
    return int(closed[0])


def demonstration(task: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(privileged input at the first step, the expert's grasp joint targets, the first step's joint targets)."""
    from carve.sim.env import SimEnv
    from carve.sim.tasks import run_episode

    a = np.asarray(run_episode(task, seed, fps=12, render=False).action)
    with SimEnv(fps=12, render=False, privileged=True) as env:
        ob = env.reset(task, seed)
        x = np.concatenate([ob["state"], ob["privileged"]["object_state"]]).astype(np.float64)
    return x, a[grasp_step(a), :7].astype(np.float64), a[0, :7].astype(np.float64)


def record(task: str, n_train: int, n_test: int, cache: Path | None) -> dict[str, np.ndarray]:
    from carve.sim.synth import episode_seed

    path = cache / f"grasp-{task}-{n_train}-{n_test}.npz" if cache else None
    if path is not None and path.exists():
        with np.load(path) as z:
            return dict(z)
    out: dict[str, np.ndarray] = {}
    for split, base, n in (("train", TRAIN_BASE, n_train), ("test", TEST_BASE, n_test)):
        rows = [demonstration(task, episode_seed(base, i)) for i in range(n)]
        for name, col in zip(("x", "q", "q0"), zip(*rows, strict=True), strict=True):
            out[f"{split}_{name}"] = np.asarray(col)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **out)
        tmp.replace(path)
    return out


class HandPose:
    """Forward kinematics of the simulator's arm (its kinematic twin, as the scene's IK uses it)."""

    def __init__(self) -> None:
        from carve.sim.env import SimEnv

        self.env = SimEnv(fps=12, render=False)
        self.env.reset("pick_place", 0)

    def __call__(self, q: np.ndarray) -> tuple[np.ndarray, float]:
        from carve.sim.scene import EE_LINK, pb

        scene = self.env.scene
        assert scene is not None
        arm = scene.arms[0]
        scene._reset_kin(arm, q)
        st = pb.getLinkState(arm.ik_body, EE_LINK, computeForwardKinematics=True, physicsClientId=scene.kin)
        return np.asarray(st[4]), float(pb.getEulerFromQuaternion(st[5])[2])


def hand_errors(fk: Any, pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """(N, 2): per scene the hand's position error (cm) and yaw error (degrees, wrapped) of `pred` vs `true`."""
    out = []
    for p, t in zip(pred, true, strict=True):
        (pp, yp), (pt, yt) = fk(p), fk(t)
        dy = (yp - yt + np.pi) % (2 * np.pi) - np.pi
        out.append((100 * float(np.linalg.norm(pp - pt)), abs(float(np.degrees(dy)))))
    return np.asarray(out)


def regressors() -> dict[str, Any]:
    from sklearn.linear_model import Ridge
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    return {
        "3-nearest neighbours": make_pipeline(StandardScaler(), KNeighborsRegressor(3)),
        "ridge (linear)": make_pipeline(StandardScaler(), Ridge(1.0)),
        "ridge on degree-2 features": make_pipeline(StandardScaler(), PolynomialFeatures(2), Ridge(1.0)),
        "MLP 128-128": make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(128, 128), max_iter=3000,
                                                                    random_state=0)),
    }


def learning_curve(data: dict[str, np.ndarray], sizes: tuple[int, ...] = SIZES) -> list[dict[str, Any]]:
    fk = HandPose()
    rows = []
    for n in (s for s in sizes if s <= len(data["train_x"])):
        for name, model in regressors().items():
            model.fit(data["train_x"][:n], data["train_q"][:n] - data["train_q0"][:n])
            err = hand_errors(fk, model.predict(data["test_x"]) + data["test_q0"], data["test_q"])
            rows.append({"n": n, "regressor": name, "median_cm": float(np.median(err[:, 0])),
                         "p90_cm": float(np.percentile(err[:, 0], 90)), "within_1cm": float(np.mean(err[:, 0] < 1.0)),
                         "within_2cm": float(np.mean(err[:, 0] < 2.0)), "yaw_deg": float(np.median(err[:, 1]))})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| demonstrations | regressor | hand error, median (cm) | 90th pct (cm) | within 1 cm | within 2 cm "
           "| yaw error, median (deg) |", "|---|---|---|---|---|---|---|"]
    out += [f"| {r['n']} | {r['regressor']} | {r['median_cm']:.2f} | {r['p90_cm']:.2f} | {100 * r['within_1cm']:.0f}% "
            f"| {100 * r['within_2cm']:.0f}% | {r['yaw_deg']:.1f} |" for r in rows]
    return "\n".join(out)


def policy_closes(policy_dir: str, task: str, scenes: int, camera: str = "random") -> list[dict[str, Any]]:
    """Per held-out scene: the hand's distance (cm) from the task's first object at the policy's first close
    command (None when it never closes), and whether that close grasped it (held within the next second).
    `camera`: as the policy's study ran (`carve eval-sim --study --camera`); the env renders as many cameras
    as the policy's model reads (`--views`)."""
    from carve.sim.env import SimEnv
    from carve.sim.study import IMAGE_SIZE
    from carve.sim.synth import episode_seed
    from carve.trainer.policy import Policy

    policy = Policy.load(policy_dir)
    pixels = policy.settings.visual == "pixels"
    out = []
    for i in range(scenes):
        with SimEnv(fps=policy.settings.fps or 12, render=pixels, size=IMAGE_SIZE, privileged=True,
                    camera_jitter=camera == "random", cameras=policy.model.cfg.visual_cameras) as env:
            ob = env.reset(task, episode_seed(TEST_BASE, i))
            policy.reset()
            scene = env.scene
            assert scene is not None
            arm, obj, others = scene.arms[0], env.goals[0].obj, other_objects(env)
            dist: float | None = None
            grasped, done, since = False, False, -1
            fps = env.fps
            while not done:
                a = policy.select_action(ob)
                if dist is None and a[7] > 0.5:
                    dist = 100 * float(np.linalg.norm(scene.ee_position(arm) - scene.object_position(obj)))
                    since = 0
                ob, _, done, _ = env.step(a)
                if 0 <= since <= fps:  # the fingers take a few steps to close: held within a second counts
                    grasped = grasped or arm.held is obj
                    since += 1
        out.append({"scene": i, "close_cm": dist, "grasped": grasped, "other_objects": others})
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="stack", choices=["pick_place", "stack", "two_object"])
    p.add_argument("--max-train", type=int, default=max(SIZES))
    p.add_argument("--test", type=int, default=64, help="held-out scenes")
    p.add_argument("--cache", type=Path, default=Path("/tmp/carve-grasp-map"))
    p.add_argument("--policy", default=None, help="a trained study policy's directory: measure its grasps instead")
    p.add_argument("--scenes", type=int, default=20, help="--policy: held-out scenes")
    p.add_argument("--camera", choices=["random", "fixed"], default="random", help="--policy: as its study ran")
    a = p.parse_args(argv)
    if a.policy:
        rows = policy_closes(a.policy, a.task, a.scenes, a.camera)
        def closes(subset: list[dict[str, Any]]) -> str:
            d = np.asarray([r["close_cm"] for r in subset if r["close_cm"] is not None])
            where = (f"first close median {np.median(d):.1f} cm, within 2 cm {np.mean(d < 2):.0%}" if len(d)
                     else "never closes")
            return (f"{len(d)} of {len(subset)} scenes close the gripper; {where}; grasped at that close "
                    f"{np.mean([r['grasped'] for r in subset]):.0%}")

        print(f"{a.policy}: {closes(rows)}")
        for k in sorted({r["other_objects"] for r in rows}):
            print(f"  scenes with {k} other object(s): {closes([r for r in rows if r['other_objects'] == k])}")
        return
    data = record(a.task, a.max_train, a.test, a.cache)
    print(table(learning_curve(data, tuple(s for s in SIZES if s <= a.max_train))))


if __name__ == "__main__":
    main()
