"""`check_source`: every defect of every episode of a source, as `carve check` reports it.

Each episode is loaded leniently (`load_episode(strict=False)`: values and videos are the
checks' to judge) and its signals and cameras are checked; then near-duplicates are found
across the dataset. An episode that cannot be read at all is reported as `unreadable` with the
reason, and the check carries on. The report:

    {"dataset": str, "source": str, "format": str, "config": {check thresholds},
     "summary": {"episodes", "clean", "with_errors", "by_kind": {kind: episodes}, "drop": [indices]},
     "episodes": [{"episode_index", "score", "length", "fps",
                   "defects": [{"kind", "severity", "start_frame", "end_frame", "detail"}]}]}

Frames are the episode's own frame indices, end inclusive. `to_markdown` renders the same.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from carve.core.config import CheckConfig, SegmentConfig
from carve.quality import duplicates, signals, video
from carve.quality.defects import KINDS, Defect, EpisodeReport


@dataclass
class DatasetReport:
    """The findings of one source."""

    dataset: str
    source: str
    format: str
    config: dict[str, Any]
    episodes: list[EpisodeReport] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        by_kind: dict[str, int] = {}
        for e in self.episodes:
            for k in sorted({d.kind for d in e.defects}):
                by_kind[k] = by_kind.get(k, 0) + 1
        return {"episodes": len(self.episodes), "clean": sum(not e.defects for e in self.episodes),
                "with_errors": sum(e.has_errors for e in self.episodes), "by_kind": by_kind,
                "drop": [e.episode_index for e in self.episodes if e.has_errors]}

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "source": self.source, "format": self.format, "config": self.config,
                "summary": self.summary(), "episodes": [e.as_dict() for e in self.episodes]}

    def worst(self, severity: str) -> bool:
        """True when some defect is at least as severe as `severity` ("error" | "warning")."""
        levels = ("error",) if severity == "error" else ("error", "warning")
        return any(d.severity in levels for e in self.episodes for d in e.defects)


def check_episode(ep: Any, cfg: CheckConfig, seg: SegmentConfig, videos: bool = True) -> EpisodeReport:
    """The defects of one loaded episode (`ingest.sources.Episode`) but duplicates."""
    rep = EpisodeReport(int(ep.ref.episode_index), ep.length, float(ep.fps))
    state, action = np.asarray(ep.state, dtype=np.float64), np.asarray(ep.action, dtype=np.float64)
    rep.defects += signals.nonfinite(state, action)
    rep.defects += signals.timestamps(ep.timestamps, float(ep.fps), cfg)
    m = signals.Motion(state, action, float(ep.fps), seg, list(ep.state_names), list(ep.action_names))
    rep.defects += signals.jumps(m, cfg)
    rep.defects += signals.idle(m, cfg)
    rep.defects += signals.chatter(m, cfg)
    rep.defects += signals.offset(m, list(ep.state_names), list(ep.action_names), cfg)
    rep.defects += signals.truncated(m, cfg)
    rep.defects += signals.missed_grasps(m, list(ep.state_names), list(ep.action_names), cfg)
    if videos and ep.cameras:
        rep.defects += video.check_cameras(ep, m.moving(), cfg)
    return rep


def check_source(uri: str, fmt: str = "auto", check: CheckConfig | None = None, seg: SegmentConfig | None = None,
                 dataset: str | None = None, videos: bool = True, progress: bool = False) -> DatasetReport:
    """Check every episode of the source at `uri` (see the module doc)."""
    from tqdm import tqdm

    from carve.ingest.sources import load_episode, open_source

    check, seg = check or CheckConfig(), seg or SegmentConfig()
    src = open_source(uri, fmt, dataset=dataset)
    refs = src.list_episodes()
    report = DatasetReport(refs[0].dataset if refs else (dataset or ""), uri, refs[0].format if refs else fmt,
                           check.model_dump())
    states: dict[int, np.ndarray] = {}

    def one(ref: Any) -> tuple[EpisodeReport, np.ndarray | None]:
        try:
            ep = load_episode(ref, strict=False)
        except Exception as e:
            rep = EpisodeReport(int(ref.episode_index))
            rep.defects.append(Defect("unreadable", 0, 0, f"{ref.label}: {e}"))
            return rep, None
        try:
            rep = check_episode(ep, check, seg, videos)
        except Exception as e:  # a check that cannot run on this episode: say so, carry on
            rep = EpisodeReport(int(ref.episode_index), ep.length, float(ep.fps))
            rep.defects.append(Defect("unreadable", 0, max(0, ep.length - 1),
                                      f"{ref.label}: the checks failed ({type(e).__name__}: {e})"))
        return rep, np.asarray(ep.state, dtype=np.float64)

    # episodes on `check.workers` threads (decoding and reading release the GIL), reported in order
    with ThreadPoolExecutor(check.workers or os.cpu_count() or 1) as pool:
        for rep, state in tqdm(pool.map(one, refs), total=len(refs), desc="check", unit="ep", disable=not progress):
            report.episodes.append(rep)
            if state is not None:
                states[rep.episode_index] = state
    lengths = {e.episode_index: e.length for e in report.episodes}
    for idx, d in duplicates.find(states, lengths, check).items():
        next(e for e in report.episodes if e.episode_index == idx).defects.append(d)
    return report


def to_markdown(report: DatasetReport, worst: int = 20) -> str:
    """The report as Markdown: counts by kind, the worst episodes, the drop list."""
    s = report.summary()
    lines = [f"# carve check: {report.dataset}", "", f"Source `{report.source}` ({report.format}): "
             f"{s['episodes']} episodes, {s['clean']} clean, {s['with_errors']} with errors (dropped).", "",
             "| kind | severity | episodes | what |", "|---|---|---|---|"]
    for kind, (sev, what) in KINDS.items():
        if s["by_kind"].get(kind):
            lines.append(f"| `{kind}` | {sev} | {s['by_kind'][kind]} | {what} |")
    bad = sorted((e for e in report.episodes if e.defects), key=lambda e: (e.score, e.episode_index))[:worst]
    if bad:
        lines += ["", "## Worst episodes", "", "| episode | score | defects |", "|---|---|---|"]
        for e in bad:
            found = "; ".join(f"{d.kind} {d.start_frame}-{d.end_frame}: {d.detail}" for d in e.defects)
            lines.append(f"| {e.episode_index} | {e.score} | {found.replace('|', '/')} |")
    lines += ["", "## Drop list", "", ", ".join(str(i) for i in s["drop"]) or "(none)", ""]
    return "\n".join(lines)
