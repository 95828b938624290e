"""Helpers shared by the steel-strip generators (crazing, inclusion, patches, pitted, scale).

Not a plugin (no hook): the generators' modules import it. Everything is a pure function
of its arguments; arrays are float32.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from defectsynth.api import Region
from defectsynth.textures import shade_slopes, specular_colour, surface_colour, surface_shading

F32 = np.float32


def along_across(shape: tuple[int, int], angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of every pixel relative to the region's centre, rotated so that ``u``
    runs along ``angle_deg`` (image coordinates: 0 = right, 90 = down) and ``v`` across."""
    h, w = shape
    a = math.radians(angle_deg)
    ca, sa = F32(math.cos(a)), F32(math.sin(a))
    dx = np.arange(w, dtype=F32)[None, :] - F32((w - 1) / 2)
    dy = np.arange(h, dtype=F32)[:, None] - F32((h - 1) / 2)
    return dx * ca + dy * sa, dy * ca - dx * sa


def rotated_extent(length: float, width: float, angle_deg: float, pad: int = 8) -> tuple[int, int]:
    """(h, w) of the axis-aligned box around a ``length`` x ``width`` rectangle turned
    to ``angle_deg``, plus ``pad`` px on every side."""
    a = math.radians(angle_deg)
    ca, sa = abs(math.cos(a)), abs(math.sin(a))
    bw = length * ca + width * sa
    bh = length * sa + width * ca
    return int(math.ceil(bh)) + 2 * pad, int(math.ceil(bw)) + 2 * pad


def relight(
    region: Region,
    height: np.ndarray,
    albedo: np.ndarray | None = None,
    *,
    cavity: np.ndarray | None = None,
    ambient: float = 0.5,
    specular: float = 0.15,
    roughness: float = 0.35,
) -> np.ndarray:
    """The region's pixels with a relief (``height``, px) lit by the scene light and an
    optional reflectance change (``albedo``: 1 = unchanged, multiplies the surface's own
    colour so its texture survives). ``cavity`` (0..1, 1 = fully open) darkens what the
    light and the sky reach less. Returns float32 (h, w, c) in 0..1."""
    pixels = region.pixels
    height = np.ascontiguousarray(height, dtype=F32)
    gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    shading = surface_shading(pixels, ambient=ambient, specular=specular, roughness=roughness)
    ratio, spec = shade_slopes(gx, gy, region.light.vector, shading, occlusion=cavity)
    gain = ratio + np.minimum(spec, F32(0.0)) * F32(1.6)
    if albedo is not None:
        gain *= albedo
    out = pixels * gain[:, :, None]
    col = specular_colour(pixels, colour=surface_colour(pixels))
    out += np.maximum(spec, F32(0.0))[:, :, None] * col.reshape(1, 1, -1)
    return np.clip(out, 0.0, 1.0).astype(F32)
