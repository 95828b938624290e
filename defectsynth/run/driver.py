"""The driver: :func:`generate` plans the run, hands tasks to a backend, appends the
workers' records to the manifest in task order, and runs the writers at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import RunError, RunStopped
from ..recipe import Recipe
from ..writing import WriteContext, atomic_write_text, remove_temp_files
from .manifest import (
    DATASET,
    DATASET_FORMAT,
    MANIFEST,
    REPORT,
    Record,
    dump_record,
    iter_records,
    normalize_manifest,
    read_manifest,
)
from .output import output_lock, prepare_output
from .plan import Plan, shown_path
from .quotas import FailureWatch, Quota, Tally, quota_of, settle_quotas, until_met
from .stopping import (
    RunInterrupted,
    Stop,
    graceful_signals,
    os_reason,
    shown_file,
    stopped_error,
    until_stopped,
    worker_deaths,
)
from .worker import Made, RunnerFactory, WorkerResult, WorkerSpec, WriteFailed

if TYPE_CHECKING:
    from ..backends import Backend
    from ..plugins import PluginHost

@dataclass
class RunResult:
    """What a run did; ``report`` is what ``report.json`` holds."""

    out_dir: Path
    report: dict[str, Any]
    new_samples: int = 0
    resumed: int = 0
    seconds: float = 0.0

    @property
    def samples(self) -> int:
        return int(self.report["samples"])


def _append(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _discard_files(out: Path, record: Record) -> None:
    for rel in [record["image"], *(a["mask"] for a in record["annotations"])]:
        with contextlib.suppress(OSError):
            (out / rel).unlink()


def dataset_info(
    recipe: Recipe, host: PluginHost, limit: int | None, categories: list[str]
) -> dict[str, Any]:
    def plugin_of(kind: str, name: str) -> dict[str, Any]:
        owner = host.provider(kind, name)
        cls = host.generator(name) if kind == "generator" else host.writer(name)
        source = None
        if owner is not None:
            source = owner.source if owner.source in ("builtin", "entry point") else "file"
        return {
            "name": name,
            "version": str(cls.version),
            "plugin": owner.name if owner else None,
            "plugin_version": owner.version if owner else None,
            "plugin_source": source,
        }

    # a recipe file names its generators; an Entry built in Python may hold the class
    named = (d.generator for d in recipe.defects)
    gens = sorted({g if isinstance(g, str) else g.name for g in named})
    return {
        "defectsynth_version": __version__,
        "dataset_format": DATASET_FORMAT,
        "recipe_file": Path(recipe.file).name,
        "recipe": recipe.to_dict(),
        "limit": limit,
        "categories": categories,
        "splits": list(recipe.splits),
        "formats": list(recipe.output.formats),
        "image_format": recipe.output.image_format,
        "generators": [plugin_of("generator", g) for g in gens],
        "writers": [plugin_of("writer", w) for w in recipe.output.formats],
    }


_RUN_CONTROL = ("max_generator_failures",)


def _check_resume(out: Path, info: dict[str, Any]) -> None:
    path = out / DATASET
    if not path.exists():
        if (out / MANIFEST).exists():
            raise RunError(f"{path} is missing; cannot tell which recipe made this dataset")
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"{path} is unreadable ({exc}); use --overwrite to start again") from None
    # how many failures stop a run does not change a byte of the output
    before = {k: v for k, v in (old.get("recipe") or {}).items() if k not in _RUN_CONTROL}
    now = {k: v for k, v in info["recipe"].items() if k not in _RUN_CONTROL}
    if before != now:
        diff = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        raise RunError(
            f"cannot --resume {str(out)!r}: it was made from a different recipe or seed "
            f"(differs in: {', '.join(diff)}); use --overwrite or another output folder"
        )


def build_report(out: Path, plan: Plan, tally: Tally, categories: list[str]) -> dict[str, Any]:
    samples = negatives = with_defects = 0
    inst: Counter[str] = Counter({c: 0 for c in categories})
    per_split: Counter[str] = Counter({s: 0 for s in plan.recipe.splits})
    dropped: Counter[str] = Counter({"visibility": 0, "overlap": 0, "no_room": 0})
    for rec in iter_records(out):
        samples += 1
        per_split[rec["split"]] += 1
        if rec["negative"]:
            negatives += 1
        if rec["annotations"]:
            with_defects += 1
        for a in rec["annotations"]:
            inst[a["category"]] += 1
        st = rec.get("stats", {})
        dropped["visibility"] += int(st.get("dropped_visibility", 0))
        dropped["overlap"] += int(st.get("dropped_overlap", 0))
        dropped["no_room"] += int(st.get("dropped_no_room", 0))
    return {
        "tasks": plan.total,
        "sources": len(plan.sources),
        "samples": samples,
        "samples_with_defects": with_defects,
        "negatives": negatives,
        "splits": dict(per_split),
        "instances": dict(inst),
        "dropped": dict(dropped),
        "skipped_sources": [
            {"source": s, "reason": tally.skipped[s], "tasks": tally.skipped_tasks[s]}
            | ({"traceback": tally.tracebacks[s]} if s in tally.tracebacks else {})
            for s in sorted(tally.skipped)
        ],
        "failed_tasks": sorted(tally.failed, key=lambda d: int(d["task"])),
    } | (
        {"skipped_input_folders": [shown_path(d, plan.recipe.base_dir)
                                   for d in plan.skipped_folders]}
        if plan.skipped_folders else {}
    )


def finalize(
    out: Path, recipe: Recipe, host: PluginHost, info: dict[str, Any], categories: list[str]
) -> None:
    """Write every format's files from the manifest (also used by resume and by backends)."""
    normalize_manifest(out)
    ctx = WriteContext(
        categories=tuple(categories),
        splits=recipe.splits,
        image_format=recipe.output.image_format,
        recipe=info["recipe"],
        version=__version__,
        source_root=str(recipe.input_root()),
    )
    for fmt in recipe.output.formats:
        writer = host.writer(fmt)()
        writer.write(out, iter_records(out), ctx)


