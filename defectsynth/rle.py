"""COCO run-length encoding of binary masks (uncompressed form).

COCO counts runs in column-major (Fortran) order, starting with a run of zeros (which may
be empty). pycocotools reads ``{"size": [h, w], "counts": [...]}`` for ``iscrowd: 0``
annotations too, so this is the one mask encoding in our manifest and COCO files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

import numpy as np


class MaskRLE(TypedDict):
    """``{"size": [h, w], "counts": [...]}``: a full-size mask, runs in column-major order."""

    size: list[int]
    counts: list[int]


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    h, w = mask.shape
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return {"size": [h, w], "counts": []}
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(edges).tolist()
    if flat[0]:
        counts = [0, *counts]
    return {"size": [int(h), int(w)], "counts": [int(c) for c in counts]}


def crop_rle(crop: np.ndarray, box: Any, shape: tuple[int, int]) -> MaskRLE:
    """COCO uncompressed RLE of a full-size mask given by its crop and box; the same
    counts as ``rle.encode_rle(full_mask)`` at a cost proportional to the box's columns
    rather than the whole image."""
    h, w = shape
    x1, y1, x2, y2 = (int(v) for v in box)
    cols = np.zeros((h, x2 - x1), dtype=bool)
    cols[y1:y2] = crop
    flat = cols.ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate(([0], change, [flat.size]))
    counts = [int(c) for c in np.diff(edges)]
    if flat[0]:
        counts.insert(0, 0)
    counts[0] += x1 * h
    tail = (w - x2) * h
    if tail:
        if flat[-1]:
            counts.append(tail)
        else:
            counts[-1] += tail
    return {"size": [int(h), int(w)], "counts": counts}


def decode_rle(rle: MaskRLE | Mapping[str, Any]) -> np.ndarray:
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if not isinstance(counts, list):
        raise ValueError("only uncompressed RLE (a list of counts) is supported here")
    if sum(counts) != h * w:
        raise ValueError(f"RLE counts sum to {sum(counts)}, expected h*w = {h * w}")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((w, h)).T.copy()
