"""`export_lerobot`: a shards version as a LeRobot v3.0 dataset with per-event language.

    export_lerobot(root, out, version=3, unit="episode", task_from=None, codec="av1", ...)

What is exported (`unit`):

* `episode` (default): every source episode that has an event in the shards version, whole.
  Every frame gets `subtask_index`, the caption of the event it lies in (all the episode's
  events are read from `<root>/events/`, so frames of events the version left out are
  annotated too), and `sampling_weight`: an event in the version carries its cluster weight
  (`weight`, the balance's repetitions per event) spread over its frames, an event the version
  left out (a near-duplicate, or over a capped cluster) carries 0; the column is scaled to mean
  1 over the dataset. A LeRobot loop reproduces the version's balance with
  `WeightedRandomSampler(ds.hf_dataset["sampling_weight"], num_samples=len(ds))`.
* `event`: every shard row becomes its own episode (the event's frames), so an event the
  balance repeats is exported that many times (the repeats share one video span); the
  episode's task is the caption.

Language: `task_from="task"` (default for `episode`) keeps the episode goal in `task_index`;
`task_from="caption"` (default for `event`) puts each frame's event caption there, for
policies that read only the task (openpi's prompt_from_task, SmolVLA, pi0). Either way
`meta/subtasks.parquet` holds the captions and lerobot 0.4.x yields `item["subtask"]`. The
sidecar `meta/carve_events.parquet` has one row per exported event: its span in the exported
episode and in the source, caption, next caption, arms (when the events carry them), cluster,
dup_of, weight and shard rows.

The source's other per-frame features (dtype, shape, names, values) are kept; one that the
export writes itself (`subtask_index`, `sampling_weight`: a source already annotated with
lerobot's subtasks) is kept as `source.<name>` beside Carve's.

Video keeps the source's cameras, size and fps. A camera is stream-copied when every one of
its exported spans allows it (whole GOPs, see video.span_packets); otherwise all its spans are
re-encoded (`codec` "av1": libsvtav1 or libaom-av1, or "h264"), and the PSNR of sampled
re-encoded frames against the source is measured and reported.

Safety: the dataset is built in a temporary folder beside `out` and renamed into place at the
end; `meta/info.json` is written last. An unknown shards version, an existing `out` (unless
`overwrite`), a source whose episodes or videos are gone, a source video in a codec Carve cannot
decode (checked before anything is written) and any failure midway raise `ExportError` naming
the thing, and leave `out` as it was.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from carve.core.errors import CarveError
from carve.core.log import get_logger, log_event
from carve.export import layout as L
from carve.export.stats import image_stats, sample_indices, vector_stats
from carve.export.video import (
    DEFAULT_CRF,
    VideoExportError,
    check_decodable,
    pick_encoder,
    psnr,
    span_packets,
)
from carve.export.writer import DatasetWriter, VideoLoc, frame_table, staging_folder, swap_into_place
from carve.ingest.sources import Episode, EpisodeRef, load_episode, open_source
from carve.ingest.sources.base import provenance
from carve.storage.events import read_events
from carve.storage.fs import join, resolve, uri_with
from carve.storage.manifest import ManifestError, ShardManifest, manifest_versions
from carve.storage.root import Root, open_root
from carve.storage.schema import EVENT_SCHEMA
from carve.storage.shards import ShardReader

log = get_logger("export.lerobot")

Unit = Literal["episode", "event"]
TaskFrom = Literal["task", "caption"]
UNITS: tuple[str, ...] = ("episode", "event")
TASK_FROM: tuple[str, ...] = ("task", "caption")
VIDEO_MODES: tuple[str, ...] = ("auto", "reencode")
FRAME_CHUNK = 64  # frames decoded and encoded at a time
PSNR_EPISODES = 24  # re-encoded episodes whose sampled frames are checked against the source

_SHARD_COLUMNS = ["event_id", "episode_id", "dataset", "episode_index", "start_frame", "end_frame", "fps",
                  "task", "caption", "next_caption", "cluster_id", "dup_of", "weight"]
_EVENT_COLUMNS = ["event_id", "episode_id", "start_frame", "end_frame", "task", "caption", "next_caption"]
_ARM_COLUMNS = ("arms", "arm")  # per-event arm(s), when the event rows carry them


class ExportError(CarveError):
    """An export that cannot be made; the message names the thing (version, folder, episode, file)."""


@dataclass
class ExportSummary:
    out: str
    shards_version: int
    unit: str
    task_from: str
    episodes: int
    frames: int
    events: int
    tasks: int
    subtasks: int
    fps: int
    cameras: dict[str, str] = field(default_factory=dict)  # camera -> "copy (h264)" | "libsvtav1 crf 30"
    psnr_min_db: float | None = None
    psnr_mean_db: float | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Event:
    event_id: str
    start: int
    end: int
    task: str
    caption: str
    next_caption: str
    cluster_id: int | None = None
    dup_of: str | None = None
    weight: float = 0.0  # the version's cluster weight; 0 for an event the version left out
    rows: int = 0  # rows of this event in the shards version
    arms: list[str] | None = None

    @property
    def text(self) -> str:
        """The event's language: its caption, else (empty or failed caption) the episode task."""
        return self.caption or self.task


