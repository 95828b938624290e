"""Test plugins that misbehave on purpose (tests/test_bad_inputs.py). Real files, loaded
by path like any plugin folder, so pool workers load them too.

``hostile`` draws a soft disc like the ``blob`` test plugin when ``mode`` is ``ok``; every
other mode breaks one rule of the generator contract. ``flaky`` breaks it only for some
draws (its instances are rejected, the run goes on). ``escape`` declares a category that
would be a path outside the dataset folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from defectsynth import DefectGenerator, Layer, Region, hookimpl, param

__version__ = "0.0.1"

MODES = (
    "ok",
    "shape",
    "dtype",
    "nan",
    "inf",
    "coverage",
    "raises",
    "mutates",
    "mutates_sneaky",
    "not_a_layer",
    "bad_extent",
    "flaky",
)


def _disc(region: Region, strength: float = -0.5) -> tuple[np.ndarray, np.ndarray]:
    h, w = region.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot(xx - (w - 1) / 2, yy - (h - 1) / 2) / (min(h, w) / 2 - 2)
    cov = np.clip((1.0 - r) / 0.3, 0.0, 1.0).astype(np.float32)
    px = np.clip(region.pixels + strength, 0.0, 1.0).astype(np.float32)
    return px, cov


class HostileGenerator(DefectGenerator):
    name = "hostile"

    @dataclass(frozen=True)
    class Params:
        mode: str = param("ok", choices=MODES, doc="which rule to break")
        delay: float = param(0.0, lo=0.0, hi=1.0, doc="seconds to sleep (slow runs for signals)")

    def extent(self, params: Params, rng: np.random.Generator) -> tuple[int, int]:
        if params.mode == "bad_extent":
            return -5, 0
        return 24, 24

    def render(self, region: Region, params: Params, rng: np.random.Generator) -> Layer:
        mode = params.mode
        if params.delay:
            time.sleep(params.delay)
        if mode == "flaky":
            mode = "raises" if rng.random() < 0.5 else "ok"
        px, cov = _disc(region)
        if mode == "shape":
            return Layer(pixels=px[1:], coverage=cov)
        if mode == "dtype":
            return Layer(pixels=px.astype(np.float64), coverage=cov)
        if mode == "nan":  # inside the defect (pixels where coverage is 0 are never read)
            px[px.shape[0] // 2, px.shape[1] // 2, 0] = np.nan
        elif mode == "inf":
            cov[3, 3] = np.inf
        elif mode == "coverage":
            cov = cov * 3.0
        elif mode == "raises":
            raise RuntimeError("the hostile plugin gives up")
        elif mode == "mutates":
            region.pixels[:] = 0.0  # read-only: numpy refuses
        elif mode == "mutates_sneaky":
            region.pixels.flags.writeable = True  # the host checks the flag afterwards
            region.pixels[:] = 0.0
        elif mode == "not_a_layer":
            return (px, cov)  # type: ignore[return-value]
        return Layer(pixels=px, coverage=cov)


class EscapeGenerator(DefectGenerator):
    name = "escape"
    category = "../../outside"

    @dataclass(frozen=True)
    class Params:
        pass

    def extent(self, params: Params, rng: np.random.Generator) -> tuple[int, int]:
        return 24, 24

    def render(self, region: Region, params: Params, rng: np.random.Generator) -> Layer:
        px, cov = _disc(region)
        return Layer(pixels=px, coverage=cov)


@hookimpl
def register_generators(register):
    register(HostileGenerator)
    register(EscapeGenerator)
