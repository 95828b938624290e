"""The numbers of a dataset report, computed from ``manifest.jsonl`` alone (no plotting).

Every plot and table of the page is drawn from a :class:`DatasetStats`, so a test can
check the page's numbers against the manifest without a browser or matplotlib.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..run.manifest import MANIFEST, AnnotationRecord, Record, iter_records

#: the per-instance measures the report plots, with their axis labels
MEASURES: dict[str, str] = {
    "width": "box width (px)",
    "height": "box height (px)",
    "area": "mask area (px)",
    "aspect": "aspect (long / short side)",
    "orientation": "orientation (degrees)",
}
BINS = 20


@dataclass(frozen=True)
class Instance:
    """One labeled defect as the report sees it.

    ``cx``, ``cy``: the box centre over the image size (0..1); ``orientation``: the
    angle of the mask's long axis from the image's x axis, in degrees, 0..180
    counter-clockwise as the picture is seen (None when the mask is too round to say);
    ``contrast``: the gate's own visibility measure (``visibility`` in the manifest, in
    grey levels) over the image's full scale, the unit of the gate's ``min_contrast``.
    """

    category: str
    split: str
    generator: str
    image: str
    box: tuple[int, int, int, int]
    image_shape: tuple[int, int]
    area: int
    orientation: float | None
    contrast: float | None
    params: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    source_sha256: str = ""
    rle: Mapping[str, Any] | None = field(default=None, repr=False)

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

    @property
    def aspect(self) -> float:
        lo, hi = sorted((self.width, self.height))
        return hi / max(lo, 1)

    @property
    def cx(self) -> float:
        return (self.box[0] + self.box[2]) / 2 / self.image_shape[1]

    @property
    def cy(self) -> float:
        return (self.box[1] + self.box[3]) / 2 / self.image_shape[0]

    def measure(self, name: str) -> float | None:
        value = getattr(self, name)
        return None if value is None else float(value)


@dataclass
class DatasetStats:
    """What a dataset holds, per category and split (see :func:`dataset_stats`)."""

    categories: list[str]
    splits: list[str]
    instances: list[Instance]
    samples: int = 0
    negatives: int = 0
    #: samples that were meant to have defects but kept none (every instance dropped)
    all_dropped: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    skipped_sources: list[dict[str, Any]] = field(default_factory=list)
    quotas: dict[str, int] = field(default_factory=dict)
    #: recipe entries as dataset.json has them (generator, params, category)
    defects: list[dict[str, Any]] = field(default_factory=list)
    gate_contrast: float | None = None
    #: category -> split -> images holding at least one instance of it
    images_with: dict[str, Counter[str]] = field(default_factory=dict)

    def count(self, category: str, split: str | None = None) -> int:
        return sum(
            1
            for a in self.instances
            if a.category == category and (split is None or a.split == split)
        )

    def images(self, category: str, split: str | None = None) -> int:
        per = self.images_with.get(category, Counter())
        return sum(per.values()) if split is None else per[split]

    def values(self, category: str, measure: str) -> np.ndarray:
        """The finite values of one measure for one category's instances."""
        out = [a.measure(measure) for a in self.instances if a.category == category]
        return np.array([v for v in out if v is not None and math.isfinite(v)], np.float64)

    def params(self, generator: str) -> dict[str, list[Any]]:
        """Each parameter's drawn values (scalars only), over the generator's instances."""
        out: dict[str, list[Any]] = {}
        for a in self.instances:
            if a.generator != generator:
                continue
            for key, value in a.params.items():
                if isinstance(value, bool | int | float | str):
                    out.setdefault(key, []).append(value)
        return out

    @property
    def generators(self) -> list[str]:
        return list(dict.fromkeys(a.generator for a in self.instances))


def orientation(mask: np.ndarray) -> float | None:
    """The long axis of a mask from its second central moments, in degrees 0..180,
    counter-clockwise with the picture's y axis pointing up; None for a round blob
    (the axes' lengths within 5 %) or fewer than 2 pixels."""
    ys, xs = np.nonzero(mask)
    if xs.size < 2:
        return None
    x = xs - xs.mean()
    y = -(ys - ys.mean())  # up, as the picture is seen
    sxx, syy, sxy = float((x * x).mean()), float((y * y).mean()), float((x * y).mean())
    spread = math.hypot(sxx - syy, 2 * sxy)
    if spread <= 0.05 * (sxx + syy):
        return None
    return math.degrees(0.5 * math.atan2(2 * sxy, sxx - syy)) % 180.0


