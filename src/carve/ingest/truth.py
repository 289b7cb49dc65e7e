"""Ground truth for `carve eval-segments --truth`: three forms, detected, normalised into one.

`read_truth(path)` accepts (docs/FORMATS.md, "Ground truth for `carve eval-segments`"):

a. Carve's own `ground_truth_events.json`, as `carve synth` writes it (a JSON object with
   `generator` and an `episodes` list); its entries are kept as they are.
b. Annotations of your own in JSON: a list of `{"episode_index": int, "boundaries": [int, ...],
   "phases": [str, ...]?}` (boundaries are the frames where a new phase starts; optional
   `length`, `fps`, `task`, `task_type`, ...), the same list under `{"episodes": [...]}` (with
   an optional top-level `fps` and `dataset`), or JSON Lines with one such entry per line. A
   boundary 0 (the first phase's start) is dropped; `phases`, when names, number one more
   than the remaining boundaries.
c. A LeRobot dataset folder (codebase v2.0/v2.1/v3.0; local or a pyarrow.fs URI such as
   `s3://bucket/ds`) whose frames carry a per-frame `subtask_index` (lerobot's annotation
   tools and `carve export` write it): the boundaries of an episode are the frames
   (`frame_index`, local to the episode) where `subtask_index` changes, the phases the
   subtask texts of `meta/subtasks.parquet` (or the indices when it is absent), the length
   the episode's frame count and the fps `meta/info.json`'s.

All three come back as one dict, the form `evaluate` scores: `{"form": "carve" | "json" |
"lerobot", "path", "dataset", "fps", "episodes": [{"episode_index", "boundaries" (sorted,
> 0), "length" | None, "fps" | None, "task_type", "phases"?, ...}]}`. A plain entry without
`length` (or without any fps) is completed from the episodes being scored by
`complete_truth(truth, info, where)`, `info` being episode_index -> {"length", "fps"} of the
catalog (`--root`) or of the dataset (`--source`).

Anything else raises `TruthError` (a `CarveError` and a `ValueError`): one message naming the
file, what was wrong, and the three forms `--truth` takes.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from typing import Any

import numpy as np

from carve.core.errors import CarveError

FORMS_HELP = (
    "--truth takes (a) Carve's ground_truth_events.json from `carve synth`, "
    "(b) JSON annotations: a list (or JSON Lines, or {\"episodes\": [...]}) of "
    "{\"episode_index\": int, \"boundaries\": [frame, ...], \"phases\": [name, ...]?}, "
    "or (c) a LeRobot v2.1/v3.0 dataset folder whose frames carry a 'subtask_index' column"
)
LEROBOT_VERSIONS = ("v2.0", "v2.1", "v3.0")
SUBTASKS_PATH = "meta/subtasks.parquet"


class TruthError(CarveError, ValueError):
    """Ground truth that cannot be read; the message names the file, the reason and the forms."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"ground truth {path}: {reason}; {FORMS_HELP}")


# --------------------------------------------------------------------------------------------
# Entry point


def read_truth(path: str | Any) -> dict[str, Any]:
    """The ground truth at `path` (a file or LeRobot folder, local or a URI) in the normalised
    form of the module docstring; `TruthError` when it is none of the three forms."""
    import pyarrow.fs as pafs

    from carve.storage.fs import join, resolve

    shown = str(path)
    try:
        fs, p = resolve(shown)
        info = fs.get_file_info(p)
    except (OSError, ValueError) as e:
        raise TruthError(shown, f"cannot be opened ({e})") from None
    if info.type == pafs.FileType.NotFound:
        raise TruthError(shown, "does not exist")
    if info.type == pafs.FileType.Directory:
        if fs.get_file_info(join(p, "meta/info.json")).type != pafs.FileType.File:
            raise TruthError(shown, "is a folder without meta/info.json, so not a LeRobot dataset")
        return _read_lerobot(fs, p, shown)
    try:
        with fs.open_input_stream(p) as f:
            raw = f.read()
    except OSError as e:
        raise TruthError(shown, f"cannot be read ({e})") from None
    return _from_json(_parse_json(raw, shown), shown)


