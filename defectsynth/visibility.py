"""Whether a defect can be seen: the visibility gate every labeled instance passes.

A defect whose visible change is below a contrast threshold, absolute or relative to the
surface's own detail, or whose visible area is below a minimum, is never labeled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Gate:
    """The visibility gate every labeled instance passes.

    ``min_contrast``: mean over the instance mask of the largest per-channel absolute
    change, as a fraction of the dtype's full scale (0.02 = 5.1 grey levels for uint8,
    1311 for uint16). ``min_area``: pixels in the instance mask.

    ``min_relative``: the same mean change divided by the local texture's own variation
    (:func:`texture_noise`: the robust standard deviation of the clean surface's detail
    around the instance, in the same units). A change of 12 grey levels stands out on
    painted sheet metal and hides in a knurled pattern whose detail varies by 40; at
    0.4 a person looking at the image finds the defect (measured on the fixtures'
    knurled steel: instances below about 0.35 are hard to see even when pointed at).
    0 turns the scene-relative test off.
    """

    min_contrast: float = 0.02
    min_area: int = 16
    min_relative: float = 0.4

    def threshold(self, maxval: int) -> float:
        return self.min_contrast * maxval

    def passes(self, vis: float, threshold: float, src: np.ndarray,
               box: tuple[int, int, int, int], product: np.ndarray | None = None) -> bool:
        """Whether a mean change ``vis`` over an instance with this ``box`` (x1, y1, x2,
        y2 in ``src``, the clean image) is visible: above the absolute threshold and, when
        ``min_relative`` is set, above that share of the local texture's variation (on
        the ``product`` only, when a product mask is given)."""
        if vis < threshold:
            return False
        if self.min_relative <= 0:
            return True
        detail = _detail(src, box, product)
        if detail is None:
            return vis >= self.min_relative * 0.0
        # The test is vis >= min_relative * 1.4826 * median(detail): a median is a
        # partial sort, and two counts against the bound the median must stay under decide
        # it as well, except within a hair of the bound (or at a bound <= 0), where the
        # median itself is taken. Same decision to the bit, at a fraction of the cost.
        bound = vis / (self.min_relative * 1.4826)
        if 0.0 < bound < math.inf:
            n = detail.size
            lo, hi = (n - 1) // 2, n // 2  # the middle element(s) of the sorted detail
            if np.count_nonzero(detail <= np.float32(bound * (1.0 - 1e-6))) > hi:
                return True  # both middle elements are below the bound
            if np.count_nonzero(detail < np.float32(bound * (1.0 + 1e-6))) <= lo:
                return False  # both are above it
        return vis >= self.min_relative * (1.4826 * float(np.median(detail)))


def texture_noise(src: np.ndarray, box: tuple[int, int, int, int],
                  product: np.ndarray | None = None) -> float:
    """How much a clean surface's own detail varies around a box, in the image's units.

    The grey crop of ``src`` around ``box`` (x1, y1, x2, y2), grown by half the box's
    longer side, minus its local mean over a window about half the box's shorter side
    (9 to 41 px): what is left is the detail at the defect's scale and finer, which is
    what a defect has to stand out of. Its median absolute value times 1.4826 (the
    standard deviation for Gaussian detail, unmoved by a few specular glints) is returned.
    Large crops are subsampled to about 16k pixels. With a ``product`` mask (bool, the
    image's size), only the product's pixels count, and the local mean is taken over
    them: the step from the product to the background at its edge is not texture (a chip
    always sits on that edge).
    """
    detail = _detail(src, box, product)
    return 0.0 if detail is None else 1.4826 * float(np.median(detail))


def _detail(src: np.ndarray, box: tuple[int, int, int, int],
            product: np.ndarray | None = None) -> np.ndarray | None:
    """The absolute detail values whose median :func:`texture_noise` scales (float32,
    not empty), or None where it is 0."""
    x1, y1, x2, y2 = box
    h, w = src.shape[:2]
    bw, bh = x2 - x1, y2 - y1
    m = max(bw, bh) // 2 + 4
    crop = src[max(0, y1 - m):min(h, y2 + m), max(0, x1 - m):min(w, x2 + m)]
    if crop.ndim == 3:
        crop = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_BGR2GRAY)
    g = crop.astype(np.float32)
    k = 2 * min(max(min(bw, bh) // 4, 4), 20) + 1
    on = None
    if product is not None:
        on = product[max(0, y1 - m):min(h, y2 + m), max(0, x1 - m):min(w, x2 + m)]
        if on.all():
            on = None
        elif not on.any():
            return None
    step = max(1, int(math.sqrt(g.size / 16384.0)))
    if on is None:
        hp = g - cv2.blur(g, (k, k), borderType=cv2.BORDER_REFLECT)
        return np.abs(hp[::step, ::step])
    weight = on.astype(np.float32)
    mean = cv2.blur(g * weight, (k, k), borderType=cv2.BORDER_REFLECT) / np.maximum(
        cv2.blur(weight, (k, k), borderType=cv2.BORDER_REFLECT), np.float32(1e-6))
    hp = (g - mean)[::step, ::step][on[::step, ::step]]
    return np.abs(hp) if hp.size else None


