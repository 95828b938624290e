"""COCO instance segmentation: ``annotations/instances_{split}.json``.

Choices (see docs/formats.md):

- one JSON per split; ``images[].file_name`` is relative to ``images/{split}/``, so
  ``pycocotools.coco.COCO(json)`` with that image root, torchvision's ``CocoDetection``
  and supervision's ``DetectionDataset.from_coco`` read it as it is;
- category ids are 1..N in the recipe's ``defects`` order, the same in every split (and
  YOLO's class ``i`` is COCO's ``i + 1``);
- image ids are the task index + 1 (stable across resumes and limits); annotation ids
  count from 1 over the whole dataset in manifest order, so they are unique across splits;
- ``bbox`` is ``[x, y, w, h]`` in pixels of the tight box of the mask, ``area`` the mask's
  pixel count, ``segmentation`` an uncompressed RLE ``{"size": [h, w], "counts": [...]}``
  with ``iscrowd: 0``. pycocotools decodes RLE whatever ``iscrowd`` says; ``iscrowd: 1``
  would make COCOeval treat every defect as an ignorable crowd region, so it stays 0.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from defectsynth.api import DatasetWriter, hookimpl
from defectsynth.writing import WriteContext, atomic_writer, record_file_name

if TYPE_CHECKING:
    from defectsynth.run.manifest import Record


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def annotation_file(split: str) -> str:
    return f"annotations/instances_{split}.json"


class CocoWriter(DatasetWriter):
    """COCO JSON per split with RLE instance masks (pycocotools, torchvision, detectron2)."""

    name = "coco"
    description = "COCO instances JSON per split, RLE masks"
    paths = ("annotations/",)

    def write(
        self, out_dir: Path, records: Iterable[Record], context: WriteContext
    ) -> None:
        cat_ids = {c: i + 1 for i, c in enumerate(context.categories)}
        spools: dict[str, tuple[IO[str], IO[str], list[int]]] = {}
        try:
            for s in context.splits:
                spools[s] = (
                    tempfile.TemporaryFile("w+", encoding="utf-8"),
                    tempfile.TemporaryFile("w+", encoding="utf-8"),
                    [0, 0],
                )
            ann_id = 0
            for rec in records:
                split = rec["split"]
                if split not in spools:
                    continue
                imgs, anns, n = spools[split]
                image_id = int(rec["task"]) + 1
                entry = {
                    "id": image_id,
                    "file_name": record_file_name(rec),
                    "width": rec["width"],
                    "height": rec["height"],
                    "source": rec["source"],
                }
                imgs.write((",\n" if n[0] else "") + _dump(entry))
                n[0] += 1
                for a in rec["annotations"]:
                    ann_id += 1
                    x1, y1, x2, y2 = a["box"]
                    ann = {
                        "id": ann_id,
                        "image_id": image_id,
                        "category_id": cat_ids[a["category"]],
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "area": a["area"],
                        "segmentation": a["mask_rle"],
                        "iscrowd": 0,
                    }
                    anns.write((",\n" if n[1] else "") + _dump(ann))
                    n[1] += 1
            for split, (imgs, anns, _n) in spools.items():
                header = {
                    "info": {
                        "description": "defectsynth synthetic defects",
                        "version": context.version,
                        "split": split,
                    },
                    "licenses": [],
                    "categories": [
                        {"id": cat_ids[c], "name": c, "supercategory": "defect"}
                        for c in context.categories
                    ],
                }
                with atomic_writer(out_dir / annotation_file(split)) as fh:
                    head = _dump(header)
                    fh.write(head[:-1] + ',\n"images":[\n')
                    _copy(imgs, fh)
                    fh.write('\n],\n"annotations":[\n')
                    _copy(anns, fh)
                    fh.write("\n]}\n")
        finally:
            for imgs, anns, _ in spools.values():
                imgs.close()
                anns.close()


def _copy(spool: IO[str], fh: IO[str]) -> None:
    spool.seek(0)
    for chunk in iter(lambda: spool.read(1 << 20), ""):
        fh.write(chunk)


@hookimpl
def register_writers(register: Any) -> None:
    register(CocoWriter)
