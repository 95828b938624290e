"""Defects given as binary masks beside their images: two common layouts.

- ``images/**/NAME.ext`` with ``masks/**/NAME.png`` (same relative folder and stem): the
  category is the image's sub-folder under ``images/`` (``images/scratch/7.png`` ->
  ``scratch``), else ``defect``.
- MVTec AD: ``test/CATEGORY/NAME.png`` with ``ground_truth/CATEGORY/NAME_mask.png``;
  ``test/good`` holds no defect and is left out.

Each connected part of a mask is one defect, parts closer than 2 % of the image's
diagonal (at least 3 px) joined: one defect often breaks into pieces where it fades (a
scratch crossing a highlight); parts under 4 px are noise and dropped. A mask is any
image whose non-zero pixels are the defect.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MIN_PART = 4
JOIN = 0.02

Box = tuple[int, int, int, int]


@dataclass(frozen=True, eq=False)
class MaskDefect:
    """One defect of a mask folder: its image (relative to the folder), box, category
    and its part of the mask (``part`` in box coordinates)."""

    image: str
    box: Box
    category: str
    part: np.ndarray

    def mask_in(self, shape: tuple[int, int]) -> np.ndarray:
        out = np.zeros(shape, bool)
        x1, y1, x2, y2 = self.box
        out[y1:y2, x1:x2] = self.part
        return out


def _images(folder: Path) -> list[Path]:
    out = []
    for dirpath, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in sorted(names):
            if not n.startswith(".") and os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS:
                out.append(Path(dirpath) / n)
    return out


def _pairs(root: Path) -> list[tuple[Path, Path, str]]:
    """(image, mask, category) for either layout."""
    pairs: list[tuple[Path, Path, str]] = []
    images, masks = root / "images", root / "masks"
    if images.is_dir() and masks.is_dir():
        for img in _images(images):
            rel = img.relative_to(images)
            mask = masks / rel.with_suffix(".png")
            if mask.is_file():
                cat = rel.parts[0] if len(rel.parts) > 1 else "defect"
                pairs.append((img, mask, cat))
    test, truth = root / "test", root / "ground_truth"
    if test.is_dir() and truth.is_dir():
        for img in _images(test):
            rel = img.relative_to(test)
            if len(rel.parts) < 2 or rel.parts[0] == "good":
                continue
            mask = truth / rel.parent / f"{rel.stem}_mask.png"
            if mask.is_file():
                pairs.append((img, mask, rel.parts[0]))
    return pairs


def read_mask_folder(root: Path) -> tuple[list[MaskDefect], list[str]]:
    """The defects of an image + mask folder, and why any file gave none."""
    defects: list[MaskDefect] = []
    skipped: list[str] = []
    for img, mask_path, cat in _pairs(root):
        rel = img.relative_to(root).as_posix()
        raw = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
        if raw is None:
            skipped.append(f"{mask_path.relative_to(root).as_posix()}: cannot read the mask")
            continue
        fg = (raw > 0).astype(np.uint8)
        if not fg.any():
            continue
        reach = max(3, int(round(JOIN * float(np.hypot(*fg.shape)))) | 1)
        joined = cv2.dilate(fg, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (reach, reach)))
        n, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
        for k in range(1, n):
            part = (labels == k) & (fg > 0)
            if int(part.sum()) < MIN_PART:
                continue
            ys, xs = np.nonzero(part)
            box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
            x1, y1, x2, y2 = box
            defects.append(MaskDefect(rel, box, cat, part[y1:y2, x1:x2].copy()))
    return defects, skipped
