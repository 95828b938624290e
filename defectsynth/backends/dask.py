"""The dask.distributed backend: ``--scheduler tcp://HOST:8786`` or ``--dask-local N``.

The run is the same as a local one: the driver (``defectsynth.run``) makes the task list,
appends ``manifest.jsonl`` in task order and writes the index files; only where a task
runs changes. Consecutive tasks go to the cluster in chunks (one dask task each). A worker
builds its task function once per run (plugins loaded, synthesizer configured), writes
each sample's image and masks straight into OUT, which every worker must see at the same
absolute path, and returns the results. Chunks complete in any order; the driver keeps the
out-of-order ones until the chunks before them arrive and yields the contiguous prefix,
so the manifest on disk is always a valid prefix of the task list and the driver holds at
most ``ahead`` chunks of results, however long the run.

Faults: a worker that dies mid-chunk (killed, out of memory, machine lost) is noticed by
the scheduler, which runs the chunk again elsewhere; files are written atomically and are
a pure function of the task, so the retry rewrites the same bytes (nothing duplicated,
nothing lost) and the driver deletes the temporary files the dead worker left. A chunk
that kills ``distributed.scheduler.allowed-failures`` + 1 workers in a row stops the run
with a :class:`~defectsynth.errors.RunError` naming its tasks; ``--resume`` finishes it
later. A bad input is not a fault: the worker returns the same ``Skipped`` result, with
the same reason, as the local backend.

dask is imported only here, when a dask backend starts; ``import defectsynth`` never
imports it.
"""

from __future__ import annotations

import itertools
import os
import pickle
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..errors import RunError
from .base import R, SharedOutput, T, Worker, WorkerFactory

DEFAULT_CHUNKSIZE = 8
"""Tasks per dask task when nothing else is said. Measured on a 2-core VM (docs/cluster.md,
benchmarks/bench_dask.py): one dask task costs 5-7 ms of CPU across driver, scheduler and
worker, whatever it carries; a sample costs 20 ms (256x256) to 70 ms (1024x1024) of a core.
Eight to ten samples per dask task keep that overhead near 3 % for small images, far below
for large ones; one sample per dask task runs 20-25 % slower than the local pool."""


