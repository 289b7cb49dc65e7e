"""Events part-file bookkeeping: which part holds each episode, compaction, orphans and their collection.

The catalog (revision 0003) has a `parts` table, one row per part file under `<root>/events/`
(`path` relative to the root, `batch`, `dataset`, `rows`, `bytes`, `created_at`, `state`
`live` | `compacted`, `compacted_at`), and `episodes.part`, the part holding an episode's
events. The functions here work over an opened `Root` and its `Catalog`:

* `commit_block`: a block's episodes (ok and failed) and the parts that hold them, in one
  catalog transaction; commit stays per episode (an episode is `ok` with its part, or failed).
* `compact`: rewrites the small live parts of finished batches into parts of the target
  size: the new files are written first (temp name, then rename), then one transaction records
  the new parts, moves each episode to its new part (only if it still points at the old one)
  and marks the old parts `compacted`; the old files are deleted afterwards (at once, or by
  `gc` after a grace period). A crash at any point leaves only files the catalog does not
  reference, which readers ignore and `gc` collects.
* `scan`: what is on disk against what the catalog references: live parts, compacted parts
  awaiting deletion, orphans (part files no committed episode points to: a killed driver's
  parts, a crashed compaction's output, parts whose episodes were all re-ingested), temp files
  (`.tmp-*`, a write cut short) and files of batches written before revision 0003 (`legacy`:
  read by batch, never collected).
* `gc`: deletes orphans, temp files and compacted parts older than a grace period (`min_age_s`,
  measured from the file's modification time or the compaction time), so a running job's fresh
  parts, not yet committed, are never taken.

Readers (storage/events.py) read a file only for the committed episodes the catalog places
in it, so none of this changes what they return.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import sqlalchemy as sa

from carve.storage.catalog import EPISODES, RUNS, Catalog
from carve.storage.events import EVENTS_DIR, write_event_part
from carve.storage.layout import RootLayout
from carve.storage.root import Root
from carve.storage.schema import check_schema

PARTS = sa.Table(  # as migrations revision 0003 creates it
    "parts", sa.MetaData(),
    sa.Column("path", sa.Text, primary_key=True),
    sa.Column("batch", sa.Text, nullable=False),
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("compacted_at", sa.Double),
)
UNKNOWN = "(unknown)"


# -- commit --------------------------------------------------------------------------------
def commit_block(catalog: Catalog, records: list[dict[str, Any]], job_id: str | None = None) -> None:
    """Record a block's episode summaries (WriteEvents' rows: `part`, `part_rows`, `part_bytes`
    on the ok ones) and the parts holding them, in one transaction."""
    if not records:
        return
    now = time.time()
    parts: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.get("status") == "ok" and r.get("part"):
            parts.setdefault(r["part"], {
                "path": r["part"], "batch": r["batch"], "dataset": r["dataset"], "rows": int(r.get("part_rows") or 0),
                "bytes": int(r.get("part_bytes") or 0), "created_at": now, "state": "live", "compacted_at": None,
            })
    from carve.storage.defects import record_defects

    with catalog.transaction() as c:
        if parts:
            c.execute(PARTS.insert(), list(parts.values()))
        catalog.record_episodes(records, job_id=job_id, conn=c)
        record_defects(c, [r for r in records if r.get("status") == "ok"])


def live_parts(catalog: Catalog, batch: str | None = None) -> list[dict[str, Any]]:
    """Live part rows (path relative to the root), by path."""
    p = PARTS.c
    q = sa.select(PARTS).where(p.state == "live")
    if batch is not None:
        q = q.where(p.batch == batch)
    with catalog.reading() as c:
        return [dict(r) for r in c.execute(q.order_by(p.path)).mappings()]


def _referenced(catalog: Catalog) -> tuple[dict[str, set[str]], dict[str, str], set[str]]:
    """(part path -> committed episode ids in it, batch -> dataset of its committed episodes,
    batches holding committed episodes without a part: written before revision 0003)."""
    e = EPISODES.c
    with catalog.reading() as c:
        rows = c.execute(sa.select(e.episode_id, e.dataset, e.batch, e.part)
                         .where(e.status == "ok", e.batch.is_not(None))).all()
    by_part: dict[str, set[str]] = {}
    datasets: dict[str, str] = {}
    legacy: set[str] = set()
    for episode_id, dataset, batch, part in rows:
        datasets.setdefault(batch, dataset)
        if part:
            by_part.setdefault(part, set()).add(episode_id)
        else:
            legacy.add(batch)
    return by_part, datasets, legacy


# -- what is on disk -----------------------------------------------------------------------
@dataclass
class PartFile:
    path: str  # relative to the root
    bytes: int
    age_s: float
    dataset: str = UNKNOWN
    kind: str = "orphan"  # live | compacted | orphan | temp | legacy


@dataclass
class Scan:
    """Every file under `<root>/events/`, classified (see the module doc)."""

    files: list[PartFile] = field(default_factory=list)

    def of(self, kind: str, dataset: str | None = None) -> list[PartFile]:
        return [f for f in self.files if f.kind == kind and (dataset is None or f.dataset == dataset)]

    def collectable(self, min_age_s: float) -> list[PartFile]:
        return [f for f in self.files if f.kind in ("orphan", "temp", "compacted") and f.age_s >= min_age_s]


def _dataset_in(root: Root, path: str) -> str:
    """The dataset named in a part file's rows (orphans have no catalog row to say it)."""
    try:
        t = pq.read_table(path, columns=["dataset"], filesystem=root.fs)
        values = t.column("dataset").drop_null().unique().to_pylist() if t.num_rows else []
        return values[0] if values else UNKNOWN
    except Exception:  # a torn or foreign file: still reported and collected
        return UNKNOWN


