"""Check the import contracts of pyproject.toml ([tool.importlinter]) against the installed layout.

The packages live in top-level folders mapped into one `carve.*` namespace by setuptools'
`package-dir`, so the source tree is not itself a `carve` package that import-linter can walk.
This script lays the Python files out in a scratch folder as an install would (from the same
`package-dir` table of pyproject.toml), which gives the real `carve/` tree, and runs
`lint-imports` there. `make lint` calls it; tests/test_layers.py uses
`build_layout` and `check` to show that an upward import breaks the contract.

    python .ci/lint_imports.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_layout(dst: Path) -> Path:
    """Copy the Python files of every `package-dir` entry to `dst/carve/...`; return `dst`."""
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for pkg, folder in sorted(cfg.items()):  # "carve" before "carve.x"
        target = dst.joinpath(*pkg.split("."))
        shutil.copytree(REPO / folder, target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "tests"))
    return dst


def check(layout: Path, config: Path = REPO / "pyproject.toml") -> subprocess.CompletedProcess:
    """Run lint-imports on the layout with the project's contracts; the caller reads returncode/stdout."""
    exe = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(layout)}
    return subprocess.run(
        [str(exe), str(config), "--no-cache"], cwd=layout, env=env, capture_output=True, text=True,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", default=None, help="build the layout here and keep it")
    args = ap.parse_args()
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="carve-layout-"))
    try:
        res = check(build_layout(tmp))
        out = res.stdout + res.stderr
        # keep the report, drop the banner
        print(out[out.find("Contracts"):] if "Contracts" in out else out)
        return res.returncode
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
