"""Structured, quiet-by-default logging.

`setup_logging(level)` installs one handler that prints `time level logger event k=v ...`
lines on stderr. Call sites log an event name plus keyword fields through `log_event`, so
logs stay greppable; the default level is WARNING so a normal run prints only progress bars
and its summary.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from carve.core import env

_CONFIGURED = False


class _KVFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None) or {}
        kv = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
        base = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname.lower()} {record.name} {record.getMessage()}"
        text = f"{base} {kv}" if kv else base
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _fmt(v: Any) -> str:
    s = str(v)
    return f'"{s}"' if (" " in s or not s) else s


def setup_logging(level: str | int | None = None) -> None:
    """Configure the `carve` logger tree once; level from arg, CARVE_LOG_LEVEL, or WARNING."""
    global _CONFIGURED
    lvl = level or env.log_level() or "WARNING"
    root = logging.getLogger("carve")
    root.setLevel(lvl if isinstance(lvl, int) else str(lvl).upper())
    if not _CONFIGURED:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(_KVFormatter())
        root.addHandler(h)
        root.propagate = False
        _CONFIGURED = True


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"carve.{name}")


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    logger.log(level, event, extra={"fields": fields})
