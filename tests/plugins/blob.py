"""A small test plugin: a soft dark or bright elliptical blob. Real file, loaded by path."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from defectsynth import DefectGenerator, Layer, Region, hookimpl, param

__version__ = "0.0.1"


class BlobGenerator(DefectGenerator):
    name = "blob"

    @dataclass(frozen=True)
    class Params:
        radius: float = param(8.0, lo=1.0, hi=200.0, vary=(4.0, 14.0), doc="radius in px")
        strength: float = param(0.4, lo=-1.0, hi=1.0, doc="brightness change, negative darkens")
        softness: float = param(0.3, lo=0.0, hi=1.0, doc="fraction of the radius that fades")

    def extent(self, params: Params, rng: np.random.Generator) -> tuple[int, int]:
        side = int(np.ceil(params.radius * 2 + 6))
        return side, side

    def render(self, region: Region, params: Params, rng: np.random.Generator) -> Layer:
        h, w = region.shape
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r = np.hypot(xx - (w - 1) / 2, yy - (h - 1) / 2) / params.radius
        soft = max(params.softness, 1e-3)
        cov = np.clip((1.0 - r) / soft, 0.0, 1.0).astype(np.float32)
        px = np.clip(region.pixels + params.strength, 0.0, 1.0).astype(np.float32)
        return Layer(pixels=px, coverage=cov)


@hookimpl
def register_generators(register):
    register(BlobGenerator)
