"""Events of at least 0.15 s from an expert's full phase sequence (the corpus items' `truth.json`).

An expert's sub-goal can change faster than anything one would call an event: Meta-World's
pick-place policy switches from "descend (gripper open)" to "descend (gripper closing)" to
"wait for grasp" to "carry" within 0.15 s, and its pick-out-of-hole policy chatters between
"descend" and "lift" while a condition hovers at its threshold. The issue sets the resolution
the segmentation must reach at 0.15 s (3 frames at 20 fps), so each item's primary truth keeps
the expert's phases with these rules applied, and `truth_all.json` keeps every change:

0. a phase shorter than `min_s` between two phases of the same sub-goal is an interruption of
   that sub-goal, and the three are one phase (a condition flickering at its threshold: the
   expert leaves "descend" for 0.05 s and comes back);
1. a run of consecutive phases that are each shorter than `min_s` becomes one compound phase
   (names joined with " + "): the expert passing quickly through several sub-goals;
2. a compound (or a lone short phase) still shorter than `min_s` joins the phase it leads into
   (the previous one when it is the last phase of the episode).

No Carve code is involved; the rule reads only the generator's boundaries and the fps.

    python tests/corpus/min_phase.py tests/corpus/metaworld/truth_all.json tests/corpus/metaworld/truth.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

MIN_PHASE_S = 0.15


def merge_short(bounds: list[int], phases: list[str], length: int, fps: float,
                min_s: float = MIN_PHASE_S) -> tuple[list[int], list[str]]:
    """(boundaries, phase names) with phases shorter than `min_s` merged as the module says."""
    min_frames = math.ceil(min_s * fps - 1e-9)
    starts = [0, *bounds]
    ends = [*bounds, length]
    spans = [[s, e, [p]] for s, e, p in zip(starts, ends, phases, strict=True)]
    # 0. A b A -> A for a short b
    i = 1
    while i + 1 < len(spans):
        if spans[i][1] - spans[i][0] < min_frames and spans[i - 1][2] == spans[i + 1][2]:
            spans[i - 1][1] = spans[i + 1][1]
            del spans[i : i + 2]
        else:
            i += 1
    # 1. runs of short phases -> one compound phase
    grouped: list[list] = []
    for s, e, names in spans:
        short = e - s < min_frames
        if short and grouped and grouped[-1][3]:
            grouped[-1][1] = e
            grouped[-1][2] += names
        else:
            grouped.append([s, e, list(names), short])
    # 2. a compound still too short joins the phase it leads into (the previous one at the end)
    out: list[list] = []
    i = 0
    while i < len(grouped):
        s, e, names, _ = grouped[i]
        if e - s < min_frames and len(grouped) > 1:
            if i + 1 < len(grouped):
                nxt = grouped[i + 1]
                grouped[i + 1] = [s, nxt[1], names + nxt[2], False]
            else:
                out[-1][1] = e
                out[-1][2] += names
            i += 1
            continue
        out.append([s, e, names])
        i += 1
    return [o[0] for o in out[1:]], [" + ".join(o[2]) for o in out]


def convert(entries: list[dict], min_s: float = MIN_PHASE_S) -> list[dict]:
    """Every entry of a plain-list truth with its phases merged (other keys kept)."""
    out = []
    for ep in entries:
        b, p = merge_short([int(x) for x in ep["boundaries"]], list(ep["phases"]), int(ep["length"]),
                           float(ep["fps"]), min_s)
        new = {k: v for k, v in ep.items() if k not in ("boundaries", "phases", "phase_frames", "phase_gripper")}
        new.update(boundaries=b, phases=p, min_phase_s=min_s,
                   phase_frames=[[s, e] for s, e in zip([0, *b], [*b, int(ep["length"])], strict=True)])
        out.append(new)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("full", type=Path, help="truth with every expert phase (truth_all.json)")
    ap.add_argument("out", type=Path, help="truth with phases >= --min-s (truth.json)")
    ap.add_argument("--min-s", type=float, default=MIN_PHASE_S)
    a = ap.parse_args(argv)
    a.out.write_text(json.dumps(convert(json.loads(a.full.read_text()), a.min_s), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
