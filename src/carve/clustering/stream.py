"""Streaming reads of the event embeddings for clustering: one part file at a time, never all.

The clustering of a large catalog (`clustering.curate`) never holds every embedding at once:

* `read_keys(root, snap)` reads the small key columns (event_id, episode_id, dataset) of every
  committed event of a snapshot, in stream order; row i of it is row i of every pass below
  (all passes read the same `EventSnapshot`, so they see the same rows in the same order);
* `sample_rows(n, size, seed)` picks the seeded training sample;
* `iter_unit_batches(root, snap, rows=...)` streams the `emb` column file by file (optionally
  only some rows), checks it (missing, ragged, NaN/inf, zero rows, named by event_id) and yields
  L2-normalised float32 batches of about `batch_rows` rows with their global row offsets;
* `ClusterSpill` appends the unit vectors of each cluster to its own local float32 file as they
  are assigned, so near-duplicate marking can read back one cluster at a time.

Peak memory of a pass is one part file plus one batch (`batch_rows` x d float32) plus the spill
buffer (`flush_bytes`); the spill lives in a temporary folder on local disk (`spill_dir`, default
the system's temp dir: n x d x 4 bytes, e.g. 2.7 GB for 1M 672-d events) and is removed after.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from carve.clustering.kmeans import ArrowIds, ClusteringError, as_unit_vectors, embedding_matrix
from carve.storage.events import EventSnapshot, iter_events, read_events
from carve.storage.root import Root

KEY_COLUMNS = ["event_id", "episode_id", "dataset"]


def read_keys(root: Root, snap: EventSnapshot) -> pa.Table:
    """event_id, episode_id, dataset of every committed event of `snap`, in stream order (one chunk)."""
    return read_events(root, columns=KEY_COLUMNS, snap=snap).combine_chunks()


def sample_rows(n: int, size: int, seed: int) -> np.ndarray | None:
    """Sorted row indices of a seeded sample of `size` of `n` rows; None if `size >= n` (all rows)."""
    if size >= n:
        return None
    rng = np.random.default_rng([int(seed), 0x5A4D])
    return np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)


@dataclass
class UnitBatch:
    """Unit vectors of some consecutive stream rows: global row `rows[i]` has vector `x[i]`."""

    rows: np.ndarray  # int64 global row indices, ascending
    x: np.ndarray  # (len(rows), d) float32, unit rows


def iter_unit_batches(
    root: Root,
    snap: EventSnapshot,
    rows: np.ndarray | None = None,
    *,
    column: str = "emb",
    batch_rows: int = 16384,
    dim: int | None = None,
) -> Iterator[UnitBatch]:
    """Stream the checked, L2-normalised `column` of the snapshot's events, part file by part
    file, in batches of about `batch_rows` rows (several small part files are joined into one
    batch; a large part file is one batch). With `rows` (sorted global row indices) only those
    rows are returned. Raises ClusteringError naming the events on a missing, ragged, NaN/inf or
    all-zero embedding, or one whose size differs from `dim` / the first batch."""
    want = None if rows is None else np.asarray(rows, dtype=np.int64)
    pending_rows: list[np.ndarray] = []
    pending_x: list[np.ndarray] = []
    pending_n = 0
    g0 = 0

    def flush() -> UnitBatch:
        nonlocal pending_n
        b = UnitBatch(np.concatenate(pending_rows), np.concatenate(pending_x) if len(pending_x) > 1 else pending_x[0])
        pending_rows.clear()
        pending_x.clear()
        pending_n = 0
        return b

    for t in iter_events(root, columns=["event_id", column], snap=snap):
        n_t = t.num_rows
        if want is None:
            local = np.arange(n_t, dtype=np.int64)
        else:
            lo, hi = np.searchsorted(want, [g0, g0 + n_t])
            local = want[lo:hi] - g0
            if len(local) == 0:
                g0 += n_t
                continue
            if len(local) < n_t:
                t = t.take(pa.array(local))
        if t.num_rows:
            ids = ArrowIds(t.column("event_id"))
            x = as_unit_vectors(embedding_matrix(t.column(column), ids, column), ids)
            if dim is None:
                dim = int(x.shape[1])
            elif x.shape[1] != dim:
                raise ClusteringError(
                    f"`{column}` embeddings have different sizes ({dim} and {x.shape[1]}); events with size "
                    f"{x.shape[1]}: {[ids[i] for i in range(min(5, len(ids)))]}"
                )
            pending_rows.append(local + g0)
            pending_x.append(x)
            pending_n += len(x)
            if pending_n >= batch_rows:
                yield flush()
        g0 += n_t
    if want is not None and len(want) and int(want[-1]) >= g0:
        raise ClusteringError(f"{root}: row {int(want[-1])} requested but the event snapshot has {g0} rows "
                              "(event files changed while clustering)")
    if pending_n:
        yield flush()


def gather_unit_vectors(root: Root, snap: EventSnapshot, rows: np.ndarray | None, n_rows: int,
                        column: str = "emb") -> np.ndarray:
    """The unit vectors of `rows` (all `n_rows` rows if None) as one (len(rows), d) matrix, in
    row order; filled part file by part file into one preallocated array (no second copy)."""
    total = n_rows if rows is None else len(rows)
    out: np.ndarray | None = None
    pos = 0
    for b in iter_unit_batches(root, snap, rows, column=column, batch_rows=1):  # one part file at a time
        if out is None:
            out = np.empty((total, b.x.shape[1]), dtype=np.float32)
        if pos + len(b.x) > total:
            raise ClusteringError(f"{root}: the event files changed while clustering; run it again")
        out[pos : pos + len(b.x)] = b.x
        pos += len(b.x)
    if out is None:
        return np.zeros((0, 0), dtype=np.float32)
    if pos != total:
        raise ClusteringError(f"{root}: the event files changed while clustering ({pos} of {total} rows read)")
    return out


class ClusterSpill:
    """Unit vectors appended per cluster to local float32 files, read back one cluster at a time.

    `add(labels, x)` buffers rows (up to `flush_bytes`) and then appends each cluster's rows to
    `<tmp>/<cluster>.f32`; rows of a cluster keep the order in which they were added, so with
    rows added in stream order, `read(c)` returns them in ascending global row order. Use as a
    context manager: the temporary folder is removed on exit."""

    def __init__(self, dim: int, spill_dir: str | None = None, flush_bytes: int = 32 << 20):
        self.dim = int(dim)
        self.flush_bytes = int(flush_bytes)
        self.dir = tempfile.mkdtemp(prefix="carve-cluster-spill-", dir=spill_dir)
        self.counts: dict[int, int] = {}
        self._labels: list[np.ndarray] = []
        self._x: list[np.ndarray] = []
        self._bytes = 0

    def __enter__(self) -> ClusterSpill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._labels.clear()
        self._x.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _path(self, c: int) -> str:
        return os.path.join(self.dir, f"{int(c)}.f32")

    def add(self, labels: np.ndarray, x: np.ndarray) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        if x.shape != (len(labels), self.dim):
            raise ValueError(f"spill: expected ({len(labels)}, {self.dim}) vectors, got {x.shape}")
        self._labels.append(labels)
        self._x.append(np.asarray(x, dtype=np.float32))
        self._bytes += x.nbytes
        if self._bytes >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        if not self._labels:
            return
        labels = np.concatenate(self._labels)
        x = np.concatenate(self._x) if len(self._x) > 1 else self._x[0]
        self._labels.clear()
        self._x.clear()
        self._bytes = 0
        order = np.argsort(labels, kind="stable")
        srt = labels[order]
        edges = np.flatnonzero(np.diff(srt)) + 1
        for lo, hi in zip(np.r_[0, edges], np.r_[edges, len(srt)], strict=True):
            c = int(srt[lo])
            with open(self._path(c), "ab") as f:
                f.write(np.ascontiguousarray(x[order[lo:hi]], dtype=np.float32).tobytes())
            self.counts[c] = self.counts.get(c, 0) + int(hi - lo)

    def read(self, c: int) -> np.ndarray:
        """Every vector spilled for cluster `c`, in the order added ((0, d) if none)."""
        self.flush()
        m = self.counts.get(int(c), 0)
        if m == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        x = np.fromfile(self._path(c), dtype=np.float32)
        if x.size != m * self.dim:
            raise ClusteringError(f"{self._path(c)}: spill holds {x.size} floats, expected {m} x {self.dim}")
        return x.reshape(m, self.dim)
