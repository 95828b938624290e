"""The local backends: in-process (one worker) and a process pool (``--workers N``)."""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import pickle
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
    second, and a core sits idle meanwhile (``drive``): two chunks per worker go out,
    and until the pool returns its first result (at most ``window`` chunks) this
    process runs the next chunks itself, with a worker built from a pickled copy of the
    factory, as the pool's are (the same bytes); then it closes that worker, fills the
    window and only hands out and collects. A first Ctrl-C lets the chunk it is running
    finish (no new task starts), as the pool's do.
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
        pooled: list[Future[list[R]]] = []  # the pool's own, to see when it first answers

        def submit(ex: ProcessPoolExecutor, chunk: list[T] | None = None) -> None:
            if chunk is None:
                chunk = list(itertools.islice(it, self.chunksize))
            if chunk:
                # the pool may start a worker (and the fork server) here: they inherit
                # this thread's signal mask, so a Ctrl-C cannot kill one before it has
                # set SIGINT to be ignored (it would break the whole pool)
                blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _DRIVER_SIGNALS)
                try:
                    f = ex.submit(_call, chunk)
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
                pending.append(f)
                if starting:
                    pooled.append(f)

        local: _LocalWorker | None = None
        self.driven = 0
        starting = self.drive
        with ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=_context(),
            initializer=_init_worker,
            initargs=(make_worker,),
        ) as ex:
            try:
                # driving: two chunks per worker (one to start it, one queued behind),
                # the rest of the window once the pool has answered
                for _ in range(min(self.window, 2 * self.workers) if starting else self.window):
                    submit(ex)
                while pending:
                    if starting:
                        chunk: list[T] = []
                        if not any(f.done() for f in pooled) and self.driven < self.window:
                            chunk = list(itertools.islice(it, self.chunksize))
                            if chunk and local is None:
                                local = _LocalWorker.start(make_worker)
                            if chunk and local is not None:
                                # the pool has not answered yet: run this chunk here
                                pending.append(local.run(chunk))
                                self.driven += 1
                                continue
                        # the pool answered (or the tasks ran out): only hand out now
                        starting = False
                        pooled.clear()
                        if local is not None:
                            local.close()
                            local = None
                        submit(ex, chunk or None)  # a chunk taken but not run here
                        for _ in range(self.window - sum(not f.done() for f in pending)):
                            submit(ex)
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

    @classmethod
    def start(cls, make_worker: Callable[[], Callable[[Any], Any]]) -> _LocalWorker | None:
        """A worker built from what the pool's workers receive, a pickled copy of the
        factory (so from the same state: a factory carrying a live plugin host leaves it
        behind, as a pool worker's does); None when it cannot be built here, and the
        pool runs everything (and reports the factory's failure, as it always has)."""
        try:
            return cls(pickle.loads(pickle.dumps(make_worker)))
        except Exception:  # noqa: BLE001 - the pool meets the same failure and says so
            return None

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
