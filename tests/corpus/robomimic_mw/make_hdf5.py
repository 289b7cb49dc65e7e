"""Write Meta-World scripted-expert recordings in robomimic's HDF5 layout (`demos.hdf5`) plus truth.

Input: the `.npz` episodes written by `tests/corpus/metaworld/simulate.py` (the same recordings as
the LeRobot item `tests/corpus/metaworld/dataset`). Runs with numpy, h5py and Pillow (Carve's venv):

    .venv/bin/python tests/corpus/robomimic_mw/make_hdf5.py --npz /tmp/mw-npz --force

Layout (robomimic's, see robomimic/scripts/conversion and docs "datasets"):

    data.attrs["env_args"]  JSON {"env_name": "metaworld-v3", "type": 2, "env_kwargs": {"control_freq": 20, ...}}
    data.attrs["total"]     total number of samples
    data/demo_N.attrs       num_samples, task (the task text), model_file = "" (no MJCF stored)
    data/demo_N/actions     (T, 7) float32  [dx, dy, dz, droll, dpitch, dyaw, gripper]
    data/demo_N/rewards     (T,)   float32  1.0 from the first successful frame on (sparse)
    data/demo_N/dones       (T,)   int64    1 on the last frame
    data/demo_N/obs/robot0_eef_pos      (T, 3) float32  hand position (metres, Meta-World world frame)
    data/demo_N/obs/robot0_eef_quat     (T, 4) float32  constant (x, y, z, w) of Meta-World's mocap quat
    data/demo_N/obs/robot0_gripper_qpos (T, 2) float32  Panda-like finger positions (+w/2, -w/2)
    data/demo_N/obs/agentview_image     (T, 84, 84, 3) uint8  the "corner" camera, centre crop + resize
    (images gzip-9 in chunks of 16 frames; no eye-in-hand camera: the moving "behindGripper" view
    compresses badly and would more than double the file)
    mask/train, mask/valid  demo names (bytes)

Actions follow robomimic's OSC_POSE delta convention: the xyz part is Meta-World's delta action (the mean
of the 4 clipped 80 Hz deltas of the recorded 20 fps frame, in [-1, 1]; 1.0 = 1 cm per 80 Hz control
step), the rotation part is 0 (Meta-World's hand does not rotate), and the gripper is +1 (close) when
the expert's grab effort is > 0 and -1 (open) otherwise (Meta-World: effort > 0 drives the fingers
shut, 0 applies no force and leaves them open, < 0 drives them open).
The finger opening w = Meta-World's normalised finger distance (obs[3], 0..1, = distance / 0.1 m) x
0.08 m, so a fully open hand reads like a Panda's 0.08 m.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import min_phase

HERE = Path(__file__).resolve().parent
PANDA_MAX_OPENING = 0.08
# Meta-World's mocap quaternion (w, x, y, z) = (1, 0, 1, 0), normalised, stored as (x, y, z, w)
EEF_QUAT_XYZW = (np.array([0.0, 1.0, 0.0, 1.0]) / np.sqrt(2.0)).astype(np.float32)
DEFAULT_EPISODES = "0,1,2,4,5,8,9,12,15,16,18,21"  # npz indices: every task, 12 demos


def load(folder: Path, indices: list[int]) -> list[dict]:
    eps = []
    for i in indices:
        path = folder / f"episode_{i:03d}.npz"
        d = np.load(path)
        ep = {k: d[k] for k in d.files if k != "meta"}
        ep["meta"] = json.loads(str(d["meta"]))
        ep["npz_index"] = i
        eps.append(ep)
    return eps


def agentview(images: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop (96 x 96 of the 128 x 96 renders), then resize to size x size (bilinear)."""
    from PIL import Image

    h, w = images.shape[1:3]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    out = [
        np.asarray(Image.fromarray(im[top:top + s, left:left + s]).resize((size, size), Image.BILINEAR))
        for im in images
    ]
    return np.stack(out).astype(np.uint8)


