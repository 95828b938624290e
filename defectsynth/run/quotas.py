"""Counting in task order: coverage quotas, generator-failure streaks, skipped sources.

Results may arrive in any order (dask) and past the point where a run stops; everything
here is kept by task position, so what the report says depends on the tasks alone,
never on the backend, the worker count or a resume.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from ..errors import RunError
from ..writing import atomic_write_text
from .manifest import (
    MANIFEST,
    iter_records,
)
from .plan import Plan, Task
from .worker import Calls, Failed, Made, Skipped, WorkerResult, WriteFailed


class FailureWatch:
    """Counts each generator's failed calls in a row, in task order (so the stop point does
    not depend on the backend or the worker count)."""

    def __init__(self, limit: int, categories: dict[str, list[str]]) -> None:
        self.limit = limit
        self.categories = categories
        self.streak: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.last_error: dict[str, str] = {}

    def update(self, calls: Calls) -> str | None:
        """Take one sample's call summary; return the stop message when a generator has
        now failed ``limit`` times in a row."""
        message = None
        for name, c in calls.items():
            if c["failed"]:
                self.failed[name] += int(c["failed"])
                self.last_error[name] = str(c["error"])
            if c["ok"]:
                peak = max(self.streak[name] + int(c["lead"]), int(c["most"]))
                self.streak[name] = int(c["trail"])
            else:
                self.streak[name] += int(c["failed"])
                peak = self.streak[name]
            if peak >= self.limit and message is None:
                cats = ", ".join(self.categories.get(name, [])) or name
                message = (
                    f"generator {name!r} failed {peak} times in a row "
                    f"(max_generator_failures = {self.limit}), so the run stopped rather "
                    f"than write a dataset without its category ({cats}). Last error: "
                    f"{self.last_error.get(name, '?')}. Fix or remove the plugin, then start "
                    "again with --overwrite"
                )
        return message

    def report(self) -> dict[str, dict[str, Any]]:
        return {
            name: {"rejected_instances": n, "last_error": self.last_error[name]}
            for name, n in sorted(self.failed.items())
            if n
        }


class Quota:
    """Quotas kept in task order. Results may arrive in any order (dask) and beyond the
    point where the quotas are met (tasks in flight); the prefix grows only over
    contiguous positions of :meth:`Plan.quota_order`, so where it ends (``boundary``)
    depends on the tasks alone, never on the backend, the worker count or a resume."""

    def __init__(self, plan: Plan, quotas: Iterable[tuple[str, int]]) -> None:
        self.plan = plan
        self.want = dict(quotas)
        self.have: Counter[str] = Counter()
        self._waiting: dict[int, Counter[str]] = {}
        self._next = 0
        self.boundary: int | None = None  # the last position of the prefix
        #: skipped / failed results and generator-call summaries, by position: the
        #: report counts those inside the prefix only
        self.deferred: list[tuple[int, Skipped | Failed]] = []
        self.calls: list[tuple[int, Calls]] = []
        self._calls_waiting: dict[int, Calls] = {}
        self._fed = 0  # positions whose calls went to the failure watch

    @property
    def met(self) -> bool:
        return self.boundary is not None

    def add(self, index: int, categories: Iterable[str]) -> None:
        self._waiting[self.plan.position(index)] = Counter(categories)
        while self.boundary is None and self._next in self._waiting:
            self.have.update(self._waiting.pop(self._next))
            if all(self.have[c] >= n for c, n in self.want.items()):
                self.boundary = self._next
            self._next += 1

    def take(self, result: WorkerResult) -> None:
        """Count one worker result at its task's position."""
        pos = self.plan.position(result.task)
        if isinstance(result, Made | WriteFailed) and result.calls:
            self.calls.append((pos, result.calls))
            self._calls_waiting[pos] = result.calls
        if isinstance(result, Made):
            self.add(result.task, (a["category"] for a in result.record["annotations"]))
        elif isinstance(result, Skipped | Failed):
            self.deferred.append((pos, result))
            self.add(result.task, ())

    def ready_calls(self) -> list[Calls]:
        """The generator-call summaries the failure watch may see now: those of the
        positions that are contiguous from the start and inside the prefix, in position
        order, each once. So a streak of failures is counted the same for any worker
        count or backend, and failures past the boundary (tasks in flight when the quotas
        were met, whose samples are dropped) never stop the run."""
        limit = self._next if self.boundary is None else min(self._next, self.boundary + 1)
        out = []
        while self._fed < limit:
            calls = self._calls_waiting.pop(self._fed, None)
            if calls:
                out.append(calls)
            self._fed += 1
        return out

    def keeps(self, index: int) -> bool:
        return self.boundary is not None and self.plan.position(index) <= self.boundary

    def table(self) -> dict[str, dict[str, int]]:
        return {c: {"quota": n, "instances": self.have[c]} for c, n in self.want.items()}

    def shortfall(self) -> str:
        short = ", ".join(
            f"{c} {self.have[c]} of {n}" for c, n in self.want.items() if self.have[c] < n
        )
        return (
            f"the quotas cannot be met: after max_samples = {self.plan.total} samples the "
            f"run has {short}. A generator whose defects never pass the visibility gate "
            "on these images cannot fill its quota (check with defectsynth preview); "
            "raise max_samples, lower the quota or change the recipe, then start again "
            "with --overwrite"
        )