def scan(root: Root, now: float | None = None) -> Scan:
    """Classify the files under `<root>/events/`. The files are listed before the catalog is
    read, so a part committed in between counts as referenced, not orphaned."""
    now = time.time() if now is None else now
    base = root.path(EVENTS_DIR)
    infos = [] if not root.exists(EVENTS_DIR) else [
        i for i in root.fs.get_file_info(pafs.FileSelector(base, recursive=True)) if i.type == pafs.FileType.File]
    catalog = root.catalog
    by_part, batch_dataset, legacy = _referenced(catalog)
    p = PARTS.c
    with catalog.reading() as c:
        registered = {r.path: r for r in c.execute(sa.select(p.path, p.dataset, p.state, p.compacted_at))}
    out = Scan()
    for i in infos:
        rel = root.relative(i.path)
        mtime = i.mtime.timestamp() if i.mtime is not None else now
        f = PartFile(rel, int(i.size or 0), max(0.0, now - mtime))
        batch = RootLayout.parse_batch(rel)
        reg = registered.get(rel)
        if i.base_name.startswith(".tmp-"):
            f.kind, f.dataset = "temp", batch_dataset.get(batch or "", UNKNOWN)
        elif not rel.endswith(".parquet"):
            continue
        elif rel in by_part:
            f.kind, f.dataset = "live", reg.dataset if reg is not None else batch_dataset.get(batch or "", UNKNOWN)
        elif reg is not None and reg.state == "compacted":
            f.kind, f.dataset = "compacted", reg.dataset
            f.age_s = max(0.0, now - float(reg.compacted_at or mtime))
        elif reg is None and batch in legacy:
            f.kind, f.dataset = "legacy", batch_dataset.get(batch or "", UNKNOWN)
        else:
            f.dataset = reg.dataset if reg is not None else _dataset_in(root, i.path)
        out.files.append(f)
    return out


