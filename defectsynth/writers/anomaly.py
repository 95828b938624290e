"""Anomaly detection in the MVTec AD layout (anomalib's ``MVTec`` and ``Folder`` datamodules).

::

    anomaly/train/good/{name}.png           negatives of the train split
    anomaly/test/good/{name}.png            negatives of the val and test splits
    anomaly/test/{category}/{name}.png      samples with defects of the val and test splits
    anomaly/ground_truth/{category}/{name}_mask.png   union of the instance masks, 0/255

A sample whose instances have several categories goes to ``test/combined`` (MVTec's name for
it). Samples with defects from the train split are left out: anomaly models train on good
images only, and putting them in ``test/`` would leak train sources into the test set. So
this layout needs ``negatives`` > 0 in the recipe (train/good) and a val or test split.
Images are hard links to ``images/{split}/``; masks are 8-bit PNG, 255 on the defect.
With anomalib: ``MVTec(root=OUT, category="anomaly")`` or ``Folder(root=OUT/"anomaly",
normal_dir="train/good", abnormal_dir="test", normal_test_dir="test/good",
mask_dir="ground_truth")``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from defectsynth import DatasetWriter, hookimpl
from defectsynth.rle import decode_rle
from defectsynth.writing import WriteContext, atomic_write_bytes, link_or_copy, record_file_name

ROOT = "anomaly"
COMBINED = "combined"


def anomaly_folder(rec: dict[str, Any]) -> str | None:
    """``train/good``, ``test/good``, ``test/<category>`` or None (left out)."""
    anns = rec["annotations"]
    if not anns:
        return "train/good" if rec["split"] == "train" else "test/good"
    if rec["split"] == "train":
        return None
    cats = {a["category"] for a in anns}
    return f"test/{cats.pop() if len(cats) == 1 else COMBINED}"


def union_mask(rec: dict[str, Any]) -> np.ndarray:
    h, w = int(rec["height"]), int(rec["width"])
    m = np.zeros((h, w), dtype=bool)
    for a in rec["annotations"]:
        m |= decode_rle(a["mask_rle"])
    return m


class AnomalyWriter(DatasetWriter):
    """MVTec AD layout: train/good, test/good, test/<category>, ground_truth masks."""

    name = "anomaly"
    description = "MVTec AD layout for anomaly detection (anomalib)"
    paths = ("anomaly/",)

    def write(
        self, out_dir: Path, records: Iterable[dict[str, Any]], context: WriteContext
    ) -> None:
        root = out_dir / ROOT
        for d in ("train/good", "test/good"):
            (root / d).mkdir(parents=True, exist_ok=True)
        for rec in records:
            folder = anomaly_folder(rec)
            if folder is None:
                continue
            fname = record_file_name(rec)
            link_or_copy(out_dir / rec["image"], root / folder / fname)
            if rec["annotations"]:
                cat = folder.split("/", 1)[1]
                ok, buf = cv2.imencode(".png", union_mask(rec).astype(np.uint8) * 255)
                if not ok:
                    raise RuntimeError("OpenCV could not encode a mask")
                stem = fname.rsplit(".", 1)[0]
                atomic_write_bytes(root / "ground_truth" / cat / f"{stem}_mask.png", buf.tobytes())


@hookimpl
def register_writers(register: Any) -> None:
    register(AnomalyWriter)
