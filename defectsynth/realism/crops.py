"""Defect crops: what the realism score compares, cut the same way from real and
synthetic images.

A :class:`Crop` is one defect with its context: a window around its box (grown by half
its size, 8..48 px, clipped by the image), the defect's mask inside that window, and the
group it belongs to (its source image: cross-validation never splits one image).

Both sides go through the same steps, so nothing but the defect can tell them apart:

- gray when either side is gray (:func:`to_common`);
- a mask from the label when every real defect has one; when the real defects are
  labeled by boxes only, *both* sides get their mask from the box alone
  (:func:`defectsynth.transplant.extract.mask_from_box`), so an exact synthetic mask
  cannot give the synthetic side away.

Real defects are read from a labeled folder by the reader ``transplant`` uses
(:func:`defectsynth.transplant.sources.read_source`: COCO, YOLO, Pascal VOC, or images
with masks).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..sample import Sample
from ..transplant.extract import mask_from_box
from ..transplant.library import label_mask
from ..transplant.sources import SourceDefect, SourceError, read_source

F32 = np.float32
Box = tuple[int, int, int, int]

__all__ = ["Crop", "DefectSet", "crops_from_samples", "cut", "read_defects", "to_common"]


class RealismError(ValueError):
    """A folder of defects cannot be read, or holds too few defects to compare."""


@dataclass(frozen=True, eq=False)
class Crop:
    """One defect and its context.

    ``pixels``: float32 (h, w, c) in 0..1 (c = 1 or 3, BGR) of the window; ``mask``: bool
    (h, w), the defect, or None when only the box is known (see :func:`cut`); ``box``:
    the defect's box in window coordinates; ``image_shape``: (h, w) of the whole image;
    ``group``: the source image; ``where``: a readable name for messages; ``params``: the
    concrete parameters a synthetic defect was drawn with.
    """

    pixels: np.ndarray
    mask: np.ndarray | None
    box: Box
    image_shape: tuple[int, int]
    category: str
    group: str
    where: str = ""
    params: Mapping[str, Any] | None = None

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[2])


@dataclass
class DefectSet:
    """Crops of one side (real or synthetic), and what could not be read."""

    crops: list[Crop]
    skipped: list[str]
    source: str = ""

    @property
    def categories(self) -> list[str]:
        return list(dict.fromkeys(c.category for c in self.crops))

    @property
    def has_masks(self) -> bool:
        return bool(self.crops) and all(c.mask is not None for c in self.crops)


def window(box: Box, shape: tuple[int, int], grow: float = 0.5, lo: int = 8, hi: int = 48) -> Box:
    """The context window of a box: grown by ``grow`` of its longer side (``lo``..``hi``
    px), clipped by the image of ``shape``."""
    x1, y1, x2, y2 = box
    pad = int(np.clip(round(grow * max(x2 - x1, y2 - y1)), lo, hi))
    h, w = shape
    return max(0, x1 - pad), max(0, y1 - pad), min(w, x2 + pad), min(h, y2 + pad)


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 / uint16, gray / BGR / BGRA -> float32 (h, w, c) in 0..1, c = 1 or 3."""
    scale = 1.0 / (65535.0 if image.dtype == np.uint16 else 255.0)
    img = image.astype(F32) * F32(scale)
    if img.ndim == 2:
        return img[:, :, None]
    if img.shape[2] == 4:
        img = np.ascontiguousarray(img[:, :, :3])
    if is_gray(img):  # a gray photo stored as colour (common for JPEGs)
        return np.ascontiguousarray(img[:, :, 1:2])
    return img


def is_gray(img: np.ndarray) -> bool:
    """Whether a BGR float image is gray: its channels differ by under 2 levels of 255 at
    the 99th percentile (JPEG's chroma noise stays below that)."""
    if img.ndim == 2 or img.shape[2] == 1:
        return True
    step = max(1, int(np.sqrt(img.shape[0] * img.shape[1] / 4096)))
    sub = img[::step, ::step]
    spread = np.abs(sub[:, :, 0] - sub[:, :, 1]) + np.abs(sub[:, :, 1] - sub[:, :, 2])
    return float(np.percentile(spread, 99)) < 2.0 / 255


def cut(
    image: np.ndarray,
    box: Box,
    mask: np.ndarray | None,
    category: str,
    group: str,
    where: str = "",
    params: Mapping[str, Any] | None = None,
) -> Crop:
    """The crop of one defect of ``image`` (float32 (h, w, c) 0..1); ``mask`` is the
    full-size mask or None (box only)."""
    h, w = image.shape[:2]
    # room for mask_from_box's ring, and for the window of the defect's own tight box
    # (see to_common), whatever the label's box
    wx1, wy1, wx2, wy2 = window(box, (h, w), 1.0, 16, 96)
    x1, y1, x2, y2 = box
    local = (x1 - wx1, y1 - wy1, x2 - wx1, y2 - wy1)
    px = np.ascontiguousarray(image[wy1:wy2, wx1:wx2])
    m = None if mask is None else np.ascontiguousarray(mask[wy1:wy2, wx1:wx2])
    return Crop(px, m, local, (h, w), category, group, where or group, params)


