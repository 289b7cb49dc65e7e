"""One `carve.*` namespace and layered packages.

After install, `carve.<package>` imports and the old top-level names (`storage`, `pipeline`,
...) do not; the import contracts of pyproject.toml hold on the installed layout, and an
upward import (or the house importing the simulator) breaks them.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _lint_module():
    spec = importlib.util.spec_from_file_location("lint_imports", REPO / ".ci" / "lint_imports.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _lint_module().build_layout(tmp_path_factory.mktemp("layout"))


def test_contracts_hold(layout: Path):
    res = _lint_module().check(layout)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 kept, 0 broken" in res.stdout


@pytest.mark.parametrize(
    ("victim", "line", "message"),
    [
        ("storage/events.py", "import carve.cli.main", "carve.storage is not allowed to import carve.cli"),
        ("ingest/segment.py", "from carve.clustering import kmeans", "carve.ingest is not allowed to import carve.clustering"),
        ("clustering/balance.py", "import carve.sim.toy", "carve.clustering.balance -> carve.sim.toy"),
    ],
)
def test_an_upward_import_breaks_the_contract(layout: Path, tmp_path: Path, victim: str, line: str, message: str):
    import shutil

    copy = tmp_path / "layout"
    shutil.copytree(layout, copy)
    f = copy / "carve" / victim
    f.write_text(f.read_text() + f"\n{line}\n")
    res = _lint_module().check(copy)
    assert res.returncode != 0
    assert message in res.stdout, res.stdout
