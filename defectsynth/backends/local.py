"""The local backends: in-process (one worker) and a process pool (``--workers N``)."""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from .base import R, T, Worker, WorkerFactory

_worker: Worker | None = None


#: signals a worker must not die of: the driver handles them (run.stopping.graceful_signals)
_DRIVER_SIGNALS = {signal.SIGINT}


def _init_worker(make_worker: WorkerFactory) -> None:
    # Ctrl-C reaches the whole process group: the driver stops handing out tasks and
    # records the ones in flight, so workers finish them instead of dying mid-sample.
    # Workers start with SIGINT blocked (see ProcessPoolBackend.map), so one that
    # arrives while this process starts waits here and is then ignored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _DRIVER_SIGNALS)
    import cv2

    # one OpenCV thread per process: N processes on N cores, no oversubscription
    cv2.setNumThreads(1)
    global _worker
    _worker = make_worker()


def _call(tasks: list[Any]) -> list[Any]:
    assert _worker is not None, "worker process was not initialised"
    return [_worker(t) for t in tasks]


def _context() -> multiprocessing.context.BaseContext:
    """Never plain fork: a parent that already ran OpenCV's thread pool (or any thread)
    can deadlock a forked child. A fork server starts clean and forks workers cheaply."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        from ..plugins import BUILTIN_PLUGINS

        # imported once in the server, so every forked worker starts warm
        preload = ["defectsynth.run.worker", "defectsynth.plugins", *BUILTIN_PLUGINS]
        ctx.set_forkserver_preload(preload)
        return ctx
    return multiprocessing.get_context("spawn")


class SerialBackend:
    """Runs every task in this process (``--workers 1``): no pickling, easy to debug."""

    name = "serial"
    workers = 1

    def map(self, make_worker: Callable[[], Callable[[T], R]], tasks: Iterable[T]) -> Iterator[R]:
        import cv2

        # one worker is one core, as in the pool (restored afterwards)
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            worker = make_worker()
            for task in tasks:
                yield worker(task)
        finally:
            cv2.setNumThreads(threads)


class ProcessPoolBackend:
    """A pool of ``workers`` processes.

    Tasks go out in chunks of ``chunksize`` consecutive tasks (consecutive tasks are
    usually variants of one source, which a worker then decodes once), at most
    ``window`` chunks in flight, so a very long task list is consumed lazily; results
    come back in task order.
    """

    name = "local"

    def __init__(self, workers: int, chunksize: int = 2, window: int | None = None) -> None:
        self.workers = max(1, int(workers))
        self.chunksize = max(1, int(chunksize))
        self.window = window or 3 * self.workers

    def map(self, make_worker: Callable[[], Callable[[T], R]], tasks: Iterable[T]) -> Iterator[R]:
        it = iter(tasks)
        pending: collections.deque[Future[list[R]]] = collections.deque()

        def submit(ex: ProcessPoolExecutor) -> None:
            chunk = list(itertools.islice(it, self.chunksize))
            if chunk:
                # the pool may start a worker (and the fork server) here: they inherit
                # this thread's signal mask, so a Ctrl-C cannot kill one before it has
                # set SIGINT to be ignored (it would break the whole pool)
                blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _DRIVER_SIGNALS)
                try:
                    pending.append(ex.submit(_call, chunk))
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

        with ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=_context(),
            initializer=_init_worker,
            initargs=(make_worker,),
        ) as ex:
            try:
                for _ in range(self.window):
                    submit(ex)
                while pending:
                    results = pending.popleft().result()
                    submit(ex)
                    yield from results
            finally:
                for f in pending:
                    f.cancel()
