"""Dataset runs: recipe -> tasks -> backend -> manifest -> writers.

A task is one (source image, variant) pair; tasks are numbered in a fixed order (sources
sorted by their path relative to the input root, then variants), and everything about a
task (its split, whether it is a negative, its random stream) is a pure function of the
recipe, the seed and the source's relative path. A worker reads the source, runs the
synthesizer with ``SeedSequence([seed, source_id(rel), variant])``, writes the image and
its instance masks atomically and returns a typed result holding the sample's record. The
driver appends each record to ``manifest.jsonl`` (after the files exist) in task order,
and at the end the writers turn the manifest into their index files. ``--resume`` skips
the tasks the manifest holds; because every file depends only on the task or on the
(sorted) manifest, the result is byte-identical to an uninterrupted run.

The parts, each importable alone:

- :mod:`.plan`: the task list (splits, output names, negatives, limits, quota order);
- :mod:`.worker`: a task -> files on disk and a :data:`~.worker.WorkerResult`;
- :mod:`.manifest`: the typed :class:`~.manifest.Record` and reading/writing the manifest
  (imports nothing of the engine, so writers may use its types);
- :mod:`.quotas`: coverage quotas, generator-failure streaks and the skip tally;
- :mod:`.stopping` and :mod:`.output`: clean stops (signals, full disk) and the output
  folder (lock, --overwrite, --resume);
- :mod:`.driver`: :func:`generate`, which ties them together; :mod:`.preview`: the
  contact sheet of ``defectsynth preview``.

The names below are re-exported lazily, so ``from defectsynth.run import generate`` works
as before while ``import defectsynth.run.manifest`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..rle import crop_rle
    from .driver import (
        RunResult,
        build_report,
        dataset_info,
        finalize,
        generate,
    )
    from .manifest import (
        DATASET,
        DATASET_FORMAT,
        MANIFEST,
        REPORT,
        AnnotationRecord,
        Record,
        annotation_record,
        dump_record,
        image_path,
        iter_records,
        mask_path,
        normalize_manifest,
        read_manifest,
    )
    from .output import LOCK, output_lock, prepare_output
    from .plan import (
        Plan,
        Task,
        assign_splits,
        is_negative,
        output_names,
        samples_per_source,
    )
    from .preview import contact_sheet, preview_tasks
    from .stopping import RunInterrupted, os_reason
    from .worker import (
        Failed,
        Made,
        RunnerFactory,
        Skipped,
        TaskRunner,
        WorkerResult,
        WorkerSpec,
        WriteFailed,
        encode_image,
        encode_mask,
        read_image,
        read_product_mask,
        summarize_calls,
    )

_WHERE = {
    "crop_rle": "defectsynth.rle",
    **dict.fromkeys(
        ["RunResult", "build_report", "dataset_info", "finalize", "generate"], "driver"
    ),
    **dict.fromkeys(
        [
            "DATASET", "DATASET_FORMAT", "MANIFEST", "REPORT", "AnnotationRecord", "Record",
            "annotation_record", "dump_record", "image_path", "iter_records", "mask_path",
            "normalize_manifest", "read_manifest",
        ],
        "manifest",
    ),
    **dict.fromkeys(["LOCK", "output_lock", "prepare_output"], "output"),
    **dict.fromkeys(
        [
            "Plan", "Task", "assign_splits", "is_negative", "output_names",
            "samples_per_source",
        ],
        "plan",
    ),
    **dict.fromkeys(["contact_sheet", "preview_tasks"], "preview"),
    **dict.fromkeys(["RunInterrupted", "os_reason"], "stopping"),
    **dict.fromkeys(
        [
            "Failed", "Made", "RunnerFactory", "Skipped", "TaskRunner", "WorkerResult",
            "WorkerSpec", "WriteFailed", "encode_image", "encode_mask", "read_image",
            "read_product_mask", "summarize_calls",
        ],
        "worker",
    ),
}

__all__ = [
    "AnnotationRecord", "DATASET", "DATASET_FORMAT", "Failed", "LOCK", "MANIFEST", "Made",
    "Plan", "REPORT", "Record", "RunInterrupted", "RunResult", "RunnerFactory", "Skipped",
    "Task", "TaskRunner", "WorkerResult", "WorkerSpec", "WriteFailed", "annotation_record",
    "assign_splits", "build_report", "contact_sheet", "crop_rle", "dataset_info",
    "dump_record", "encode_image", "encode_mask", "finalize", "generate", "image_path",
    "is_negative", "iter_records", "mask_path", "normalize_manifest", "os_reason",
    "output_lock", "output_names", "prepare_output", "preview_tasks", "read_image",
    "read_manifest", "read_product_mask", "samples_per_source", "summarize_calls",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(where if "." in where else f"{__name__}.{where}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
