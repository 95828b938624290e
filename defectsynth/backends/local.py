"""The local backends: in-process (one worker) and a process pool (``--workers N``)."""

from __future__ import annotations

import collections
import itertools
import multiprocessing
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from . import Worker, WorkerFactory

_worker: Worker | None = None


def _init_worker(make_worker: WorkerFactory) -> None:
    import cv2

    # one OpenCV thread per process: N processes on N cores, no oversubscription
    cv2.setNumThreads(1)
    global _worker
    _worker = make_worker()


def _call(task: Any) -> dict[str, Any]:
    assert _worker is not None, "worker process was not initialised"
    return _worker(task)


def _context() -> multiprocessing.context.BaseContext:
    """Never plain fork: a parent that already ran OpenCV's thread pool (or any thread)
    can deadlock a forked child. A fork server starts clean and forks workers cheaply."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["defectsynth.run"])
        return ctx
    return multiprocessing.get_context("spawn")


class SerialBackend:
    """Runs every task in this process (``--workers 1``): no pickling, easy to debug."""

    name = "serial"
    workers = 1

    def map(self, make_worker: WorkerFactory, tasks: Iterable[Any]) -> Iterator[dict[str, Any]]:
        worker = make_worker()
        for task in tasks:
            yield worker(task)


class ProcessPoolBackend:
    """A pool of ``workers`` processes; at most ``window`` tasks are in flight, so a very
    long task list is consumed lazily and results are yielded in task order."""

    name = "local"

    def __init__(self, workers: int, window: int | None = None) -> None:
        self.workers = max(1, int(workers))
        self.window = window or 4 * self.workers

    def map(self, make_worker: WorkerFactory, tasks: Iterable[Any]) -> Iterator[dict[str, Any]]:
        it = iter(tasks)
        pending: collections.deque[Future[dict[str, Any]]] = collections.deque()
        with ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=_context(),
            initializer=_init_worker,
            initargs=(make_worker,),
        ) as ex:
            try:
                for task in itertools.islice(it, self.window):
                    pending.append(ex.submit(_call, task))
                while pending:
                    result = pending.popleft().result()
                    for task in itertools.islice(it, 1):
                        pending.append(ex.submit(_call, task))
                    yield result
            finally:
                for f in pending:
                    f.cancel()
