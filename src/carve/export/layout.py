"""LeRobot v3.0 on-disk layout: every path is one named constant, as in lerobot's own
`lerobot/datasets/utils.py` (0.4.4), plus the `info.json` document and the feature entries.

```
meta/info.json                                  written LAST (a folder without it is unfinished)
meta/stats.json  meta/tasks.parquet  meta/subtasks.parquet
meta/episodes/chunk-000/file-000.parquet        one row per episode
meta/carve_events.parquet                       Carve sidecar: one row per event (span, captions, cluster)
data/chunk-000/file-000.parquet                 several episodes per file (one row group each)
videos/<key>/chunk-000/file-000.mp4             the same episodes concatenated; the episodes meta
                                                holds each episode's from/to timestamp in the file
```

`tasks.parquet` and `subtasks.parquet` are indexed by the text (index name `task` / `subtask`)
with one column `task_index` / `subtask_index`, row i holding index i: lerobot looks a
frame's text up positionally (`meta.tasks.iloc[task_index].name`).
"""

from __future__ import annotations

import copy
from typing import Any

CODEBASE_VERSION = "v3.0"

DEFAULT_CHUNK_SIZE = 1000  # max files per chunk folder
DEFAULT_DATA_FILE_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILE_SIZE_IN_MB = 200

INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
EPISODES_DIR = "meta/episodes"
DATA_DIR = "data"
VIDEO_DIR = "videos"
CHUNK_FILE_PATTERN = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DEFAULT_TASKS_PATH = "meta/tasks.parquet"
DEFAULT_SUBTASKS_PATH = "meta/subtasks.parquet"
DEFAULT_EPISODES_PATH = EPISODES_DIR + "/" + CHUNK_FILE_PATTERN + ".parquet"
DEFAULT_DATA_PATH = DATA_DIR + "/" + CHUNK_FILE_PATTERN + ".parquet"
DEFAULT_VIDEO_PATH = VIDEO_DIR + "/{video_key}/" + CHUNK_FILE_PATTERN + ".mp4"

# Carve's sidecar: the exported events (span, caption, next caption, cluster, dup_of, weight)
CARVE_EVENTS_PATH = "meta/carve_events.parquet"

DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
SUBTASK_FEATURE = {"dtype": "int64", "shape": [1], "names": None}
SAMPLING_WEIGHT_FEATURE = {"dtype": "float32", "shape": [1], "names": None}

STAT_KEYS = ("min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99")
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}

# PyAV encoder name -> the codec's canonical name as lerobot's `get_video_info` records it
CANONICAL_CODEC = {"libx264": "h264", "libsvtav1": "av1", "libaom-av1": "av1", "libx265": "hevc"}


def chunk_file(n: int, chunks_size: int) -> tuple[int, int]:
    """(chunk_index, file_index) of the n-th file (lerobot's `update_chunk_file_indices` order)."""
    return divmod(int(n), int(chunks_size))


def vector_feature(dim: int, names: list[str]) -> dict[str, Any]:
    return {"dtype": "float32", "shape": [int(dim)], "names": list(names)}


def video_feature(height: int, width: int, fps: int | float, codec: str) -> dict[str, Any]:
    """A `video` feature with the `info` block lerobot's `get_video_info` writes. `video.fps` is
    recorded as given: an int in an export, a float in the simulator's datasets."""
    return {
        "dtype": "video",
        "shape": [int(height), int(width), 3],
        "names": ["height", "width", "channels"],
        "info": {
            "video.height": int(height),
            "video.width": int(width),
            "video.codec": codec,
            "video.pix_fmt": "yuv420p",
            "video.is_depth_map": False,
            "video.fps": fps,
            "video.channels": 3,
            "has_audio": False,
        },
    }


def info_json(
    *,
    fps: int,
    robot_type: str | None,
    features: dict[str, dict[str, Any]],
    total_episodes: int,
    total_frames: int,
    total_tasks: int,
    has_videos: bool,
    chunks_size: int = DEFAULT_CHUNK_SIZE,
    data_files_size_in_mb: int = DEFAULT_DATA_FILE_SIZE_IN_MB,
    video_files_size_in_mb: int = DEFAULT_VIDEO_FILE_SIZE_IN_MB,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`meta/info.json` as lerobot's `create_empty_dataset_info` + `save_episode` leave it.

    `features` gets lerobot's DEFAULT_FEATURES appended, and every non-video feature carries
    the frame rate (as lerobot 0.4.x writes it)."""
    feats = {**copy.deepcopy(features), **copy.deepcopy(DEFAULT_FEATURES)}
    feats = {k: (f if f["dtype"] == "video" else {**f, "fps": int(fps)}) for k, f in feats.items()}
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": int(total_episodes),
        "total_frames": int(total_frames),
        "total_tasks": int(total_tasks),
        "chunks_size": int(chunks_size),
        "data_files_size_in_mb": int(data_files_size_in_mb),
        "video_files_size_in_mb": int(video_files_size_in_mb),
        "fps": int(fps),
        "splits": {"train": f"0:{int(total_episodes)}"},
        "data_path": DEFAULT_DATA_PATH,
        "video_path": DEFAULT_VIDEO_PATH if has_videos else None,
        "features": feats,
    }
    if extra:
        info.update(extra)
    return info
