"""Backends: where a dataset run's tasks execute.

A backend does one thing: map tasks to result records. It receives a picklable
``make_worker`` factory, calls it once in each worker process to build the task function
(plugins loaded, synthesizer configured), and yields ``worker(task)`` for every task **in
task order**. Workers write the sample's image and mask files themselves; the driver
(``defectsynth.run``) appends the manifest and runs the writers, the same for every
backend. The local pool is in ``local.py``, dask.distributed in ``dask.py`` (``--scheduler``,
``--dask-local``); another engine implements :class:`Backend` and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

Worker = Callable[[Any], dict[str, Any]]
WorkerFactory = Callable[[], Worker]


class Backend(Protocol):
    """Maps tasks to JSON-able result dicts, in task order."""

    name: str
    workers: int

    def map(self, make_worker: WorkerFactory, tasks: Iterable[Any]) -> Iterator[dict[str, Any]]:
        """Run ``make_worker()(task)`` for each task; yield the results in task order.

        ``tasks`` may be a lazy, very long iterator: consume it incrementally.
        """
        ...


def local_backend(workers: int | None = None, chunksize: int = 2) -> Backend:
    """The default backend: in-process for one worker, a process pool otherwise.

    ``chunksize`` consecutive tasks go to one worker at a time (the run passes the
    number of variants per source, up to 8, so a worker decodes each source once).
    """
    import os

    from .local import ProcessPoolBackend, SerialBackend

    n = workers if workers is not None else (os.cpu_count() or 1)
    if n <= 1:
        return SerialBackend()
    return ProcessPoolBackend(n, chunksize=chunksize)


__all__ = ["Backend", "Worker", "WorkerFactory", "local_backend"]
