"""The backend interface (see :mod:`defectsynth.backends`): kept apart from the package so
that the backends import it without importing their own package back."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")
R = TypeVar("R")

#: a worker's task function, and the picklable factory that builds one per process
Worker = Callable[[Any], Any]
WorkerFactory = Callable[[], Worker]


class Backend(Protocol):
    """Maps tasks to results, in task order."""

    name: str
    workers: int

    def map(self, make_worker: Callable[[], Callable[[T], R]], tasks: Iterable[T]) -> Iterator[R]:
        """Run ``make_worker()(task)`` for each task; yield the results in task order.

        ``tasks`` may be a lazy, very long iterator: consume it incrementally.
        """
        ...


@runtime_checkable
class SharedOutput(Protocol):
    """A worker factory whose workers write into a folder the driver reads afterwards.

    ``probe_file`` is a file the driver wrote there before the first task went out; a
    worker that cannot see it would write where the driver never looks, so a backend
    whose workers may run elsewhere (dask) checks it before building a worker. A local
    backend shares the driver's file system and need not.
    """

    @property
    def probe_file(self) -> str: ...