@dataclass
class _Source:
    """One source episode and its events (sorted by start)."""

    episode_id: str
    dataset: str
    ref: EpisodeRef
    task: str = ""
    length: int = 0
    events: list[_Event] = field(default_factory=list)
    fps: float = 0.0
    cameras: list[str] = field(default_factory=list)
    robot: str = "unknown"
    state_names: list[str] = field(default_factory=list)
    action_names: list[str] = field(default_factory=list)


@dataclass
class _Item:
    """One exported episode: frames [start, end) of a source episode."""

    src: _Source
    start: int
    end: int
    events: list[_Event]
    first_of: str | None = None  # event unit: the event id whose video this repeat shares


# ------------------------------------------------------------------------------------------------
def export_lerobot(
    root: str | Path | Root,
    out: str | Path,
    *,
    version: int | None = None,
    unit: Unit = "episode",
    task_from: TaskFrom | None = None,
    codec: str = "av1",
    video: str = "auto",
    crf: int | None = None,
    dataset: str | None = None,
    overwrite: bool = False,
    episodes_per_file: int | None = None,
    video_backend: str = "auto",
    trim_idle: bool = False,
) -> ExportSummary:
    """Export shards version `version` (default: the latest) of `root` to `out` (module doc).

    `video` "auto" stream-copies the cameras whose spans allow it, "reencode" re-encodes all;
    `crf` overrides the encoder's quality; `dataset` exports only that dataset's rows;
    `episodes_per_file` rolls data/video files sooner than lerobot's size limits; `trim_idle`
    cuts the idle head and tail the quality gate found (catalog `defects`, `idle_head` /
    `idle_tail`) off every episode, data and video on the same frames (an episode idle
    throughout is left out)."""
    t0 = time.perf_counter()
    root = open_root(root)
    if unit not in UNITS:
        raise ExportError(f"unknown --unit {unit!r}; use one of {list(UNITS)}")
    task_from = task_from or ("task" if unit == "episode" else "caption")
    if task_from not in TASK_FROM:
        raise ExportError(f"unknown --task-from {task_from!r}; use one of {list(TASK_FROM)}")
    if video not in VIDEO_MODES:
        raise ExportError(f"unknown video mode {video!r}; use one of {list(VIDEO_MODES)}")
    dest = _check_out(out, overwrite)
    try:
        encoder = pick_encoder(codec)
    except VideoExportError as e:
        raise ExportError(str(e)) from None
    version = _resolve_version(root, version)
    items, sources = _plan(root, version, unit, dataset, video_backend)
    if trim_idle:
        items = _trim_idle(root, items)
        if not items:
            raise ExportError(f"{root.uri}: every exported span is idle; nothing left to export")
    fps, cameras, robot, names = _dataset_shape(sources)
    extras = _extra_features(sources)
    copy_cams = _copyable_cameras(items, cameras, fps, video_backend) if video == "auto" else set()
    weights = _frame_weights(items, unit)

    tmp = staging_folder(dest)
    writer = DatasetWriter(tmp, fps=fps, cameras=cameras, encoder=encoder, crf=crf,
                           episodes_per_file=episodes_per_file)
    try:
        result = _write(writer, items, weights, cameras, copy_cams, task_from, unit, video_backend, dest)
        writer.close_files()
        psnrs = _measure_psnr(result["psnr_checks"], fps)
        feats: dict[str, Any] = {
            "observation.state": L.vector_feature(len(names[0]), names[0]),
            "action": L.vector_feature(len(names[1]), names[1]),
            **extras,
        }
        cam_desc: dict[str, str] = {}
        for cam in cameras:
            c, hw = writer.camera_codec(cam)
            assert c is not None and hw is not None
            feats[cam] = L.video_feature(hw[0], hw[1], fps, c)
            cam_desc[cam] = (f"copy ({c})" if cam in copy_cams
                             else f"{encoder} crf {crf if crf is not None else DEFAULT_CRF.get(encoder)}")
        feats["subtask_index"] = dict(L.SUBTASK_FEATURE)
        feats["sampling_weight"] = dict(L.SAMPLING_WEIGHT_FEATURE)
        writer.write_meta(tasks=result["tasks"], subtasks=result["subtasks"], sidecar=result["sidecar"])
        info = L.info_json(
            fps=fps, robot_type=robot, features=feats, total_episodes=writer.n_episodes,
            total_frames=writer.n_frames, total_tasks=len(result["tasks"]), has_videos=bool(cameras),
            extra={"carve": {"shards_version": version, "unit": unit, "task_from": task_from,
                             "source_root": root.uri, "sidecar": L.CARVE_EVENTS_PATH}},
        )
        writer.write_info(info)  # last: a folder without info.json is an unfinished export
        swap_into_place(tmp, dest)
    except BaseException as e:
        writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, ExportError | KeyboardInterrupt):
            raise
        raise ExportError(f"export to {dest} failed ({type(e).__name__}: {e}); {dest} was left as it was") from e
    summary = ExportSummary(
        out=str(dest), shards_version=version, unit=unit, task_from=task_from, episodes=writer.n_episodes,
        frames=writer.n_frames, events=result["sidecar"].num_rows, tasks=len(result["tasks"]),
        subtasks=len(result["subtasks"]), fps=fps, cameras=cam_desc,
        psnr_min_db=min(psnrs) if psnrs else None,
        psnr_mean_db=float(np.mean([p for p in psnrs if np.isfinite(p)])) if psnrs else None,
        seconds=time.perf_counter() - t0,
    )
    log_event(log, "exported", out=str(dest), version=version, episodes=summary.episodes, frames=summary.frames)
    return summary


