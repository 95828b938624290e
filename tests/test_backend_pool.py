"""The local process pool gives results in task order, and an error in place of the
chunk it stopped, after every earlier result."""

from __future__ import annotations

import functools
import operator

import pytest

from defectsynth.backends.local import ProcessPoolBackend, SerialBackend

# picklable worker factories (the pool's workers build their own): make_worker() is
# itemgetter(1), so a task's result is its second item, and a task too short raises
CUBES = functools.partial(operator.itemgetter, 1)


def tasks(n: int, short_at: int | None = None) -> list[tuple[int, ...]]:
    return [(i,) if i == short_at else (i, i**3) for i in range(n)]


def test_results_come_in_task_order() -> None:
    got = list(ProcessPoolBackend(2, chunksize=3).map(CUBES, tasks(40)))
    assert got == [i**3 for i in range(40)] == list(SerialBackend().map(CUBES, tasks(40)))


def test_an_error_comes_in_its_turn() -> None:
    """Task 13 is in chunk (12, 13): its error is raised in place of that chunk, after
    every earlier result has been given out."""
    out: list[int] = []
    with pytest.raises(IndexError):
        for r in ProcessPoolBackend(2, chunksize=2).map(CUBES, tasks(40, short_at=13)):
            out.append(r)
    assert out == [i**3 for i in range(12)]
