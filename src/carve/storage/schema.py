"""The event schema (version `SCHEMA_VERSION`, 2) as an Arrow schema, with its version in the schema metadata.

This is the written-down format of ../shared/design/ARCHITECTURE.md ("Event row"), with
these additions (see README, "Divergences"): `robot`, `start_reason`, `caption_status`,
`gripper` (per-frame gripper opening in [0, 1] of the event's first acting arm, empty when
unknown), the optional per-step observation columns `env_state`, `obs_stride`, `obs_visual`
(null unless the source / ingest provides them), `cameras`, `arms`, `state_names`,
`action_names` (added by v2; v1 files read them as null) and the embedding columns as variable `list<float32>` (their sizes
depend on the embedders chosen, and are recorded in the metadata key `carve.emb_dims` of shards).

Readers call `check_schema(schema, where)`: a table written by a newer schema version, or
one missing required columns, is refused with a message naming the file and the reason.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

SCHEMA_NAME = "carve.event"
SCHEMA_VERSION = 3  # v2 adds cameras, arms, state/action names, emb_visual_cameras; v3 the source_* provenance
# columns; files of an older version read the columns they lack as null
META_NAME = b"carve.schema"
META_VERSION = b"carve.schema_version"
META_EMB_DIMS = b"carve.emb_dims"

BOUNDARY_REASONS = ("gripper_close", "gripper_open", "motion_start", "pause", "motion_change", "speed_change", "visual",
                    "max_len",
                    "episode_start", "episode_end")

_f32_list = pa.list_(pa.float32())

EVENT_FIELDS: list[pa.Field] = [
    pa.field("event_id", pa.string(), nullable=False),
    pa.field("episode_id", pa.string(), nullable=False),
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("source_uri", pa.string()),
    # v3: where the event lives in its source (ingest.sources.base.provenance): the file holding the
    # episode (relative to source_uri), the key inside it, and the event's span in source seconds
    pa.field("source_file", pa.string()),
    pa.field("source_key", pa.string()),
    pa.field("source_start_s", pa.float64()),
    pa.field("source_end_s", pa.float64()),
    pa.field("camera", pa.string()),  # the first of `cameras`
    pa.field("cameras", pa.list_(pa.string())),  # the views of `keyframes` / `emb_visual_cameras`, in order
    pa.field("robot", pa.string()),
    pa.field("arms", pa.list_(pa.string())),  # the arm(s) acting in the event ("arm" for a single arm)
    pa.field("episode_index", pa.int32(), nullable=False),
    pa.field("event_index", pa.int32(), nullable=False),
    pa.field("num_events", pa.int32(), nullable=False),
    pa.field("start_frame", pa.int32(), nullable=False),
    pa.field("end_frame", pa.int32(), nullable=False),  # exclusive
    pa.field("fps", pa.float32(), nullable=False),
    pa.field("start_reason", pa.string()),
    pa.field("boundary_reason", pa.string()),
    pa.field("task", pa.string()),
    pa.field("caption", pa.string()),
    pa.field("next_caption", pa.string()),
    pa.field("caption_model", pa.string()),
    pa.field("caption_status", pa.string()),  # "ok", "empty" (the captioner returned nothing) or "failed: <reason>"
    pa.field("keyframes", pa.list_(pa.binary())),  # JPEGs: start, middle, end of each camera, camera-major
    pa.field("state", pa.list_(_f32_list)),
    pa.field("action", pa.list_(_f32_list)),
    pa.field("state_names", pa.list_(pa.string())),  # column names of `state` (v2)
    pa.field("action_names", pa.list_(pa.string())),  # column names of `action` (v2)
    pa.field("gripper", _f32_list),
    # optional per-step observations (absent in older roots: read as null): the source's privileged
    # environment state per frame (LeRobot's observation.environment_state, e.g. simulator object
    # poses), and a visual descriptor of the frame every `obs_stride` frames from start_frame
    pa.field("env_state", pa.list_(_f32_list)),
    pa.field("obs_stride", pa.int32()),
    pa.field("obs_visual", pa.list_(_f32_list)),
    pa.field("emb_visual", _f32_list),  # mean over cameras of the start-keyframe embeddings (unit)
    pa.field("emb_visual_cameras", pa.list_(_f32_list)),  # start-keyframe embedding per camera
    pa.field("emb_text", _f32_list),
    pa.field("emb_motion", _f32_list),
    pa.field("emb", _f32_list),
    pa.field("end_emb_visual", _f32_list),
    pa.field("cluster_id", pa.int32()),
    pa.field("cluster_path", pa.list_(pa.int32())),
    pa.field("cluster_dist", pa.float32()),
    pa.field("dup_of", pa.string()),
    pa.field("weight", pa.float32()),  # shard rows: the policy's rows per event of the event's cluster
    # shard rows: the weight a loader samples this row with (carve/shard/sampling.py): `weight` in
    # shard.mode "weights" (each event once), 1.0 in "resample" (the rows already repeat); null in event parts
    pa.field("sampling_weight", pa.float32()),
]

REQUIRED_COLUMNS = (
    "event_id",
    "episode_id",
    "dataset",
    "episode_index",
    "event_index",
    "num_events",
    "start_frame",
    "end_frame",
    "fps",
    "task",
    "state",
    "action",
)


class SchemaError(ValueError):
    """A table whose schema Carve cannot read; the message names the file and the reason."""


def event_schema(emb_dims: dict[str, int] | None = None) -> pa.Schema:
    """The v1 event schema, with version (and optionally embedding sizes) in its metadata."""
    meta = {META_NAME: SCHEMA_NAME.encode(), META_VERSION: str(SCHEMA_VERSION).encode()}
    if emb_dims:
        meta[META_EMB_DIMS] = json.dumps(emb_dims, sort_keys=True).encode()
    return pa.schema(EVENT_FIELDS, metadata=meta)


EVENT_SCHEMA = event_schema()


def schema_version(schema: pa.Schema) -> int | None:
    meta = schema.metadata or {}
    raw = meta.get(META_VERSION)
    return int(raw) if raw is not None else None


def emb_dims(schema: pa.Schema) -> dict[str, int]:
    raw = (schema.metadata or {}).get(META_EMB_DIMS)
    return json.loads(raw) if raw else {}


def check_schema(schema: pa.Schema, where: str, required: Iterable[str] = REQUIRED_COLUMNS) -> int:
    """Validate a table/file schema; return its version or raise SchemaError naming `where`."""
    version = schema_version(schema)
    if version is None:
        raise SchemaError(f"{where}: no {META_VERSION.decode()} in the schema metadata; not a Carve event table")
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"{where}: written with event schema v{version}, this Carve reads up to v{SCHEMA_VERSION}; upgrade Carve"
        )
    if version < 1:
        raise SchemaError(f"{where}: unknown event schema version {version}")
    missing = [c for c in required if c not in schema.names]
    if missing:
        raise SchemaError(f"{where}: missing required columns {missing}")
    return version


def make_event_id(episode_id: str, start_frame: int, end_frame: int) -> str:
    """Stable id: a hash of (episode_id, start_frame, end_frame)."""
    h = hashlib.sha1(f"{episode_id}|{int(start_frame)}|{int(end_frame)}".encode()).hexdigest()
    return h[:20]


def events_to_table(rows: list[dict[str, Any]], schema: pa.Schema = EVENT_SCHEMA) -> pa.Table:
    """Build a table from row dicts; columns a row does not set are null."""
    cols = {f.name: [r.get(f.name) for r in rows] for f in schema}
    return pa.Table.from_pydict(cols, schema=schema)


def conform(table: pa.Table, schema: pa.Schema = EVENT_SCHEMA) -> pa.Table:
    """Cast/reorder `table` to `schema`, adding missing nullable columns as nulls."""
    cols = []
    have = set(table.column_names)  # `column_names` builds a new list on every call
    for f in schema:
        if f.name in have:
            col = table.column(f.name)
            if col.type != f.type:
                col = col.cast(f.type)
            cols.append(col)
        else:
            if not f.nullable:
                raise SchemaError(f"table is missing non-nullable column {f.name}")
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=schema)
