"""Bounded-memory ordered gather: rows of a large, file-by-file table into output parts.

Cutting balanced shards means writing the catalog's rows in a new order (interleaved across
clusters, some rows repeated). `gather_parts` does that without holding the catalog in
memory: one pass over the source tables (one event part file at a time) spills each selected
row, tagged with its output position, into a local Arrow IPC file per group of output parts;
then each spill file is read back (memory-mapped), sorted by position and cut into parts.
Peak memory is one source table, the spill buffer (`flush_bytes`) and one group of output
parts; at most `max_open` spill files are open at once. The spill directory is temporary and removed afterwards.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

POS = "_gather_pos"


def gather_parts(
    tables: Iterable[pa.Table],
    rows: np.ndarray,
    rows_per_part: int,
    *,
    annotate: Callable[[pa.Table, np.ndarray], pa.Table] | None = None,
    spill_dir: str | None = None,
    max_open: int = 128,
    flush_bytes: int = 16 << 20,
) -> Iterator[pa.Table]:
    """Yield the parts of `concat(tables).take(rows)`, `rows_per_part` rows each, in order.

    `rows[p]` is the global row index (in the concatenation of `tables`) of output row `p`;
    rows may repeat. `annotate(sub, global_rows)` may add or replace columns of each selected
    slice before it is spilled (it must return the same schema every time). Selected rows are
    buffered up to `flush_bytes` and then spilled together. The source is consumed completely
    before the first part is yielded."""
    if rows_per_part < 1 or max_open < 1:
        raise ValueError(f"rows_per_part ({rows_per_part}) and max_open ({max_open}) must be >= 1")
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return
    if rows.min() < 0:
        raise ValueError("gather_parts: negative row index")
    n_parts = -(-len(rows) // rows_per_part)
    group = -(-n_parts // max_open)  # output parts per spill file
    order = np.argsort(rows, kind="stable")
    srt = rows[order]
    with tempfile.TemporaryDirectory(prefix="carve-gather-", dir=spill_dir) as tmp:
        writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
        schema: pa.Schema | None = None
        pending: list[pa.Table] = []
        pending_bytes = 0

        def flush() -> None:
            # one sort + one slice per spill file for everything buffered, not per source table
            nonlocal schema, pending_bytes
            if not pending:
                return
            buf = pa.concat_tables(pending, promote_options="default")
            pending.clear()
            pending_bytes = 0
            if schema is None:
                schema = buf.schema
            elif not buf.schema.equals(schema):
                buf = buf.cast(schema)
            pos = buf.column(POS).to_numpy()
            bucket = (pos // rows_per_part) // group
            by_bucket = np.argsort(bucket, kind="stable")
            buf = buf.take(pa.array(by_bucket))
            bucket = bucket[by_bucket]
            edges = np.flatnonzero(np.diff(bucket)) + 1
            for lo, hi in zip(np.r_[0, edges], np.r_[edges, len(bucket)], strict=True):
                b = int(bucket[lo])
                w = writers.get(b)
                if w is None:
                    w = writers[b] = pa.ipc.new_file(os.path.join(tmp, f"{b:06d}.arrow"), schema)
                w.write_table(buf.slice(int(lo), int(hi - lo)))

        g0 = 0
        try:
            for t in tables:
                n = t.num_rows
                lo, hi = (int(i) for i in np.searchsorted(srt, [g0, g0 + n]))
                if hi > lo:
                    g, pos = srt[lo:hi], order[lo:hi]
                    sub = t.take(pa.array(g - g0))
                    if annotate is not None:
                        sub = annotate(sub, g)
                    sub = sub.append_column(POS, pa.array(pos, pa.int64()))
                    pending.append(sub)
                    pending_bytes += sub.nbytes
                    if pending_bytes >= flush_bytes:
                        flush()
                g0 += n
            flush()
        finally:
            for w in writers.values():
                w.close()
        if int(srt[-1]) >= g0:
            raise ValueError(f"gather_parts: row {int(srt[-1])} requested but the source has {g0} rows")
        for b in range(-(-n_parts // group)):
            path = os.path.join(tmp, f"{b:06d}.arrow")
            with pa.memory_map(path) as src:
                t = pa.ipc.open_file(src).read_all()
                t = t.take(pc.sort_indices(t.column(POS))).drop_columns([POS])  # copies out of the map
            for i in range(0, t.num_rows, rows_per_part):
                yield t.slice(i, rows_per_part)
            os.remove(path)
