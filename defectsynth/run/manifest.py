"""The manifest: one typed record per written sample, one JSON line each.

``manifest.jsonl`` is the dataset's source of truth: the writers, ``validate``, the
report page and ``--resume`` read it and nothing else. A line is a :class:`Record`; its
``annotations`` are :class:`AnnotationRecord`. Both are ``TypedDict`` rather than
dataclasses because a record *is* the JSON object (writers, also third-party ones, get
plain dicts and the bytes on disk are ``json.dumps`` of exactly this), and the types let
mypy check every reader's keys.

This module imports nothing of the engine (no recipe, synthesizer or plugins), so a
writer may import the types.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

from ..errors import RunError
from ..rle import MaskRLE
from ..writing import atomic_write_text

if TYPE_CHECKING:
    from ..sample import Annotation

MANIFEST = "manifest.jsonl"
DATASET = "dataset.json"
REPORT = "report.json"
DATASET_FORMAT = 1


class AnnotationRecord(TypedDict):
    """One instance of a sample, as the manifest holds it. ``box`` is pixel xyxy (x2, y2
    exclusive), the one internal box format; writers convert it."""

    category: str
    generator: str
    generator_version: str
    box: list[int]
    area: int
    mask_rle: MaskRLE
    polygons: list[list[float]]
    params: dict[str, Any]  # the concrete drawn values
    seed: int
    visibility: float
    center: list[int]  # where the defect was placed, pixel (x, y)
    mask: str  # the instance mask PNG, relative to the dataset folder


class Record(TypedDict):
    """One written sample: a line of ``manifest.jsonl`` (keys in this order on disk)."""

    task: int
    name: str
    split: str
    image: str  # relative to the dataset folder
    width: int
    height: int
    channels: int
    source: str  # relative to the input root
    source_sha256: str
    source_id: int
    seed: int
    variant: int
    negative: bool
    light: list[float]
    generators: dict[str, str]  # name -> version of those with an instance here
    stats: dict[str, int]
    annotations: list[AnnotationRecord]


def annotation_record(a: Annotation, mask_rel: str) -> AnnotationRecord:
    """The manifest form of an annotation: ``Annotation.to_dict()`` (its keys, in its
    order) plus the mask file."""
    return cast(AnnotationRecord, {**a.to_dict(), "mask": mask_rel})


def image_path(split: str, name: str, fmt: str) -> str:
    return f"images/{split}/{name}.{fmt}"


def mask_path(split: str, name: str, k: int) -> str:
    return f"masks/{split}/{name}_{k:02d}.png"


def dump_record(record: Record) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def read_manifest(out_dir: Path, repair: bool = False) -> list[int]:
    """Task indices in ``manifest.jsonl``, in file order. A torn last line (a run killed,
    or still busy, while appending) is ignored, and cut off when ``repair`` is set; a bad
    line elsewhere is an error. The file is read in one go, so a reader watching a live
    run sees a consistent snapshot rather than a line that grows while it is parsed."""
    path = out_dir / MANIFEST
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    tasks: list[int] = []
    for number, line in enumerate(lines, 1):
        try:
            tasks.append(int(json.loads(line)["task"]))
        except (ValueError, KeyError, TypeError):
            raise RunError(f"{path}: line {number} is not a valid record") from None
    if tail and repair:
        with open(path, "r+b") as fh:
            fh.truncate(len(data) - len(tail))
    return tasks


def iter_records(out_dir: Path) -> Iterator[Record]:
    """Manifest records in file order, one at a time."""
    path = out_dir / MANIFEST
    if not path.exists():
        return
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.endswith("\n"):
                yield json.loads(line)


def normalize_manifest(out_dir: Path) -> None:
    """Make the manifest sorted by task with one line per task (a no-op after an ordered
    run; needed after a backend that appends in completion order)."""
    path = out_dir / MANIFEST
    tasks = read_manifest(out_dir, repair=True)
    if all(a < b for a, b in zip(tasks, tasks[1:])):
        return
    lines: dict[int, str] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            lines.setdefault(int(json.loads(line)["task"]), line)
    atomic_write_text(path, "".join(lines[k] for k in sorted(lines)))