# ------------------------------------------------------------------------------------------------
# checks and planning


def _check_out(out: str | Path, overwrite: bool) -> Path:
    if "://" in str(out):
        raise ExportError(f"output {out}: the export writes a local folder; give a path")
    dest = Path(out).absolute()
    if dest.exists() and not dest.is_dir():
        raise ExportError(f"output {dest} exists and is not a folder")
    if dest.exists() and any(dest.iterdir()) and not overwrite:
        raise ExportError(f"output folder {dest} already exists and is not empty; pass --overwrite to replace it")
    return dest


def _resolve_version(root: Root, version: int | None) -> int:
    done = manifest_versions(root)
    if version is None:
        if not done:
            raise ExportError(f"{root.uri}: no complete shards version under shards/; run `carve shard` first")
        return done[-1]
    if int(version) not in done:
        have = ", ".join(f"v{v:03d}" for v in done) or "none"
        raise ExportError(f"{root.uri}: shards version v{int(version):03d} does not exist "
                          f"(complete versions: {have})")
    return int(version)


def _plan(root: Root, version: int, unit: str, only: str | None, backend: str) -> tuple[list[_Item], list[_Source]]:
    arm_col = next((c for c in _ARM_COLUMNS if c in EVENT_SCHEMA.names), None)
    try:
        reader = ShardReader(root, version, columns=_SHARD_COLUMNS + ([arm_col] if arm_col else []))  # type: ignore[arg-type]
    except ManifestError as e:
        raise ExportError(str(e)) from None
    rows: list[dict[str, Any]] = []
    for t in reader:
        rows.extend(t.to_pylist())
    if only is not None:
        rows = [r for r in rows if r["dataset"] == only]
    if not rows:
        raise ExportError(f"{root.uri}: shards version v{version:03d} has no rows"
                          + (f" of dataset {only!r}" if only else ""))
    counts = Counter(r["event_id"] for r in rows)
    first: dict[str, dict[str, Any]] = {}
    for r in rows:
        first.setdefault(r["event_id"], r)

    sources = _open_sources(root, reader.manifest, rows, backend)
    by_id = {s.episode_id: s for s in sources}

    def mk(r: dict[str, Any], in_shards: bool) -> _Event:
        return _Event(
            event_id=r["event_id"], start=int(r["start_frame"]), end=int(r["end_frame"]), task=r.get("task") or "",
            caption=r.get("caption") or "", next_caption=r.get("next_caption") or "",
            cluster_id=r.get("cluster_id") if in_shards else None, dup_of=r.get("dup_of") if in_shards else None,
            weight=float(r.get("weight") or 0.0) if in_shards else 0.0, rows=counts.get(r["event_id"], 0),
            arms=_as_list(r.get(arm_col)) if arm_col else None,
        )

    if unit == "episode":
        # all events of the chosen episodes (the version may hold only some of them)
        evs = read_events(root, columns=_EVENT_COLUMNS, filter_episodes=set(by_id)).to_pylist()
        for r in evs:
            if r["event_id"] in first:
                continue
            by_id[r["episode_id"]].events.append(mk(r, False))
        for r in first.values():
            by_id[r["episode_id"]].events.append(mk(r, True))
        items = []
        for s in sources:
            s.events.sort(key=lambda e: (e.start, e.end))
            for ev in s.events:
                _check_span(ev, s)
            items.append(_Item(src=s, start=0, end=s.length, events=s.events))
        return items, sources

    items = []
    for eid, r in sorted(first.items(), key=lambda kv: (kv[1]["dataset"], kv[1]["episode_index"],
                                                        kv[1]["start_frame"], kv[1]["end_frame"])):
        s = by_id[r["episode_id"]]
        ev = mk(r, True)
        _check_span(ev, s)
        for k in range(counts[eid]):  # the balance's repetitions
            items.append(_Item(src=s, start=ev.start, end=ev.end, events=[ev], first_of=eid if k else None))
    return items, sources


