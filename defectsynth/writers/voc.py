"""Pascal VOC: ``voc/Annotations/*.xml``, ``voc/JPEGImages/``, ``voc/ImageSets/Main/{split}.txt``.

Boxes follow the VOC convention: 1-based, inclusive pixel coordinates, so our internal
``[x1, y1, x2, y2)`` (0-based, end exclusive) becomes ``xmin = x1 + 1, ymin = y1 + 1,
xmax = x2, ymax = y2``. ``JPEGImages/`` keeps the name even for PNG output and holds hard
links to ``images/{split}/`` (copies where links are impossible). ``ImageSets/Main`` has one
file per split, plus ``trainval.txt`` when both exist. A negative sample has an XML file
without ``<object>``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from defectsynth.api import DatasetWriter, hookimpl
from defectsynth.writing import (
    WriteContext,
    atomic_write_bytes,
    atomic_writer,
    link_or_copy,
    record_file_name,
)

ROOT = "voc"

if TYPE_CHECKING:
    from defectsynth.run.manifest import Record


def _sub(parent: ET.Element, tag: str, text: Any = None) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = str(text)
    return el


def voc_xml(rec: Record) -> bytes:
    ann = ET.Element("annotation")
    _sub(ann, "folder", "JPEGImages")
    _sub(ann, "filename", record_file_name(rec))
    src = _sub(ann, "source")
    _sub(src, "database", "defectsynth")
    _sub(src, "image", rec["source"])
    size = _sub(ann, "size")
    _sub(size, "width", rec["width"])
    _sub(size, "height", rec["height"])
    _sub(size, "depth", rec["channels"])
    _sub(ann, "segmented", 0)
    for a in rec["annotations"]:
        x1, y1, x2, y2 = a["box"]
        obj = _sub(ann, "object")
        _sub(obj, "name", a["category"])
        _sub(obj, "pose", "Unspecified")
        _sub(obj, "truncated", 0)
        _sub(obj, "difficult", 0)
        box = _sub(obj, "bndbox")
        _sub(box, "xmin", x1 + 1)
        _sub(box, "ymin", y1 + 1)
        _sub(box, "xmax", x2)
        _sub(box, "ymax", y2)
    ET.indent(ann, space="  ")
    return ET.tostring(ann, encoding="utf-8", xml_declaration=False) + b"\n"


class VocWriter(DatasetWriter):
    """Pascal VOC XML per image, JPEGImages (hard links) and ImageSets/Main lists."""

    name = "voc"
    description = "Pascal VOC: Annotations/*.xml, JPEGImages/, ImageSets/Main/"
    paths = ("voc/",)

    def write(
        self, out_dir: Path, records: Iterable[Record], context: WriteContext
    ) -> None:
        root = out_dir / ROOT
        sets = root / "ImageSets" / "Main"
        for d in ("Annotations", "JPEGImages"):
            (root / d).mkdir(parents=True, exist_ok=True)
        splits = list(context.splits)
        lists = {s: atomic_writer(sets / f"{s}.txt") for s in splits}
        files = {s: cm.__enter__() for s, cm in lists.items()}
        try:
            for rec in records:
                fname = record_file_name(rec)
                stem = fname.rsplit(".", 1)[0]
                link_or_copy(out_dir / rec["image"], root / "JPEGImages" / fname)
                atomic_write_bytes(root / "Annotations" / f"{stem}.xml", voc_xml(rec))
                if rec["split"] in files:
                    files[rec["split"]].write(stem + "\n")
        except BaseException as exc:
            for cm in lists.values():
                cm.__exit__(type(exc), exc, exc.__traceback__)
            raise
        for cm in lists.values():
            cm.__exit__(None, None, None)
        if "train" in splits and "val" in splits:
            text = (sets / "train.txt").read_text(encoding="utf-8") + (sets / "val.txt").read_text(
                encoding="utf-8"
            )
            atomic_write_bytes(sets / "trainval.txt", text.encode("utf-8"))


@hookimpl
def register_writers(register: Any) -> None:
    register(VocWriter)
