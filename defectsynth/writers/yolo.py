"""YOLO in the ultralytics layout: ``images/{split}/``, ``labels/{split}/*.txt``, ``data.yaml``.

- ``yolo`` (detection): one line per instance, ``class cx cy w h`` normalized to 0..1,
  six decimals; class ``i`` is the i-th category (COCO id ``i + 1``). It uses the shared
  ``images/{split}/`` folders directly: ultralytics finds ``labels/`` by replacing
  ``/images/`` in each image path.
- ``yolo-seg`` (segmentation): ``class x1 y1 x2 y2 ...``, the instance's outline
  (pixel-centre coordinates, normalized). An instance whose mask has several parts is
  written with its largest part, one line per instance as ultralytics expects. It lives in
  ``yolo-seg/`` with its own ``images/`` (hard links, no copies) so both can coexist.
- An image without defects gets an empty label file (ultralytics counts it as a
  background image instead of a missing label).
- ``data.yaml``: ``path`` (the dataset folder, absolute, as ultralytics resolves a relative
  ``path`` against its own datasets folder), one key per split that holds images (``val``
  falls back to ``test`` or ``train`` when the recipe has no val split or it is empty,
  since ultralytics requires it; an empty ``train`` to ``val`` or ``test``), ``nc`` and
  ``names``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from defectsynth import DatasetWriter, hookimpl
from defectsynth.writing import WriteContext, atomic_write_text, link_or_copy, record_file_name


def _f(v: float) -> str:
    return f"{min(max(v, 0.0), 1.0):.6f}"


def _largest(polys: list[list[float]]) -> list[float]:
    def area(p: list[float]) -> float:
        xs, ys = p[0::2], p[1::2]
        n = len(xs)
        return abs(sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))) / 2

    return max(polys, key=lambda p: (area(p), len(p)))


def detection_line(cls: int, box: list[int], w: int, h: int) -> str:
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h
    return f"{cls} {_f(cx)} {_f(cy)} {_f((x2 - x1) / w)} {_f((y2 - y1) / h)}"


def segment_line(cls: int, polygons: list[list[float]], w: int, h: int) -> str:
    poly = _largest(polygons)
    coords = [_f((v + 0.5) / (w if i % 2 == 0 else h)) for i, v in enumerate(poly)]
    return f"{cls} " + " ".join(coords)


def data_yaml(root: Path, context: WriteContext, counts: Mapping[str, int] | None = None) -> str:
    """``data.yaml`` naming only splits that hold images (``counts``: images per split;
    None: every split of the recipe). ultralytics needs ``train`` and ``val``: an empty
    ``val`` points at ``test``, else ``train``; an empty ``train`` at ``val``, else ``test``."""
    import yaml

    splits = list(context.splits)
    if counts is not None and any(counts.get(s, 0) for s in splits):
        splits = [s for s in splits if counts.get(s, 0)]
    doc: dict[str, Any] = {"path": str(root.absolute())}
    for s in ("train", "val", "test"):
        if s in splits:
            doc[s] = f"images/{s}"
    if "val" not in doc:
        doc["val"] = doc.get("test") or doc.get("train") or "images/train"
    if "train" not in doc:
        doc["train"] = doc.get("val") or doc.get("test")
    doc["nc"] = len(context.categories)
    doc["names"] = dict(enumerate(context.categories))
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


class YoloWriter(DatasetWriter):
    """Ultralytics YOLO detection labels over the shared images/{split}/ folders."""

    name = "yolo"
    description = "YOLO (ultralytics) detection: labels/{split}/*.txt + data.yaml"
    paths: ClassVar[tuple[str, ...]] = ("labels/", "data.yaml")
    segment = False
    subdir = ""

    def write(
        self, out_dir: Path, records: Iterable[dict[str, Any]], context: WriteContext
    ) -> None:
        root = out_dir / self.subdir if self.subdir else out_dir
        cls_of = {c: i for i, c in enumerate(context.categories)}
        for s in context.splits:
            (root / "labels" / s).mkdir(parents=True, exist_ok=True)
            (root / "images" / s).mkdir(parents=True, exist_ok=True)
        counts: Counter[str] = Counter()
        for rec in records:
            split = rec["split"]
            counts[split] += 1
            w, h = int(rec["width"]), int(rec["height"])
            lines = []
            for a in rec["annotations"]:
                c = cls_of[a["category"]]
                if self.segment:
                    lines.append(segment_line(c, a["polygons"], w, h))
                else:
                    lines.append(detection_line(c, a["box"], w, h))
            fname = record_file_name(rec)
            if self.subdir:
                link_or_copy(out_dir / rec["image"], root / "images" / split / fname)
            stem = fname.rsplit(".", 1)[0]
            atomic_write_text(
                root / "labels" / split / f"{stem}.txt", "".join(x + "\n" for x in lines)
            )
        atomic_write_text(root / "data.yaml", data_yaml(root, context, counts))


class YoloSegWriter(YoloWriter):
    """Ultralytics YOLO segmentation labels (polygons) in yolo-seg/, images hard-linked."""

    name = "yolo-seg"
    description = "YOLO (ultralytics) segmentation polygons in yolo-seg/"
    paths = ("yolo-seg/",)
    segment = True
    subdir = "yolo-seg"


@hookimpl
def register_writers(register: Any) -> None:
    register(YoloWriter)
    register(YoloSegWriter)
