"""A user's own data: what `carve run` says about a source it cannot fully use.

* a LeRobot dataset whose video is in a codec no decoder here knows: every episode of that file
  is quarantined with the file and the reason, the run reports them, and no event of theirs is
  written;
* a dataset with no gripper column: the run completes, cutting events from motion alone, and
  says so naming the episode and the columns it saw.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from corrupt import break_codec_tag

from carve.cli.main import main

pytestmark = pytest.mark.usefixtures("ray_local")
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "lerobot" / "v30"


def _carve(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_run_quarantines_episodes_whose_video_no_decoder_knows(tmp_path: Path):
    src = tmp_path / "source"
    shutil.copytree(FIXTURE, src)
    bad = next((src / "videos" / "observation.images.top").rglob("*.mp4"))
    assert break_codec_tag(bad) == b"av01"
    code, out, _ = _carve("run", "--source", str(src), "--root", str(tmp_path / "root"), "--set", "ray.progress=false",
                          "--set", "embed.text=none", "--json")
    s = json.loads(out[out.index("{"):])
    assert code == 3 and s["episodes_failed"] == 3 and s["episodes_ok"] == 0  # all three live in that file
    for _, reason in s["failures"]:
        assert str(bad) in reason and "no decoder" in reason, reason
    assert not list((tmp_path / "root" / "events").rglob("*.parquet"))  # nothing of theirs was written


def test_dataset_without_a_gripper_is_cut_from_motion_and_says_so(tmp_path: Path):
    from carve.sim.formats import write_folder
    from carve.sim.toy import toy_episode

    eps = []
    for i in range(2):
        ep = toy_episode(i, frames=96)
        ep.state, ep.action = ep.state[:, :7], ep.action[:, :7]  # drop the gripper column
        eps.append(ep)
    names = [f"joint_{j}" for j in range(7)]
    src = write_folder(tmp_path / "nogrip", eps, fps=12, state_names=names, action_names=names)
    code, out, _ = _carve("run", "--source", str(src), "--root", str(tmp_path / "root"), "--set", "ray.progress=false",
                          "--set", "embed.text=none")
    assert code == 0, out
    note = next(line for line in out.splitlines() if "note:" in line)
    assert "no gripper column" in note and str(src) in note and "joint_6" in note and "segment.gripper_dim" in note
    from carve.storage.events import read_events
    from carve.storage.root import open_root

    with open_root(str(tmp_path / "root")) as root:
        ev = read_events(root, columns=["episode_index", "start_reason"]).to_pydict()
    assert sorted(set(ev["episode_index"])) == [0, 1]
    assert not any(r.startswith("gripper") for r in ev["start_reason"])
    assert np.sum(np.array(ev["episode_index"]) == 0) >= 2  # the toy's dwells still cut it into events
