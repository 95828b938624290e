"""Real defects for the report's overlays: the same readers as ``transplant`` and ``score``.

Shapes (size, area, aspect, orientation) come from the crops
:func:`defectsynth.realism.crops.read_defects` cuts; where a defect sits comes from the
labels' boxes (:func:`defectsynth.transplant.sources.read_source`, every format), over
the image sizes the crops report. The gate's contrast needs the clean
image under a defect, which a real photo does not have, so it has no real overlay.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..realism.crops import Crop, read_defects
from ..transplant.sources import SourceError, read_source
from .stats import orientation


@dataclass
class RealStats:
    """Per category: the measures of :data:`stats.MEASURES` and box centres (0..1)."""

    source: str
    measures: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    locations: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def categories(self) -> list[str]:
        return list(self.measures)

    def values(self, category: str, measure: str) -> np.ndarray:
        return np.array(self.measures.get(category, {}).get(measure, []), np.float64)

    def count(self, category: str) -> int:
        return len(self.measures.get(category, {}).get("width", []))


def _shape_of(c: Crop) -> dict[str, float | None]:
    if c.mask is not None and c.mask.any():
        ys, xs = np.nonzero(c.mask)
        w, h = int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)
        area = float(c.mask.sum())
        angle = orientation(c.mask)
    else:
        x1, y1, x2, y2 = c.box
        w, h = x2 - x1, y2 - y1
        area, angle = float(w * h), None
    lo, hi = sorted((w, h))
    return {"width": w, "height": h, "area": area, "aspect": hi / max(lo, 1),
            "orientation": angle}


def _boxes(base: Path, fmt: str) -> list[tuple[str, tuple[int, int, int, int], str]]:
    try:
        listing = read_source(base, fmt)
    except SourceError:
        return []
    return [(d.image, d.box, d.category) for d in listing.defects]


def real_stats(
    root: str | os.PathLike[str], fmt: str = "auto", rename: dict[str, str] | None = None
) -> RealStats:
    """The real defects of a labeled folder, measured as the report measures its own.

    :raises defectsynth.realism.crops.RealismError: nothing could be read.
    """
    defects = read_defects(root, fmt, rename)
    out = RealStats(str(root), skipped=list(defects.skipped))
    shapes: dict[str, tuple[int, int]] = {}
    for c in defects.crops:
        shapes[c.group] = c.image_shape
        per = out.measures.setdefault(c.category, {})
        for name, value in _shape_of(c).items():
            if value is not None:
                per.setdefault(name, []).append(float(value))
    rename = rename or {}
    for image, (x1, y1, x2, y2), cat in _boxes(Path(root), fmt):
        if image not in shapes:
            continue
        h, w = shapes[image]
        where = ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h)
        out.locations.setdefault(rename.get(cat, cat), []).append(where)
    return out
