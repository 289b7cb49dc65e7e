"""The analysts' audit API: the embedding map, one cluster, coverage over time, neighbours
(a key required; roles: service/access.py).

    GET /datasets/{d}/map            the 2-D layout's points, filtered and paged
    GET /datasets/{d}/map/bins       the same points as a 2-D histogram (count, majority cluster)
    GET /datasets/{d}/map/facets     distinct values of each filter, with counts
    GET /datasets/{d}/map/frame      the map's screen as one binary frame (`carve.audit.mapframe`):
                                     a point sample sized by the screen, the density underlay
    GET /datasets/{d}/clusters/{c}   one cluster: its events (paged), sizes before/after balancing,
                                     members per dataset/task/robot, near-duplicates
    GET /datasets/{d}/coverage       per-dataset coverage by task/robot plus the change between
                                     two clusters or shards versions (or one ingest batch): grew,
                                     shrank, appeared, vanished, the drift ratio, under-covered clusters
    GET /datasets/{d}/coverage.csv   the under-covered clusters, "collect more of these"
    GET /datasets/{d}/quality        the quality gate's findings: counts by kind, worst episodes,
                                     the drop list's size (`carve.audit.quality`)
    GET /datasets/{d}/quality.csv    the drop list: episodes with an error finding or quarantined
    GET /events/{id}/neighbours      nearest events in embedding space, same clustering version

Thin adapters over the audit read model (`carve.audit.model`: `AuditRoot` and one `VersionView`
per clusters version, cached in the server's one `ViewCache`): each route parses its query,
asks the model and sends the body; the maths (map filters and histogram, the cluster page,
neighbours, the change between versions and the one under-covered rule of
`carve.audit.coverage`) is there. Paths come from `carve.audit.paths.PATHS`; the bodies are
described by the pydantic models of `carve.audit.models` (named in the OpenAPI schema).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from carve.audit import mapframe as mf
from carve.audit import model as am
from carve.audit import quality as aq
from carve.audit.coverage import UNDER_COVERED_RATIO
from carve.audit.models import (
    ClusterDetailResponse,
    CoverageResponse,
    MapBinsResponse,
    MapFacetsResponse,
    MapResponse,
    NeighboursResponse,
    QualityResponse,
)
from carve.audit.paths import PATHS
from carve.clustering.curate import coverage_drift
from carve.core.config import CarveConfig
from carve.service.access import authorize
from carve.service.deps import ID_PATTERN, NAME_PATTERN, CatalogsDep, CfgDep, ViewsDep
from carve.service.views import Views
from carve.storage.catalog import Catalog

router = APIRouter(dependencies=[Depends(authorize)])

MAX_LIMIT = 20_000
T = TypeVar("T")


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":")).encode(), status_code=status, media_type="application/json")


def _ask(f: Callable[[], T]) -> T:
    """`f()`, a request the model cannot answer as asked (`Unprocessable`) becoming a 422."""
    try:
        return f()
    except am.Unprocessable as e:
        raise HTTPException(status_code=422, detail=str(e)) from None


@dataclass(frozen=True)
class MapFilters:
    """The map's filters, as the map and bins routes take them (query parameters)."""

    task: str | None = None
    robot: str | None = None
    arm: str | None = None
    verb: str | None = None
    cluster: str | None = None
    defect: str | None = Query(None, max_length=100)

    def any(self) -> bool:
        return any(x is not None for x in (self.task, self.robot, self.arm, self.verb, self.cluster, self.defect))


def _filtered(views: Views, cat: Catalog, name: str, version: int | None, q: MapFilters
              ) -> tuple[am.VersionView, int, am.DatasetLayout, Callable[[], Any]]:
    """(the version's view, its number, the dataset's layout, the layout rows `q` keeps (a call))."""
    v = views.audit.clusters_version(version)
    views.require_dataset(cat, name)
    vv = views.audit.version(v)
    ds = vv.dataset(name)
    tags = vv.defect_tags(cat, name) if q.defect is not None else None
    return vv, v, ds, lambda: _ask(lambda: am.filter_layout(ds.table, q.task, q.robot, q.arm, q.verb, q.cluster,
                                                            q.defect, tags))


