"""paint_chip: a single-file defectsynth plugin (load it with --plugin-dir plugins/examples).

A chip is a flake of paint knocked off a coated part. Inside the chip the substrate shows
(grey primer or bare metal); the paint's thickness makes a small step at the chip's edge,
lit on the side that faces the light and shadowed on the other.

Copy this file into any folder, change the class, and run::

    defectsynth --plugin-dir that/folder describe paint_chip
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from defectsynth import DefectGenerator, Layer, Region, hookimpl, param

__version__ = "0.1.0"


class PaintChipGenerator(DefectGenerator):
    """A chipped-off flake of paint exposing primer or bare metal, with a shaded edge step."""

    name = "paint_chip"

    @dataclass(frozen=True)
    class Params:
        size: float = param(24.0, lo=4.0, hi=400.0, vary=(12.0, 40.0), doc="chip diameter in px")
        jaggedness: float = param(0.35, lo=0.0, hi=0.8, vary=(0.2, 0.5),
                                  doc="how irregular the outline is")
        substrate: str = param("primer", choices=("primer", "metal"), vary=("primer", "metal"),
                               doc="what the chip exposes")
        step: float = param(0.5, lo=0.0, hi=1.0, vary=(0.3, 0.8),
                            doc="paint thickness: strength of the lit/shadowed edge")

    def extent(self, params: Params, rng: np.random.Generator) -> tuple[int, int]:
        side = int(np.ceil(params.size * 1.6)) + 8
        return side, side

    def render(self, region: Region, params: Params, rng: np.random.Generator) -> Layer:
        h, w = region.shape
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        # an irregular polygon: radius jittered around the circle
        n = int(rng.integers(9, 16))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = params.size / 2.0 * (1.0 + params.jaggedness * rng.uniform(-1, 1, n))
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
        scale = 8  # draw supersampled for an anti-aliased edge
        big = np.zeros((h * scale, w * scale), np.uint8)
        cv2.fillPoly(big, [np.round(pts * scale).astype(np.int32)], 255)
        chip = cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0

        # height: paint surface at 0, the chip floor at -1; the slope of the step is what
        # the light sees
        height = -cv2.GaussianBlur(chip, (0, 0), 0.8)
        gy, gx = np.gradient(height)
        lx, ly, lz = region.light.vector
        nz = 1.0 / np.sqrt(1.0 + (gx * 3) ** 2 + (gy * 3) ** 2)
        shade = (-gx * 3 * lx - gy * 3 * ly) * nz + lz * nz - lz  # change of n.l from flat
        base = region.pixels
        lum = base.mean(axis=2, keepdims=True)
        if params.substrate == "primer":
            floor = np.full_like(base, 0.55) + (lum - lum.mean()) * 0.3
        else:
            floor = np.clip(0.75 + (lum - lum.mean()) * 0.5, 0, 1) * np.ones_like(base)
        out = base * (1 - chip[..., None]) + floor * chip[..., None]
        out = out * (1.0 + params.step * 1.5 * shade[..., None])
        edge = np.clip(np.abs(shade) * 8, 0, 1)
        coverage = np.maximum(chip, edge * 0.6)
        return Layer(pixels=np.clip(out, 0, 1).astype(np.float32),
                     coverage=np.clip(coverage, 0, 1).astype(np.float32))


@hookimpl
def register_generators(register):  # type: ignore[no-untyped-def]
    register(PaintChipGenerator)