def _trim_idle(root: Root, items: list[_Item]) -> list[_Item]:
    """The items clipped to the frames between their episode's idle head and idle tail (catalog
    `defects`); an item left with no frame is dropped, and so are its repeats."""
    from carve.storage.defects import episode_defects

    keep: dict[str, tuple[int, int]] = {}
    for d in episode_defects(root.catalog):
        a, b = keep.get(d["episode_id"], (0, 1 << 62))
        if d["kind"] == "idle_head":
            a = max(a, int(d["end_frame"]) + 1)
        elif d["kind"] == "idle_tail":
            b = min(b, int(d["start_frame"]))
        else:
            continue
        keep[d["episode_id"]] = (a, b)
    out: list[_Item] = []
    dropped: set[str] = set()
    for it in items:
        a, b = keep.get(it.src.episode_id, (0, 1 << 62))
        start, end = max(it.start, a), min(it.end, b)
        if it.first_of is not None and it.first_of in dropped:
            continue
        if end <= start:
            dropped.update(ev.event_id for ev in it.events)
            continue
        out.append(_Item(src=it.src, start=start, end=end, events=it.events, first_of=it.first_of))
    return out


def _as_list(v: Any) -> list[str] | None:
    if v is None:
        return None
    return [str(x) for x in v] if isinstance(v, list | tuple) else [str(v)]


