"""Helpers every benchmark shares: a fresh output folder, stopping the servers a benchmark started."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path


def fresh_dir(path: str | Path, keep: bool = False) -> Path:
    """`path` as an existing folder, emptied first unless `keep`."""
    out = Path(path)
    if out.exists() and not keep:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def stop(procs: Iterable[subprocess.Popen], timeout: float = 30) -> None:
    """Terminate each process, killing it when it does not end within `timeout` seconds."""
    for p in procs:
        p.terminate()
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
