"""One event: its row with provenance and findings, its signals, its clip cut from the source video,
one keyframe (a key required; roles: service/access.py).

    GET /events/{id}                    the event's row (caption, cluster, provenance in the source:
                                        file, key, span in source seconds) and the quality gate's
                                        findings that touch it (`carve.audit.quality.event_findings`)
    GET /events/{id}/signals            state, action and gripper over time, the episode's boundaries
    GET /events/{id}/clip.mp4           the event's span as H.264/MP4 (`?format=webm`: VP9/WebM;
                                        `?camera=`), HTTP Range requests answered 206
    GET /events/{id}/keyframe.jpg?i=0   one of the event's stored keyframes

The event is found as `/events/{id}` finds it (service/views.py: assignments index, catalog,
one row group). Signals come from the source episode (`carve.ingest.sources`: the dataset's
format and URI from the catalog), the whole episode when it has at most `WHOLE_EPISODE`
frames, else the event with `context` frames either side; when the source cannot be read the
event row's own `state`/`action` arrays are served (`"source": "event_row"`).

Clips are decoded from the source (the event's frames only, by timestamp) and encoded with
PyAV into `<root>/cache/clips/` (a temporary directory for a remote root): written to a temp
name, then renamed, so a reader never sees half a file; one encode per clip at a time. They are
served by Starlette's FileResponse, which answers `Range: bytes=a-b` with 206 Partial Content,
`Content-Range` and `Accept-Ranges: bytes`.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import uuid
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path as FsPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import FileResponse, JSONResponse, Response

from carve.audit import quality as aq
from carve.audit.models import EventResponse
from carve.audit.paths import PATHS
from carve.core.errors import CarveError
from carve.ingest.sources import Episode, EpisodeRef, load_episode, open_source
from carve.service.access import authorize
from carve.service.deps import ID_PATTERN, CatalogsDep, ViewsDep
from carve.service.views import NotFound, Views
from carve.storage.catalog import Catalog

router = APIRouter(dependencies=[Depends(authorize)])

WHOLE_EPISODE = 3000  # frames: an episode up to this long is served whole
MAX_CLIP_FRAMES = 3000
_ROW = ["event_id", "episode_id", "dataset", "source_uri", "camera", "cameras", "episode_index", "start_frame",
        "end_frame", "fps", "start_reason", "boundary_reason", "state", "action", "state_names", "action_names",
        "gripper", "arms"]
_refs: OrderedDict[tuple[str, str, str], dict[int, EpisodeRef]] = OrderedDict()
_refs_lock = threading.Lock()
_clip_locks: dict[str, threading.Lock] = {}


def _event(views: Views, cat: Catalog, event_id: str) -> dict[str, Any]:
    return views._event_row(cat, event_id, _ROW)


def _ref(cat: Catalog, row: dict[str, Any]) -> EpisodeRef:
    """The source episode of an event row (the dataset's listing is cached per source)."""
    ds = cat.dataset(row["dataset"]) or {}
    uri = row.get("source_uri") or ds.get("source_uri")
    fmt = ds.get("format") or "auto"
    if not uri:
        raise NotFound(f"event {row['event_id']!r}: its dataset has no source URI")
    key = (str(uri), str(fmt), str(row["dataset"]))
    with _refs_lock:
        refs = _refs.get(key)
    if refs is None:
        src = open_source(str(uri), str(fmt), dataset=str(row["dataset"]))
        refs = {int(r.episode_index): r for r in src.list_episodes()}
        with _refs_lock:
            _refs[key] = refs
            while len(_refs) > 16:
                _refs.popitem(last=False)
    ref = refs.get(int(row["episode_index"]))
    if ref is None:
        raise NotFound(f"event {row['event_id']!r}: episode {row['episode_index']} is not in {uri}")
    return ref


def _load(cat: Catalog, row: dict[str, Any], camera: str | None = None) -> Episode:
    return load_episode(_ref(cat, row), camera=camera)


# -- the event -------------------------------------------------------------------------------------
@router.get(PATHS["event"], tags=["events"], response_class=JSONResponse, response_model=EventResponse)
def event(views: ViewsDep, catalogs: CatalogsDep, event_id: str = Path(pattern=ID_PATTERN),
          images: bool = True) -> Response:
    cat = catalogs.get()
    row = views.event(cat, event_id, images=images)
    row.update(aq.event_findings(cat, event_id, row["episode_id"], int(row["start_frame"]), int(row["end_frame"])))
    return Response(json.dumps(row, separators=(",", ":")).encode(), media_type="application/json")


# -- signals ----------------------------------------------------------------------------------------
def _episode_events(views: Views, cat: Catalog, episode_id: str) -> list[dict[str, Any]]:
    """Every event of one episode (frames, reasons, caption), in order."""
    ep = views._episodes(cat).get(episode_id)
    if ep is None or ep[1] is None:
        return []
    bi = views._batch(cat, ep[1])
    cols = ["event_id", "episode_id", "start_frame", "end_frame", "start_reason", "boundary_reason", "caption"]
    out = []
    for f, md, i in sorted({(f, i): (f, md, i) for f, md, i in bi.where.get(episode_id, ())}.values(),
                           key=lambda v: (v[0], v[2])):
        t = pq.ParquetFile(f, filesystem=views.root.fs, metadata=md).read_row_group(i, columns=cols)
        out.append(t.filter(pc.equal(t.column("episode_id"), episode_id)))
    if not out:
        return []
    return sorted(pa.concat_tables(out).to_pylist(), key=lambda r: (r["start_frame"], r["end_frame"]))


def _gripper_cols(names: list[str]) -> list[int]:
    return [i for i, n in enumerate(names) if "gripper" in str(n).lower() or "claw" in str(n).lower()]


def _values(x: np.ndarray) -> list[list[float]]:
    return np.round(np.asarray(x, dtype=np.float64), 5).tolist()


def signals(views: Views, cat: Catalog, event_id: str, context: int | None = None) -> dict[str, Any]:
    row = _event(views, cat, event_id)
    fps = float(row["fps"] or 0) or 1.0
    s, e = int(row["start_frame"]), int(row["end_frame"])
    events = _episode_events(views, cat, row["episode_id"])
    try:
        ep = _load(cat, row)
        state, action, ts = ep.state, ep.action, np.asarray(ep.timestamps, dtype=np.float64)
        s_names, a_names = list(ep.state_names), list(ep.action_names)
        fps = float(ep.fps or fps)
        source, error = "episode", None
        n = len(ts)
        if n > WHOLE_EPISODE or context is not None:
            pad = context if context is not None else max(e - s, int(2 * fps))
            lo, hi = max(0, s - pad), min(n, e + pad)
        else:
            lo, hi = 0, n
        state, action, ts = state[lo:hi], action[lo:hi], ts[lo:hi]
    except (CarveError, OSError, ValueError, KeyError) as exc:  # no readable source: the event's own arrays
        state = np.asarray(row.get("state") or np.zeros((0, 0)), dtype=np.float64)
        action = np.asarray(row.get("action") or np.zeros((0, 0)), dtype=np.float64)
        s_names = list(row.get("state_names") or [f"state_{i}" for i in range(state.shape[1] if state.ndim == 2 else 0)])
        a_names = list(row.get("action_names") or [f"action_{i}" for i in range(action.shape[1] if action.ndim == 2 else 0)])
        lo, hi = s, s + len(state)
        ts = (np.arange(lo, hi) / fps).astype(np.float64)
        source, error = "event_row", f"{type(exc).__name__}: {exc}"
        events = [r for r in events if r["event_id"] == event_id] or events
    gi = _gripper_cols(s_names)
    if gi and state.ndim == 2 and state.shape[0]:
        gripper = {"names": [s_names[i] for i in gi], "values": _values(state[:, gi]), "from": "state"}
    elif (ga := _gripper_cols(a_names)) and action.ndim == 2 and action.shape[0]:
        gripper = {"names": [a_names[i] for i in ga], "values": _values(action[:, ga]), "from": "action"}
    elif row.get("gripper") and source == "event_row":
        gripper = {"names": ["gripper"], "values": [[float(v)] for v in row["gripper"]], "from": "event_row"}
    else:
        gripper = {"names": [], "values": [], "from": None}
    t0 = float(ts[0]) - lo / fps if len(ts) else 0.0  # the episode's time origin

    def tt(frame: int) -> float:
        return round(t0 + frame / fps, 5)

    return {
        "event_id": event_id, "episode_id": row["episode_id"], "dataset": row["dataset"], "fps": fps,
        "source": source, "source_error": error,
        "window": {"start_frame": int(lo), "end_frame": int(hi)},
        "event": {"start_frame": s, "end_frame": e, "t_start": tt(s), "t_end": tt(e),
                  "reason_start": row.get("start_reason"), "reason_end": row.get("boundary_reason")},
        "t": np.round(ts, 5).tolist(),
        "state": {"names": s_names, "values": _values(state)},
        "action": {"names": a_names, "values": _values(action)},
        "gripper": gripper,
        "arms": row.get("arms"),
        "boundaries": [{"event_id": r["event_id"], "start_frame": r["start_frame"], "end_frame": r["end_frame"],
                        "t_start": tt(r["start_frame"]), "t_end": tt(r["end_frame"]),
                        "reason_start": r["start_reason"], "reason_end": r["boundary_reason"],
                        "caption": r["caption"], "current": r["event_id"] == event_id} for r in events],
    }


_signals_cache: OrderedDict[tuple[str, str, int | None], bytes] = OrderedDict()


@router.get(PATHS["signals"], tags=["events"], response_class=Response,
            responses={200: {"content": {"application/json": {}}}})
def event_signals(views: ViewsDep, catalogs: CatalogsDep, event_id: str = Path(pattern=ID_PATTERN),
                  context: int | None = Query(None, ge=0, le=100_000)) -> Response:
    key = (str(views.root.uri), event_id, context)
    with _refs_lock:
        body = _signals_cache.get(key)
    if body is None:  # the source's signals never change under an event id: kept (the last 256)
        sig = signals(views, catalogs.get(), event_id, context)
        body = json.dumps(sig, separators=(",", ":")).encode()
        if sig["source"] == "episode":
            with _refs_lock:
                _signals_cache[key] = body
                while len(_signals_cache) > 256:
                    _signals_cache.popitem(last=False)
    return Response(body, media_type="application/json")


# -- clips -------------------------------------------------------------------------------------------
def clip_dir(views: Views) -> FsPath:
    root = views.root
    d = FsPath(root.path("cache", "clips")) if root.is_local else FsPath(tempfile.gettempdir()) / "carve-clips"
    d.mkdir(parents=True, exist_ok=True)
    return d


def encode_clip(frames: np.ndarray, fps: float, path: FsPath, fmt: str = "mp4") -> None:
    """Encode (N, H, W, 3) uint8 RGB frames into `path` (H.264/MP4 or VP9/WebM, yuv420p)."""
    import av

    n, h, w = frames.shape[0], frames.shape[1] - frames.shape[1] % 2, frames.shape[2] - frames.shape[2] % 2
    rate = Fraction(fps).limit_denominator(1001)
    opts = {"movflags": "+faststart"} if fmt == "mp4" else {}
    with av.open(str(path), "w", format=fmt, options=opts) as out:
        if fmt == "mp4":
            st = out.add_stream("libx264", rate=rate, options={"crf": "23", "preset": "veryfast", "g": str(max(1, round(fps)))})
        else:
            st = out.add_stream("libvpx-vp9", rate=rate, options={"crf": "32", "b": "0", "deadline": "realtime",
                                                                   "cpu-used": "8"})
        st.width, st.height, st.pix_fmt = max(2, w), max(2, h), "yuv420p"
        st.codec_context.time_base = 1 / rate
        for i in range(n):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i, :h, :w]), format="rgb24")
            f.pts = i
            f.time_base = 1 / rate
            for p in st.encode(f):
                out.mux(p)
        for p in st.encode():
            out.mux(p)


