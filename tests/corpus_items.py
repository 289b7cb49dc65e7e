"""The conformance corpus: data that other programs wrote, and the truth their generators know.

Each `CorpusItem` names a dataset under tests/fixtures/ or tests/corpus/ (the script that made
it sits beside it, with a README saying how its truth is derived), how Carve reads it, and the
ground truth as the plain list form `carve eval-segments --truth` takes
(`[{"episode_index", "boundaries", "phases", ...}]`). The truth always comes from the
generating program's own phase structure (an expert's sub-goals or waypoints, the fixture
script's phases), never from Carve's rules.

`tests/test_corpus_conformance.py` runs every command on every item; bench/corpus_quality.py
writes the per-item tables of BENCHMARKS.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CORPUS = TESTS / "corpus"
FIXTURES = TESTS / "fixtures" / "lerobot"


@dataclass(frozen=True)
class CorpusItem:
    """One dataset of the corpus: where it is, who wrote it, what it exercises."""

    name: str
    source: Path
    format: str  # "lerobot" | "hdf5"
    truth: Path  # plain-list truth (or a fixture truth converted by `truth_list`)
    written_by: str
    conventions: str  # the naming/unit conventions it carries
    third_party_sim: bool = False  # scripted-expert demonstrations of a third-party simulator
    arms: int = 1
    video: str = "mp4"  # "mp4" (LeRobot video files, stream-copyable) or "frames" (images in HDF5)
    tags: tuple[str, ...] = field(default_factory=tuple)
    # boundary F1 at +-0.1 s against `truth` that the shipped configuration must keep: the level it
    # reached when the item was added, less 0.02 (a regression guard; issue 18's target for
    # third-party-simulator items is 0.85, and BENCHMARKS.md says where it is not met)
    f1_floor: float = 0.0

    @property
    def lerobot_written(self) -> bool:
        return self.written_by.startswith("lerobot")

    def exists(self) -> bool:
        return self.source.exists() and self.truth.exists()


ITEMS: list[CorpusItem] = [
    CorpusItem("lerobot044_v30", FIXTURES / "v30", "lerobot", FIXTURES / "v30" / "ground_truth.json",
               "lerobot 0.4.4 (v3.0, AV1)", "x y z roll pitch yaw pad gripper; gripper metres 0..0.08", f1_floor=0.92),
    CorpusItem("lerobot033_v21", FIXTURES / "v21", "lerobot", FIXTURES / "v21" / "ground_truth.json",
               "lerobot 0.3.3 (v2.1, AV1)", "x y z roll pitch yaw pad gripper; gripper metres 0..0.08", f1_floor=0.92),
    CorpusItem("metaworld", CORPUS / "metaworld" / "dataset", "lerobot", CORPUS / "metaworld" / "truth.json",
               "lerobot 0.4.4 (v3.0, AV1) from Meta-World scripted policies",
               "hand xyz (m), normalised finger opening; 4-d delta actions with grab effort",
               third_party_sim=True, tags=("delta_actions", "subtask_index"), f1_floor=0.82),
    CorpusItem("robomimic_mw", CORPUS / "robomimic_mw" / "demos.hdf5", "hdf5", CORPUS / "robomimic_mw" / "truth.json",
               "h5py in robomimic's layout, from Meta-World scripted policies",
               "robot0_eef_pos, robot0_gripper_qpos (two fingers, m), 7-d OSC delta actions",
               third_party_sim=True, video="frames", tags=("delta_actions",), f1_floor=0.84),
    CorpusItem("aloha_scripted", CORPUS / "aloha_scripted" / "dataset", "lerobot",
               CORPUS / "aloha_scripted" / "truth.json",
               "lerobot 0.4.4 (v3.0, AV1) from gym-aloha with ACT's scripted policies",
               "ALOHA left_*/right_* 14-d joints (rad), normalised grippers 0..1, 50 fps",
               third_party_sim=True, arms=2, tags=("joint_only", "two_arm"), f1_floor=0.75),
    CorpusItem("aloha_hdf5", CORPUS / "aloha_hdf5" / "episodes", "hdf5", CORPUS / "aloha_hdf5" / "truth.json",
               "h5py in ACT's episode_N.hdf5 layout, from gym-aloha with ACT's scripted policies",
               "/observations/qpos 14-d, normalised grippers, /action", third_party_sim=True, arms=2,
               video="frames", tags=("joint_only", "two_arm"), f1_floor=0.78),
    CorpusItem("so100_joint", CORPUS / "so100_joint" / "dataset", "lerobot", CORPUS / "so100_joint" / "truth.json",
               "lerobot 0.4.4 (v3.0, AV1), one arm of gym-aloha's scripted transfer in SO-100 conventions",
               "shoulder_pan.pos ... gripper.pos; degrees, gripper 0..100; 30 fps", third_party_sim=True,
               tags=("joint_only", "degrees"), f1_floor=0.80),
    CorpusItem("maniskill_panda", CORPUS / "maniskill_heldout" / "dataset", "lerobot",
               CORPUS / "maniskill_heldout" / "truth.json",
               "lerobot 0.4.4 (v3.0, AV1) from ManiSkill 3's motion-planning solutions",
               "Franka Panda: TCP x y z (m) and panda_joint1..7 (rad), finger opening (m); joint-position "
               "targets and gripper_open (+-1) as actions; 20 fps", third_party_sim=True,
               tags=("joint_targets", "subtask_index"), f1_floor=0.95),
]

BY_NAME = {it.name: it for it in ITEMS}


def truth_list(item: CorpusItem) -> list[dict]:
    """The item's truth as the plain list form; a lerobot fixture's own file (phases as
    `{name: [first, last]}` per episode) is converted: a boundary is each phase's first frame."""
    data = json.loads(item.truth.read_text())
    if isinstance(data, list):
        return data
    out = []
    for ep in data["episodes"]:
        phases = sorted(ep["phases"].items(), key=lambda kv: kv[1][0])
        out.append({"episode_index": int(ep["episode_index"]), "length": int(ep["length"]),
                    "fps": float(data["fps"]), "task": ep.get("task", ""),
                    "boundaries": [int(span[0]) for _, span in phases[1:]],
                    "phases": [name for name, _ in phases]})
    return out


def write_truth_list(item: CorpusItem, path: Path) -> Path:
    """`truth_list(item)` written as JSON to `path` (for `carve eval-segments --truth`)."""
    path.write_text(json.dumps(truth_list(item)))
    return path
