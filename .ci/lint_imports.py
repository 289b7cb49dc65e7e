"""Check the import contracts of pyproject.toml ([tool.importlinter]) against the installed layout.

The packages live in top-level folders mapped into one `carve.*` namespace by setuptools'
`package-dir`, so the source tree is not itself a `carve` package that import-linter can walk.
This script installs the project (no dependencies) into a scratch folder, which gives the real
`carve/` tree, and runs `lint-imports` there. `make lint` calls it; tests/test_layers.py uses
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_layout(dst: Path) -> Path:
    """Install the project without dependencies into `dst`; return the folder that holds `carve/`."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-compile", "--target", str(dst), str(REPO)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
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
