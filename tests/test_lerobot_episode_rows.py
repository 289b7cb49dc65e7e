"""`ingest.sources.lerobot.episode_rows`: one episode's rows of a v3.0 data file (many episodes
per file), read whole once for a small file and kept, filtered for a large one.

The rows must be those of pyarrow's own filtered read whichever way they come; a file rewritten
in place must be read again, not served from the kept copy; a missing file is still missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from carve.ingest.sources import lerobot


def _write(path: Path, episodes: list[int], frames: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ep = np.repeat(np.array(episodes, dtype=np.int64), frames)
    t = pa.table({"episode_index": ep, "frame_index": np.tile(np.arange(frames), len(episodes)),
                  "observation.state": list(rng.normal(size=(len(ep), 3)).astype(np.float32))})
    pq.write_table(t, path, row_group_size=frames)


def _plain(path: Path, e: int) -> pa.Table:
    return pq.read_table(path, filters=pc.field("episode_index") == e)


@pytest.mark.parametrize("max_bytes", [lerobot.WHOLE_FILE_MAX_BYTES, 0])  # kept whole / filtered
def test_an_episodes_rows_are_those_of_a_filtered_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       max_bytes: int):
    monkeypatch.setattr(lerobot, "WHOLE_FILE_MAX_BYTES", max_bytes)
    fs = pafs.LocalFileSystem()
    a, b = tmp_path / "file-000.parquet", tmp_path / "file-001.parquet"
    _write(a, [0, 1, 2], 17, seed=0)
    _write(b, [3, 4], 11, seed=1)
    for path, e in [(a, 0), (a, 2), (b, 4), (a, 1), (b, 3), (a, 7)]:  # 7: in no file -> no rows
        got = lerobot.episode_rows(fs, str(path), e)
        assert got.equals(_plain(path, e)), (path.name, e)
    assert lerobot.episode_rows(fs, str(a), 7).num_rows == 0


def test_a_file_rewritten_in_place_is_read_again(tmp_path: Path):
    fs = pafs.LocalFileSystem()
    path = tmp_path / "file-000.parquet"
    _write(path, [0, 1], 9, seed=0)
    first = lerobot.episode_rows(fs, str(path), 1)
    _write(path, [0, 1], 12, seed=5)  # another size and content
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = lerobot.episode_rows(fs, str(path), 1)
    assert again.num_rows == 12 and again.equals(_plain(path, 1)) and not again.equals(first)


def test_a_missing_file_is_missing(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        lerobot.episode_rows(pafs.LocalFileSystem(), str(tmp_path / "nope.parquet"), 0)