def _check_span(ev: _Event, s: _Source) -> None:
    if ev.end > s.length or ev.start < 0 or ev.end <= ev.start:
        raise ExportError(f"event {ev.event_id} of {s.ref.label}: frames [{ev.start}, {ev.end}) are outside the "
                          f"episode's {s.length} frames (the source changed since it was ingested?)")


def _open_sources(root: Root, manifest: ShardManifest, rows: list[dict[str, Any]], backend: str) -> list[_Source]:
    """Open every dataset once, find each episode's ref, and load each episode once to check it."""
    from carve.core.errors import EpisodeError, SourceError

    wanted: dict[str, dict[int, str]] = {}
    for r in rows:
        wanted.setdefault(r["dataset"], {})[int(r["episode_index"])] = r["episode_id"]
    known = {s.dataset: s.to_json() for s in manifest.sources}
    out: list[_Source] = []
    checked: set[str] = set()  # source videos whose codec was checked (episodes share files)
    for name in sorted(wanted):
        d = root.catalog.dataset(name) or known.get(name) or {}
        uri, fmt = d.get("source_uri"), d.get("format") or "auto"
        if not uri:
            raise ExportError(f"dataset {name}: the catalog of {root.uri} does not know its source")
        try:
            src = open_source(uri, fmt, dataset=name)
            refs = {r.episode_index: r for r in src.list_episodes()}
        except SourceError as e:
            raise ExportError(f"dataset {name}: its source {uri} cannot be read: {e}") from None
        for idx in sorted(wanted[name]):
            if idx not in refs:
                raise ExportError(f"dataset {name}: episode {idx} is no longer in its source {uri}")
            ref = refs[idx]
            for cam in sorted((ref.locator.get("videos") or {}) if ref.format == "lerobot" else {}):
                sv = _source_video(ref, cam)
                if sv is None or sv[0] in checked:
                    continue
                try:
                    check_decodable(sv[0])
                except VideoExportError as e:
                    raise ExportError(f"dataset {name}: cannot export {ref.label} camera {cam}: {e}") from None
                checked.add(sv[0])
            try:
                ep = load_episode(ref, video_backend=backend)
            except EpisodeError as e:
                raise ExportError(f"dataset {name}: cannot export {e}") from None
            out.append(_Source(episode_id=wanted[name][idx], dataset=name, ref=ref, task=ep.task, length=ep.length,
                               fps=ep.fps, cameras=list(ep.cameras), robot=ep.robot,
                               state_names=list(ep.state_names), action_names=list(ep.action_names)))
            del ep  # closes its video readers
    return out


def _dataset_shape(sources: list[_Source]) -> tuple[int, list[str], str | None, tuple[list[str], list[str]]]:
    """fps, cameras, robot type and state/action names, which every exported episode must share."""
    s0 = sources[0]
    for s in sources[1:]:
        for what, a, b in (("fps", s.fps, s0.fps), ("cameras", s.cameras, s0.cameras),
                           ("state dims", len(s.state_names), len(s0.state_names)),
                           ("action dims", len(s.action_names), len(s0.action_names))):
            if a != b:
                raise ExportError(f"{s.ref.label} has {what} {a}, {s0.ref.label} has {b}: one LeRobot "
                                  "dataset needs them equal; export one dataset at a time (--dataset)")
    if abs(s0.fps - round(s0.fps)) > 1e-6:
        raise ExportError(f"{s0.ref.label}: fps {s0.fps} is not an integer, which LeRobot requires")
    robots = {s.robot for s in sources}
    robot = robots.pop() if len(robots) == 1 else "mixed"
    return round(s0.fps), list(s0.cameras), robot, (list(s0.state_names), list(s0.action_names))


# per-frame columns the export writes itself; a source feature of the same name (a dataset already
# annotated with lerobot's subtasks) is kept as `source.<name>`, so neither overwrites the other
_WRITTEN_HERE = ("subtask_index", "sampling_weight")


def _export_name(key: str) -> str:
    return f"source.{key}" if key in _WRITTEN_HERE else key