def to_common(crop: Crop, gray: bool, box_only: bool) -> Crop:
    """The crop as the comparison sees it: gray when ``gray`` (else colour, a gray crop
    repeated in three channels); when ``box_only`` its mask
    re-estimated from its box, as for a real defect labeled by a box; then cut to the
    window of the mask's own tight box.

    The last step matters: a person's box is looser than the tight box of an exact mask,
    and a window sized by the box would show a real defect smaller (and sharper, once
    resized) than a synthetic one of the same size.
    """
    px = crop.pixels
    if gray and px.shape[2] == 3:
        px = cv2.cvtColor(px, cv2.COLOR_BGR2GRAY)[:, :, None]
    elif not gray and px.shape[2] == 1:
        px = np.repeat(px, 3, axis=2)
    mask = crop.mask
    if box_only or mask is None:
        mask = mask_from_box(px, crop.box)
        if not mask.any():  # nothing stood out of the surface: the box is the defect
            x1, y1, x2, y2 = crop.box
            mask = np.zeros(px.shape[:2], bool)
            mask[y1:y2, x1:x2] = True
    ys, xs = np.nonzero(mask)
    tight = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    wx1, wy1, wx2, wy2 = window(tight, mask.shape)
    x1, y1, x2, y2 = tight
    return replace(
        crop,
        pixels=np.ascontiguousarray(px[wy1:wy2, wx1:wx2]),
        mask=np.ascontiguousarray(mask[wy1:wy2, wx1:wx2]),
        box=(x1 - wx1, y1 - wy1, x2 - wx1, y2 - wy1),
    )


# -- real defects from a folder ----------------------------------------------------------------


def read_defects(
    root: str | os.PathLike[str], fmt: str = "auto", rename: dict[str, str] | None = None
) -> DefectSet:
    """Every labeled defect of a folder as crops (masks where the labels give them).

    ``fmt``: ``auto`` (COCO, YOLO, VOC, then an image + mask folder), ``coco``, ``yolo``,
    ``voc`` or ``masks``. ``rename`` maps category names.

    :raises RealismError: the folder is missing, or no defect could be read from it.
    """
    base = Path(root)
    if not base.is_dir():
        raise RealismError(f"defect folder {str(base)!r} does not exist or is not a folder")
    rename = rename or {}
    try:
        listing = read_source(base, fmt)
    except SourceError as exc:
        raise RealismError(str(exc)) from None
    defects, skipped = list(listing.defects), list(listing.skipped)
    crops = list(_crops(base, defects, skipped, rename))
    if not crops:
        raise RealismError(
            f"no defect could be read from {str(base)!r}"
            + (f" ({skipped[0]})" if skipped else "")
        )
    return DefectSet(crops, skipped, str(base))


def _crops(
    base: Path,
    defects: list[SourceDefect],
    skipped: list[str],
    rename: dict[str, str],
) -> Iterator[Crop]:
    by_image: dict[str, list[SourceDefect]] = {}
    for d in defects:
        by_image.setdefault(d.image, []).append(d)
    for rel, group in by_image.items():
        raw = cv2.imread(str(base / rel), cv2.IMREAD_UNCHANGED)
        if raw is None or raw.dtype not in (np.uint8, np.uint16):
            skipped.append(f"{rel}: cannot read the image")
            continue
        image = to_float(raw)
        h, w = image.shape[:2]
        index_masks: dict[str, np.ndarray] = {}
        for d in group:
            where = f"{rel} {d.category} box {list(d.box)}"
            try:
                mask = _label_mask(base, d, (h, w), index_masks)
            except (SourceError, ValueError, OSError) as exc:
                skipped.append(f"{where}: {exc}")
                continue
            if mask is not None and not mask.any():
                skipped.append(f"{where}: the label's mask is empty")
                continue
            box = d.box
            if mask is not None:
                ys, xs = np.nonzero(mask)
                box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
            cat = rename.get(d.category, d.category)
            yield cut(image, box, mask, cat, rel, where)


def _label_mask(
    base: Path,
    d: SourceDefect,
    shape: tuple[int, int],
    cache: dict[str, np.ndarray],
) -> np.ndarray | None:
    """The full-size mask a label gives, limited to its box; None for a box-only label."""
    if not d.has_mask:
        return None
    return label_mask(base, d, shape, cache)


# -- synthetic defects from samples ------------------------------------------------------------


def crops_from_samples(samples: Iterable[tuple[str, Sample]]) -> DefectSet:
    """Crops of every annotation of in-memory samples; each pair is (group, sample)."""
    crops: list[Crop] = []
    for group, s in samples:
        if not s.annotations:
            continue
        image = to_float(s.image)
        for a in s.annotations:
            crops.append(
                cut(image, a.box, a.mask, a.category, group, f"{group} {a.category}", a.params)
            )
    return DefectSet(crops, [], "samples")
