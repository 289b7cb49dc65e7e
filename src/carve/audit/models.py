"""Typed responses of the audit routes (pydantic), named in the OpenAPI schema.

Each model describes one JSON body exactly (`extra="forbid"`); the routes pass it as
`response_model` so `/docs` and `/openapi.json` show it, and send the body they build (the
bytes the pages and the static export read) unchanged. Fields a body carries only in some
cases (a `note` when there is nothing to show) have a default and are left out when unset.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ValueCount(_Body):
    """One distinct value of a column and how many rows have it."""

    value: str | int | None
    count: int


# -- /datasets/{name}/clusters ---------------------------------------------------------------
class ClusterRow(_Body):
    """One cluster of a dataset: size and share in scope, before/after balancing, duplicates,
    whether it is under-covered (`carve.audit.coverage`), top tasks and samples."""

    cluster_id: int
    size: int
    share: float
    size_before: int | None
    size_after: int | None
    share_before: float | None
    share_after: float | None
    duplicates: int
    under_covered: bool
    top_tasks: list[str]
    sample_captions: list[str]
    sample_events: list[str]


class ClustersResponse(_Body):
    """`GET /datasets/{name}/clusters`: the latest clustering's clusters of one dataset."""

    dataset: str
    clusters_version: int | None
    shards_version: int | None
    k: int | None
    events: int
    stats: dict[str, Any] | None
    note: str | None
    clusters: list[ClusterRow]


# -- the map ------------------------------------------------------------------------------------
class MapPoint(_Body):
    """One event on the embedding map (the stored layout)."""

    event_id: str
    x: float
    y: float
    cluster: int
    task: str | None
    robot: str | None
    arms: list[str] | None
    verb: str | None
    caption: str | None
    episode_id: str | None
    dup: bool | None


class MapResponse(_Body):
    """`GET /datasets/{name}/map`: a page of the layout's points (filtered)."""

    dataset: str
    version: int
    total: int
    offset: int
    limit: int
    extent: list[float]
    points: list[MapPoint]


class BinCell(_Body):
    """One non-empty cell of the map's 2-D histogram."""

    ix: int
    iy: int
    count: int
    cluster: int
    cluster_count: int
    event_id: str


class MapBinsResponse(_Body):
    """`GET /datasets/{name}/map/bins`: the layout's points as a bins x bins histogram."""

    dataset: str
    version: int
    total: int
    bins: int
    extent: list[float]
    cells: list[BinCell]


class VersionLists(_Body):
    clusters: list[int]
    shards: list[int]


class Facets(_Body):
    task: list[ValueCount]
    robot: list[ValueCount]
    arm: list[ValueCount]
    verb: list[ValueCount]
    cluster: list[ValueCount]
    defect: list[ValueCount]  # the kinds of findings touching events (`carve.audit.quality`), then "none"


class MapFacetsResponse(_Body):
    """`GET /datasets/{name}/map/facets`: distinct values of each map filter, with counts."""

    dataset: str
    version: int
    total: int
    versions: VersionLists
    facets: Facets


# -- one cluster -----------------------------------------------------------------------------------
class ClusterBalance(_Body):
    """The cluster in a shards version (only `shards_version` when there is none)."""

    shards_version: int | None
    clusters_version: int | None = None
    policy: str | None = None
    before: int | None = None
    after: int | None = None
    rows: int | None = None
    unique_events: int | None = None
    weight: float | None = None


class ClusterEvent(_Body):
    event_id: str
    episode_id: str | None
    caption: str | None
    task: str | None
    robot: str | None
    verb: str | None
    dup: bool | None
    cluster_dist: float | None
    dup_of: str | None
    keyframe_url: str
    keyframe_urls: list[str]
    clip_url: str
    signals_url: str


class NearDuplicate(_Body):
    event_id: str
    dup_of: str | None
    caption: str | None


class ClusterMembers(_Body):
    dataset: list[ValueCount]
    task: list[ValueCount]
    robot: list[ValueCount]


class ClusterDetailResponse(_Body):
    """`GET /datasets/{name}/clusters/{cluster}`: one cluster's events (paged) and its balance."""

    dataset: str
    cluster: int
    clusters_version: int
    size: int
    size_all_datasets: int
    duplicates: int
    balance: ClusterBalance
    total: int
    offset: int
    limit: int
    events: list[ClusterEvent]
    members: ClusterMembers
    near_duplicates: list[NearDuplicate]


# -- neighbours ------------------------------------------------------------------------------------
class Neighbour(_Body):
    event_id: str
    episode_id: str | None = None
    dataset: str | None = None
    caption: str | None = None
    task: str | None = None
    x: float | None = None
    y: float | None = None
    similarity: float
    distance: float
    keyframe_url: str


