"""The local process pool: the driver runs chunks itself while the pool starts, and
nothing about the results shows it (order, values, errors in their turn)."""

from __future__ import annotations

import functools
import operator

import pytest

from defectsynth.backends.local import ProcessPoolBackend, SerialBackend

# picklable worker factories (the pool's workers build their own): make_worker() is
# itemgetter(k), so a task's result is its k-th item, and a task too short raises
CUBES = functools.partial(operator.itemgetter, 1)


def tasks(n: int, short_at: int | None = None) -> list[tuple[int, ...]]:
    return [(i,) if i == short_at else (i, i**3) for i in range(n)]


def test_the_driver_works_while_the_pool_starts_and_results_stay_in_order() -> None:
    pool = ProcessPoolBackend(2, chunksize=2)  # 6 chunks (12 tasks) go out first
    got = list(pool.map(CUBES, tasks(40)))
    assert got == [i**3 for i in range(40)]
    assert got == list(SerialBackend().map(CUBES, tasks(40)))
    # a fork server and two workers take far longer to answer than a chunk takes here
    assert pool.driven >= 1


def test_without_drive_only_the_pool_works() -> None:
    pool = ProcessPoolBackend(2, chunksize=2, drive=False)
    assert list(pool.map(CUBES, tasks(30))) == [i**3 for i in range(30)]
    assert pool.driven == 0


@pytest.mark.parametrize("drive", [True, False])
def test_an_error_comes_in_its_turn_whoever_ran_its_chunk(drive: bool) -> None:
    """Task 13 is past the first 12 the pool gets: with ``drive`` the driver runs its
    chunk (12, 13). Either way the error is raised in place of that chunk, after every
    earlier result has been given out."""
    pool = ProcessPoolBackend(2, chunksize=2, drive=drive)
    out: list[int] = []
    with pytest.raises(IndexError):
        for r in pool.map(CUBES, tasks(40, short_at=13)):
            out.append(r)
    assert (pool.driven >= 1) == drive
    assert out == [i**3 for i in range(12)]
