"""Run every benchmark under bench/ and write BENCHMARKS.md.

Each `bench/bench_<name>.py` exposes `main(argv: list[str] | None = None) -> dict` that runs
the Carve path and a baseline in the same process and returns its measurements, including
a `ratio` (Carve / baseline, >1 = Carve faster unless the bench says otherwise). This runner
calls them in turn (or those named with `--only`), and rewrites the section of BENCHMARKS.md
between the markers with a table per benchmark, the machine, and the command used.

    python -m bench.run_all                    # all (what `make bench` runs)
    python -m bench.run_all --only kmeans shards
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import pkgutil
import platform
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"


def discover() -> list[str]:
    return sorted(m.name[len("bench_") :] for m in pkgutil.iter_modules([str(ROOT / "bench")]) if m.name.startswith("bench_"))


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.1f}"
    if isinstance(v, dict | list):
        return "`" + json.dumps(v)[:200] + "`"
    return str(v)


def render(results: dict[str, dict], command: str) -> str:
    lines = [
        BEGIN,
        f"_Generated {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} by `{command}` on "
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}._",
        "",
    ]
    for name, res in results.items():
        lines.append(f"### {name}")
        if "description" in res:
            lines.append(str(res["description"]))
        cmd = res.get("command", f"python -m bench.bench_{name}")
        lines.append(f"Command: `{cmd}`")
        lines.append("")
        lines.append("| metric | value |")
        lines.append("|---|---|")
        for k, v in res.items():
            if k in ("description", "command"):
                continue
            lines.append(f"| {k} | {_fmt(v)} |")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def write_benchmarks(results: dict[str, dict], command: str, path: Path = ROOT / "BENCHMARKS.md") -> None:
    old = path.read_text() if path.exists() else "# Benchmarks\n\n" + BEGIN + "\n" + END + "\n"
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        # keep sections of benchmarks not run this time
        prev = _parse_previous(rest.split(END, 1)[0])
        prev.update(results)
        new = head + render(prev, command) + tail
    else:
        new = old + "\n" + render(results, command) + "\n"
    path.write_text(new)


def _parse_previous(section: str) -> dict[str, dict]:
    """Recover earlier results (as rendered text) so a partial run does not erase them."""
    out: dict[str, dict] = {}
    cur: str | None = None
    for line in section.splitlines():
        if line.startswith("### "):
            cur = line[4:].strip()
            out[cur] = {}
        elif cur and line.startswith("Command: `"):
            out[cur]["command"] = line[len("Command: `") : -1]
        elif cur and line.startswith("| ") and not line.startswith("| metric") and not line.startswith("|---"):
            parts = [p.strip() for p in line.strip("|").split("|")]
            if len(parts) == 2:
                out[cur][parts[0]] = parts[1]
        elif cur and line and not line.startswith("|") and not line.startswith("_Generated"):
            out[cur].setdefault("description", line)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=None, help="benchmark names (bench_<name>.py)")
    ap.add_argument("--no-write", action="store_true", help="print results, leave BENCHMARKS.md alone")
    args = ap.parse_args(argv)
    names = args.only or discover()
    results: dict[str, dict] = {}
    failed = 0
    for name in names:
        print(f"== bench {name}", flush=True)
        t0 = time.time()
        try:
            mod = importlib.import_module(f"bench.bench_{name}")
            res = mod.main([])
        except Exception:
            traceback.print_exc()
            failed += 1
            continue
        res = dict(res or {})
        res.setdefault("wall_s", round(time.time() - t0, 1))
        # a section kept from an earlier partial run keeps its own time (the header names the last run)
        res.setdefault("finished_utc", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"))
        results[name] = res
        print(json.dumps(res, indent=1, default=str)[:2000], flush=True)
    command = "make bench" if args.only is None else f"python -m bench.run_all --only {' '.join(names)}"
    if not args.no_write and results:
        write_benchmarks(results, command)
        print(f"wrote {ROOT / 'BENCHMARKS.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