def status(root: Root) -> dict[str, Any]:
    """Per dataset: episodes ok/failed, events, batches, live parts, compacted parts awaiting
    deletion, orphan parts and temp files (count and bytes); what `carve status` prints."""
    sc = scan(root)
    e = EPISODES.c
    with root.catalog.reading() as c:
        batches = dict(c.execute(sa.select(e.dataset, sa.func.count(sa.distinct(e.batch)))
                                 .where(e.status == "ok").group_by(e.dataset)).all())
    out: dict[str, Any] = {}
    names = [d["name"] for d in root.catalog.datasets()]
    for name in [*names, *sorted({f.dataset for f in sc.files} - set(names))]:
        d = root.catalog.dataset(name) or {"ok": 0, "failed": 0, "events": 0}
        row: dict[str, Any] = {"episodes_ok": d["ok"], "episodes_failed": d["failed"], "events": d["events"],
                               "batches": int(batches.get(name, 0))}
        for kind in ("live", "legacy", "compacted", "orphan", "temp"):
            fs = sc.of(kind, name)
            row[f"{kind}_parts"] = len(fs)
            row[f"{kind}_bytes"] = sum(f.bytes for f in fs)
        row["orphans"] = [{"path": f.path, "bytes": f.bytes, "age_s": round(f.age_s, 1), "kind": f.kind}
                          for f in sc.files if f.dataset == name and f.kind in ("orphan", "temp")]
        out[name] = row
    return out


# -- collection ----------------------------------------------------------------------------
def gc(root: Root, min_age_s: float = 3600.0, dry_run: bool = False) -> list[PartFile]:
    """Delete orphan parts, temp files and compacted parts at least `min_age_s` old (by file
    modification time; compacted parts by compaction time) and forget the deleted parts'
    catalog rows; return what was (with `dry_run`: would be) removed."""
    victims = scan(root).collectable(min_age_s)
    if dry_run:
        return victims
    removed = []
    for f in victims:
        try:
            root.fs.delete_file(root.path(f.path))
        except FileNotFoundError:
            pass
        removed.append(f)
    _forget(root.catalog, [f.path for f in removed])
    return removed


def _forget(catalog: Catalog, paths: Iterable[str]) -> None:
    """Drop the parts rows of deleted files, unless an episode points at them again."""
    paths = list(paths)
    if not paths:
        return
    e = EPISODES.c
    with catalog.transaction() as c:
        still = set(c.execute(sa.select(e.part).distinct().where(e.part.in_(paths), e.status == "ok")).scalars())
        gone = [p for p in paths if p not in still]
        if gone:
            c.execute(PARTS.delete().where(PARTS.c.path.in_(gone)))


# -- compaction ----------------------------------------------------------------------------
@dataclass
class Compaction:
    batch: str
    old: list[str]  # relative paths
    new: list[str]
    rows: int
    episodes: int


def finished_batches(catalog: Catalog, min_age_s: float) -> list[str]:
    """Batches whose run finished (a `runs` row) or whose last commit is `min_age_s` old (a run
    that died); a running job's batch is never among them."""
    e, p = EPISODES.c, PARTS.c
    now = time.time()
    with catalog.reading() as c:
        done = set(c.execute(sa.select(RUNS.c.batch)).scalars())
        last = dict(c.execute(sa.select(e.batch, sa.func.max(e.updated_at)).where(e.batch.is_not(None))
                              .group_by(e.batch)).all())
        have = set(c.execute(sa.select(p.batch).distinct().where(p.state == "live")).scalars())
    return sorted(b for b in have if b in done or now - float(last.get(b) or now) >= min_age_s)


def _groups(parts: list[dict[str, Any]], target_bytes: int) -> list[list[dict[str, Any]]]:
    """Runs of consecutive (by path, i.e. by first episode) small parts whose bytes add up to at
    most the target; a part at or above the target ends a run. Only runs of 2+ parts are worth
    rewriting."""
    groups: list[list[dict[str, Any]]] = []
    cur: list[dict[str, Any]] = []
    size = 0
    for part in parts:
        b = int(part["bytes"])
        if b >= target_bytes:
            groups.append(cur)
            cur, size = [], 0
            continue
        if cur and size + b > target_bytes:
            groups.append(cur)
            cur, size = [], 0
        cur.append(part)
        size += b
    groups.append(cur)
    return [g for g in groups if len(g) >= 2]