def _camera(cameras: list[str], want: str | None) -> str | None:
    """`want` among the episode's cameras, also by its last dotted part ("front" names
    "observation.images.front"); the first camera when `want` is None."""
    if want is None:
        return cameras[0] if cameras else None
    if want in cameras:
        return want
    return next((c for c in cameras if c.rsplit(".", 1)[-1] == want.rsplit(".", 1)[-1]), None)


def clip_path(views: Views, cat: Catalog, event_id: str, camera: str | None = None, fmt: str = "mp4") -> FsPath:
    """The cached clip of an event (cut and encoded on first request)."""
    # an event id names its episode and frame span (storage.schema.make_event_id): a cached clip
    # is found without reading the event (browsers send many Range requests per clip)
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in f"{event_id}_{camera or 'default'}")
    path = clip_dir(views) / f"{safe}.{fmt}"
    if path.exists():
        return path
    with _refs_lock:
        lock = _clip_locks.setdefault(str(path), threading.Lock())
    with lock:
        if path.exists():
            return path
        row = _event(views, cat, event_id)
        cam = camera or row.get("camera") or None
        s, e = int(row["start_frame"]), int(row["end_frame"])
        if e - s > MAX_CLIP_FRAMES:
            e = s + MAX_CLIP_FRAMES
        try:
            ep = _load(cat, row)
            cam = _camera(ep.cameras, cam)
            if cam is None:
                raise NotFound(f"event {event_id!r}: no camera {camera or row.get('camera')!r}; "
                               f"the episode has {ep.cameras}")
            frames = ep.frames(cam, list(range(s, min(e, ep.length))))
            fps = float(ep.fps or row["fps"] or 10.0)
        except NotFound:
            raise
        except (CarveError, OSError, ValueError, KeyError) as exc:
            raise NotFound(f"event {event_id!r}: the source video cannot be read ({type(exc).__name__}: {exc})") from None
        if len(frames) == 0:
            raise NotFound(f"event {event_id!r}: the source video has no frames in {s}..{e}")
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            encode_clip(frames, fps, tmp, fmt)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    with _refs_lock:
        _clip_locks.pop(str(path), None)
    return path


