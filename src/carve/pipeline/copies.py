"""Copied episodes go through the event dedup: the `duplicate_episode` gate inside `carve run`.

`carve check` finds an episode that is a near-copy of another (re-encoded, trimmed by a few
frames, re-timed, noisy: `carve.quality.duplicates`). Episodes are checked one at a time while
they are ingested, so that comparison needs every episode of a dataset and runs on the driver
before clustering: the events' states are streamed back one part file at a time and each
episode is kept as a bounded signature (`quality.duplicates.episode_states`).

Each copy is then acted on through the existing dedup, not beside it: every event of the copy
is marked `dup_of` the original's event it repeats (the copy's time mapped onto the stretch of
the original it was cut from; `clustering.dedup.apply_copies`), so the balance and the shard
cut treat it like any near-duplicate, and a review flag overrules it the same way. The finding
is recorded in the catalog's `defects` table (a warning, as `carve check` reports it), replaced
at each pass. `check.in_run: false` turns it off with the rest of the in-run gate.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from carve.core.config import CheckConfig
from carve.quality import duplicates
from carve.storage.defects import replace_kind
from carve.storage.events import iter_events, snapshot
from carve.storage.root import Root

COLUMNS = ["event_id", "episode_id", "dataset", "episode_index", "start_frame", "end_frame", "state"]


def episode_copies(root: Root, check: CheckConfig) -> tuple[dict[str, str], int]:
    """(copy event_id -> the original event_id it repeats, the number of copied episodes), over
    every committed episode; records each copied episode's `duplicate_episode` finding (and clears
    the findings no longer true)."""
    if not check.in_run:
        return {}, 0
    events: dict[str, list[tuple[int, int, str]]] = {}  # episode -> (start, end, event_id)
    where: dict[str, tuple[str, int]] = {}  # episode -> (dataset, episode_index)

    def parts() -> Iterator[pa.Table]:
        for t in iter_events(root, columns=COLUMNS, snap=snapshot(root)):
            cols = t.select(COLUMNS[:-1]).to_pydict()
            for eid, ep, ds, idx, s, e in zip(*cols.values(), strict=True):
                events.setdefault(ep, []).append((int(s), int(e), eid))
                where[ep] = (ds, int(idx))
            yield t

    states, lengths = duplicates.episode_states(parts())
    out: dict[str, str] = {}
    n = 0
    for ds in sorted({d for d, _ in where.values()}):
        mine = {(where[ep][1], ep): x for ep, x in states.items() if where[ep][0] == ds}
        found = duplicates.copies(mine, check)
        n += len(found)
        rows = []
        for (_, ep), c in found.items():
            _, orig = c.of  # type: ignore[misc]
            out.update(_event_pairs(events[ep], lengths[ep], events[orig], lengths[orig], c.span))
            d = duplicates.duplicate_defect(c._replace(of=c.of[0]), lengths[ep])  # type: ignore[index]
            rows.append({"episode_id": ep, **{k: v for k, v in d.as_dict().items() if k != "kind"}})
        with root.catalog.transaction() as conn:
            replace_kind(conn, ds, "duplicate_episode", rows)
    return out, n


def _event_pairs(copy: list[tuple[int, int, str]], n_copy: int, orig: list[tuple[int, int, str]], n_orig: int,
                 span: tuple[float, float]) -> dict[str, str]:
    """Each event of the copy -> the original's event holding its middle, the copy's time mapped
    onto `span` (the stretch of the original it covers, as fractions of its duration)."""
    starts = np.array(sorted(s for s, _, _ in orig))
    ids = [eid for _, _, eid in sorted(orig)]
    out = {}
    for s, e, eid in copy:
        f = span[0] + (s + e) / 2 / max(1, n_copy) * (span[1] - span[0])
        k = int(np.searchsorted(starts, f * n_orig, side="right")) - 1
        out[eid] = ids[max(0, min(k, len(ids) - 1))]
    return out