class NeighboursResponse(_Body):
    """`GET /events/{event_id}/neighbours`: the nearest events of the same cluster."""

    event_id: str
    clusters_version: int
    cluster: int | None
    searched: int | None = None
    dup_of: str | None = None
    duplicates: list[str] | None = None
    neighbours: list[Neighbour]
    note: str | None = None


# -- coverage --------------------------------------------------------------------------------------
class TaskCoverage(_Body):
    task: str
    events: int
    episodes: int
    clusters: int
    duplicates: int


class RobotCoverage(_Body):
    robot: str
    events: int
    episodes: int
    clusters: int
    duplicates: int


class ClusterChange(_Body):
    cluster: int
    before: int
    after: int
    delta: int
    status: str
    caption: str | None
    event_id: str | None


class UnderCovered(_Body):
    """An under-covered cluster (`carve.audit.coverage`) and the episodes to collect for it."""

    cluster: int
    size: int
    ratio: float
    caption: str | None
    event_id: str | None
    episodes: int
    events_per_episode: float
    suggested_episodes: int


class CoverageResponse(_Body):
    """`GET /datasets/{name}/coverage`: coverage by task and robot, plus (once clustered) the change
    between two versions and the under-covered clusters."""

    dataset: str
    clusters_version: int | None
    events: int
    assigned: int | None = None
    duplicates: int | None = None
    by_task: list[TaskCoverage]
    by_robot: list[RobotCoverage]
    note: str | None
    kind: str | None = None
    from_: int | None = Field(default=None, alias="from")
    to: int | None = None
    batch: str | None = None
    changes: dict[str, int] | None = None
    clusters: list[ClusterChange] | None = None
    drift: dict[str, Any] | None = None
    drift_ratio: float | None = None
    median: float | None = None
    min_ratio: float | None = None
    under_covered: list[UnderCovered] | None = None


# -- quality (the gate's findings in the catalog) -------------------------------------------------
class SeverityCount(_Body):
    severity: str
    episodes: int
    findings: int


class KindCount(_Body):
    """One kind of finding in a dataset: its severity, what it is, episodes and findings."""

    kind: str
    severity: str
    what: str
    episodes: int
    findings: int


class Finding(_Body):
    """One finding: frames [start_frame, end_frame] of the episode (end inclusive)."""

    kind: str
    severity: str
    start_frame: int
    end_frame: int
    detail: str | None


class QualityEpisode(_Body):
    """One episode of the worst list: its score (`carve.quality.defects`), kinds, provenance, and
    what the gate does with its events (gated by an error, put back by a `keep` flag)."""

    episode_id: str
    episode_index: int | None
    score: int
    kinds: list[str]
    errors: int
    warnings: int
    status: str | None
    quarantine_reason: str | None
    source_file: str | None
    source_key: str | None
    dropped: bool
    events: int
    events_gated: int
    kept_events: int
    event_id: str | None
    findings: list[Finding]


class QualityDrop(_Body):
    episodes: int
    kept_events: int


class QualityResponse(_Body):
    """`GET /datasets/{name}/quality`: the quality gate's findings of one dataset."""

    dataset: str
    episodes: int
    episodes_checked: int
    episodes_with_findings: int
    quarantined: int
    mean_score: float | None
    findings: int
    by_severity: list[SeverityCount]
    by_kind: list[KindCount]
    worst: list[QualityEpisode]
    drop: QualityDrop


# -- one event -------------------------------------------------------------------------------------
class EventFinding(_Body):
    """A finding that touches the event: span in episode frames and relative to the event's first
    frame (`event_start`/`event_end`, end inclusive; negative or past the event when it spills)."""

    kind: str
    severity: str
    detail: str | None
    start_frame: int
    end_frame: int
    event_start: int
    event_end: int


class EventResponse(_Body):
    """`GET /events/{event_id}`: one event's row, where it is in the clustering, its provenance in
    the source (file, key inside it, span in source seconds) and the findings that touch it."""

    event_id: str
    episode_id: str
    dataset: str
    source_uri: str | None
    source_file: str | None
    source_key: str | None
    source_start_s: float | None
    source_end_s: float | None
    camera: str | None
    robot: str | None
    episode_index: int | None
    event_index: int | None
    num_events: int | None
    start_frame: int
    end_frame: int
    fps: float | None
    start_reason: str | None
    boundary_reason: str | None
    task: str | None
    caption: str | None
    next_caption: str | None
    caption_model: str | None
    caption_status: str | None
    cluster_id: int | None
    dup_of: str | None
    clusters_version: int | None
    num_keyframes: int
    keyframe_urls: list[str]
    keyframes: list[str] | None = None  # data: URLs, unless `images=false`
    findings: list[EventFinding]
    quality_gate: str  # pass | excluded | kept


AUDIT_MODELS: tuple[type[BaseModel], ...] = (
    ClustersResponse, MapResponse, MapBinsResponse, MapFacetsResponse, ClusterDetailResponse, NeighboursResponse,
    CoverageResponse, QualityResponse, EventResponse,
)
