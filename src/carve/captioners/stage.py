"""The caption stage of `carve run`: `CaptionStage(cfg)(table) -> table`.

Takes a `pa.Table` of schema-v1 event rows holding whole episodes, captions them with the
captioner `cfg.backend` names (`captioners.registry.make_captioner`) and returns the same rows,
in the same order, with `caption`, `next_caption` (the following event's caption in the same
episode, "" for the last), `caption_model` and `caption_status` ("ok" / "empty" /
"failed: <reason>") filled. Rows are never dropped; a failed event keeps an empty caption.

The whole block goes to the captioner in ONE `caption_episodes` call, so a concurrent backend
(the OpenAI-compatible one: up to `cfg.max_concurrency` requests in flight) works across all
its episodes and events; results come back per episode in event order, and `next_caption` is
linked from them afterwards, whatever order the replies arrived in.
"""

from __future__ import annotations

import pyarrow as pa

from carve.captioners.base import OPEN_VOCABULARY, Captioner, link_next_captions, views_from_table
from carve.captioners.registry import make_captioner
from carve.core.config import CaptionConfig, SegmentConfig
from carve.core.log import get_logger

log = get_logger("carve.captioners.stage")

CAPTION_COLUMNS = ("caption", "next_caption", "caption_model", "caption_status")


def _set_column(table: pa.Table, name: str, values: list[str]) -> pa.Table:
    arr = pa.array(values, pa.string())
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, arr)
    return table.append_column(name, arr)


class CaptionStage:
    """Callable over event batches (a Ray Data actor through `pipeline/steps.Caption`)."""

    def __init__(self, cfg: CaptionConfig, captioner: Captioner | None = None, segment: SegmentConfig | None = None):
        self.cfg = cfg
        self.captioner = captioner or make_captioner(cfg, segment)

    def __call__(self, table: pa.Table) -> pa.Table:
        n = table.num_rows
        if n == 0:
            for c in CAPTION_COLUMNS:
                if c not in table.column_names:
                    table = table.append_column(c, pa.array([], pa.string()))
            return table
        episodes = views_from_table(table)
        results = self.captioner.caption_episodes(episodes)
        caption = [""] * n
        next_caption = [""] * n
        status = ["failed: not captioned"] * n
        for views, res in zip(episodes, results, strict=True):
            if len(res) != len(views):
                raise RuntimeError(
                    f"captioner {self.captioner.name} returned {len(res)} captions for the {len(views)} events "
                    f"of episode {views[0].episode_id}"
                )
            for v, r, nxt in zip(views, res, link_next_captions(res), strict=True):
                caption[v.row] = r.caption
                next_caption[v.row] = nxt
                status[v.row] = r.status
        failed = sum(s.startswith("failed") for s in status)
        if failed:
            log.warning("%d of %d events could not be captioned by %s", failed, n, self.captioner.name)
        opened = sorted({r.verb for res in results for r in res if r.verb_class == OPEN_VOCABULARY})
        if opened:
            log.info("%s used verbs of no verb class (open vocabulary): %s", self.captioner.name, ", ".join(opened))
        model = [self.captioner.name] * n
        for name, values in zip(CAPTION_COLUMNS, (caption, next_caption, model, status), strict=True):
            table = _set_column(table, name, values)
        return table

    def close(self) -> None:
        self.captioner.close()
