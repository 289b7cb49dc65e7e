"""What `carve`'s start-up imports: building the command parser (every command does) must not pull
in heavy libraries only one command needs (scipy.optimize for `carve eval-segments`, torch,
sentence-transformers, Ray). Checked in a fresh interpreter's `sys.modules`."""

from __future__ import annotations

import json
import subprocess
import sys


def test_building_the_parser_imports_no_heavy_library() -> None:
    code = ("from carve.cli.main import build_parser\nbuild_parser()\n"
            "import sys, json\nprint(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True).stdout
    mods = set(json.loads(out.splitlines()[-1]))
    assert "carve.ingest.eval_segments" in mods  # the eval-segments command is registered
    assert not {"scipy.optimize", "torch", "sentence_transformers", "transformers", "ray"} & mods
