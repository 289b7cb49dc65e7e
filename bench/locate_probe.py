"""Can the pixel study's image stem find the object at all? (issue 20, breadth)

The pixel study's policies close the gripper 12-15 cm from the object they should grasp (`bench.grasp_map
--policy`), with the front camera, with the wrist camera added, and with a fixed camera. Behaviour cloning
has to learn where the object is through the action loss. This asks the image stem the question directly,
with the strongest supervision there is: from the first frame of a scene, rendered and reduced exactly as
the study records it (`sim.study.record_episode`: `SimEnv` at `IMAGE_SIZE`, the policy's "pixels" input),
regress the (x, y) of the object the task moves first, with the study's stem (`trainer.model.ConvStem`:
convolutions + spatial softmax, one per camera) and a linear head. It is fitted on the first N scenes of the
study's data seeds (`episode_seed(0, i)`) and scored on held-out scenes (`episode_seed(30000, i)`) by the
median distance (cm) between the predicted and the true position, against predicting the training mean.
If direct regression cannot place the object within a few cm from N scenes, a policy trained on N
demonstrations is not expected to grasp it from pixels.

    python -m bench.locate_probe                                    # pick_place, front, 32 px, N = 160 640 2560
    python -m bench.locate_probe --camera fixed --side 64 --shift 4 --views front+wrist --sizes 160 640

Scenes are cached in `--cache`, keyed on what renders them (task, camera, views, side, counts); rendering
2,656 front frames took ~7 minutes here (two such runs side by side on the 2 cores), fitting one N ~1 minute
at 32 px and 3,000 steps, ~4 times that at 64 px.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.grasp_map import TEST_BASE, TRAIN_BASE, other_objects

SIZES = (160, 640, 2560)


def scenes(task: str, base: int, n: int, *, camera: str = "random", views: str = "front",
           side: int = 32) -> dict[str, np.ndarray]:
    """The first frame of scenes `episode_seed(base, i)`, i < n, as the study's pixel input at `side` px
    (`x`: the cameras of `views` one after another), the (x, y) in metres of the object the task moves first
    (`y`) and how many other objects the scene holds (`others`)."""
    from carve.sim.env import SimEnv
    from carve.sim.study import IMAGE_SIZE, VIEWS
    from carve.sim.synth import episode_seed
    from carve.trainer.policy import PolicySettings, make_visual_encoder, visual_vector

    cams = VIEWS[views]
    enc = make_visual_encoder(PolicySettings(visual="pixels"), cams * 3 * side * side, cams)
    x, y, others = [], [], []
    for i in range(n):
        with SimEnv(fps=12, size=IMAGE_SIZE, privileged=True, cameras=cams,
                    camera_jitter=camera == "random") as env:
            ob = env.reset(task, episode_seed(base, i))
            assert env.scene is not None
            x.append(visual_vector(enc, [ob["images"][c] for c in sorted(ob["images"])], enc.dim * cams))
            y.append(env.scene.object_position(env.goals[0].obj)[:2])
            others.append(other_objects(env))
    return {"x": np.asarray(x, np.float32), "y": np.asarray(y, np.float32), "others": np.asarray(others)}


def cached_scenes(task: str, base: int, n: int, cache: Path, **kw: Any) -> dict[str, np.ndarray]:
    name = "-".join(str(v) for v in (task, base, n, *(f"{k}={kw[k]}" for k in sorted(kw))))
    path = cache / f"{name.replace('+', '_')}.npz"
    if path.exists():
        return dict(np.load(path))
    out = scenes(task, base, n, **kw)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(path)
    return out


def fit_probe(x: np.ndarray, y: np.ndarray, *, side: int, cameras: int = 1, shift: int = 0, steps: int = 3000,
              batch: int = 64, lr: float = 1e-3, seed: int = 0) -> Any:
    """The study's stem (`ConvStem(side, 64, shift, cameras)`) + a linear head, fitted by Adam to the
    standardised targets `y`; returns `predict(x) -> y` in the targets' units (the stem in eval mode)."""
    import torch

    from carve.trainer.model import ConvStem

    torch.manual_seed(seed)
    mu, sd = y.mean(0), y.std(0) + 1e-9
    stem = ConvStem(side, 64, shift=shift, cameras=cameras)
    head = torch.nn.Linear(64, y.shape[1])
    opt = torch.optim.Adam([*stem.parameters(), *head.parameters()], lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy((y - mu) / sd)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (batch,), generator=gen)
        loss = ((head(stem(xt[idx])) - yt[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    stem.eval()

    def predict(z: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return head(stem(torch.from_numpy(np.asarray(z, np.float32)))).numpy() * sd + mu

    return predict


def median_cm(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.median(np.linalg.norm(pred - y, axis=1)) * 100) if len(y) else float("nan")


def probe(train: dict[str, np.ndarray], test: dict[str, np.ndarray], sizes: tuple[int, ...], *, side: int,
          cameras: int, shift: int, steps: int, report: Any = None) -> list[dict[str, Any]]:
    """One row per N: held-out median error (all scenes, without and with other objects), the training
    scenes' own error, and the error of predicting the N scenes' mean position; `report(row)` is called
    with each row as it is done."""
    rows = []
    for n in sizes:
        t = time.perf_counter()
        x, y = train["x"][:n], train["y"][:n]
        predict = fit_probe(x, y, side=side, cameras=cameras, shift=shift, steps=steps)
        pred = predict(test["x"])
        alone = test["others"] == 0
        rows.append({"n": n, "held_out_cm": median_cm(pred, test["y"]),
                     "alone_cm": median_cm(pred[alone], test["y"][alone]),
                     "with_others_cm": median_cm(pred[~alone], test["y"][~alone]),
                     "train_cm": median_cm(predict(x), y),
                     "mean_guess_cm": median_cm(np.broadcast_to(y.mean(0), test["y"].shape), test["y"]),
                     "seconds": round(time.perf_counter() - t, 1)})
        if report is not None:
            report(rows[-1])
    return rows


HEADER = ("| N scenes | held-out median (cm) | no other object | other objects | training scenes | guessing the mean |\n"
          "|---|---|---|---|---|---|")


def table_row(r: dict[str, Any]) -> str:
    return (f"| {r['n']} | {r['held_out_cm']:.1f} | {r['alone_cm']:.1f} | {r['with_others_cm']:.1f} | "
            f"{r['train_cm']:.1f} | {r['mean_guess_cm']:.1f} |")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="pick_place", choices=["pick_place", "stack", "two_object", "push"])
    p.add_argument("--camera", choices=["random", "fixed"], default="random")
    p.add_argument("--views", choices=["front", "front+wrist"], default="front")
    p.add_argument("--side", type=int, default=32, help="input side in px (the study's: 32; rendered at 64)")
    p.add_argument("--shift", type=int, default=0, help="random shift of the training images (px; DrQ)")
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    p.add_argument("--test", type=int, default=96, help="held-out scenes")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--cache", type=Path, default=Path("/tmp/carve-locate-probe"))
    a = p.parse_args(argv)
    from carve.sim.study import VIEWS

    kw = {"camera": a.camera, "views": a.views, "side": a.side}
    train = cached_scenes(a.task, TRAIN_BASE, max(a.sizes), a.cache, **kw)
    test = cached_scenes(a.task, TEST_BASE, a.test, a.cache, **kw)
    print(f"{a.task}, camera {a.camera}, views {a.views}, {a.side} px, shift {a.shift}, {a.steps} steps, "
          f"{a.test} held-out scenes\n{HEADER}", flush=True)
    probe(train, test, tuple(sorted(a.sizes)), side=a.side, cameras=VIEWS[a.views], shift=a.shift, steps=a.steps,
          report=lambda r: print(table_row(r), flush=True))


if __name__ == "__main__":
    main()