def generate(
    recipe: Recipe,
    out_dir: str | os.PathLike[str],
    *,
    workers: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    limit: int | None = None,
    host: PluginHost | None = None,
    backend: Backend | None = None,
    progress: Callable[[int, int], Any] | None = None,
    extra_plugin_dirs: Iterable[str | os.PathLike[str]] = (),
) -> RunResult:
    """Write a labeled dataset for ``recipe`` into ``out_dir``.

    :param workers: processes for the local backend (default: the number of cores).
    :param resume: finish a dataset started with the same recipe and seed.
    :param overwrite: delete an existing dataset in ``out_dir`` first.
    :param limit: only ``limit`` tasks (source x variant), cut from every split in
        proportion and spread over the sources (:meth:`Plan.limited`).
    :param backend: a :class:`defectsynth.backends.Backend` (default: local).
    :param progress: called as ``progress(done_now, todo)`` after each task; return value
        ignored. ``todo`` is the number of tasks this call runs.
    :raises RunError: the output folder cannot be used (another run holds its lock,
        ``OUT/.defectsynth.lock``), or a generator failed
        ``recipe.max_generator_failures`` times in a row.
    :raises RunStopped: a file could not be written (disk full): the samples in the
        manifest are complete; ``resume=True`` finishes once the cause is fixed.
    :raises RunInterrupted: (a ``KeyboardInterrupt``) SIGINT or SIGTERM arrived; the
        samples in flight were finished and recorded first.

    With more than one worker the pool starts its processes from a fork server, which
    imports the calling script's main module: call ``generate`` under
    ``if __name__ == "__main__":`` in scripts, as with any ``multiprocessing`` code.
    """
    from ..backends import local_backend
    from ..plugins import PluginHost
    from ..synthesizer import Synthesizer

    t0 = time.perf_counter()
    out = Path(out_dir)
    plugin_dirs = tuple(str(Path(d).absolute()) for d in extra_plugin_dirs) + tuple(
        str(p) for p in recipe.plugin_paths()
    )
    if host is None:
        host = PluginHost(plugin_dirs)
    synth = Synthesizer.from_recipe(recipe, host)  # validates generators, params, formats
    categories = synth.categories
    _check_quota_categories(recipe, categories)
    plan = Plan.build(recipe, limit, exclude=[out])
    info = dataset_info(recipe, host, limit, categories)
    if resume and overwrite:
        raise RunError("--resume and --overwrite exclude each other")
    with output_lock(out):  # a second run into OUT fails here, clearly
        fd, done = _open_output(out, info, resume=resume, overwrite=overwrite)
        quota = quota_of(plan, out, limit)
        spec = WorkerSpec(recipe=recipe, out_dir=str(out.absolute()), plugin_dirs=plugin_dirs)
        if backend is None:
            backend = local_backend(workers, chunksize=max(1, min(plan.recipe.variants, 8)))
        labels = synth.labels_by_generator()
        rec = _Recorder(out, fd, FailureWatch(recipe.max_generator_failures, labels), quota)
        try:
            rec.run(backend, RunnerFactory(spec, host), plan, done, progress)
        finally:
            os.close(fd)
        _after_tasks(out, rec, len(done))
        if quota is not None:
            rec.watch = FailureWatch(recipe.max_generator_failures, labels)
            settle_quotas(out, quota, rec.tally, rec.watch)
        report = _write_indexes(out, recipe, plan, host, info, categories, rec)
        return RunResult(
            out_dir=out,
            report=report,
            new_samples=rec.new,
            resumed=len(done),
            seconds=time.perf_counter() - t0,
        )


def _check_quota_categories(recipe: Recipe, categories: list[str]) -> None:
    for cat, _ in recipe.quotas:
        if cat not in categories:
            raise recipe.error(
                f"quotas.{cat}",
                f"no defect entry labels {cat!r}, so its quota could never be met; the "
                f"recipe's categories: {', '.join(categories)}",
            )


