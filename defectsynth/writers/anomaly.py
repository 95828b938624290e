"""Anomaly detection in the MVTec AD layout (anomalib's ``MVTec`` and ``Folder`` datamodules).

::

    anomaly/train/good/{source}_src.{ext}   the clean sources of the train split
    anomaly/train/good/{name}.png           negatives of the train split
    anomaly/test/good/{name}.png            negatives of the val and test splits
    anomaly/test/{category}/{name}.png      samples with defects of the val and test splits
    anomaly/ground_truth/{category}/{name}_mask.png   union of the instance masks, 0/255

An anomaly model trains on good images, and the clean sources are exactly that: every
source of the train split that has a sample goes to ``train/good`` as it is (its own file
format and extension; ``{source}`` is the samples' name without ``_{variant}``), a hard
link where the file system allows it and a copy otherwise. A sample whose instances have
several categories goes to ``test/combined`` (MVTec's name for it). Samples with defects
from the train split are left out: putting them in ``test/`` would leak train sources into
the test set. Negatives are pixel for pixel their source (a negative sample gets no defect
and no other change). Images are hard links to ``images/{split}/``; masks are 8-bit PNG,
255 on the defect.
With anomalib: ``MVTec(root=OUT, category="anomaly")`` or ``Folder(root=OUT/"anomaly",
normal_dir="train/good", abnormal_dir="test", normal_test_dir="test/good",
mask_dir="ground_truth")``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from defectsynth.api import DatasetWriter, hookimpl
from defectsynth.imagefile import mask_png
from defectsynth.rle import decode_rle
from defectsynth.writers.yolo import mask_in_box
from defectsynth.writing import WriteContext, atomic_write_bytes, link_or_copy, record_file_name

ROOT = "anomaly"
COMBINED = "combined"

if TYPE_CHECKING:
    from defectsynth.run.manifest import Record


def anomaly_folder(rec: Record) -> str | None:
    """``train/good``, ``test/good``, ``test/<category>`` or None (left out)."""
    anns = rec["annotations"]
    if not anns:
        return "train/good" if rec["split"] == "train" else "test/good"
    if rec["split"] == "train":
        return None
    cats = {a["category"] for a in anns}
    return f"test/{cats.pop() if len(cats) == 1 else COMBINED}"


SOURCE_SUFFIX = "_src"


def source_file_name(rec: Record) -> str:
    """``{source}_src.{ext}``: a record's clean source in train/good. The stem is the
    record's name without ``_{variant}``, so it never equals a sample's name (those end in
    three digits); the extension is the source's own, lower case."""
    stem = str(rec["name"]).rsplit("_", 1)[0]
    return f"{stem}{SOURCE_SUFFIX}{Path(str(rec['source'])).suffix.lower()}"


def union_mask(rec: Record) -> np.ndarray:
    h, w = int(rec["height"]), int(rec["width"])
    m = np.zeros((h, w), dtype=bool)
    for a in rec["annotations"]:
        m |= decode_rle(a["mask_rle"])
    return m


def union_crop(rec: Record) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The union of a record's instance masks inside the union of their boxes, and that
    box: what :func:`union_mask` holds, decoded from the boxes' columns only."""
    boxes = [tuple(int(v) for v in a["box"]) for a in rec["annotations"]]
    x1, y1 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x2, y2 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    m = np.zeros((y2 - y1, x2 - x1), dtype=bool)
    for a, (bx1, by1, bx2, by2) in zip(rec["annotations"], boxes, strict=True):
        m[by1 - y1:by2 - y1, bx1 - x1:bx2 - x1] |= mask_in_box(a["mask_rle"], (bx1, by1, bx2, by2))
    return m, (x1, y1, x2, y2)


class AnomalyWriter(DatasetWriter):
    """MVTec AD layout: train/good, test/good, test/<category>, ground_truth masks."""

    name = "anomaly"
    description = "MVTec AD layout for anomaly detection (anomalib)"
    paths = ("anomaly/",)

    def write(
        self, out_dir: Path, records: Iterable[Record], context: WriteContext
    ) -> None:
        root = out_dir / ROOT
        for d in ("train/good", "test/good"):
            (root / d).mkdir(parents=True, exist_ok=True)
        sources_done: set[str] = set()
        for rec in records:
            if rec["split"] == "train" and context.source_root:
                name = source_file_name(rec)
                if name not in sources_done:
                    sources_done.add(name)
                    link_or_copy(Path(context.source_root) / rec["source"],
                                 root / "train" / "good" / name)
            folder = anomaly_folder(rec)
            if folder is None:
                continue
            fname = record_file_name(rec)
            link_or_copy(out_dir / rec["image"], root / folder / fname)
            if rec["annotations"]:
                cat = folder.split("/", 1)[1]
                crop, box = union_crop(rec)
                png = mask_png(crop, box, (int(rec["height"]), int(rec["width"])), bits=8)
                stem = fname.rsplit(".", 1)[0]
                atomic_write_bytes(root / "ground_truth" / cat / f"{stem}_mask.png", png)


@hookimpl
def register_writers(register: Any) -> None:
    register(AnomalyWriter)