@router.get(PATHS["map"], tags=["audit"], response_class=JSONResponse, response_model=MapResponse)
def map_points(views: ViewsDep, catalogs: CatalogsDep, name: str = Path(pattern=NAME_PATTERN),
               clusters_version_: int | None = Query(None, alias="clusters_version", ge=1),
               q: MapFilters = Depends(), offset: int = Query(0, ge=0),
               limit: int = Query(5000, ge=1, le=MAX_LIMIT)) -> Response:
    _, v, ds, keep = _filtered(views, catalogs.get(), name, clusters_version_, q)
    f = keep()
    rows = f.column("_row").slice(offset, limit).to_numpy()
    head = json.dumps({"dataset": name, "version": v, "total": f.num_rows, "offset": offset, "limit": limit,
                       "extent": ds.extent}, separators=(",", ":"))
    body = head[:-1] + ',"points":' + ds.codes.encode(rows) + "}"
    return Response(body.encode(), media_type="application/json")


@router.get(PATHS["bins"], tags=["audit"], response_class=JSONResponse, response_model=MapBinsResponse)
def map_bins(views: ViewsDep, catalogs: CatalogsDep, name: str = Path(pattern=NAME_PATTERN),
             clusters_version_: int | None = Query(None, alias="clusters_version", ge=1),
             q: MapFilters = Depends(), bins: int = Query(64, ge=2, le=512)) -> Response:
    vv, v, ds, keep = _filtered(views, catalogs.get(), name, clusters_version_, q)

    def build() -> bytes:
        f = keep()
        return _json({"dataset": name, "version": v, "total": f.num_rows, "bins": bins, "extent": ds.extent,
                      "cells": am.histogram(f, ds.extent, bins)}).body

    if not q.any():  # the default view
        return Response(views.cache.get(("bins", name, v, vv.parts, bins), build), media_type="application/json")
    return Response(build(), media_type="application/json")


@router.get(PATHS["frame"], tags=["audit"], response_class=Response,
            responses={200: {"content": {mf.MEDIA_TYPE: {}}, "description": "a map frame (carve.audit.mapframe)"}})
def map_frame(request: Request, views: ViewsDep, catalogs: CatalogsDep, name: str = Path(pattern=NAME_PATTERN),
              clusters_version_: int | None = Query(None, alias="clusters_version", ge=1),
              q: MapFilters = Depends(), width: int = Query(960, ge=16, le=8192),
              height: int = Query(640, ge=16, le=8192), cell: int = Query(mf.DEFAULT_CELL, ge=2, le=64),
              x0: float | None = None, x1: float | None = None, y0: float | None = None, y1: float | None = None,
              bins: int = Query(mf.DEFAULT_BINS, ge=2, le=512), density: bool = True) -> Response:
    """The map's screen as one binary frame: a sample of the points sized by width x height (one per
    `cell`-pixel cell at most) inside the box x0..x1, y0..y1 (default: the whole layout), with the
    density underlay (precomputed per clustering version) unless `density=false`."""
    box = (x0, x1, y0, y1)
    if any(b is None for b in box) and any(b is not None for b in box):
        raise HTTPException(status_code=422, detail="give all of x0, x1, y0, y1 (the view box) or none")
    view = None if x0 is None else [float(b) for b in box]  # type: ignore[arg-type]
    gz = "gzip" in request.headers.get("accept-encoding", "")
    headers = {"Cache-Control": "private, no-cache", "Vary": "Accept-Encoding"}
    if not q.any() and view is None:  # the first screen: built (and packed) once per version and screen
        screen = first_screen(views, catalogs.get(), name, clusters_version_, width, height, cell, bins, density)
        # a browser revalidates it on every load (no-cache) and gets a 304 while the key holds
        etag = _etag(screen.key, gz)
        if etag in _if_none_match(request):
            return Response(status_code=304, headers={**headers, "ETag": etag})
        raw, packed = screen.frame()
        headers["ETag"] = etag
    else:
        vv, _v, _ds, keep = _filtered(views, catalogs.get(), name, clusters_version_, q)
        raw = _ask(lambda: am.map_frame(vv, name, keep(), q.any(), view, width, height, cell, bins, density))
        packed = _pack(raw) if gz else raw
    headers["X-Frame-Bytes"] = str(len(raw))
    if gz:
        return Response(packed, media_type=mf.MEDIA_TYPE, headers={**headers, "Content-Encoding": "gzip"})
    return Response(raw, media_type=mf.MEDIA_TYPE, headers=headers)


