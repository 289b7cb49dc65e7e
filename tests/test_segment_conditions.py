"""Carve's segmenter on every simulated condition of issue 9, beside the PerAct/RVT keyframe rule.

Small datasets are simulated per condition with `carve.sim.synth.synthesize` (dwell 12 fps,
blended 30 fps, blended 30 fps with noise 1.0, two arms, blended 50 fps; tiny single-camera
video, which neither method reads) and read back through `carve.ingest.sources`. With the
shipped default `SegmentConfig` (the same for every condition) the tests check that

* on the two-arm scene no event contains both the start of an arm's grasp and the start of
  that arm's matching release (from the ground-truth phases), and boundary F1 >= 0.8;
* the segmenter's boundary F1 at +-0.1 s beats the keyframe baseline's on every condition;
* every boundary lies in (0, T) and the segments tile [0, T), for both methods;
* `carve eval-segments --tolerance-s 0.1 --baseline keyframes` reports both methods as scored here.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from carve.core.config import SegmentConfig
from carve.ingest.eval_segments import evaluate, load_truth, segments_from_boundaries
from carve.ingest.keyframes import perceiver_keyframes
from carve.ingest.segment import Segment, boundaries_of, segment_episode
from carve.ingest.sources import load_episode, open_source

pytest.importorskip("pybullet")

TOL_S = 0.1
CONDITIONS: dict[str, dict[str, Any]] = {
    "dwell12": {"style": "dwell", "fps": 12, "operator_noise": 0.0, "arms": 1, "episodes": 4},
    "blended30": {"style": "blended", "fps": 30, "operator_noise": 0.0, "arms": 1, "episodes": 4},
    "blended30_noise1": {"style": "blended", "fps": 30, "operator_noise": 1.0, "arms": 1, "episodes": 4},
    "two_arms": {"style": "blended", "fps": 30, "operator_noise": 0.5, "arms": 2, "episodes": 3},
    "blended50": {"style": "blended", "fps": 50, "operator_noise": 0.5, "arms": 1, "episodes": 4},
}


@dataclass
class Scored:
    root: Path
    truth: dict[str, Any]
    lengths: dict[int, int]
    carve: dict[int, list[Segment]]
    keyframes: dict[int, list[int]]

    def report(self, method: str) -> dict[str, Any]:
        pred = ({i: boundaries_of(s) for i, s in self.carve.items()} if method == "carve" else self.keyframes)
        return evaluate(self.truth, pred, tol_s=TOL_S)


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Scored]:
    from carve.sim.synth import synthesize

    base = tmp_path_factory.mktemp("conditions")
    cfg = SegmentConfig()  # the shipped default, one for every condition
    out: dict[str, Scored] = {}
    for name, c in CONDITIONS.items():
        kw = {k: v for k, v in c.items() if k != "episodes"}
        root = synthesize(str(base / name), c["episodes"], workers=2, seed=11, size=16, cameras=1, progress=False,
                          **kw)
        truth = load_truth(Path(root) / "ground_truth_events.json")
        sc = Scored(Path(root), truth, {}, {}, {})
        for ref in open_source(str(root)).list_episodes():
            ep = load_episode(ref)
            idx = int(ref.episode_index)
            sc.lengths[idx] = int(ep.state.shape[0])
            sc.carve[idx] = segment_episode(ep.state, ep.action, ep.fps, cfg, ep.state_names, ep.action_names)
            sc.keyframes[idx] = perceiver_keyframes(ep.state, ep.action, ep.fps, ep.state_names, ep.action_names)
        out[name] = sc
    return out


def test_two_arm_events_never_span_an_arms_grasp_and_its_release(scored: dict[str, Scored]) -> None:
    sc = scored["two_arms"]
    checked = 0
    for ep in sc.truth["episodes"]:
        segs = sc.carve[int(ep["episode_index"])]
        for arm in ep["arms"]:
            phases = [p for p in ep["phases"] if p["arm"] == arm]
            for k, grasp in enumerate(phases):
                if grasp["name"] != "grasp":
                    continue
                release = next(p for p in phases[k + 1 :] if p["name"] == "release")
                for s in segs:
                    spans = s.start <= grasp["start"] < s.end and s.start <= release["start"] < s.end
                    assert not spans, (f"episode {ep['episode_index']}: event [{s.start}, {s.end}) holds {arm}'s grasp "
                                       f"at {grasp['start']} and its release at {release['start']}")
                checked += 1
    assert checked >= 2 * len(sc.truth["episodes"])  # both arms grasp and release in every episode


def test_two_arm_boundary_f1(scored: dict[str, Scored]) -> None:
    f1 = scored["two_arms"].report("carve")["overall"]["boundary_f1"]
    assert f1 >= 0.8, f"two-arm boundary F1 {f1:.3f} at +-{TOL_S} s"


@pytest.mark.parametrize("name", list(CONDITIONS))
def test_segmenter_beats_the_keyframe_baseline(scored: dict[str, Scored], name: str) -> None:
    sc = scored[name]
    carve, base = sc.report("carve")["overall"], sc.report("keyframes")["overall"]
    assert carve["episodes"] == base["episodes"] == CONDITIONS[name]["episodes"]
    assert carve["boundary_f1"] > base["boundary_f1"], (
        f"{name}: carve F1 {carve['boundary_f1']:.3f} vs keyframes {base['boundary_f1']:.3f} at +-{TOL_S} s")


@pytest.mark.parametrize("name", list(CONDITIONS))
def test_boundaries_lie_inside_the_episode_and_segments_tile_it(scored: dict[str, Scored], name: str) -> None:
    sc = scored[name]
    for idx, n in sc.lengths.items():
        segs = sc.carve[idx]
        assert segs[0].start == 0 and segs[-1].end == n
        assert all(s.end > s.start for s in segs)
        assert all(a.end == b.start for a, b in itertools.pairwise(segs))
        bounds = boundaries_of(segs)
        assert all(0 < b < n for b in bounds)
        keys = sc.keyframes[idx]
        assert keys == sorted(set(keys)) and all(0 < k < n for k in keys)
        tiles = segments_from_boundaries(keys, n)
        assert tiles[0][0] == 0 and tiles[-1][1] == n
        assert np.all(np.diff(np.asarray(tiles), axis=1) > 0)


def test_eval_segments_cli_scores_the_baseline_in_the_same_run(scored: dict[str, Scored],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from carve.cli.main import main as carve_main

    sc = scored["two_arms"]
    rc = carve_main(["eval-segments", "--source", str(sc.root), "--truth", str(sc.root / "ground_truth_events.json"),
                     "--tolerance-s", "0.1", "--baseline", "keyframes", "--bootstrap", "200", "--json"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["method"] == "carve" and rep["tolerance_s"] == 0.1 and rep["tolerance_frames"] == {"30": 3}
    base = rep["baselines"]["keyframes"]
    for got, method in ((rep, "carve"), (base, "keyframes")):
        want = sc.report(method)["overall"]
        assert got["overall"]["boundary_f1"] == pytest.approx(want["boundary_f1"])
        lo, hi = got["overall"]["boundary_f1_ci"]
        assert lo <= got["overall"]["boundary_f1"] <= hi
    cmp = rep["comparison"]["keyframes"]
    assert cmp["diff"] == pytest.approx(rep["overall"]["boundary_f1"] - base["overall"]["boundary_f1"])