# --------------------------------------------------------------------------------------------
# JSON forms (a, b)


def _parse_json(raw: bytes, shown: str) -> Any:
    """The JSON document, or the list of a JSON Lines file's objects."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TruthError(shown, f"is not UTF-8 text ({e})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as whole:
        lines = [(n, s) for n, s in enumerate(text.splitlines(), 1) if s.strip()]
        if len(lines) < 2:
            raise TruthError(shown, f"is not valid JSON ({whole})") from None
        rows = []
        for n, s in lines:
            try:
                row = json.loads(s)
            except json.JSONDecodeError as e:
                raise TruthError(shown, f"is neither JSON ({whole}) nor JSON Lines (line {n}: {e})") from None
            if not isinstance(row, dict):
                raise TruthError(shown, f"JSON Lines line {n} is {_kind(row)}, not an object with "
                                        "'episode_index' and 'boundaries'") from None
            row["__line__"] = n
            rows.append(row)
        return rows


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "a JSON boolean"
    if isinstance(v, (int, float)):
        return "a JSON number"
    if isinstance(v, str):
        return "a JSON string"
    if v is None:
        return "JSON null"
    if isinstance(v, list):
        return "a JSON list"
    return "a JSON object"


def _from_json(data: Any, shown: str) -> dict[str, Any]:
    if isinstance(data, list):
        entries, where, top = data, "entry {i}", {}
    elif isinstance(data, dict) and "episodes" in data:
        if not isinstance(data["episodes"], list):
            raise TruthError(shown, f"'episodes' is {_kind(data['episodes'])}, not a list of episodes")
        entries, where, top = data["episodes"], "episodes[{i}]", data
    elif isinstance(data, dict) and "episode_index" in data and "boundaries" in data:
        entries, where, top = [data], "the entry", {}
    elif isinstance(data, dict):
        keys = ", ".join(sorted(map(str, data))[:8]) or "none"
        raise TruthError(shown, f"is a JSON object with no 'episodes' list and no 'episode_index'/'boundaries' "
                                f"(its keys: {keys})")
    else:
        raise TruthError(shown, f"is {_kind(data)}, not a list of episodes or an object with an 'episodes' list")
    if not entries:
        raise TruthError(shown, "lists no episodes")
    form = "carve" if isinstance(top, dict) and "generator" in top else "json"
    top_fps = _fps(top.get("fps"), shown, "the top-level 'fps'") if isinstance(top, dict) else None
    episodes: list[dict[str, Any]] = []
    seen: dict[int, str] = {}
    for i, e in enumerate(entries):
        label = f"line {e['__line__']}" if isinstance(e, dict) and "__line__" in e else where.format(i=i)
        ep = _entry(e, label, shown)
        if ep["episode_index"] in seen:
            raise TruthError(shown, f"{label} repeats episode_index {ep['episode_index']} "
                                    f"(already given by {seen[ep['episode_index']]})")
        seen[ep["episode_index"]] = label
        episodes.append(ep)
    dataset = top.get("dataset") if isinstance(top, dict) else None
    return {"form": form, "path": shown, "dataset": str(dataset) if dataset is not None else None,
            "fps": top_fps, "episodes": episodes}


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _fps(v: Any, shown: str, label: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        raise TruthError(shown, f"{label} is {v!r}; expected a frame rate > 0")
    return float(v)


def _entry(e: Any, label: str, shown: str) -> dict[str, Any]:
    """One validated, normalised episode entry."""
    if not isinstance(e, dict):
        raise TruthError(shown, f"{label} is {_kind(e)}, not an object with 'episode_index' and 'boundaries'")
    if "episode_index" not in e:
        raise TruthError(shown, f"{label} has no 'episode_index' (expected an integer)")
    idx = e["episode_index"]
    if not _is_int(idx) or idx < 0:
        raise TruthError(shown, f"{label} has episode_index {idx!r}; expected an integer >= 0")
    label = f"{label} (episode {idx})"
    if "boundaries" not in e:
        raise TruthError(shown, f"{label} has no 'boundaries' (expected a list of frame indices)")
    bounds = e["boundaries"]
    if not isinstance(bounds, list):
        raise TruthError(shown, f"{label}: 'boundaries' is {_kind(bounds)}; expected a list of frame indices")
    bad = [b for b in bounds if not _is_int(b)]
    if bad:
        raise TruthError(shown, f"{label}: boundary {bad[0]!r} is not an integer frame index")
    neg = [b for b in bounds if b < 0]
    if neg:
        raise TruthError(shown, f"{label}: boundary {neg[0]} is negative")
    if any(b <= a for a, b in itertools.pairwise(bounds)):
        raise TruthError(shown, f"{label}: boundaries {bounds} are not strictly increasing "
                                "(sorted, each frame once)")
    bounds = [int(b) for b in bounds if b > 0]  # frame 0 starts the first phase: not a boundary
    length = e.get("length")
    if length is not None and (not _is_int(length) or length <= 0):
        raise TruthError(shown, f"{label}: length {length!r} is not a positive integer")
    if length is not None and bounds and bounds[-1] >= length:
        raise TruthError(shown, f"{label}: boundary {bounds[-1]} is not inside the episode's {length} frames")
    fps = _fps(e.get("fps"), shown, f"{label}: 'fps'")
    phases = e.get("phases")
    if phases is not None:
        if not isinstance(phases, list):
            raise TruthError(shown, f"{label}: 'phases' is {_kind(phases)}; expected a list of phase names")
        if all(isinstance(p, str) for p in phases):
            if len(phases) != len(bounds) + 1:
                raise TruthError(shown, f"{label}: {len(phases)} phase names for {len(bounds)} boundaries; "
                                        f"expected {len(bounds) + 1} (one per phase)")
        elif not all(isinstance(p, dict) and isinstance(p.get("name"), str) for p in phases):
            raise TruthError(shown, f"{label}: 'phases' must be phase names (strings) or objects with a 'name'")
    out = {k: v for k, v in e.items() if k != "__line__"}
    out.update(episode_index=int(idx), boundaries=bounds, length=None if length is None else int(length), fps=fps,
               task_type=str(e.get("task_type", "unknown")))
    return out


# --------------------------------------------------------------------------------------------
# LeRobot form (c)


def _read_lerobot(fs: Any, root: str, shown: str) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from carve.storage.fs import join

    try:
        with fs.open_input_stream(join(root, "meta/info.json")) as f:
            info = json.loads(f.read().decode())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TruthError(shown, f"meta/info.json cannot be read as JSON ({e})") from None
    version = str(info.get("codebase_version", "")) if isinstance(info, dict) else ""
    if version not in LEROBOT_VERSIONS:
        raise TruthError(shown, f"LeRobot codebase_version {version or '(none)'!r} is not one of "
                                f"{', '.join(LEROBOT_VERSIONS)}")
    fps = _fps(info.get("fps"), shown, "meta/info.json 'fps'")
    data_dir = join(root, "data")
    try:
        files = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(data_dir, recursive=True))
                       if i.type == pafs.FileType.File and i.path.endswith(".parquet"))
    except (FileNotFoundError, OSError):
        files = []
    if not files:
        raise TruthError(shown, "LeRobot dataset with no data/**/*.parquet frame files")
    rel = {f: f[len(root):].lstrip("/") for f in files}
    tables = []
    for f in files:
        try:
            names = pq.read_schema(f, filesystem=fs).names
        except (OSError, pa.ArrowInvalid) as e:
            raise TruthError(shown, f"cannot read {rel[f]} ({e})") from None
        if "subtask_index" not in names:
            cols = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise TruthError(shown, f"LeRobot {version} dataset without a per-frame 'subtask_index' column "
                                    f"({rel[f]} has {cols})")
        if "episode_index" not in names:
            raise TruthError(shown, f"{rel[f]} has no 'episode_index' column")
        want = [c for c in ("episode_index", "frame_index", "subtask_index") if c in names]
        try:
            t = pq.read_table(f, columns=want, filesystem=fs)
        except (OSError, pa.ArrowInvalid) as e:
            raise TruthError(shown, f"cannot read {rel[f]} ({e})") from None
        if "frame_index" not in t.column_names:  # row order within the file
            t = t.append_column("frame_index", pa.array(np.arange(t.num_rows), pa.int64()))
        tables.append(t.select(["episode_index", "frame_index", "subtask_index"])
                      .cast(pa.schema([("episode_index", pa.int64()), ("frame_index", pa.int64()),
                                       ("subtask_index", pa.int64())])))
    table = pa.concat_tables(tables)
    table = table.take(pc.sort_indices(table, [("episode_index", "ascending"), ("frame_index", "ascending")]))
    ep = table.column("episode_index").to_numpy()
    frame = table.column("frame_index").to_numpy()
    sub = table.column("subtask_index").fill_null(-1).to_numpy()
    texts = _subtask_texts(fs, join(root, SUBTASKS_PATH), shown)
    episodes = []
    starts = np.flatnonzero(np.r_[True, ep[1:] != ep[:-1]])
    ends = np.r_[starts[1:], len(ep)]
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        s, fr = sub[a:b], frame[a:b]
        change = np.flatnonzero(s[1:] != s[:-1]) + 1
        runs = [int(v) for v in s[np.r_[0, change]]]
        episodes.append({
            "episode_index": int(ep[a]), "length": b - a, "fps": fps, "task_type": "unknown",
            "boundaries": [int(fr[k]) for k in change],
            "phases": [texts.get(v, "(none)" if v < 0 else str(v)) for v in runs],
        })
    name = root.rstrip("/").rsplit("/", 1)[-1]
    return {"form": "lerobot", "path": shown, "dataset": name, "fps": fps, "episodes": episodes,
            "codebase_version": version}


def _subtask_texts(fs: Any, path: str, shown: str) -> dict[int, str]:
    """subtask_index -> text from meta/subtasks.parquet ({} when absent or unreadable)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        t = pq.read_table(path, filesystem=fs)
    except (FileNotFoundError, OSError, pa.ArrowInvalid):
        return {}
    if "subtask_index" not in t.column_names:
        return {}
    text_col = "subtask" if "subtask" in t.column_names else next(
        (c for c in t.column_names if pa.types.is_string(t.schema.field(c).type)
         or pa.types.is_large_string(t.schema.field(c).type)), None)
    if text_col is None:
        return {}
    return {int(i): str(s) for i, s in zip(t.column("subtask_index").to_pylist(), t.column(text_col).to_pylist(),
                                           strict=True) if i is not None}