def _pack(raw: bytes) -> bytes:
    return gzip.compress(raw, compresslevel=5, mtime=0)


@dataclass(frozen=True)
class FirstScreen:
    """The map's first screen of one dataset for one canvas (no filter, no view box): its cache key
    (dataset, clustering version and its parts, screen, cell, bins, underlay) and `frame()`, the
    frame and its gzip, built once per key in the server's view cache."""

    key: tuple[Any, ...]
    frame: Callable[[], tuple[bytes, bytes]]


def first_screen(views: Views, cat: Catalog, name: str, version: int | None, width: int, height: int,
                 cell: int = mf.DEFAULT_CELL, bins: int = mf.DEFAULT_BINS, density: bool = True) -> FirstScreen:
    """The first screen of `name`'s map at clusters `version` (None: the latest) for a width x height
    canvas, its frame made (or taken from the cache) when `frame()` is called. The frame route and the
    map page (which carries it inline, routes/ui.py) share it."""
    vv, v, _ds, keep = _filtered(views, cat, name, version, MapFilters(defect=None))
    key = ("frame", name, v, vv.parts, width, height, cell, bins, density)

    def make() -> tuple[bytes, bytes]:
        raw = _ask(lambda: am.map_frame(vv, name, keep(), False, None, width, height, cell, bins, density))
        return raw, _pack(raw)

    return FirstScreen(key, lambda: views.cache.get(key, make))


def _etag(key: tuple[Any, ...], gz: bool) -> str:
    """A strong validator of a cached first-screen frame: its cache key (dataset, clustering version
    and its parts, screen, cell, bins, underlay) and the encoding; the same in every server process."""
    return '"' + hashlib.sha256(repr((key, gz)).encode()).hexdigest()[:32] + '"'


def _if_none_match(request: Request) -> set[str]:
    """The entity tags of the request's If-None-Match (weak ones compared as strong, RFC 9110 13.1.2)."""
    tags = request.headers.get("if-none-match", "")
    return {t.strip().removeprefix("W/") for t in tags.split(",") if t.strip()}


@router.get(PATHS["facets"], tags=["audit"], response_class=JSONResponse, response_model=MapFacetsResponse)
def map_facets(views: ViewsDep, catalogs: CatalogsDep, name: str = Path(pattern=NAME_PATTERN),
               clusters_version_: int | None = Query(None, alias="clusters_version", ge=1)) -> Response:
    v = views.audit.clusters_version(clusters_version_)
    cat = catalogs.get()
    views.require_dataset(cat, name)
    vv = views.audit.version(v)
    st = aq.stamp(views.cache, cat, name)  # the findings' state: a new run makes a new key
    return _json(views.cache.get(("facets", name, v, vv.parts, st), lambda: am.facets(vv, name, cat)))


@router.get(PATHS["cluster"], tags=["audit"], response_class=JSONResponse, response_model=ClusterDetailResponse)
def cluster_detail(views: ViewsDep, catalogs: CatalogsDep, name: str = Path(pattern=NAME_PATTERN),
                   cluster: int = Path(ge=0), clusters_version_: int | None = Query(None, alias="clusters_version", ge=1),
                   shards_version_: int | None = Query(None, alias="shards_version", ge=1),
                   offset: int = Query(0, ge=0), limit: int = Query(48, ge=1, le=1000)) -> Response:
    v = views.audit.clusters_version(clusters_version_)
    views.require_dataset(catalogs.get(), name)
    return _json(am.cluster_detail(views.audit.version(v), name, cluster, shards_version_, offset, limit))


@router.get(PATHS["neighbours"], tags=["events"], response_class=JSONResponse, response_model=NeighboursResponse)
def neighbours(views: ViewsDep, catalogs: CatalogsDep, event_id: str = Path(pattern=ID_PATTERN),
               k: int = Query(8, ge=1, le=100), clusters_version_: int | None = Query(None, alias="clusters_version",
                                                                                      ge=1)) -> Response:
    cat = catalogs.get()
    v = views.audit.clusters_version(clusters_version_)
    body = am.neighbours(views.audit.version(v), event_id, k)
    if body is None:
        views._event_row(cat, event_id, ["event_id"])  # 404 for an unknown event
        body = {"event_id": event_id, "clusters_version": v, "cluster": None, "neighbours": [],
                "note": "the event is not assigned in this clusters version yet"}
    return _json(body)


