"""Where `LocalExecutor` runs its first step on the next block: a child process (forkserver), else a thread.

The first step (DecodeSegment) spends most of its time in the video decoder, the JPEG encoder and
numpy, but a fair share of it is Python, which holds the GIL. As a thread beside the later steps
(caption, embed, write, also partly Python) it waited for the GIL, and on 240 short episodes a
block took it about twice as long as decoding the same block alone (BENCHMARKS.md, issue 22).
`Ahead(step, spec, workers=N)` runs it in N child processes started for the run instead (the
workers of a `ProcessPoolExecutor`), so they run truly side by side with the caller; `submit(rows)` hands a child a
block's input rows and gives a future of the step's output table. The child runs the same step
class with the same arguments on the same rows, so the rows are the same as in a thread.

A forkserver child, not a plain fork: a process forked from this one inherits every lock that one
of its threads held at that moment (Arrow's and the allocator's among them, and Ray's, torch's and
a server's threads where they run), and such a child once hung for good pickling its first result
in the test suite. The forkserver's children start from a clean single-threaded server process;
the step class and its arguments reach the child pickled, and the child imports what it needs.
The child sets aside the video readers it may have inherited (`video.forget_inherited_readers`).
With several children, one per core, each child's video decoders get `cores // children` threads
(`video.set_decoder_threads`; at least 1), not one per core each: the children are the decode's
parallelism, and a decoder's own frame threads then only contend with them. An error of
the step reaches the caller as itself, or as a `CarveError` naming it when it cannot be pickled
back. Without `forkserver` (not Linux/macOS), or with `in_process=False`, the step runs in a thread of
this process as before.
"""

from __future__ import annotations

import multiprocessing
import pickle
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from carve.core.errors import CarveError
from carve.pipeline.step import PipelineStep

_CHILD_STEP: PipelineStep | None = None  # the first step, built in the child by `_start_child`


def _start_child(cls: type[PipelineStep], kwargs: dict[str, Any], decoder_threads: int = 0) -> None:
    from carve.ingest import video

    global _CHILD_STEP
    video.forget_inherited_readers()
    video.set_decoder_threads(decoder_threads)
    _CHILD_STEP = cls(**kwargs)


def child_decoder_threads(workers: int) -> int:
    """Decoder threads in each of `workers` children: 0 (the library's choice) for one child, else
    the usable cores shared out, at least 1."""
    from carve.pipeline.choose import usable_cores

    return 0 if workers <= 1 else max(1, usable_cores() // workers)


def _run_in_child(rows: list[dict[str, Any]]) -> pa.Table:
    assert _CHILD_STEP is not None
    try:
        return _CHILD_STEP(pa.Table.from_pylist(rows))
    except Exception as e:
        try:
            pickle.loads(pickle.dumps(e))
        except Exception:
            raise CarveError(f"{type(e).__name__} in step {_CHILD_STEP.name}: {e}") from None
        raise


def can_fork() -> bool:
    return "forkserver" in multiprocessing.get_all_start_methods()


class Ahead:
    """The first step on blocks ahead of the caller (module doc); a context manager."""

    def __init__(self, step: PipelineStep, cls: type[PipelineStep], kwargs: dict[str, Any], in_process: bool = True,
                 workers: int = 1):
        self.in_process = in_process and can_fork()
        self.workers = max(1, workers) if self.in_process else 1
        self._pool: Executor
        self._call: Callable[[list[dict[str, Any]]], pa.Table]
        if self.in_process:
            self._pool = ProcessPoolExecutor(max_workers=self.workers,
                                             mp_context=multiprocessing.get_context("forkserver"),
                                             initializer=_start_child,
                                             initargs=(cls, kwargs, child_decoder_threads(self.workers)))
            self._call = _run_in_child
            # start the children now, beside this process's own start-up (one is started per task
            # submitted while none is idle)
            for f in [self._pool.submit(int) for _ in range(self.workers)]:
                f.result()
        else:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="carve-first-step")
            self._call = lambda rows: step(pa.Table.from_pylist(rows))

    def submit(self, rows: list[dict[str, Any]]) -> Future[pa.Table]:
        return self._pool.submit(self._call, rows)

    def __enter__(self) -> Ahead:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
