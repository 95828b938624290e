"""The local process pool: the driver runs chunks itself while the pool starts, and
nothing about the results shows it (order, values, errors in their turn)."""

from __future__ import annotations

import functools
import operator
import os
import time
from collections.abc import Callable
from typing import Any

import cv2
import pytest

from defectsynth.backends.local import ProcessPoolBackend, SerialBackend

# picklable worker factories (the pool's workers build their own): make_worker() is
# itemgetter(k), so a task's result is its k-th item, and a task too short raises
CUBES = functools.partial(operator.itemgetter, 1)


class SlowToStart:
    """A factory whose workers take ``delay`` s to build in any process but the one that
    made it (a pool that is slow to come up), and whose tasks take ``work`` s each."""

    def __init__(self, delay: float, work: float) -> None:
        self.parent = os.getpid()
        self.delay = delay
        self.work = work

    def __call__(self) -> Callable[[Any], Any]:
        if os.getpid() != self.parent:
            time.sleep(self.delay)

        def worker(task: tuple[int, ...]) -> int:
            time.sleep(self.work)
            return task[1]

        return worker


def tasks(n: int, short_at: int | None = None) -> list[tuple[int, ...]]:
    return [(i,) if i == short_at else (i, i**3) for i in range(n)]


def test_the_driver_works_until_the_pool_answers_and_results_stay_in_order() -> None:
    """The pool takes 1.5 s to start and a task 20 ms: the driver runs chunks meanwhile,
    up to the window (6 chunks), and gives its worker back; every result comes in order."""
    threads = cv2.getNumThreads()
    pool = ProcessPoolBackend(2, chunksize=2)
    got = list(pool.map(SlowToStart(1.5, 0.02), tasks(60)))
    assert got == [i**3 for i in range(60)]
    assert got == list(SerialBackend().map(CUBES, tasks(60)))
    assert pool.driven == pool.window == 6
    assert cv2.getNumThreads() == threads


def test_the_driver_stops_when_the_pool_answers() -> None:
    """A pool that starts at once answers within the first chunk the driver runs (each
    task 0.2 s): the driver does not keep going."""
    pool = ProcessPoolBackend(2, chunksize=2)
    got = list(pool.map(SlowToStart(0.0, 0.2), tasks(24)))
    assert got == [i**3 for i in range(24)]
    assert 1 <= pool.driven <= 3


def test_without_drive_only_the_pool_works() -> None:
    pool = ProcessPoolBackend(2, chunksize=2, drive=False)
    assert list(pool.map(CUBES, tasks(30))) == [i**3 for i in range(30)]
    assert pool.driven == 0


@pytest.mark.parametrize("drive", [True, False])
def test_an_error_comes_in_its_turn_whoever_ran_its_chunk(drive: bool) -> None:
    """Task 9 is past the first 4 chunks (8 tasks) the pool gets when driving: the driver
    runs its chunk (8, 9). Either way the error is raised in place of that chunk, after
    every earlier result has been given out."""
    threads = cv2.getNumThreads()
    pool = ProcessPoolBackend(2, chunksize=2, drive=drive)
    out: list[int] = []
    with pytest.raises(IndexError):
        for r in pool.map(SlowToStart(1.0, 0.0) if drive else CUBES, tasks(40, short_at=9)):
            out.append(r)
    assert (pool.driven >= 1) == drive
    assert out == [i**3 for i in range(8)]
    assert cv2.getNumThreads() == threads
