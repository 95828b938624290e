"""Compositing a generator's layer into the image, and measuring what changed."""

from __future__ import annotations

import math

import cv2
import numpy as np

from .errors import GeneratorFailure
from .generator import Layer


def check_layer(
    name: str, layer: object, shape: tuple[int, ...], *, pixels: bool = True
) -> Layer:
    """Validate a generator's output; raise GeneratorFailure naming the generator.

    ``pixels=False`` leaves out the range check of ``Layer.pixels``: the synthesizer
    checks only the part that blending reads (:func:`check_pixels`).
    """
    if not isinstance(layer, Layer):
        raise GeneratorFailure(f"generator {name!r} returned {type(layer).__name__}, not a Layer")
    px, cov = layer.pixels, layer.coverage
    for what, arr, want in (("pixels", px, shape), ("coverage", cov, shape[:2])):
        if not isinstance(arr, np.ndarray):
            raise GeneratorFailure(f"generator {name!r}: Layer.{what} is not a numpy array")
        if arr.shape != want:
            raise GeneratorFailure(
                f"generator {name!r}: Layer.{what} has shape {arr.shape}, expected {want}"
            )
        if arr.dtype != np.float32:
            raise GeneratorFailure(
                f"generator {name!r}: Layer.{what} has dtype {arr.dtype}, expected float32"
            )
    # min and max are NaN when any value is (and +-inf when one is): two reductions check
    # both finiteness and range
    clo, chi = _range(cov)
    if not (math.isfinite(clo) and math.isfinite(chi)):
        raise GeneratorFailure(f"generator {name!r}: Layer.coverage contains NaN or inf")
    if clo < -1e-6 or chi > 1 + 1e-6:
        raise GeneratorFailure(
            f"generator {name!r}: coverage outside [0, 1] (min {clo:.4g}, max {chi:.4g})"
        )
    if layer.category is not None and (not isinstance(layer.category, str) or not layer.category):
        raise GeneratorFailure(
            f"generator {name!r}: Layer.category must be a non-empty string or None, "
            f"got {layer.category!r}"
        )
    if pixels:
        check_pixels(name, px)
    return layer


def check_pixels(name: str, px: np.ndarray) -> tuple[float, float]:
    """Raise GeneratorFailure unless the layer pixels ``px`` are finite and in 0..1 (within
    0.01); return their (min, max)."""
    plo, phi = _range(px)
    if not (math.isfinite(plo) and math.isfinite(phi)):
        raise GeneratorFailure(f"generator {name!r}: Layer.pixels contains NaN or inf")
    if plo < -0.01 or phi > 1.01:
        raise GeneratorFailure(
            f"generator {name!r}: pixels outside [0, 1] (min {plo:.4g}, max {phi:.4g})"
        )
    return plo, phi


def _range(a: np.ndarray) -> tuple[float, float]:
    if not a.size:
        return 0.0, 0.0
    return float(a.min()), float(a.max())


def alpha_blend(base: np.ndarray, layer: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """``base * (1 - coverage) + layer * coverage`` in float32, per channel.

    OpenCV's blendLinear, ~3.5x numpy's speed. It divides by the weights' sum plus 1e-5;
    weights scaled by 1024 (exact in binary) make that a 1e-8 relative error, far below
    one step of a 16-bit image.
    """
    base = np.ascontiguousarray(base, dtype=np.float32)
    layer = np.ascontiguousarray(layer, dtype=np.float32)
    c = np.ascontiguousarray(coverage, dtype=np.float32) * np.float32(1024.0)
    out = cv2.blendLinear(layer, base, c, np.float32(1024.0) - c)
    return out if out.ndim == base.ndim else out[:, :, None]


def poisson_blend(
    base: np.ndarray, layer: np.ndarray, coverage: np.ndarray, mixed: bool
) -> tuple[np.ndarray, np.ndarray] | None:
    """Poisson-blend ``layer`` into ``base`` (float 0..1, 3 channels) over the coverage.

    Returns (blended float image, boolean mask of pixels it may change), or None when
    Poisson blending does not apply (gray images, or coverage touching the region border);
    the caller then falls back to alpha blending.
    """
    if base.shape[2] != 3:
        return None
    touched = coverage > 0.02
    if not touched.any():
        return None
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    region = cv2.dilate(touched.astype(np.uint8), k)
    if region[0].any() or region[-1].any() or region[:, 0].any() or region[:, -1].any():
        return None
    ys, xs = np.nonzero(region)
    x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    src = np.clip(np.rint(layer * 255), 0, 255).astype(np.uint8)
    dst = np.clip(np.rint(base * 255), 0, 255).astype(np.uint8)
    centre = (int((x1 + x2) // 2), int((y1 + y2) // 2))
    flag = cv2.MIXED_CLONE if mixed else cv2.NORMAL_CLONE
    # seamlessClone pastes src's masked bounding box centred at `centre`; give it the
    # crop so the paste lands exactly where it was drawn.
    crop_src = np.ascontiguousarray(src[y1:y2, x1:x2])
    crop_mask = np.ascontiguousarray(region[y1:y2, x1:x2] * 255)
    out = cv2.seamlessClone(crop_src, dst, crop_mask, centre, flag)
    changed = region.astype(bool)
    blended = np.where(changed[:, :, None], out.astype(np.float32) / 255.0, base)
    return blended.astype(np.float32), changed


def change_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel largest absolute channel difference, in the images' integer units."""
    d = cv2.absdiff(a, b)
    if d.ndim == 3:
        # channel by channel: ~20x faster than d.max(axis=2) on interleaved channels
        m = d[:, :, 0]
        for c in range(1, d.shape[2]):
            m = np.maximum(m, d[:, :, c])
        d = m
    return d
