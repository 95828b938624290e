"""Backends: where a dataset run's tasks execute.

A backend does one thing: map tasks to results. It receives a picklable ``make_worker``
factory, calls it once in each worker process to build the task function (plugins
loaded, synthesizer configured), and yields ``worker(task)`` for every task **in task
order**. Tasks and results are opaque to a backend (the run's ``Task`` and
``WorkerResult``, small picklable dataclasses): it moves them and never looks inside.
Workers write the sample's image and mask files themselves; the driver
(``defectsynth.run.driver``) appends the manifest and runs the writers, the same for
every backend. The local pool is in ``local.py``, dask.distributed in ``dask.py``
(``--scheduler``, ``--dask-local``); another engine implements :class:`Backend` and
nothing else. A backend whose workers run on other machines may also check
:class:`SharedOutput`: the run's factory says which file every worker must see.
"""

from __future__ import annotations

from .base import Backend, R, SharedOutput, T, Worker, WorkerFactory


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


__all__ = ["R", "Backend", "SharedOutput", "T", "Worker", "WorkerFactory", "local_backend"]