def _extra_features(sources: list[_Source]) -> dict[str, dict[str, Any]]:
    """The source features beyond state/action/cameras that every exported episode has, kept as
    they are (under `_export_name`)."""
    specs = [s.ref.locator.get("extra_features") or {} for s in sources]
    common = set(specs[0]).intersection(*specs[1:]) if specs else set()
    return {_export_name(k): specs[0][k] for k in sorted(common) if all(sp[k] == specs[0][k] for sp in specs)}


def _source_video(ref: EpisodeRef, cam: str) -> tuple[str, float] | None:
    """(video path or URI, start seconds) of a LeRobot episode's camera, or None when not copyable.
    A source on an object store is copied from too (export.video.open_input reads it in place)."""
    loc = ref.locator
    if ref.format != "lerobot" or cam not in (loc.get("videos") or {}):
        return None
    _, base = resolve(ref.source_uri)
    v = loc["videos"][cam]
    return uri_with(ref.source_uri, join(base, v["path"])), float(v.get("from_ts") or 0.0)


def _copyable_cameras(items: list[_Item], cameras: list[str], fps: int, backend: str) -> set[str]:
    """Cameras whose every exported span can be stream-copied (checked by demuxing, not decoding)."""
    ok = set()
    for cam in cameras:
        good = True
        for it in items:
            if it.first_of is not None:
                continue
            sv = _source_video(it.src.ref, cam)
            if sv is None:
                good = False
                break
            try:
                span = span_packets(sv[0], sv[1] + it.start / fps, it.end - it.start, fps)
            except VideoExportError:
                span = None
            if span is None:
                good = False
                break
        if good:
            ok.add(cam)
    return ok


def _frame_weights(items: list[_Item], unit: str) -> dict[int, np.ndarray]:
    """Per exported episode, the `sampling_weight` of its frames, scaled to mean 1 overall."""
    raw: dict[int, np.ndarray] = {}
    for i, it in enumerate(items):
        n = it.end - it.start
        w = np.zeros(n, dtype=np.float64)
        if unit == "event":
            ev = it.events[0]  # the event's balance weight, shared by its occurrences (1 each if resampled)
            w[:] = (ev.weight / ev.rows if ev.rows else 0.0) / n
        else:
            for ev in it.events:
                a, b = max(ev.start, it.start) - it.start, min(ev.end, it.end) - it.start
                if b > a and ev.rows > 0:
                    w[a:b] = ev.weight / (ev.end - ev.start)
        raw[i] = w
    total = sum(float(w.sum()) for w in raw.values())
    frames = sum(len(w) for w in raw.values())
    scale = frames / total if total > 0 else 0.0
    return {i: (w * scale).astype(np.float32) for i, w in raw.items()}


# ------------------------------------------------------------------------------------------------
# writing


