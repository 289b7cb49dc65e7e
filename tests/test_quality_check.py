"""`carve check` (carve.quality) on a corrupted corpus of data Carve did not make.

Clean episodes of two third-party generators (Meta-World's scripted policies and ACT's scripted
experts in gym-aloha, tests/corpus/) are copied, one defect of each kind injected at a known
span (`carve.sim.defects`), and written as LeRobot v3.0 with AV1 by the real lerobot 0.4.4.
The check must find each injected defect (right episode, right kind, both ends of the span
within 0.25 s), report nothing on the clean episodes among them and on the untouched corpus, and
carry on past an unreadable episode, naming it. The expected spans are the injector's, never the
checker's.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from requires import require_lerobot

from carve.cli.main import main
from carve.quality.check import check_source
from carve.quality.defects import KINDS

CORPUS = Path(__file__).resolve().parent / "corpus"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "lerobot"
SOURCES = {"metaworld": CORPUS / "metaworld" / "dataset", "aloha": CORPUS / "aloha_scripted" / "dataset"}
TOL_S = 0.25


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    require_lerobot()
    from carve.sim.defects import make_corrupted_corpus

    out = tmp_path_factory.mktemp("corrupted")
    truth = make_corrupted_corpus({k: str(v) for k, v in SOURCES.items()}, out, seed=0)
    return out, truth


@pytest.fixture(scope="module")
def reports(corrupted: tuple[Path, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out, truth = corrupted
    return {name: check_source(str(out / name), "lerobot").as_dict() for name in truth["datasets"]}


def _carve(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(list(argv))
    return code, buf.getvalue()


def test_every_injected_kind_is_found_at_its_span(corrupted, reports):
    _, truth = corrupted
    found: dict[str, list[bool]] = {}
    for name, d in truth["datasets"].items():
        eps = {e["episode_index"]: e for e in reports[name]["episodes"]}
        for row in d["episodes"]:
            if row["kind"] is None:
                continue
            e = eps[row["episode_index"]]
            tol = round(TOL_S * e["fps"])
            hit = any(x["kind"] == row["kind"] and abs(x["start_frame"] - row["start_frame"]) <= tol
                      and abs(x["end_frame"] - row["end_frame"]) <= tol for x in e["defects"])
            found.setdefault(row["kind"], []).append(hit)
            assert hit, (name, row, e["defects"])
    injected = set(KINDS) - {"unreadable"}
    assert set(found) == injected, injected - set(found)  # the corpus carries every kind
    assert all(len(v) >= 2 for v in found.values()), {k: len(v) for k, v in found.items()}


def test_clean_episodes_among_them_have_no_findings(corrupted, reports):
    _, truth = corrupted
    clean = 0
    for name, d in truth["datasets"].items():
        eps = {e["episode_index"]: e for e in reports[name]["episodes"]}
        for row in d["episodes"]:
            if row["kind"] is None:
                clean += 1
                assert eps[row["episode_index"]]["defects"] == [], (name, row["episode_index"])
                assert eps[row["episode_index"]]["score"] == 100
    assert clean >= 10


def test_the_report_has_the_documented_form(corrupted, reports):
    rep = reports["aloha"]
    assert {"dataset", "episodes"} <= set(rep)
    for e in rep["episodes"]:
        assert isinstance(e["episode_index"], int) and 0 <= e["score"] <= 100
        for x in e["defects"]:
            assert x["kind"] in KINDS and x["severity"] in ("error", "warning")
            assert 0 <= x["start_frame"] <= x["end_frame"] < e["length"] and x["detail"]
    errors = {e["episode_index"] for e in rep["episodes"] if any(x["severity"] == "error" for x in e["defects"])}
    assert set(rep["summary"]["drop"]) == errors and errors


@pytest.mark.parametrize("source", [*SOURCES.values(), CORPUS / "so100_joint" / "dataset",
                                    CORPUS / "robomimic_mw" / "demos.hdf5", CORPUS / "aloha_hdf5" / "episodes"])
def test_the_untouched_corpus_is_clean(source: Path):
    rep = check_source(str(source))
    assert all(not e.defects for e in rep.episodes), [(e.episode_index, e.as_dict()["defects"]) for e in rep.episodes
                                                      if e.defects]


def test_cli_writes_both_reports_and_fails_on_errors(corrupted, tmp_path: Path):
    out, _ = corrupted
    js, md = tmp_path / "r" / "report.json", tmp_path / "r" / "report.md"
    code, text = _carve("check", "--source", str(out / "metaworld"), "--json", str(js), "--markdown", str(md),
                        "--fail-on", "error", "--set", "ray.progress=false")
    assert code == 1 and "with errors" in text
    rep = json.loads(js.read_text())
    assert rep["dataset"] and len(rep["episodes"]) == len(json.loads((out / "truth.json").read_text())
                                                         ["datasets"]["metaworld"]["episodes"])
    assert "## Drop list" in md.read_text() and not list(js.parent.glob(".*.tmp"))
    # the untouched dataset: exit 0 even with --fail-on warning
    code, _ = _carve("check", "--source", str(SOURCES["metaworld"]), "--fail-on", "warning",
                     "--set", "ray.progress=false")
    assert code == 0


def test_an_unreadable_episode_is_a_finding_and_the_check_goes_on(tmp_path: Path):
    ds = tmp_path / "v21"
    shutil.copytree(FIXTURES / "v21", ds)
    victim = sorted(ds.glob("data/**/*.parquet"))[1]
    victim.write_bytes(b"PAR1 this is not a parquet file")
    rep = check_source(str(ds)).as_dict()
    by = {e["episode_index"]: e for e in rep["episodes"]}
    assert len(by) == 3
    bad = [e for e in rep["episodes"] if any(x["kind"] == "unreadable" for x in e["defects"])]
    assert len(bad) == 1 and bad[0]["score"] == 0
    assert victim.name in bad[0]["defects"][0]["detail"]
    assert all(e["length"] > 0 for e in rep["episodes"] if e is not bad[0])  # the others were checked


def test_thresholds_are_physical_and_set_by_config():
    """The same one-frame jump of a joint is impossible at 50 fps and possible at 10 fps (rad/s, not
    rad per frame), and `check.jump_speed_rad_s` moves the line."""
    from carve.core.config import CarveConfig, SegmentConfig
    from carve.quality.signals import Motion, jumps

    names = [f"joint_{i}" for i in range(6)] + ["gripper"]

    def motion(fps: int) -> Motion:
        n = fps * 2
        state = np.zeros((n, 7))
        state[:, 0] = np.linspace(0, 0.5, n)
        state[n // 2 :, 0] += 0.5  # +0.5 rad between two frames: 25 rad/s at 50 fps, 5 rad/s at 10 fps
        return Motion(state, state.copy(), fps, SegmentConfig(), names, names)

    shipped = CarveConfig().check
    assert jumps(motion(50), shipped) and not jumps(motion(10), shipped)
    loose = CarveConfig.load(None, ["check.jump_speed_rad_s=40"]).check
    assert not jumps(motion(50), loose)
