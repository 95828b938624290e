"""Sample and Annotation: what the synthesizer hands to writers and training code.

One internal box format: pixel ``xyxy`` with ``x1, y1`` inclusive and ``x2, y2``
exclusive (so ``w = x2 - x1``); conversions happen only at the edges.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight xyxy box (x2, y2 exclusive) of a boolean mask, or None when it is empty."""
    # OpenCV's bounding rectangle of the non-zero pixels: one pass, ~3x numpy's any()s
    x, y, w, h = cv2.boundingRect(np.ascontiguousarray(mask, dtype=bool).view(np.uint8))
    if w == 0 or h == 0:
        return None
    return x, y, x + w, y + h


def mask_polygons(mask: np.ndarray, offset: tuple[int, int] = (0, 0)) -> list[list[float]]:
    """Outer contours of a boolean mask as flat ``[x0, y0, x1, y1, ...]`` lists (>= 3 points).

    Coordinates are pixel centres; ``offset`` (x, y) is added to every point.
    """
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    polys: list[list[float]] = []
    ox, oy = offset
    for c in contours:
        pts = c.reshape(-1, 2)
        if len(pts) < 3:
            # a line or a point: widen it into a thin quad so it is still a polygon
            x1, y1 = pts.min(axis=0)
            x2, y2 = pts.max(axis=0)
            pts = np.array([[x1, y1], [x2 + 1, y1], [x2 + 1, y2 + 1], [x1, y2 + 1]])
        polys.append([float(v) for xy in pts for v in (xy[0] + ox, xy[1] + oy)])
    return polys


