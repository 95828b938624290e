"""Where a defect may go: product masks (given, estimated or full) and placement centres."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .errors import InputImageError

ProductMaskSpec = str | os.PathLike[str] | np.ndarray | None


def estimate_product_mask(image: np.ndarray) -> np.ndarray:
    """Estimate the product against its background (``product_mask="auto"``).

    Method: the background colour is the median of a band along the image border; each
    pixel's distance from it (in Lab for colour, in grey levels otherwise) is split by
    Otsu's threshold; the result is closed, opened, holes are filled and components
    smaller than 1% of the image are discarded.

    Where it fails: a product of the background's colour, a product touching most of
    the border, a cluttered or strongly graded background, a product that fills the
    frame. When the background is not clearly separated (the split is less than 3x the
    border's own spread), the estimate touches more than 35% of the border, or it covers
    less than 2% or more than 97% of the image, it falls back to the whole image
    (``full``). Give a mask file when it matters.
    """
    h, w = image.shape[:2]
    img = image
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    scale = min(1.0, 512.0 / max(h, w))
    small = (
        cv2.resize(
            img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
        if scale < 1
        else img
    )
    small = cv2.GaussianBlur(small, (5, 5), 0)
    if small.ndim == 3:
        feat = cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_BGR2LAB).astype(np.float32)
    else:
        feat = small.astype(np.float32)[:, :, None]
    sh, sw = feat.shape[:2]
    band = max(2, min(sh, sw) // 40)
    border = np.concatenate(
        [
            feat[:band].reshape(-1, feat.shape[2]),
            feat[-band:].reshape(-1, feat.shape[2]),
            feat[:, :band].reshape(-1, feat.shape[2]),
            feat[:, -band:].reshape(-1, feat.shape[2]),
        ]
    )
    bg = np.median(border, axis=0)
    dist = np.sqrt(((feat - bg) ** 2).sum(axis=2))
    dist8 = np.clip(dist * (255.0 / max(float(dist.max()), 1e-6)), 0, 255).astype(np.uint8)
    otsu, fg = cv2.threshold(dist8, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # the background must be homogeneous compared with the product's difference from it
    border_spread = float(np.percentile(np.sqrt(((border - bg) ** 2).sum(axis=1)), 90))
    cut = otsu * max(float(dist.max()), 1e-6) / 255.0
    if cut < 3.0 * border_spread or cut < 4.0:
        return np.ones((h, w), dtype=bool)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, k, iterations=2)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, k)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    keep = np.zeros(n, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= 0.01 * sh * sw
    fg = keep[labels].astype(np.uint8)
    # fill holes: everything not reachable from the border through background
    inv = (1 - fg).astype(np.uint8)
    flood = np.pad(inv, 1, constant_values=1)
    ff_mask = np.zeros((sh + 4, sw + 4), np.uint8)
    cv2.floodFill(flood, ff_mask, (0, 0), 2)
    fg = (flood[1:-1, 1:-1] != 2).astype(np.uint8)
    frac = float(fg.mean())
    edge = np.concatenate([fg[:band].ravel(), fg[-band:].ravel(), fg[:, :band].ravel(),
                           fg[:, -band:].ravel()])
    if frac < 0.02 or frac > 0.97 or float(edge.mean()) > 0.35:
        return np.ones((h, w), dtype=bool)
    if scale < 1:
        fg = cv2.resize(fg, (w, h), interpolation=cv2.INTER_NEAREST)
    return fg.astype(bool)


def load_mask_file(path: str | os.PathLike[str], shape: tuple[int, int]) -> np.ndarray:
    p = Path(path)
    data = np.fromfile(str(p), dtype=np.uint8) if p.is_file() else None
    if data is None or data.size == 0:
        raise InputImageError(f"product mask {str(p)!r} does not exist or is empty")
    mask = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise InputImageError(f"product mask {str(p)!r} is not a readable image")
    if mask.shape != shape:
        raise InputImageError(
            f"product mask {str(p)!r} is {mask.shape[1]}x{mask.shape[0]}, "
            f"the image is {shape[1]}x{shape[0]} (w x h)"
        )
    return mask > 0


def resolve_product_mask(spec: ProductMaskSpec, image: np.ndarray) -> np.ndarray:
    """Boolean (h, w) product mask from a spec: None/"full", "auto", a file path or an array."""
    shape = image.shape[:2]
    if spec is None or (isinstance(spec, str) and spec == "full"):
        return np.ones(shape, dtype=bool)
    if isinstance(spec, str) and spec == "auto":
        return estimate_product_mask(image)
    if isinstance(spec, np.ndarray):
        if spec.shape[:2] != shape or spec.ndim not in (2, 3):
            raise InputImageError(
                f"product mask array has shape {spec.shape}, expected {shape} to match the image"
            )
        m = spec if spec.ndim == 2 else spec[:, :, 0]
        return m > 0
    if isinstance(spec, str | os.PathLike):
        return load_mask_file(spec, shape)
    raise InputImageError(
        f"product_mask must be 'full', 'auto', a file path or an array, got {type(spec).__name__}"
    )


class CentreSampler:
    """Draws defect centres uniformly from the product, at least ``margin`` px from its edge.

    A pixel is allowed when the disc of radius ``margin`` around it lies inside the image
    and on the product. Candidates are drawn uniformly from the product's bounding box
    (shrunk by the margin) and kept when allowed, which is exactly uniform over the
    allowed pixels and costs a few microseconds. Only when many candidates in a row
    fail (a thin or ragged product) is the allowed set computed once, with a distance
    transform, and sampled directly.
    """

    #: rejected candidates in a row before the allowed set is computed exactly
    TRIES = 64

    def __init__(self, product: np.ndarray, margin: int) -> None:
        h, w = product.shape
        self.shape = (h, w)
        self._product = product
        self._rect: tuple[int, int, int, int] | None = None
        self._idx: np.ndarray | None = None
        m = max(int(margin), 0)
        if product.all():
            m = min(m, (h - 1) // 2, (w - 1) // 2)
            self._rect = (m, m, w - m, h - m)
            return
        # an allowed pixel is at least m px inside the product's box and the image
        bx, by, bw, bh = cv2.boundingRect(np.ascontiguousarray(product, bool).view(np.uint8))
        self._box = (
            max(bx + m, m) if bw else 0,
            max(by + m, m) if bh else 0,
            min(bx + bw - 1 - m, w - 1 - m) + 1 if bw else 0,
            min(by + bh - 1 - m, h - 1 - m) + 1 if bh else 0,
        )
        r = np.arange(-m, m + 1)
        dy, dx = np.nonzero(r[:, None] ** 2 + r[None, :] ** 2 <= m * m)
        self._disc = (dy - m, dx - m)
        self._margin = m

    def _allowed(self, x: int, y: int) -> bool:
        dy, dx = self._disc
        return bool(self._product[y + dy, x + dx].all())

    def _exact(self) -> np.ndarray:
        if self._idx is None:
            x1, y1, x2, y2 = self._box
            if x1 >= x2 or y1 >= y2:
                self._idx = np.zeros(0, dtype=np.int64)
            else:
                # squared distance to the nearest background pixel, the image border
                # counting as background; allowed = farther than the margin, exactly as the
                # disc test. (Exact integer arithmetic: OpenCV's DIST_MASK_PRECISE differs
                # by a few 1e-6 from call to call, which flips pixels at whole distances.)
                self._idx = np.flatnonzero((_squared_edt(self._product) > self._margin**2).ravel())
        return self._idx

    def draw(self, rng: np.random.Generator) -> tuple[int, int] | None:
        """(x, y) of a centre, or None when no pixel of the product is far enough from
        its edge."""
        if self._rect is not None:
            x1, y1, x2, y2 = self._rect
            return int(rng.integers(x1, x2)), int(rng.integers(y1, y2))
        if self._idx is None:
            x1, y1, x2, y2 = self._box
            if x1 >= x2 or y1 >= y2:
                return None
            for _ in range(self.TRIES):
                x, y = int(rng.integers(x1, x2)), int(rng.integers(y1, y2))
                if self._allowed(x, y):
                    return x, y
        idx = self._exact()
        if idx.size == 0:
            return None
        flat = int(idx[int(rng.integers(idx.size))])
        return flat % self.shape[1], flat // self.shape[1]


def _squared_edt(mask: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance of every pixel to the nearest pixel outside ``mask``, the
    image border counting as outside; exact and the same from call to call."""
    from scipy import ndimage  # (only thin or ragged products need it)

    padded = np.pad(np.asarray(mask, bool), 1)
    dist = ndimage.distance_transform_edt(padded)
    return np.rint(np.square(dist[1:-1, 1:-1]))


class EdgeSampler:
    """Draws defect centres uniformly from the product's edge: product pixels with a
    background pixel among their 4 neighbours. The image border is not an edge (the
    product goes on beyond the frame), so a product that fills the image has none.

    For generators whose ``placement`` is ``"edge"`` (chips, burrs: damage that only
    happens where the material ends). Built once per image, on first use.
    """

    def __init__(self, product: np.ndarray) -> None:
        p = np.ascontiguousarray(product, dtype=np.uint8)
        # erosion with the image border counted as product: only inner edges remain
        inner = cv2.erode(p, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)),
                          borderType=cv2.BORDER_REPLICATE)
        edge = (p > 0) & (inner == 0)
        self.shape = product.shape
        self._idx = np.flatnonzero(edge.ravel())

    def draw(self, rng: np.random.Generator) -> tuple[int, int] | None:
        """(x, y) of a centre on the edge, or None when the product has no edge."""
        if self._idx.size == 0:
            return None
        flat = int(self._idx[int(rng.integers(self._idx.size))])
        return flat % self.shape[1], flat // self.shape[1]
