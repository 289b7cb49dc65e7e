"""`carve export` on bad input: each case is a clear error naming the thing, and nothing is left
looking like a finished export (the dataset is built beside the target and renamed at the end,
`meta/info.json` last).

Cases: an unknown shards version; an output folder that exists (refused unless --overwrite);
a source whose videos are gone; a write that fails midway (the target stays as it was, no temp
folder is left). Uses the session's curated root of test_export_lerobot.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_export_lerobot import curated_root

from carve.cli.main import main
from carve.export import lerobot as exp
from carve.export.lerobot import ExportError, export_lerobot

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.fixture(scope="module")
def curated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return curated_root(tmp_path_factory)


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith((".tmp-", ".old-")))


def test_unknown_shards_version_names_the_version_and_the_ones_that_exist(curated, tmp_path: Path, capsys):
    _, root = curated
    with pytest.raises(ExportError, match=r"shards version v042 does not exist \(complete versions: v001\)"):
        export_lerobot(root, tmp_path / "out", version=42)
    assert main(["export", "--root", str(root), "--shards", "v042", "--out", str(tmp_path / "out")]) == 2
    assert "v042 does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_existing_output_is_refused_unless_overwrite(curated, tmp_path: Path, capsys):
    _, root = curated
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"already exists and is not empty; pass --overwrite"):
        export_lerobot(root, out, version=1)
    assert (out / "keep.txt").read_text() == "mine"
    assert main(["export", "--root", str(root), "--out", str(out), "--unit", "event", "--overwrite", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["unit"] == "event" and summary["episodes"] > 0
    assert not (out / "keep.txt").exists() and (out / "meta" / "info.json").exists()
    assert _leftovers(tmp_path) == []


def test_source_videos_gone_is_an_error_naming_the_episode_and_the_file(curated, tmp_path: Path):
    sim, root = curated
    videos, hidden = sim / "videos", sim.parent / "videos-hidden"
    videos.rename(hidden)
    try:
        with pytest.raises(ExportError) as e:
            export_lerobot(root, tmp_path / "out", version=1)
    finally:
        hidden.rename(videos)
    msg = str(e.value)
    assert "dataset sim" in msg and "episode 0" in msg and "file-000.mp4" in msg and "not found" in msg
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_failure_midway_leaves_the_target_as_it_was(curated, tmp_path: Path, monkeypatch):
    _, root = curated
    out = tmp_path / "out"
    export_lerobot(root, out, version=1, unit="event")  # a finished export that a failed overwrite must keep
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    real = exp.DatasetWriter.add_episode
    calls = {"n": 0}

    def failing(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real(self, *a, **kw)

    monkeypatch.setattr(exp.DatasetWriter, "add_episode", failing)
    with pytest.raises(ExportError) as e:
        export_lerobot(root, out, version=1, unit="episode", overwrite=True)
    msg = str(e.value)
    assert "No space left on device" in msg and "episode 2 of lerobot://" in msg and "left as it was" in msg
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before
    assert json.loads((out / "meta" / "info.json").read_text())["total_episodes"] > 4  # still the event export
    assert _leftovers(tmp_path) == []
    # a fresh target: nothing appears under its name
    with pytest.raises(ExportError):
        calls["n"] = 0
        export_lerobot(root, tmp_path / "fresh", version=1)
    assert not (tmp_path / "fresh").exists() and _leftovers(tmp_path) == []
    shutil.rmtree(out)