def demo_arrays(ep: dict, size: int) -> dict[str, np.ndarray]:
    state, act = ep["state"], ep["action"]
    t = len(state)
    actions = np.zeros((t, 7), dtype=np.float32)
    actions[:, 0:3] = act[:, 0:3]
    actions[:, 6] = np.where(act[:, 3] > 0, 1.0, -1.0)
    w = state[:, 3].astype(np.float64) * PANDA_MAX_OPENING
    success_frame = -(-int(ep["meta"]["success_step"]) // int(ep["meta"]["step_stride"]))
    rewards = (np.arange(t) >= success_frame).astype(np.float32)
    dones = np.zeros(t, dtype=np.int64)
    dones[-1] = 1
    return {
        "actions": actions,
        "rewards": rewards,
        "dones": dones,
        "obs/robot0_eef_pos": state[:, 0:3].astype(np.float32),
        "obs/robot0_eef_quat": np.tile(EEF_QUAT_XYZW, (t, 1)),
        "obs/robot0_gripper_qpos": np.stack([w / 2, -w / 2], axis=1).astype(np.float32),
        "obs/agentview_image": agentview(ep["image_corner"], size),
    }


def write(args: argparse.Namespace, eps: list[dict]) -> list[dict]:
    import h5py

    names = [f"demo_{k}" for k in range(len(eps))]
    with h5py.File(args.out, "w") as f:
        data = f.create_group("data")
        total = 0
        for name, ep in zip(names, eps, strict=True):
            g = data.create_group(name)
            for key, arr in demo_arrays(ep, args.size).items():
                kw = {"compression": "gzip", "compression_opts": 9} if arr.ndim == 4 else {}
                if arr.ndim == 4:
                    kw["chunks"] = (min(16, len(arr)), *arr.shape[1:])  # inter-frame redundancy compresses
                g.create_dataset(key, data=arr, **kw)
            g.attrs["num_samples"] = len(ep["state"])
            g.attrs["task"] = ep["meta"]["task"]
            g.attrs["model_file"] = ""
            total += len(ep["state"])
        data.attrs["total"] = total
        data.attrs["env_args"] = json.dumps({
            "env_name": "metaworld-v3",
            "type": 2,  # robomimic EnvType.GYM_TYPE (Meta-World is a gymnasium env, not robosuite)
            "env_kwargs": {"control_freq": 20, "simulator_control_hz": 80, "benchmark": "MT1",
                           "tasks": sorted({ep["meta"]["task_name"] for ep in eps})},
        })
        n_valid = max(1, len(names) // 6)
        mask = f.create_group("mask")
        mask.create_dataset("train", data=np.array([n.encode() for n in names[:-n_valid]]))
        mask.create_dataset("valid", data=np.array([n.encode() for n in names[-n_valid:]]))
    truth = []
    for k, (name, ep) in enumerate(zip(names, eps, strict=True)):
        m = ep["meta"]
        n = len(ep["state"])
        bounds = [int(b) for b in m["boundaries"]]
        truth.append({
            "episode_index": k,  # Carve enumerates demos by their numeric suffix (_demo_key)
            "demo": name,
            "boundaries": bounds,
            "phases": list(m["phases"]),
            "fps": 20,
            "length": n,
            "task": m["task"],
            "task_type": m["task_name"],
            "phase_frames": [[s, e] for s, e in zip([0, *bounds], [*bounds, n], strict=True)],
            "metaworld": {"env": m["task_name"], "mt1_seed": m["seed"], "variation": m["variation"],
                          "npz_episode": ep["npz_index"]},
        })
    return truth


def verify(args: argparse.Namespace, eps: list[dict]) -> None:
    import h5py

    with h5py.File(args.out, "r") as f:
        demos = sorted(f["data"].keys(), key=lambda s: int(s.rsplit("_", 1)[1]))
        assert len(demos) == len(eps)
        for name, ep in zip(demos, eps, strict=True):
            g = f["data"][name]
            ref = demo_arrays(ep, args.size)
            for key, arr in ref.items():
                np.testing.assert_array_equal(g[key][()], arr)
            assert g.attrs["num_samples"] == len(ep["state"])
        assert f["data"].attrs["total"] == sum(len(ep["state"]) for ep in eps)
        json.loads(f["data"].attrs["env_args"])
    print(f"verified {args.out}: {len(eps)} demos, {sum(len(e['state']) for e in eps)} samples, "
          f"{args.out.stat().st_size / 1e6:.2f} MB")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--npz", type=Path, required=True, help="simulate.py's output folder")
    ap.add_argument("--episodes", default=DEFAULT_EPISODES, help="comma-separated npz episode indices")
    ap.add_argument("--out", type=Path, default=HERE / "demos.hdf5")
    ap.add_argument("--truth", type=Path, default=HERE / "truth.json")
    ap.add_argument("--size", type=int, default=84, help="agentview image side")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    if args.out.exists() and not args.force:
        print(f"error: {args.out} exists (use --force)", file=sys.stderr)
        return 2
    eps = load(args.npz, [int(x) for x in args.episodes.split(",")])
    truth = write(args, eps)
    # every expert phase change; truth.json keeps the phases of >= 0.15 s (../min_phase.py)
    args.truth.with_name("truth_all.json").write_text(json.dumps(truth, indent=1) + "\n")
    args.truth.write_text(json.dumps(min_phase.convert(truth), indent=1) + "\n")
    verify(args, eps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
