"""The Meta-World sets' state-checked caption truth (tests/corpus/metaworld_tasks/state_truth.py, issue 25).

The script itself needs the simulator venv; here its relabelling is checked on hand-made frames, and the
committed `truth_state.json` files against the sets' primary truth: only the two rules of its module doc
may separate them.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from carve.captioners.verb_classes import verb_class

CORPUS = Path(__file__).resolve().parent / "corpus"
SETS = ("metaworld_tasks", *(f"metaworld_heldout{s}" for s in ("", "2", "3", "4", "5", "6")))
PART = ("pull", "push", "turn", "wipe")


def _state_truth():
    path = CORPUS / "metaworld_tasks" / "state_truth.py"
    spec = importlib.util.spec_from_file_location("mw_state_truth", path)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(path.parent))
    return mod


def _frames(ep: dict) -> list[str]:
    names = [""] * ep["length"]
    for p in ep["phases"]:
        names[p["start"]:p["end"]] = [p["name"]] * (p["end"] - p["start"])
    return names


def test_relabel_follows_the_two_rules() -> None:
    st = _state_truth()
    names = ["press the button"] * 3 + ["reach above the button"] * 2 + ["press the button"] * 3 + ["grasp it"] * 2
    works = np.array([0, 0, 0, 1, 0, 1, 1, 0, 1, 0], bool)
    touches = np.array([0, 1, 0, 1, 0, 1, 1, 0, 1, 1], bool)
    moves = np.array([0, 0, 0, 1, 0, 1, 1, 0, 1, 1], bool)
    out, r1, r2 = st.relabel(names, {"works": works, "touches": touches, "moves": moves}, "push the button in")
    assert out == ["reach toward the part", "press the button", "reach toward the part",  # rule 2; frame 1 touches
                   "push the button in", "reach above the button",  # rule 1 (a reach that works the part)
                   "press the button", "press the button", "press the button",  # after the first work: kept
                   "grasp it", "grasp it"]  # a grasp is no approach or carry: kept though it works
    assert (r1, r2) == (1, 2)
    never = {"works": np.zeros(10, bool), "touches": np.zeros(10, bool), "moves": np.zeros(10, bool)}
    assert st.relabel(names, never, "push the button in")[0] == names  # never worked: nothing changes


def test_phases_tile_the_episode() -> None:
    st = _state_truth()
    bounds, phases = st.phases_of(["a", "a", "b", "b", "b", "a"], fps=20)
    assert bounds == [2, 5]
    assert [(p["name"], p["start"], p["end"]) for p in phases] == [("a", 0, 2), ("b", 2, 5), ("a", 5, 6)]
    assert phases[1]["start_s"] == 0.1


@pytest.mark.parametrize("item", SETS)
def test_committed_state_truth_differs_only_by_its_rules(item: str) -> None:
    primary = json.loads((CORPUS / item / "truth_carve.json").read_text())
    state = json.loads((CORPUS / item / "truth_state.json").read_text())
    assert [e["episode_index"] for e in state["episodes"]] == [e["episode_index"] for e in primary["episodes"]]
    for a, b in zip(primary["episodes"], state["episodes"], strict=True):
        assert (b["length"], b["task"], b["task_type"]) == (a["length"], a["task"], a["task_type"])
        assert b["phases"][0]["start"] == 0 and b["phases"][-1]["end"] == b["length"]
        assert all(p["end"] == q["start"] for p, q in itertools.pairwise(b["phases"]))
        old, new = _frames(a), _frames(b)
        part_task = verb_class(a["task"]) in PART
        for f, (x, y) in enumerate(zip(old, new, strict=True)):
            if x == y:
                continue
            assert part_task, f"{item} episode {a['episode_index']} ({a['task_type']}) frame {f}: {x!r} -> {y!r}"
            assert (verb_class(x) in ("reach", "lift") and y == a["task"]) or \
                (verb_class(x) in PART and y == "reach toward the part"), (item, a["episode_index"], f, x, y)