def compact(root: Root, target_mb: float = 128.0, grace_s: float = 0.0, min_batch_age_s: float = 3600.0,
            row_group_size: int = 256, dry_run: bool = False) -> list[Compaction]:
    """Rewrite the small live parts of finished batches (`finished_batches`) into parts of about
    `target_mb` (module doc). Compacted files older than `grace_s` are deleted at the end (all of
    them, today's included, with the default 0); younger ones stay readable for readers holding
    an older snapshot, and a later `compact` or `gc` (its `min_age_s` since the compaction)
    deletes them."""
    catalog = root.catalog
    target = max(1, int(target_mb * 1024 * 1024))
    by_part, _, _ = _referenced(catalog)
    done: list[Compaction] = []
    for batch in finished_batches(catalog, min_batch_age_s):
        for group in _groups(live_parts(catalog, batch), target):
            olds = [g["path"] for g in group]
            if dry_run:
                done.append(Compaction(batch, olds, [], sum(int(g["rows"]) for g in group), 0))
                continue
            done.append(_compact_group(root, batch, group, by_part, row_group_size))
    if not dry_run:
        gc_compacted(root, older_than_s=grace_s)
    return done


def _compact_group(root: Root, batch: str, group: list[dict[str, Any]], by_part: dict[str, set[str]],
                   row_group_size: int) -> Compaction:
    """Write one group's committed rows as one new part, then switch the catalog over in one transaction."""
    tables = []
    moved: dict[str, str] = {}  # episode_id -> old part
    for g in group:
        keep = by_part.get(g["path"], set())
        if not keep:
            continue
        pf = pq.ParquetFile(root.path(g["path"]), filesystem=root.fs)
        check_schema(pf.schema_arrow, g["path"])
        t = pf.read()
        mask = [e in keep for e in t.column("episode_id").to_pylist()]
        if not all(mask):
            t = t.filter(pa.array(mask, pa.bool_()))
        tables.append(t)
        moved.update({e: g["path"] for e in keep})
    new_paths: list[str] = []
    rows = 0
    now = time.time()
    new_rows: list[dict[str, Any]] = []
    if tables:
        t = pa.concat_tables(tables, promote_options="default")  # write_event_part conforms it to the schema
        first = min(t.column("episode_index").to_pylist())
        path = write_event_part(root, batch, f"{first:06d}-c{uuid.uuid4().hex[:8]}", t, row_group_size)
        rel = root.relative(path)
        new_paths.append(rel)
        rows = t.num_rows
        new_rows.append({"path": rel, "batch": batch, "dataset": group[0]["dataset"], "rows": rows,
                         "bytes": int(root.fs.get_file_info(path).size or 0), "created_at": now, "state": "live",
                         "compacted_at": None})
    e, p = EPISODES.c, PARTS.c
    with root.catalog.transaction() as c:
        if new_rows:
            c.execute(PARTS.insert(), new_rows)
            for episode_id, old in moved.items():
                # only if it still points at the old part (a re-ingest since then keeps its new part)
                c.execute(EPISODES.update().where(e.episode_id == episode_id, e.part == old)
                          .values(part=new_paths[0]))
        c.execute(PARTS.update().where(p.path.in_([g["path"] for g in group]))
                  .values(state="compacted", compacted_at=now))
    return Compaction(batch, [g["path"] for g in group], new_paths, rows, len(moved))


def gc_compacted(root: Root, older_than_s: float = 0.0) -> list[str]:
    """Delete the files of parts compacted at least `older_than_s` ago and forget their rows."""
    p = PARTS.c
    cutoff = time.time() - older_than_s
    with root.catalog.reading() as c:
        paths = list(c.execute(sa.select(p.path).where(p.state == "compacted", p.compacted_at <= cutoff)).scalars())
    for rel in paths:
        try:
            root.fs.delete_file(root.path(rel))
        except FileNotFoundError:
            pass
    _forget(root.catalog, paths)
    return paths


def plan_parts(sizes: list[int], target_bytes: int) -> list[tuple[int, int]]:
    """Split consecutive items (episodes, by their Arrow bytes) into [start, stop) runs of at most
    `target_bytes` each (an item larger than the target is a run of its own)."""
    runs: list[tuple[int, int]] = []
    start, size = 0, 0
    for i, b in enumerate(sizes):
        if i > start and size + b > target_bytes:
            runs.append((start, i))
            start, size = i, 0
        size += b
    if sizes:
        runs.append((start, len(sizes)))
    return runs

