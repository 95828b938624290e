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

    Starting the pool (the fork server, its imports, the workers) takes most of a
    second, and a core sits idle meanwhile: until the pool returns its first result,
    this process runs further chunks itself with a worker of its own (``drive``; the
    same worker code, so the same bytes), then only hands out and collects.
    """

    name = "local"

    def __init__(
        self, workers: int, chunksize: int = 2, window: int | None = None, drive: bool = True
    ) -> None:
        self.workers = max(1, int(workers))
        self.chunksize = max(1, int(chunksize))
        self.window = window or 3 * self.workers
        self.drive = drive
        #: chunks this process ran itself in the last map (while the pool started)
        self.driven = 0

    def map(self, make_worker: Callable[[], Callable[[T], R]], tasks: Iterable[T]) -> Iterator[R]:
        it = iter(tasks)
        pending: collections.deque[Future[list[R]]] = collections.deque()

        def submit(ex: ProcessPoolExecutor, chunk: list[T] | None = None) -> None:
            if chunk is None:
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

        local: _LocalWorker | None = None
        self.driven = 0
        with ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=_context(),
            initializer=_init_worker,
            initargs=(make_worker,),
        ) as ex:
            try:
                for _ in range(self.window):
                    submit(ex)
                starting = self.drive
                while pending:
                    if starting and not any(f.done() for f in pending):
                        # the pool has not answered yet: run the next chunk here
                        chunk = list(itertools.islice(it, self.chunksize))
                        if chunk:
                            if local is None:
                                # a factory that fails here fails in the pool too, and
                                # the pool reports it as it always has
                                try:
                                    local = _LocalWorker(make_worker)
                                except Exception:  # noqa: BLE001
                                    local = None
                            if local is not None:
                                pending.append(local.run(chunk))
                                self.driven += 1
                                continue
                            submit(ex, chunk)
                    starting = False
                    results = pending.popleft().result()
                    submit(ex)
                    yield from results
            finally:
                for f in pending:
                    f.cancel()
                if local is not None:
                    local.close()


class _LocalWorker:
    """The driver's own worker while the pool starts: built as a pool worker builds its
    own (one OpenCV thread, restored afterwards); a chunk's results, or the error that
    stopped it, come back as a done future, so they are taken in task order."""

    def __init__(self, make_worker: Callable[[], Callable[[Any], Any]]) -> None:
        import cv2

        self._threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            self._worker = make_worker()
        except BaseException:
            cv2.setNumThreads(self._threads)
            raise

    def run(self, chunk: list[Any]) -> Future[list[Any]]:
        done: Future[list[Any]] = Future()
        try:
            done.set_result([self._worker(t) for t in chunk])
        except Exception as exc:  # noqa: BLE001 - raised when its turn comes, as a pool's
            done.set_exception(exc)
        return done

    def close(self) -> None:
        import cv2

        cv2.setNumThreads(self._threads)