def _open_output(
    out: Path, info: dict[str, Any], *, resume: bool, overwrite: bool
) -> tuple[int, set[int]]:
    """Prepare OUT (under its lock), write dataset.json and open the manifest for
    appending; returns its descriptor and the tasks it already holds (``resume``)."""
    done: list[int] = []
    try:
        prepare_output(out, resume=resume, overwrite=overwrite)
        if resume:
            _check_resume(out, info)
            remove_temp_files(out)
            done = read_manifest(out, repair=True)
        atomic_write_text(out / DATASET, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
        fd = os.open(out / MANIFEST, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and Path(exc.filename) != out else ""
        raise RunError(
            f"cannot write to the output folder {str(out)!r}{where}: {os_reason(exc)}"
        ) from None
    return fd, set(done)


def _todo(plan: Plan, quota: Quota | None, done: set[int]) -> int:
    """How many tasks this call runs (for progress)."""
    if quota is not None:
        return plan.total - len(done)
    chosen = plan.limited()
    if chosen is None:
        return plan.total - sum(1 for i in done if i < plan.total)
    return sum(1 for i in chosen if i not in done)


class _Recorder:
    """Takes the workers' results in task order: appends records to the manifest, counts
    skips, failures and quotas, and decides when the run must stop."""

    def __init__(self, out: Path, fd: int, watch: FailureWatch, quota: Quota | None) -> None:
        self.out = out
        self.fd = fd
        self.watch = watch
        self.quota = quota
        self.tally = Tally()
        self.stop = Stop()
        self.new = 0
        self.manifest_size = 0

    def run(
        self,
        backend: Backend,
        factory: RunnerFactory,
        plan: Plan,
        done: set[int],
        progress: Callable[[int, int], Any] | None,
    ) -> None:
        self.manifest_size = os.fstat(self.fd).st_size
        todo = _todo(plan, self.quota, done)
        tasks = until_met(until_stopped(plan.tasks(done), self.stop), self.quota)
        with graceful_signals(self.stop), worker_deaths(self.stop, self.out):
            for i, result in enumerate(backend.map(factory, tasks)):
                self.take(result)
                if progress is not None:
                    progress(i + 1, todo)

    def take(self, result: WorkerResult) -> None:
        if self.quota is not None:
            self.quota.take(result)
        if isinstance(result, Made):
            self._append(result.record)
        elif isinstance(result, WriteFailed):
            self.stop.fail(stopped_error(result.error, result.errno))
        elif self.quota is None:
            self.tally.add(result)
        if self.quota is not None:
            # in position order, inside the prefix only (see Quota.ready_calls)
            summaries = self.quota.ready_calls()
        else:
            summaries = [result.calls if isinstance(result, Made | WriteFailed) else {}]
        for calls in summaries:
            stopper = self.watch.update(calls)
            if stopper is not None:
                self.stop.fail(RunError(stopper))
                break

    def _append(self, record: Record) -> None:
        data = dump_record(record).encode("utf-8")
        try:
            _append(self.fd, data)
            self.manifest_size += len(data)
            self.new += 1
        except OSError as exc:
            # keep the manifest whole and the sample out of the dataset
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.manifest_size)
            _discard_files(self.out, record)
            what = f"cannot append to {MANIFEST}: {os_reason(exc)}"
            self.stop.fail(stopped_error(what, exc.errno))


def _after_tasks(out: Path, rec: _Recorder, resumed: int) -> None:
    """Clean up after the backend is done, and raise what stopped the run early."""
    # a worker killed mid-write whose task a backend retried (dask) leaves temporary files
    for folder in ("images", "masks"):
        remove_temp_files(out / folder)
    stop = rec.stop
    if isinstance(stop.error, RunStopped):
        raise RunStopped(
            f"{stop.error}. The run stopped; the {resumed + rec.new} samples in {MANIFEST} "
            "are complete and nothing else was kept. Fix the cause (free some space), then "
            "finish with --resume"
        )
    if stop.error is not None:
        raise stop.error
    if stop.signum is not None:
        raise RunInterrupted(stop.signum)


def _write_indexes(
    out: Path,
    recipe: Recipe,
    plan: Plan,
    host: PluginHost,
    info: dict[str, Any],
    categories: list[str],
    rec: _Recorder,
) -> dict[str, Any]:
    """Run the writers and write report.json; returns the report."""
    quota = rec.quota
    try:
        finalize(out, recipe, host, info, categories)
        report = build_report(out, plan, rec.tally, categories)
        report["generator_failures"] = rec.watch.report()
        if quota is not None and quota.boundary is not None:
            report["tasks"] = quota.boundary + 1
            report["quotas"] = quota.table()
        atomic_write_text(out / REPORT, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise stopped_error(
            f"cannot write the index files ({shown_file(exc.filename, out)}): "
            f"{os_reason(exc)}. "
            f"Every sample in {MANIFEST} is complete; fix the cause (free some space), then "
            "write them with --resume",
            exc.errno,
        ) from None
    return report