# --------------------------------------------------------------------------------------------
# Completing plain entries from the episodes being scored


def complete_truth(truth: dict[str, Any], info: dict[int, dict[str, Any]], where: str) -> dict[str, Any]:
    """Fill each entry's missing `length` (and `fps`, when neither it nor the file gives one)
    from `info` (episode_index -> {"length", "fps"} of the scored episodes, read from `where`),
    then check its boundaries lie inside the episode. Entries `info` lacks keep None (they have
    no predictions and are reported as missing). Returns `truth`, completed in place."""
    shown = truth.get("path", "(ground truth)")
    for ep in truth.get("episodes", []):
        got = info.get(int(ep["episode_index"]))
        if not got:
            continue
        if ep.get("length") is None and got.get("length"):
            ep["length"] = int(got["length"])
            ep["length_from"] = where
            if ep["boundaries"] and ep["boundaries"][-1] >= ep["length"]:
                raise TruthError(shown, f"episode {ep['episode_index']}: boundary {ep['boundaries'][-1]} is not "
                                        f"inside the episode's {ep['length']} frames (length from {where})")
        if ep.get("fps") is None and truth.get("fps") is None and got.get("fps"):
            ep["fps"] = float(got["fps"])
    return truth


def episode_info(rows: Iterable[tuple[int, int, float | None]]) -> dict[int, dict[str, Any]]:
    """episode_index -> {"length", "fps"} from (episode_index, end_frame, fps) rows of events."""
    out: dict[int, dict[str, Any]] = {}
    for idx, end, fps in rows:
        d = out.setdefault(int(idx), {"length": 0, "fps": None})
        d["length"] = max(d["length"], int(end))
        if fps and d["fps"] is None:
            d["fps"] = float(fps)
    return out
