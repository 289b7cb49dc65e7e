"""Top frames of each ingest step from a py-spy profile of `carve run` (in-process executor).

    py-spy record -r 50 -f raw -o prof.txt -- python -m carve run --source D --root R --executor local
    python -m bench.profile_steps prof.txt [--top 8]

py-spy's raw output is one collapsed stack per line (`frame;frame;... count`). For each step
(the frames under `DecodeSegment.process`, `Caption.process`, `Embed.process`) this prints the
step's samples and the functions with the most samples *inclusive* below it (where the time
goes, callees included), as a share of the step's samples: the table of BENCHMARKS.md. Frames of
Python's import machinery are folded into one, `[importing modules]`.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

STEPS = {"decode_segment": "DecodeSegment.process (", "caption": "Caption.process (", "embed": "Embed.process ("}


def _name(frame: str) -> str:
    """`func (path/to/file.py:line)` -> `func (file.py)`; line numbers dropped so lines of one function add up."""
    m = re.match(r"(.*) \((.*?):\d+\)$", frame)
    if not m:
        return frame
    path = m.group(2)
    short = path.split("site-packages/")[-1] if "site-packages/" in path else path.split("/src/")[-1]
    return f"{m.group(1)} ({short})"


def step_of(frames: list[str]) -> tuple[str | None, int]:
    """The step a stack belongs to and the index of its step frame (`<Step>.process`) in the stack."""
    for i, f in enumerate(frames):
        for step, marker in STEPS.items():
            if f.startswith(marker):
                return step, i
    return None, -1


def profile(path: Path, top: int = 8) -> dict[str, dict]:
    """{step: {"samples": n, "top": [(function, share of the step's samples), ...]}}."""
    total: Counter[str] = Counter()
    incl: dict[str, Counter[str]] = {s: Counter() for s in STEPS}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        step, at = step_of(frames)
        if step is None:
            continue
        n = int(count)
        total[step] += n
        below = frames[at + 1:]
        names = {_name(f) for f in below if "(<frozen " not in f}
        if any(f.startswith("_find_and_load (<frozen") for f in below):
            names.add("[importing modules]")  # the import machinery's own frames, folded into one
        for name in names:
            incl[step][name] += n
    out = {}
    for step in STEPS:
        n = total[step]
        rows = [(f, round(c / n, 3)) for f, c in incl[step].most_common(top * 3) if n]
        out[step] = {"samples": n, "top": rows[:top]}
    return out


def main(argv: list[str] | None = None) -> dict[str, dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile", type=Path)
    ap.add_argument("--top", type=int, default=8)
    args = ap.parse_args(argv)
    res = profile(args.profile, args.top)
    for step, r in res.items():
        print(f"{step}: {r['samples']} samples")
        for f, share in r["top"]:
            print(f"  {share:6.1%}  {f}")
    return res


if __name__ == "__main__":
    main()