def default_chunksize(variants: int) -> int:
    """Tasks per dask task for a recipe with ``variants`` per source: whole sources (a worker
    then decodes each source once), at least :data:`DEFAULT_CHUNKSIZE` tasks, at most 16."""
    v = max(1, int(variants))
    if v > 16:
        return 16
    return min(16, v * -(-DEFAULT_CHUNKSIZE // v))


INSTALL_HINT = "the dask backend needs dask.distributed: pip install 'defectsynth[dask]'"


def versions() -> dict[str, str]:
    """What the bytes of a sample depend on besides the task: the versions of defectsynth,
    numpy and OpenCV (its PNG/JPEG encoders). Every worker must match the driver."""
    import cv2
    import numpy as np

    from .. import __version__

    return {"defectsynth": __version__, "numpy": np.__version__, "opencv": cv2.__version__}


# -- worker side --------------------------------------------------------------------------

_state = threading.local()
_heap_reuse_done = False

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def restore_heap_reuse() -> bool:
    """Undo what dask's default ``MALLOC_TRIM_THRESHOLD_=65536`` costs our workers.

    dask's nanny starts every worker with that variable, so freed memory goes back to the
    OS at once. Setting it also switches off glibc's dynamic mmap threshold: every large
    array (a 1024x1024 float32 plane is 4 MB, an RGB one 12 MB) becomes a fresh ``mmap``
    whose pages fault in one at a time. Measured on 32 samples of 1024x1024: 273,000 page
    faults instead of 3,300 and 20 % more time per sample. This lets arrays up to 32 MB
    (glibc's own dynamic limit) come from the heap again and keeps up to 128 MB of it
    between samples. Only on Linux with glibc, only where the variable is set; returns
    whether it changed anything.
    """
    global _heap_reuse_done
    if _heap_reuse_done or not sys.platform.startswith("linux"):
        return False
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return False
    _heap_reuse_done = True
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1
    return mallopt(M_TRIM_THRESHOLD, 128 << 20) == 1 and ok


def _worker_for(token: str, payload: bytes, expected: dict[str, str]) -> Worker:
    """This thread's task function for run ``token``, built on first use."""
    held = getattr(_state, "held", None)
    if held is not None and held[0] == token:
        worker: Worker = held[1]
        return worker
    _state.held = None  # release the previous run's runner before building a new one
    import socket

    here = f"dask worker on {socket.gethostname()}"
    mine = versions()
    if mine != expected:
        diff = ", ".join(
            f"{k} {mine.get(k)} here, {v} on the driver"
            for k, v in expected.items()
            if mine.get(k) != v
        )
        raise RunError(
            f"{here} has other versions than the driver ({diff}); the output would not be "
            "byte-identical: install the same versions everywhere"
        )
    import cv2

    from ..errors import DefectsynthError

    # one OpenCV thread per dask thread: a worker's threads are its parallelism
    cv2.setNumThreads(1)
    restore_heap_reuse()
    factory: WorkerFactory = pickle.loads(payload)
    if isinstance(factory, SharedOutput):
        _check_output_visible(factory.probe_file, here)
    try:
        worker = factory()
    except DefectsynthError as exc:
        raise RunError(
            f"{here} cannot set up the run: {exc} (plugin folders must be at the same path "
            "on every worker, installed plugins installed there too: docs/cluster.md)"
        ) from None
    _state.held = (token, worker)
    return worker


def _check_output_visible(probe: str | os.PathLike[str], here: str, wait: float = 30.0) -> None:
    """The driver wrote ``probe`` (its ``dataset.json``) into OUT before the first chunk
    went out; a worker that cannot see it would write its samples where the driver never
    looks. Waits a little first: a network file system may take a few seconds to show a
    new file elsewhere."""
    deadline = time.monotonic() + wait
    while not os.path.exists(probe):
        if time.monotonic() > deadline:
            folder, name = os.path.split(os.fspath(probe))
            raise RunError(
                f"{here} does not see the output folder {folder!r} (no {name} "
                "there): OUT must be shared storage at the same absolute path on the driver "
                "and every worker: docs/cluster.md"
            )
        time.sleep(0.5)


def run_chunk(
    token: str, payload: bytes, expected: dict[str, str], tasks: list[Any]
) -> list[Any]:
    """Run one chunk of tasks on a dask worker (a module-level function: dask pickles it by
    reference, so workers need defectsynth installed, which they need anyway)."""
    worker = _worker_for(token, payload, expected)
    return [worker(t) for t in tasks]


# -- driver side --------------------------------------------------------------------------


class DaskBackend:
    """Runs a dataset's tasks on a dask.distributed cluster.

    :param scheduler: address of a running scheduler (``tcp://host:8786``).
    :param local_workers: start a ``LocalCluster`` of this many worker processes, one
        thread each, for the length of the run (instead of ``scheduler``).
    :param chunksize: consecutive tasks per dask task (see :data:`DEFAULT_CHUNKSIZE`).
    :param window: chunks in flight at once (default: twice the cluster's threads, plus
        one, so no worker waits for its next chunk).
    :param ahead: chunks the driver may run ahead of the oldest unfinished one; bounds the
        records held while that chunk is late (default: four windows).
    :param timeout: seconds to wait for the scheduler and for a first worker.

    Use as a context manager, or call :meth:`start` and :meth:`close`; :meth:`map` starts
    and closes the backend itself when it was not started.
    """

    name = "dask"

    def __init__(
        self,
        scheduler: str | None = None,
        *,
        local_workers: int | None = None,
        chunksize: int | None = None,
        window: int | None = None,
        ahead: int | None = None,
        timeout: float = 30.0,
    ) -> None:
        if (scheduler is None) == (local_workers is None):
            raise ValueError("give exactly one of scheduler= and local_workers=")
        if local_workers is not None and local_workers < 1:
            raise ValueError(f"local_workers must be >= 1, got {local_workers}")
        self.scheduler = scheduler
        self.local_workers = local_workers
        self.chunksize = max(1, int(chunksize or DEFAULT_CHUNKSIZE))
        self._window = window
        self._ahead = ahead
        self.timeout = timeout
        self.workers = 0
        self.dashboard_link: str | None = None
        self.client: Any = None
        self._cluster: Any = None

    # lifecycle ---------------------------------------------------------------------------

    def start(self) -> DaskBackend:
        """Connect to the scheduler (or start the local cluster) and wait for a worker."""
        if self.client is not None:
            return self
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise RunError(INSTALL_HINT) from None
        try:
            if self.local_workers is not None:
                import dask

                # no MALLOC_TRIM_THRESHOLD_ for the workers (see restore_heap_reuse); the
                # nanny also puts it into this process's environment, where a process pool
                # started later would inherit it
                trim = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
                with dask.config.set({trim: None}):
                    self._cluster = LocalCluster(
                        n_workers=self.local_workers,
                        threads_per_worker=1,
                        processes=True,
                        preload=["defectsynth.backends.dask_local"],  # Ctrl-C: see there
                    )
                self.client = Client(self._cluster, timeout=self.timeout)
            else:
                self.client = Client(self.scheduler, timeout=self.timeout)
        except (OSError, TimeoutError) as exc:
            self.close()
            where = self.scheduler or "a local cluster"
            raise RunError(f"cannot use dask scheduler {where}: {exc}") from None
        try:
            self.client.wait_for_workers(1, timeout=self.timeout)
        except TimeoutError:
            pass  # workers still queued (a batch system): chunks wait for them
        self.workers = self._threads()
        services = self.client.scheduler_info().get("services", {})
        self.dashboard_link = self.client.dashboard_link if "dashboard" in services else None
        return self

    def close(self) -> None:
        """Disconnect (and stop the local cluster, if this backend started it)."""
        client, cluster = self.client, self._cluster
        self.client = self._cluster = None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()

    def __enter__(self) -> DaskBackend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _threads(self) -> int:
        """Worker threads in the cluster now (it may grow or shrink during a run)."""
        return int(sum(self.client.nthreads().values()))

    def describe(self) -> str:
        where = (
            f"a local dask cluster of {self.local_workers} worker processes"
            if self.local_workers is not None
            else f"dask scheduler {self.scheduler}"
        )
        threads = f"{self.workers} threads" if self.workers else "no worker yet: chunks wait"
        return f"{where} ({threads})"

    # the backend contract ----------------------------------------------------------------

    def map(self, make_worker: Callable[[], Callable[[T], R]], tasks: Iterable[T]) -> Iterator[R]:
        """Run ``make_worker()(task)`` for every task on the cluster; yield in task order."""
        owned = self.client is None
        self.start()
        try:
            yield from self._map(make_worker, tasks)
        finally:
            if owned:
                self.close()

    def _map(self, make_worker: Callable[[], Callable[[T], R]], tasks: Iterable[T]) -> Iterator[R]:
        import cloudpickle
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        client = self.client
        sized_at = time.monotonic()
        window = self._window or 2 * self.workers + 1
        ahead = max(window, self._ahead or 4 * window)
        token = uuid.uuid4().hex[:16]
        payload = cloudpickle.dumps(make_worker)
        expected = versions()
        it = iter(tasks)
        exhausted = False
        next_seq = 0  # next chunk to submit
        head = 0  # next chunk to yield
        pending: dict[str, tuple[int, Any, Any]] = {}  # key -> (seq, first task, future)
        arrived: dict[int, list[R]] = {}
        completed = as_completed()

        def submit() -> None:
            nonlocal exhausted, next_seq, window, ahead, sized_at
            if self._window is None and time.monotonic() - sized_at > 2.0:
                # follow a cluster that grows (adaptive scaling, queued batch jobs)
                sized_at = time.monotonic()
                self.workers = self._threads()
                window = 2 * self.workers + 1
                ahead = max(window, self._ahead or 4 * window)
            while not exhausted and len(pending) < window and next_seq - head < ahead:
                chunk = list(itertools.islice(it, self.chunksize))
                if not chunk:
                    exhausted = True
                    return
                key = f"defectsynth-{token}-{next_seq}"
                fut = client.submit(run_chunk, token, payload, expected, chunk, key=key)
                pending[key] = (next_seq, chunk[0], fut)
                completed.add(fut)
                next_seq += 1

        try:
            submit()
            for fut in completed:
                seq, first, _ = pending.pop(fut.key)
                try:
                    results = fut.result()
                except KilledWorker as exc:
                    raise RunError(
                        f"the chunk starting at task {getattr(first, 'index', first)} killed "
                        f"dask workers repeatedly ({exc}); out of memory, or a plugin that "
                        "crashes the process? Fix it and finish with --resume"
                    ) from None
                fut.release()
                arrived[seq] = results
                submit()
                while head in arrived:
                    yield from arrived.pop(head)
                    head += 1
                    submit()
        finally:
            for _, _, fut in pending.values():
                fut.cancel()
            pending.clear()


def dask_backend(
    scheduler: str | None = None,
    local_workers: int | None = None,
    chunksize: int | None = None,
) -> DaskBackend:
    """A :class:`DaskBackend`; raises RunError with the install command when dask is missing."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise RunError(INSTALL_HINT) from None
    return DaskBackend(scheduler, local_workers=local_workers, chunksize=chunksize)


__all__ = [
    "DEFAULT_CHUNKSIZE",
    "DaskBackend",
    "dask_backend",
    "default_chunksize",
    "restore_heap_reuse",
    "run_chunk",
    "versions",
]