@dataclass(eq=False)
class Annotation:
    """One labeled defect instance.

    ``mask_crop`` is the boolean instance mask inside ``box``; :attr:`mask` gives it at
    full image size. ``params`` and ``seed`` reproduce the instance:
    ``generator.render(region, Params(**params), numpy.random.default_rng(seed))``.
    """

    category: str
    generator: str
    box: tuple[int, int, int, int]
    mask_crop: np.ndarray
    image_shape: tuple[int, int]
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    visibility: float = 0.0
    center: tuple[int, int] = (0, 0)
    generator_version: str = "1"

    def __post_init__(self) -> None:
        self.box = tuple(int(v) for v in self.box)  # type: ignore[assignment]
        x1, y1, x2, y2 = self.box
        h, w = self.image_shape
        if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
            raise ValueError(f"annotation box {self.box} is not inside the image {w}x{h} (w x h)")
        m = np.asarray(self.mask_crop)
        if m.dtype != np.bool_:
            raise ValueError(f"annotation mask must be bool, got {m.dtype}")
        if m.shape != (y2 - y1, x2 - x1):
            raise ValueError(f"annotation mask shape {m.shape} does not match box {self.box}")
        if tight_box(m) != (0, 0, x2 - x1, y2 - y1):
            raise ValueError(f"box {self.box} is not the tight box of its mask")
        self.mask_crop = m

    @property
    def mask(self) -> np.ndarray:
        """Boolean instance mask at full image size."""
        full = np.zeros(self.image_shape, dtype=bool)
        x1, y1, x2, y2 = self.box
        full[y1:y2, x1:x2] = self.mask_crop
        return full

    @property
    def area(self) -> int:
        return int(self.mask_crop.sum())

    @property
    def polygons(self) -> list[list[float]]:
        return mask_polygons(self.mask_crop, offset=(self.box[0], self.box[1]))

    @property
    def xywh(self) -> tuple[int, int, int, int]:
        x1, y1, x2, y2 = self.box
        return x1, y1, x2 - x1, y2 - y1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (mask as COCO-style uncompressed RLE over the full image, encoded
        from the box alone: no full-size mask is built). The manifest's annotation record
        is this plus its mask file (:func:`defectsynth.run.manifest.annotation_record`)."""
        from .rle import crop_rle

        return {
            "category": self.category,
            "generator": self.generator,
            "generator_version": self.generator_version,
            "box": list(self.box),
            "area": self.area,
            "mask_rle": crop_rle(self.mask_crop, self.box, self.image_shape),
            "polygons": self.polygons,
            "params": self.params,
            "seed": self.seed,
            "visibility": round(float(self.visibility), 4),
            "center": list(self.center),
        }


@dataclass(eq=False)
class Sample:
    """A synthesized image and its labels.

    ``image`` has the input's dtype, channels and size. ``footprint`` is True where the
    synthesizer was allowed to change pixels (the union of the kept instances' coverage);
    everything outside it equals the source byte for byte. ``stats`` counts what happened
    (requested, placed, dropped for visibility, no room to place, ...). ``render_log``
    lists every generator call in order: (generator, None) when it returned a valid layer,
    (generator, error) when its instance was rejected (``Synthesizer(on_failure="reject")``).
    """

    image: np.ndarray
    annotations: list[Annotation]
    seed: int = 0
    source_id: int = 0
    variant: int = 0
    light: tuple[float, float] = (0.0, 0.0)
    footprint: np.ndarray | None = None
    stats: dict[str, int] = field(default_factory=dict)
    render_log: list[tuple[str, str | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        img = self.image
        if not isinstance(img, np.ndarray) or img.dtype not in (np.uint8, np.uint16):
            raise ValueError(
                f"Sample.image must be a uint8/uint16 array, got {type(img).__name__}"
                f" {getattr(img, 'dtype', '')}"
            )
        h, w = img.shape[:2]
        for a in self.annotations:
            if a.image_shape != (h, w):
                raise ValueError(f"annotation image_shape {a.image_shape} != image {(h, w)}")
        if self.footprint is not None and self.footprint.shape != (h, w):
            raise ValueError(f"footprint shape {self.footprint.shape} != image {(h, w)}")

    def __len__(self) -> int:
        return len(self.annotations)

    @property
    def boxes(self) -> np.ndarray:
        """N x 4 float32 xyxy boxes."""
        return np.array([a.box for a in self.annotations], dtype=np.float32).reshape(-1, 4)

    @property
    def categories(self) -> list[str]:
        return [a.category for a in self.annotations]

    def draw(self, *, masks: bool = True, boxes: bool = True, labels: bool = True) -> np.ndarray:
        """An 8-bit BGR picture of the sample with mask outlines and boxes, for previews."""
        return draw_annotations(
            self.image, self.annotations, masks=masks, boxes=boxes, labels=labels
        )

    def to_target(
        self,
        categories: Sequence[str] | Mapping[str, int] | None = None,
        *,
        box_format: str = "xyxy",
        normalized: bool = False,
        masks: bool = True,
        label_offset: int = 0,
    ) -> dict[str, Any]:
        """The labels as the arrays detection and segmentation training code expects.

        :param categories: the category map: a sequence of names (a name's id is its index)
            or a mapping name -> id. Pass the synthesizer's ``categories`` (the recipe's
            map) so ids agree across samples. ``None`` numbers this sample's categories in
            order of first appearance (only for one-off use).
        :param box_format: ``xyxy`` (corners), ``xywh`` (corner and size, as COCO),
            ``cxcywh`` (centre and size), or ``yolo`` (``cxcywh`` normalized).
        :param normalized: divide x by the image width and y by its height.
        :param masks: include the ``N x H x W`` instance masks (set False to save memory).
        :param label_offset: added to every id (1 for torchvision detection models, whose
            label 0 is the background).
        :returns: a dict with ``boxes`` (N x 4 float32), ``labels`` (N int64), ``masks``
            (N x H x W uint8, 0/1), ``area`` (N float32, mask pixels), ``categories``
            (N names), ``image_size`` ``(h, w)``, and ``box_format`` and ``normalized``
            saying what the boxes are. Pixel boxes follow the internal
            convention (x2, y2 exclusive), which is also the continuous-coordinate box
            around the covered pixels that COCO, torchvision and albumentations use.
        :raises KeyError: naming a category that ``categories`` does not contain.
        """
        h, w = self.image.shape[:2]
        ids = category_ids(categories, self.categories)
        labels = np.empty(len(self.annotations), dtype=np.int64)
        for i, a in enumerate(self.annotations):
            if a.category not in ids:
                raise KeyError(
                    f"category {a.category!r} is not in the category map "
                    f"({', '.join(map(repr, ids)) or 'empty'})"
                )
            labels[i] = ids[a.category] + int(label_offset)
        target: dict[str, Any] = {
            "boxes": convert_boxes(self.boxes, (h, w), box_format, normalized=normalized),
            "labels": labels,
            "area": np.array([a.area for a in self.annotations], dtype=np.float32),
            "categories": list(self.categories),
            "image_size": (h, w),
            "box_format": box_format,
            "normalized": bool(normalized or box_format == "yolo"),
        }
        if masks:
            stack = np.zeros((len(self.annotations), h, w), dtype=np.uint8)
            for i, a in enumerate(self.annotations):
                x1, y1, x2, y2 = a.box
                stack[i, y1:y2, x1:x2] = a.mask_crop
            target["masks"] = stack
        return target


BOX_FORMATS = ("xyxy", "xywh", "cxcywh", "yolo")


def category_ids(
    categories: Sequence[str] | Mapping[str, int] | None, seen: Sequence[str] = ()
) -> dict[str, int]:
    """A name -> id map from a sequence of names (id = index), a mapping, or None (ids by
    first appearance in ``seen``)."""
    if categories is None:
        return {name: i for i, name in enumerate(dict.fromkeys(seen))}
    if isinstance(categories, Mapping):
        return {str(k): int(v) for k, v in categories.items()}
    if isinstance(categories, str):
        raise TypeError("categories must be a sequence of names or a mapping, not one string")
    return {name: i for i, name in enumerate(categories)}


def convert_boxes(
    boxes: np.ndarray, image_size: tuple[int, int], box_format: str = "xyxy", *,
    normalized: bool = False,
) -> np.ndarray:
    """Convert N x 4 pixel xyxy boxes to ``box_format`` (see :meth:`Sample.to_target`)."""
    if box_format not in BOX_FORMATS:
        raise ValueError(f"box_format {box_format!r} is not one of {', '.join(BOX_FORMATS)}")
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    out: np.ndarray
    if box_format == "xyxy":
        out = np.stack([x1, y1, x2, y2], axis=1)
    elif box_format == "xywh":
        out = np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)
    else:
        out = np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=1)
    if normalized or box_format == "yolo":
        h, w = image_size
        out = out / np.array([w, h, w, h], dtype=np.float32)
    return np.ascontiguousarray(out, dtype=np.float32)


_PALETTE = [
    (48, 48, 255),
    (255, 160, 0),
    (0, 200, 0),
    (255, 0, 200),
    (0, 220, 255),
    (200, 100, 255),
    (255, 255, 0),
    (120, 180, 60),
]


def category_color(name: str) -> tuple[int, int, int]:
    import zlib

    return _PALETTE[zlib.crc32(name.encode()) % len(_PALETTE)]


def to_display(image: np.ndarray) -> np.ndarray:
    """8-bit BGR view of any accepted image (uint16 scaled, gray expanded, alpha dropped)."""
    img = image
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = np.ascontiguousarray(img[:, :, :3])
    return img.copy()


def draw_annotations(
    image: np.ndarray,
    annotations: list[Annotation],
    *,
    masks: bool = True,
    boxes: bool = True,
    labels: bool = True,
) -> np.ndarray:
    canvas = to_display(image)
    for a in annotations:
        color = category_color(a.category)
        x1, y1, x2, y2 = a.box
        if masks:
            contours, _ = cv2.findContours(
                a.mask_crop.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
            )
            cv2.drawContours(canvas, contours, -1, color, 1, offset=(x1, y1))
        if boxes:
            cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), color, 1)
        if labels:
            cv2.putText(
                canvas,
                a.category,
                (x1, max(10, y1 - 3)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.4,
                color,
                1,
                cv2.LINE_AA,
            )
    return canvas