def settle_quotas(out: Path, quota: Quota, tally: Tally, watch: FailureWatch) -> None:
    """Keep the shortest prefix meeting the quotas: the manifest loses the records beyond
    it, and images/ and masks/ every file no kept record names (work done past the
    prefix, or left by a killed run). Skips, failures and generator failures are
    counted inside the prefix only."""
    if not quota.met:
        raise RunError(quota.shortfall())
    path = out / MANIFEST
    kept: list[str] = []
    names: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if quota.keeps(int(rec["task"])):
                kept.append(line)
                names.update([rec["image"], *(a["mask"] for a in rec["annotations"])])
    atomic_write_text(path, "".join(kept))
    for folder in ("images", "masks"):
        for f in sorted((out / folder).rglob("*")):
            if f.is_file() and f.relative_to(out).as_posix() not in names:
                f.unlink()
    for pos, result in sorted(quota.deferred, key=lambda x: x[0]):
        if quota.boundary is not None and pos <= quota.boundary:
            tally.add(result)
    for pos, calls in sorted(quota.calls, key=lambda x: x[0]):
        if quota.boundary is not None and pos <= quota.boundary:
            watch.update(calls)


def quota_of(plan: Plan, out: Path, limit: int | None) -> Quota | None:
    """The run's quota keeper (None without quotas), given what the manifest holds."""
    if plan.cap is None:
        return None
    if limit is not None:
        raise RunError("--limit does not go with quotas; cap the run with max_samples")
    quota = Quota(plan, plan.recipe.quotas)
    for rec in iter_records(out):
        quota.add(int(rec["task"]), (a["category"] for a in rec["annotations"]))
    return quota


def until_met(tasks: Iterable[Task], quota: Quota | None) -> Iterator[Task]:
    """The tasks until the quotas are met (all of them without quotas)."""
    for task in tasks:
        if quota is not None and quota.met:
            return
        yield task


class FailedTask(TypedDict):
    """A task whose sample failed (report.json's ``failed_tasks``)."""

    task: int
    source: str
    error: str


@dataclass
class Tally:
    """Skipped sources and failed tasks, for the run report."""

    skipped: dict[str, str] = field(default_factory=dict)
    skipped_tasks: Counter[str] = field(default_factory=Counter)
    #: where an unexpected error came from, per source (report.json; a bug report)
    tracebacks: dict[str, str] = field(default_factory=dict)
    failed: list[FailedTask] = field(default_factory=list)

    def add(self, result: Skipped | Failed) -> None:
        if isinstance(result, Skipped):
            src = result.source
            self.skipped.setdefault(src, result.reason)
            if result.traceback:
                self.tracebacks.setdefault(src, result.traceback)
            self.skipped_tasks[src] += 1
        else:
            self.failed.append(
                {"task": result.task, "source": result.source, "error": result.error}
            )
