"""The one cache of the audit read model (the service keeps one per root).

`ViewCache` holds two kinds of entries in one thread-safe store:

* **built values** (`get(key, build)`): anything derived from files or the catalog (a summary,
  a layout, a batch's footers, a JSON body). The key names the *state* the value was built
  from: the clusters version and its assignment parts, `summary.json`'s (size, mtime), the
  shards version, a batch's live part files, the catalog's dataset counts, a stat of the file
  trees. **Invalidation rule: an entry is never updated or evicted because the data changed;
  a change of the data makes a new key**, so the next request builds a new entry and the old
  one is no longer asked for and leaves by LRU order once more than `max_entries` are held.
  Versions are immutable and new assignment parts get new names, so a key never names stale
  data. One build per (kind, scope) runs at a time; concurrent callers wait for it.
* **probes** (`recent(name, compute)`): the cheap state the keys are made of (latest version,
  listings, catalog counts), recomputed at most every `ttl_s`; between `ttl_s` and
  `stale_ok_s` the last value is returned while one background thread recomputes it, so no
  request waits for a listing under steady load. Probes are few and not LRU-evicted.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class ViewCache:
    """Built values keyed by the state they come from (LRU, `max_entries`) and TTL probes."""

    def __init__(self, max_entries: int = 320, ttl_s: float = 0.5, stale_ok_s: float = 5.0):
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.stale_ok_s = max(stale_ok_s, ttl_s) if ttl_s > 0 else 0.0
        self._lock = threading.Lock()
        self._values: OrderedDict[tuple[Hashable, ...], Any] = OrderedDict()
        self._build_locks: dict[tuple[Hashable, ...], threading.Lock] = {}
        self._probes: dict[str, tuple[float, Any]] = {}
        self._refreshing: set[str] = set()

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def get(self, key: tuple[Hashable, ...], build: Callable[[], T]) -> T:
        """The value of `key`, built by `build()` on a miss (once; concurrent callers wait)."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
            lock = self._build_locks.setdefault(key[:2], threading.Lock())
        with lock:  # one build per (kind, scope) at a time
            with self._lock:
                if key in self._values:
                    return self._values[key]
            value = build()
            with self._lock:
                self._values[key] = value
                while len(self._values) > self.max_entries:
                    self._values.popitem(last=False)
            return value

    def recent(self, name: str, compute: Callable[[], T], fresh: bool = False) -> T:
        """`compute()`, recomputed at most every `ttl_s` (now, with `fresh`); see the module doc."""
        now = time.monotonic()
        with self._lock:
            hit = self._probes.get(name)
            if hit is not None and not fresh:
                age = now - hit[0]
                if age < self.ttl_s:
                    return hit[1]
                if age < self.stale_ok_s:
                    if name not in self._refreshing:
                        self._refreshing.add(name)
                        threading.Thread(target=self._refresh, args=(name, compute), daemon=True,
                                         name=f"views-refresh-{name}").start()
                    return hit[1]
        value = compute()
        with self._lock:
            self._probes[name] = (now, value)
        return value

    def _refresh(self, name: str, compute: Callable[[], Any]) -> None:
        try:
            t0 = time.monotonic()
            value = compute()
            with self._lock:
                self._probes[name] = (t0, value)
        except Exception:  # the next request recomputes it in the foreground and sees the error
            with self._lock:
                self._probes.pop(name, None)
        finally:
            with self._lock:
                self._refreshing.discard(name)