def _write(writer: DatasetWriter, items: list[_Item], weights: dict[int, np.ndarray], cameras: list[str],
           copy_cams: set[str], task_from: str, unit: str, backend: str, dest: Path) -> dict[str, Any]:
    tasks: dict[str, int] = {}
    subtasks: dict[str, int] = {}
    side: list[dict[str, Any]] = []
    placed: dict[str, tuple[dict[str, VideoLoc], dict[str, Any]]] = {}  # event id -> its video, image stats
    psnr_checks: list[tuple[Path, float, np.ndarray, np.ndarray]] = []
    first_of: dict[str, int] = {}  # event unit: event id -> the exported episode that holds its video
    firsts = [i for i, it in enumerate(items) if it.first_of is None]
    to_check = set(firsts[:: max(1, len(firsts) // PSNR_EPISODES)][:PSNR_EPISODES]) if set(cameras) - copy_cams else set()
    ep: Episode | None = None
    for i, it in enumerate(items):
        label = f"{it.src.ref.label} frames [{it.start}, {it.end})"
        try:
            if ep is None or ep.ref.episode_id != it.src.ref.episode_id:
                ep = load_episode(it.src.ref, video_backend=backend)
                if ep.length != it.src.length:
                    raise ExportError(f"{it.src.ref.label} now has {ep.length} frames, {it.src.length} when planned")
            n = it.end - it.start
            # language per frame
            sub_text = [it.src.task] * n
            for ev in it.events:
                a, b = max(ev.start, it.start) - it.start, min(ev.end, it.end) - it.start
                for k in range(max(a, 0), max(b, 0)):
                    sub_text[k] = ev.text
            task_text = sub_text if task_from == "caption" else [it.src.task] * n
            sub_idx = np.array([subtasks.setdefault(t, len(subtasks)) for t in sub_text], dtype=np.int64)
            task_idx = np.array([tasks.setdefault(t, len(tasks)) for t in task_text], dtype=np.int64)
            ep_tasks = list(dict.fromkeys(task_text))
            # video
            locs: dict[str, VideoLoc] = {}
            img_stats: dict[str, Any] = {}
            if it.first_of is not None:
                locs, img_stats = placed[it.first_of]
            else:
                for cam in cameras:
                    locs[cam], img_stats[cam], sample = _write_camera(writer, ep, it, cam, cam in copy_cams,
                                                                      writer.fps, i in to_check)
                    if sample is not None:
                        psnr_checks.append((locs[cam].path, locs[cam].start, *sample))
                if unit == "event":
                    first_of[it.events[0].event_id] = writer.n_episodes
                    placed[it.events[0].event_id] = (locs, img_stats)
            # frames table
            gidx = writer.n_frames
            table = _frame_table(ep, it, writer.fps, writer.n_episodes, gidx, task_idx, sub_idx, weights[i])
            stats = {k: vector_stats(_np(table.column(k))) for k in table.column_names}
            stats.update(img_stats)
            ep_row = writer.add_episode(table, ep_tasks, locs, stats)
            for ev in it.events:
                a, b = max(ev.start, it.start), min(ev.end, it.end)
                if b <= a:
                    continue
                side.append({
                    "episode_index": ep_row["episode_index"], "event_id": ev.event_id,
                    "frame_from": a - it.start, "frame_to": b - it.start,
                    "index_from": gidx + a - it.start, "index_to": gidx + b - it.start,
                    "dataset": it.src.dataset, "source_episode_id": it.src.episode_id,
                    "source_episode_index": it.src.ref.episode_index, **provenance(it.src.ref, ep.source_id),
                    "source_start_frame": ev.start,
                    "source_end_frame": ev.end, "task": it.src.task, "caption": ev.caption,
                    "next_caption": ev.next_caption, "subtask_index": subtasks[ev.text], "arms": ev.arms,
                    "cluster_id": ev.cluster_id, "dup_of": ev.dup_of, "weight": float(ev.weight),
                    "shard_rows": ev.rows, "in_shards": ev.rows > 0,
                    "repeat_of_episode": first_of[it.first_of] if it.first_of is not None else None,
                })
        except ExportError:
            raise
        except Exception as e:
            raise ExportError(f"export to {dest} failed at {label} ({type(e).__name__}: {e}); "
                              f"{dest} was left as it was") from e
    return {"tasks": tasks, "subtasks": subtasks, "sidecar": _sidecar(side), "psnr_checks": psnr_checks}


def _write_camera(writer: DatasetWriter, ep: Episode, it: _Item, cam: str, copy: bool, fps: int,
                  check: bool) -> tuple[VideoLoc, Any, tuple[np.ndarray, np.ndarray] | None]:
    """Place one camera's frames of `it` in the dataset; (location, image stats, PSNR sample)."""
    n = it.end - it.start
    samples = sample_indices(n)
    if copy:
        sv = _source_video(it.src.ref, cam)
        assert sv is not None
        span = span_packets(sv[0], sv[1] + it.start / fps, n, fps)
        if span is None:
            raise ExportError(f"{it.src.ref.label} camera {cam}: the span was copyable when planned but is not now")
        start, end = writer.append_span(cam, span)
        chunk, file, path = writer.current_video(cam)
        writer.end_video_episode(cam)
        return VideoLoc(chunk, file, start, end, path), image_stats(ep.frames(cam, it.start + samples)), None
    sampled: list[np.ndarray] = []
    check_idx = np.unique(np.array([0, n // 2, n - 1])) if check else np.zeros(0, dtype=np.int64)
    checked: list[np.ndarray] = []
    start = end = 0.0
    for a in range(0, n, FRAME_CHUNK):
        b = min(n, a + FRAME_CHUNK)
        frames = ep.frames(cam, np.arange(it.start + a, it.start + b))
        if frames.shape[0] != b - a:
            raise ExportError(f"{it.src.ref.label} camera {cam}: decoded {frames.shape[0]} frames of {b - a}")
        if a == 0:
            writer.begin_video(cam, frames=frames)
            chunk, file, path = writer.current_video(cam)
        s, end = writer.append_frames(cam, frames)
        if a == 0:
            start = s
        sel = samples[(samples >= a) & (samples < b)] - a
        if len(sel):
            sampled.append(frames[sel])
        sel = check_idx[(check_idx >= a) & (check_idx < b)] - a
        if len(sel):
            checked.append(frames[sel])
    writer.end_video_episode(cam)
    sample = (check_idx.astype(np.float64) / fps, np.concatenate(checked)) if check else None
    return VideoLoc(chunk, file, start, end, path), image_stats(np.concatenate(sampled)), sample


def _np(col: pa.ChunkedArray) -> np.ndarray:
    c = col.combine_chunks()
    if pa.types.is_fixed_size_list(c.type):
        return c.flatten().to_numpy(zero_copy_only=False).reshape(len(c), c.type.list_size)
    return c.to_numpy(zero_copy_only=False)


def _frame_table(ep: Episode, it: _Item, fps: int, episode_index: int, gidx: int, task_idx: np.ndarray,
                 sub_idx: np.ndarray, weight: np.ndarray) -> pa.Table:
    return frame_table(ep.state[it.start:it.end], ep.action[it.start:it.end], fps=fps, episode_index=episode_index,
                       first_index=gidx, task_index=task_idx, extra={
                           "subtask_index": pa.array(sub_idx),
                           "sampling_weight": pa.array(weight.astype(np.float32)),
                           **{_export_name(k): _feature_array(v[it.start:it.end]) for k, v in ep.extras.items()},
                       })


def _feature_array(x: np.ndarray) -> pa.Array:
    """A source feature's frames as LeRobot stores them: a scalar column, or fixed-size lists."""
    if x.ndim == 1:
        return pa.array(x)
    flat = np.ascontiguousarray(x).reshape(len(x), -1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])


_SIDECAR_SCHEMA = pa.schema([
    ("episode_index", pa.int64()), ("event_id", pa.string()), ("frame_from", pa.int64()), ("frame_to", pa.int64()),
    ("index_from", pa.int64()), ("index_to", pa.int64()), ("dataset", pa.string()),
    ("source_episode_id", pa.string()), ("source_episode_index", pa.int64()), ("source_file", pa.string()),
    ("source_key", pa.string()), ("source_start_frame", pa.int64()),
    ("source_end_frame", pa.int64()), ("task", pa.string()), ("caption", pa.string()), ("next_caption", pa.string()),
    ("subtask_index", pa.int64()), ("arms", pa.list_(pa.string())), ("cluster_id", pa.int32()), ("dup_of", pa.string()),
    ("weight", pa.float32()), ("shard_rows", pa.int32()), ("in_shards", pa.bool_()),
    ("repeat_of_episode", pa.int64()),
], metadata={b"carve.format": b"carve.lerobot_events", b"carve.format_version": b"1"})


def _sidecar(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=_SIDECAR_SCHEMA)


def _measure_psnr(checks: list[tuple[Path, float, np.ndarray, np.ndarray]], fps: int) -> list[float]:
    """PSNR (dB) of sampled re-encoded frames against the source frames they were made from."""
    from carve.ingest.video import VideoReader

    out: list[float] = []
    readers: dict[Path, VideoReader] = {}
    try:
        for path, start, rel_ts, src in checks:
            r = readers.get(path) or readers.setdefault(path, VideoReader(str(path), backend="pyav"))
            got = r.read_at(start + rel_ts)
            out.extend(psnr(g, s) for g, s in zip(got, src, strict=True))
    finally:
        for r in readers.values():
            r.close()
    return out
