"""One `carve.*` namespace under src/ and layered packages.

After install, `carve.<package>` imports and the old top-level names (`storage`, `pipeline`,
...) do not; plain `lint-imports` (the contracts of pyproject.toml over the installed `src/carve`)
passes, and an upward import (or the house importing the simulator) breaks it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint_imports(pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    """`lint-imports` with the project's contracts, on the installed package or on a copy at `pythonpath`."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([str(LINT), "--config", str(REPO / "pyproject.toml"), "--no-cache"], cwd=REPO, env=env,
                          capture_output=True, text=True)


def test_one_namespace_after_install(tmp_path: Path):
    code = (
        "import importlib\n"
        "from carve.trainer.data import EventStream\n"
        "from carve.storage.root import open_root\n"
        "for old in ('storage', 'pipeline', 'trainer', 'clustering', 'captioners', 'sim'):\n"
        "    try:\n"
        "        importlib.import_module(old)\n"
        "    except ModuleNotFoundError:\n"
        "        continue\n"
        "    raise SystemExit(f'top-level {old} is importable')\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([sys.executable, "-m", "carve", "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0 and "synth" in res.stdout and "eval-segments" in res.stdout


def test_the_package_is_the_src_tree_without_a_path_trick():
    import carve

    assert Path(carve.__file__).resolve().parent == REPO / "src" / "carve"
    # from the repository root, with the current directory on sys.path (no `python -P`), it is the same package
    res = subprocess.run([sys.executable, "-c", "import carve, carve.ingest.segment; print(carve.__file__)"], cwd=REPO,
                         capture_output=True, text=True)
    assert res.returncode == 0 and Path(res.stdout.strip()).resolve() == REPO / "src" / "carve" / "__init__.py", res


def test_contracts_hold():
    res = lint_imports()
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 kept, 0 broken" in res.stdout


@pytest.mark.parametrize(
    ("victim", "line", "message"),
    [
        ("storage/events.py", "import carve.cli.main", "carve.storage is not allowed to import carve.cli"),
        ("ingest/segment.py", "from carve.clustering import kmeans", "carve.ingest is not allowed to import carve.clustering"),
        ("shard/balance.py", "import carve.sim.toy", "carve.shard.balance -> carve.sim.toy"),
    ],
)
def test_an_upward_import_breaks_the_contract(tmp_path: Path, victim: str, line: str, message: str):
    copy = tmp_path / "src"
    shutil.copytree(REPO / "src", copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    f = copy / "carve" / victim
    f.write_text(f.read_text() + f"\n{line}\n")
    res = lint_imports(copy)
    assert res.returncode != 0
    assert message in res.stdout, res.stdout