# -- coverage over time ----------------------------------------------------------------------------
def coverage_diff(views: Views, cat: Catalog, cfg: CarveConfig, name: str, kind: str | None, frm: int | None,
                  to: int | None, batch: str | None, min_ratio: float) -> dict[str, Any]:
    """`carve.audit.model.coverage_change` of one known dataset (the drift from `coverage_drift`)."""
    views.require_dataset(cat, name)
    return _ask(lambda: am.coverage_change(
        views.audit, cat, name, kind, frm, to, batch, min_ratio,
        lambda v: am.drift_or_none(lambda x: coverage_drift(views.root, cfg, x), v)))


@router.get(PATHS["coverage"], tags=["datasets", "audit"], response_class=JSONResponse, response_model=CoverageResponse)
def coverage(views: ViewsDep, catalogs: CatalogsDep, cfg: CfgDep, name: str = Path(pattern=NAME_PATTERN),
             from_: int | None = Query(None, alias="from", ge=1), to: int | None = Query(None, ge=1),
             kind: str | None = Query(None, pattern="^(clusters|shards)$"),
             batch: str | None = Query(None, pattern=r"^[A-Za-z0-9_.\-]{1,200}$"),
             min_ratio: float = Query(UNDER_COVERED_RATIO, gt=0, le=10)) -> Response:
    cat = catalogs.get()
    body = dict(views.coverage(cat, name))
    if body.get("clusters_version") is not None or kind == "shards":
        body.update(coverage_diff(views, cat, cfg, name, kind, from_, to, batch, min_ratio))
    return _json(body)


@router.get(PATHS["coverage_csv"], tags=["audit"], response_class=Response,
            responses={200: {"content": {"text/csv": {}}}})
def coverage_csv(views: ViewsDep, catalogs: CatalogsDep, cfg: CfgDep, name: str = Path(pattern=NAME_PATTERN),
                 from_: int | None = Query(None, alias="from", ge=1), to: int | None = Query(None, ge=1),
                 kind: str | None = Query(None, pattern="^(clusters|shards)$"),
                 batch: str | None = Query(None, pattern=r"^[A-Za-z0-9_.\-]{1,200}$"),
                 min_ratio: float = Query(UNDER_COVERED_RATIO, gt=0, le=10)) -> Response:
    d = coverage_diff(views, catalogs.get(), cfg, name, kind, from_, to, batch, min_ratio)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["dataset", "kind", "version", "cluster", "size", "ratio_to_median", "median", "episodes",
                "suggested_episodes", "representative_caption", "example_event_id"])
    for u in d["under_covered"]:
        w.writerow([name, d["kind"], d["to"], u["cluster"], u["size"], u["ratio"], d["median"], u["episodes"],
                    u["suggested_episodes"], u["caption"] or "", u["event_id"] or ""])
    fname = f"{name}-under-covered-{d['kind']}-v{d['to']}.csv"
    return Response(buf.getvalue().encode(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{fname}"'})



# -- quality ---------------------------------------------------------------------------------------
@router.get(PATHS["quality"], tags=["datasets", "audit"], response_class=JSONResponse, response_model=QualityResponse)
def quality(views: ViewsDep, catalogs: CatalogsDep, name: str = Path(pattern=NAME_PATTERN),
            worst: int = Query(aq.WORST, ge=0, le=1000)) -> Response:
    cat = catalogs.get()
    views.require_dataset(cat, name)
    return _json(aq.dataset_quality(views.cache, views.root, cat, name, worst))


@router.get(PATHS["quality_csv"], tags=["audit"], response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def quality_csv(views: ViewsDep, catalogs: CatalogsDep, name: str = Path(pattern=NAME_PATTERN)) -> Response:
    cat = catalogs.get()
    views.require_dataset(cat, name)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(aq.DROP_COLUMNS)
    w.writerows(aq.drop_rows(views.cache, cat, name))
    return Response(buf.getvalue().encode(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}-drop-list.csv"'})
