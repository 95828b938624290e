"""A good plugin loaded after the broken ones: proves isolation."""

from dataclasses import dataclass

import numpy as np

from defectsynth import DefectGenerator, Layer, hookimpl, param


class SpotGenerator(DefectGenerator):
    """A dark round spot."""

    name = "spot"

    @dataclass(frozen=True)
    class Params:
        radius: int = param(6, lo=2, hi=50, vary=(4, 9))
        shade: str = param("dark", choices=("dark", "light"))
        sharp: bool = param(False)

    def extent(self, params, rng):
        return 2 * params.radius + 6, 2 * params.radius + 6

    def render(self, region, params, rng):
        h, w = region.shape
        yy, xx = np.mgrid[0:h, 0:w]
        r = np.hypot(xx - (w - 1) / 2, yy - (h - 1) / 2)
        cov = np.clip(params.radius + 0.5 - r, 0, 1).astype(np.float32)
        delta = -0.4 if params.shade == "dark" else 0.4
        return Layer(np.clip(region.pixels + delta, 0, 1).astype(np.float32), cov)


@hookimpl
def register_generators(register):
    register(SpotGenerator)
