"""YOLO in the ultralytics layout: ``images/{split}/``, ``labels/{split}/*.txt``, ``data.yaml``.

- ``yolo`` (detection): one line per instance, ``class cx cy w h`` normalized to 0..1,
  six decimals; class ``i`` is the i-th category (COCO id ``i + 1``). It uses the shared
  ``images/{split}/`` folders directly: ultralytics finds ``labels/`` by replacing
  ``/images/`` in each image path.
- ``yolo-seg`` (segmentation): ``class x1 y1 x2 y2 ...``, the instance's outline
  (pixel-centre coordinates, normalized), taken from the mask itself. An instance whose
  mask has several parts is one outline that joins the parts by zero-width bridges (one
  line per instance, as ultralytics expects), so filling it gives back every part. It lives in
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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import cv2
import numpy as np

from defectsynth.api import DatasetWriter, hookimpl
from defectsynth.writing import WriteContext, atomic_write_text, link_or_copy, record_file_name

if TYPE_CHECKING:
    from defectsynth.run.manifest import Record


def _f(v: float) -> str:
    return f"{min(max(v, 0.0), 1.0):.6f}"


def mask_in_box(rle: Mapping[str, Any], box: Sequence[int]) -> np.ndarray:
    """The part of a COCO uncompressed RLE mask inside ``box`` (pixel xyxy), decoded
    without building the full image (column-major runs of the box's columns only)."""
    h = int(rle["size"][0])
    x1, y1, x2, y2 = (int(v) for v in box)
    lo, hi = x1 * h, x2 * h
    counts = np.asarray(rle["counts"], dtype=np.int64)
    ends = np.cumsum(counts)
    starts = ends - counts
    keep = (ends > lo) & (starts < hi)
    lengths = np.minimum(ends[keep], hi) - np.maximum(starts[keep], lo)
    values = (np.flatnonzero(keep) % 2).astype(bool)
    cols = np.repeat(values, lengths).reshape((x2 - x1, h)).T
    return np.ascontiguousarray(cols[y1:y2])


def joined_outline(mask: np.ndarray, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """One closed outline (n x 2 pixel-centre points) of every part of ``mask``.

    Each part's outer contour is spliced into the outline grown so far at the closest
    pair of points, by a zero-width bridge walked there and back (the "keyhole" the usual
    COCO-to-YOLO converters use), nearest part first. Filling the outline gives back
    every part (holes filled) and nothing outside the parts' bridges, so the tight box is
    the mask's. Parts of one or two pixels stay points or lines.
    """
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    parts = sorted(
        (c.reshape(-1, 2).astype(np.int64) for c in contours),
        key=lambda c: (-cv2.contourArea(c.astype(np.int32)), -len(c)),
    )
    if not parts:
        return np.zeros((0, 2), np.int64)
    outline = parts[0]
    rest = parts[1:]
    # per remaining part: (squared distance, the outline point reached, its own point)
    best = [_closest(outline, p) for p in rest]
    while rest:
        k = min(range(len(rest)), key=lambda i: best[i][0])
        _, point, j = best.pop(k)
        part = rest.pop(k)
        at = int(np.flatnonzero((outline == point).all(axis=1))[0])
        loop = np.concatenate([part[j:], part[: j + 1]]) if len(part) > 1 else part
        outline = np.concatenate([outline[: at + 1], loop, outline[at:]])
        for i, other in enumerate(rest):
            near = _closest(part, other)
            if near[0] < best[i][0]:
                best[i] = near
    return outline + np.asarray(offset, np.int64)


def _closest(a: np.ndarray, b: np.ndarray) -> tuple[int, np.ndarray, int]:
    """The closest pair between point sets ``a`` and ``b``: (squared distance, the point of
    ``a``, the index in ``b``)."""
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    return int(d[i, j]), a[i], int(j)


def detection_line(cls: int, box: list[int], w: int, h: int) -> str:
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h
    return f"{cls} {_f(cx)} {_f(cy)} {_f((x2 - x1) / w)} {_f((y2 - y1) / h)}"


def segment_line(cls: int, annotation: Mapping[str, Any], w: int, h: int) -> str:
    """``class x1 y1 ...``: every part of the instance's mask in one outline
    (:func:`joined_outline`), pixel centres normalized; a single part is its contour."""
    box = annotation["box"]
    crop = mask_in_box(annotation["mask_rle"], box)
    pts = joined_outline(crop, (int(box[0]), int(box[1])))
    if len(pts) < 3:  # a one-pixel line: a degenerate triangle still rasterises to it
        pts = np.concatenate([pts, pts[::-1]])[:3] if len(pts) else pts
    coords = [_f((float(v) + 0.5) / (w if i % 2 == 0 else h)) for i, v in enumerate(pts.ravel())]
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
        self, out_dir: Path, records: Iterable[Record], context: WriteContext
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
                    lines.append(segment_line(c, a, w, h))
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