def full_scale(path: Path) -> int:
    """The largest pixel value of a written image: 65535 for a 16-bit PNG, else 255
    (read from the PNG header, not by decoding the image)."""
    if path.suffix.lower() != ".png":
        return 255
    try:
        with open(path, "rb") as fh:
            head = fh.read(25)
    except OSError:
        return 255
    return 65535 if len(head) == 25 and head[24] == 16 else 255


def rle_crop(rle: Mapping[str, Any], box: tuple[int, int, int, int]) -> np.ndarray:
    """The part inside ``box`` of a full-size uncompressed RLE mask, decoded from the runs
    that cross the box's columns only (a full decode per instance would cost the whole
    image's size, for every instance of a large dataset)."""
    h = int(rle["size"][0])
    x1, y1, x2, y2 = box
    counts = np.asarray(rle["counts"], np.int64)
    ends = np.cumsum(counts)
    starts = ends - counts
    lo, hi = x1 * h, x2 * h
    flat = np.zeros(hi - lo, bool)
    for s, e in zip(starts[1::2], ends[1::2]):  # the odd runs are the mask's
        s, e = max(int(s), lo), min(int(e), hi)
        if s < e:
            flat[s - lo : e - lo] = True
    return flat.reshape(x2 - x1, h).T[y1:y2]


def _instance(rec: Record, a: AnnotationRecord, scale: int = 255) -> Instance:
    x1, y1, x2, y2 = (int(v) for v in a["box"])
    box = (x1, y1, x2, y2)
    shape = (int(rec["height"]), int(rec["width"]))
    angle = None
    rle = a.get("mask_rle")
    if rle:
        angle = orientation(rle_crop(rle, box))
    vis = a.get("visibility")
    return Instance(
        category=str(a["category"]),
        split=str(rec["split"]),
        generator=str(a.get("generator", a["category"])),
        image=str(rec["image"]),
        box=box,
        image_shape=shape,
        area=int(a.get("area", 0)),
        orientation=angle,
        contrast=None if vis is None else float(vis) / scale,
        params=dict(a.get("params") or {}),
        source=str(rec.get("source", "")),
        source_sha256=str(rec.get("source_sha256", "")),
        rle=rle,
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def dataset_stats(out: str | Path) -> DatasetStats:
    """The numbers of the dataset in ``out`` (a folder ``generate`` wrote)."""
    root = Path(out)
    if not (root / MANIFEST).is_file():
        raise FileNotFoundError(
            f"{str(root)!r} is not a defectsynth dataset (no manifest.jsonl in it)"
        )
    info = _read_json(root / "dataset.json")
    report = _read_json(root / "report.json")
    recipe = info.get("recipe") or {}
    stats = DatasetStats(
        categories=list(info.get("categories") or []),
        splits=list(info.get("splits") or []),
        instances=[],
        dropped={"visibility": 0, "overlap": 0, "no_room": 0},
        skipped_sources=list(report.get("skipped_sources") or []),
        quotas={str(k): int(v) for k, v in (recipe.get("quotas") or {}).items()},
        defects=list(recipe.get("defects") or []),
        gate_contrast=(recipe.get("gate") or {}).get("min_contrast"),
    )
    for rec in iter_records(root):
        stats.samples += 1
        split = str(rec["split"])
        if split not in stats.splits:
            stats.splits.append(split)
        anns = rec.get("annotations") or []
        st = rec.get("stats") or {}
        if rec.get("negative"):
            stats.negatives += 1
        elif not anns and int(st.get("requested", 0)) > 0:
            stats.all_dropped += 1
        for key in stats.dropped:
            stats.dropped[key] += int(st.get(f"dropped_{key}", 0))
        for cat in {str(a["category"]) for a in anns}:
            stats.images_with.setdefault(cat, Counter())[split] += 1
        scale = full_scale(root / str(rec["image"])) if anns else 255
        for a in anns:
            inst = _instance(rec, a, scale)
            if inst.category not in stats.categories:
                stats.categories.append(inst.category)
            stats.instances.append(inst)
    return stats


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of ``values`` in the bins of ``edges`` (numpy's rule: the last bin closed)."""
    counts, _ = np.histogram(values, bins=edges)
    return counts


def shared_edges(*arrays: np.ndarray, bins: int = BINS, log: bool = False) -> np.ndarray:
    """Bin edges covering every array (log-spaced when ``log`` and all values > 0)."""
    data = np.concatenate([a for a in arrays if a.size] or [np.zeros(1)])
    lo, hi = float(data.min()), float(data.max())
    if log and lo > 0:
        if hi <= lo:
            hi = lo * 1.5
        return np.geomspace(lo, hi, bins + 1)
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, bins + 1)
