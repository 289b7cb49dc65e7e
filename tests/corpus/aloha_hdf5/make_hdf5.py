"""Write gym-aloha scripted-expert recordings (../aloha_scripted/simulate.py's .npz dumps) in ACT's own
HDF5 layout, one file per episode, plus the ground truth `truth.json` / `truth_carve.json`.

Runs in any Python with h5py, numpy and Pillow (e.g. Carve's venv):

    .venv/bin/python tests/corpus/aloha_hdf5/make_hdf5.py --npz /tmp/aloha-sim --force

Layout (as ACT's record_sim_episodes.py writes it, https://github.com/tonyzhaozh/act):

    episode_N.hdf5
      attrs: sim = True                      (no fps attribute: ACT writes none; ALOHA sim is 50 Hz)
      /observations/qpos          (T, 14) float32
      /observations/qvel          (T, 14) float32
      /observations/images/top    (T, H, W, 3) uint8, chunks (1, H, W, 3)
      /action                     (T, 14) float32

ACT creates the float datasets without a dtype, so h5py stores float32; its images are 480x640 and
uncompressed, here they are small and gzip-compressed (level 9) to keep the corpus small.
Episodes: the first --per-task `transfer_cube_*.npz`, then the first --per-task `insertion_*.npz`,
numbered episode_0 .. episode_{n-1} in that order (Carve and ACT both read them in numeric order).
Afterwards every file is read back with h5py and compared with the .npz.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "aloha_scripted"))
from make_dataset import carve_truth, load_npz, resize_frames, truth_entry  # noqa: E402


def write_episode(path: Path, ep: dict, cams: list[str]) -> None:
    import h5py

    t = len(ep["qpos"])
    with h5py.File(path, "w") as root:
        root.attrs["sim"] = True
        obs = root.create_group("observations")
        image = obs.create_group("images")
        for cam in cams:
            frames = ep[f"images_{cam}"]
            h, w = frames.shape[1:3]
            image.create_dataset(cam, (t, h, w, 3), dtype="uint8", chunks=(1, h, w, 3),
                                 compression="gzip", compression_opts=9)
        obs.create_dataset("qpos", (t, 14), dtype="f4")  # ACT passes no dtype: h5py default f4
        obs.create_dataset("qvel", (t, 14), dtype="f4")
        root.create_dataset("action", (t, 14), dtype="f4")
        root["/observations/qpos"][...] = ep["qpos"]
        root["/observations/qvel"][...] = ep["qvel"]
        root["/action"][...] = ep["action"]
        for cam in cams:
            root[f"/observations/images/{cam}"][...] = ep[f"images_{cam}"]


def verify(out: Path, episodes: list[dict], cams: list[str]) -> None:
    import h5py

    files = sorted(out.glob("episode_*.hdf5"), key=lambda p: int(p.stem.split("_")[1]))
    assert [p.name for p in files] == [f"episode_{k}.hdf5" for k in range(len(episodes))], files
    for path, ep in zip(files, episodes, strict=True):
        with h5py.File(path, "r") as root:
            assert bool(root.attrs["sim"]) is True and "fps" not in root.attrs
            for key, ref in (("/observations/qpos", "qpos"), ("/observations/qvel", "qvel"), ("/action", "action")):
                ds = root[key]
                assert ds.dtype == np.float32 and ds.shape == (len(ep["qpos"]), 14), (key, ds.dtype, ds.shape)
                np.testing.assert_array_equal(ds[()], ep[ref].astype(np.float32))
            for cam in cams:
                np.testing.assert_array_equal(root[f"/observations/images/{cam}"][()], ep[f"images_{cam}"])
    print(f"verified {len(files)} files in {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--npz", type=Path, required=True, help="simulate.py's output folder")
    ap.add_argument("--out", type=Path, default=HERE / "episodes")
    ap.add_argument("--truth-dir", type=Path, default=HERE)
    ap.add_argument("--per-task", type=int, default=2, help="episodes per task (first ones by file name)")
    ap.add_argument("--cams", default="top", help="cameras to store (ACT's sim tasks record only 'top')")
    ap.add_argument("--size", default="64x48", help="WxH of the stored images (area-resized)")
    ap.add_argument("--force", action="store_true", help="delete --out first if it exists")
    args = ap.parse_args(argv)

    episodes = load_npz(args.npz, per_task=args.per_task)
    cams = [c for c in args.cams.split(",") if c]
    size = tuple(int(v) for v in args.size.lower().split("x"))
    for ep in episodes:
        for c in cams:
            ep[f"images_{c}"] = resize_frames(ep[f"images_{c}"], size)
    if args.out.exists():
        if not args.force:
            print(f"error: {args.out} exists (use --force)", file=sys.stderr)
            return 2
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    for k, ep in enumerate(episodes):
        write_episode(args.out / f"episode_{k}.hdf5", ep, cams)
    src = "ACT scripted experts in gym-aloha (tests/corpus/aloha_scripted/simulate.py), expert waypoints"
    entries = [truth_entry(k, ep, 50, source=src) for k, ep in enumerate(episodes)]
    for e in entries:
        e["source"]["file"] = f"episode_{e['episode_index']}.hdf5"
    (args.truth_dir / "truth.json").write_text(json.dumps(entries, indent=1) + "\n")
    (args.truth_dir / "truth_carve.json").write_text(
        json.dumps(carve_truth(entries, 50, args.out.name, src), indent=1) + "\n")
    print(f"wrote {len(episodes)} episodes to {args.out} with h5py")
    verify(args.out, episodes, cams)
    return 0


if __name__ == "__main__":
    sys.exit(main())