@router.get(PATHS["clip"], tags=["events"], response_class=FileResponse,
            responses={200: {"content": {"video/mp4": {}, "video/webm": {}}}, 206: {"description": "a byte range"}})
def event_clip(views: ViewsDep, catalogs: CatalogsDep, event_id: str = Path(pattern=ID_PATTERN),
               camera: str | None = Query(None, max_length=200), format: str = Query("mp4", pattern="^(mp4|webm)$"),
               ) -> FileResponse:
    path = clip_path(views, catalogs.get(), event_id, camera, format)
    return FileResponse(path, media_type=f"video/{format}", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/events/{event_id}/clip.webm", tags=["events"], response_class=FileResponse,
            responses={200: {"content": {"video/webm": {}}}, 206: {"description": "a byte range"}})
def event_clip_webm(views: ViewsDep, catalogs: CatalogsDep, event_id: str = Path(pattern=ID_PATTERN),
                    camera: str | None = Query(None, max_length=200)) -> FileResponse:
    path = clip_path(views, catalogs.get(), event_id, camera, "webm")
    return FileResponse(path, media_type="video/webm", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/events/{event_id}/keyframe.jpg", tags=["events"], response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}})
def event_keyframe(views: ViewsDep, catalogs: CatalogsDep, event_id: str = Path(pattern=ID_PATTERN),
                   i: int = Query(0, ge=0, le=64)) -> Response:
    try:
        data = views.keyframe(catalogs.get(), event_id, i)
    except NotFound:
        raise HTTPException(status_code=404, detail=f"event {event_id!r} has no keyframe {i}") from None
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})
