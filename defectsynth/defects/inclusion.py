"""Inclusion: elongated dark slivers of non-metallic matter, drawn out along rolling."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from defectsynth.api import DefectGenerator, Layer, Region, hookimpl, param
from defectsynth.defects._steel import along_across, relight, rotated_extent
from defectsynth.textures import fbm, smoothstep

F32 = np.float32


class InclusionGenerator(DefectGenerator):
    """Dark slivers of oxide or slag rolled into the surface, drawn out along rolling.

    Rolling stretches a non-metallic particle into a thin lens along the rolling
    direction (``rolling_angle``; 90 = down the image): each sliver is long and narrow,
    tapers to points at both ends, wanders slightly sideways, and its width and darkness
    vary along its length. An inclusion is often a stringer of several slivers, broken
    and offset a little from one another (``slivers``). The oxide reflects less than the
    steel around it (``darkness`` multiplies the surface's own luminance, so its texture
    survives), and it sits a little below the surface (``relief``), lit by the scene
    light. Edges are soft, as the oxide thins towards them.
    """

    name = "inclusion"
    version = "1"
    # the defaults were chosen on 200 x 200 photos of steel strip (NEU-DET)
    reference_size = 200

    @dataclass(frozen=True)
    class Params:
        length: float = param(
            70.0, lo=6.0, hi=1200.0, vary=(30.0, 170.0), size=True,
            doc="length of the stringer in px"
        )
        width: float = param(
            10.0, lo=1.0, hi=80.0, vary=(6.0, 18.0), size=True,
            doc="width of a sliver where widest, px"
        )
        rolling_angle: float = param(
            90.0, lo=0.0, hi=180.0, vary=(84.0, 96.0), doc="rolling direction, degrees (90 = down)"
        )
        slivers: int = param(2, lo=1, hi=8, vary=(1, 4), doc="slivers in the stringer")
        darkness: float = param(
            0.16, lo=0.02, hi=0.9, vary=(0.08, 0.25), doc="share of the light the oxide absorbs"
        )
        raggedness: float = param(
            0.6, lo=0.0, hi=1.0, vary=(0.4, 0.9), doc="how much the width varies along a sliver"
        )
        softness: float = param(
            0.8, lo=0.05, hi=1.0, vary=(0.5, 1.0), doc="width of the soft edge / half width"
        )
        relief: float = param(
            0.15, lo=0.0, hi=3.0, vary=(0.0, 0.3), size=True, doc="how deep the sliver sits, px"
        )

    def extent(self, params: Params, rng: np.random.Generator) -> tuple[int, int]:
        across = params.width * (2.0 + params.slivers * 0.6) + 6.0
        return rotated_extent(params.length * 1.05, across, params.rolling_angle)

    def render(self, region: Region, params: Params, rng: np.random.Generator) -> Layer:
        h, w = region.shape
        u, v = along_across((h, w), params.rolling_angle)
        n = params.slivers
        total = params.length
        # the slivers share the stringer's length, overlapping a little, offset sideways
        lengths = total / n * rng.uniform(0.8, 1.4, n) if n > 1 else np.array([total * 0.95])
        starts = np.sort(rng.uniform(-total / 2, total / 2 - lengths, n)) if n > 1 else [
            -lengths[0] / 2
        ]
        widths = params.width * rng.uniform(0.55, 1.0, n)
        widths[int(rng.integers(n))] = params.width
        shifts = rng.normal(0.0, params.width * 0.5, n)
        shape = np.zeros((h, w), F32)
        for k in range(n):
            shape = np.maximum(
                shape,
                _sliver(u, v, float(starts[k]), float(lengths[k]), float(widths[k]),
                        float(shifts[k]), params, rng),
            )
        # the oxide thins out gradually, and the camera blurs what is left of its edge
        shape = np.asarray(
            cv2.GaussianBlur(shape, (0, 0), max(1.2, params.width * 0.15)), dtype=F32
        )
        tone = fbm((h, w), max(params.width * 1.5, 3.0), rng, octaves=3)
        dark = shape * F32(params.darkness) * np.clip(F32(1.0) + F32(0.35) * tone, 0.4, 1.6)
        albedo = F32(1.0) - np.clip(dark, 0.0, 0.95)
        height = shape * F32(-params.relief)
        out = relight(region, height, albedo, ambient=0.55, specular=0.1)
        coverage = np.clip((shape - F32(0.08)) * F32(2.4), 0.0, 1.0).astype(F32)
        return Layer(out, coverage)


def _sliver(
    u: np.ndarray,
    v: np.ndarray,
    start: float,
    length: float,
    width: float,
    shift: float,
    params: InclusionGenerator.Params,
    rng: np.random.Generator,
) -> np.ndarray:
    """0..1 body of one sliver from ``start`` to ``start + length`` along ``u``."""
    knots = max(4, int(length / max(width, 2.0)) + 3)
    t_knots = np.linspace(start, start + length, knots)
    wander = np.cumsum(rng.normal(0.0, width * 0.18, knots)) + shift
    wander -= np.linspace(0.0, wander[-1] - wander[0], knots)  # no overall tilt
    rag = np.clip(1.0 + params.raggedness * rng.normal(0.0, 0.45, knots), 0.25, 1.8)
    t = np.clip((u - F32(start)) / F32(max(length, 1.0)), 0.0, 1.0)
    taper = np.sqrt(np.maximum(F32(0.0), F32(4.0) * t * (F32(1.0) - t)))
    centre = np.interp(u, t_knots, wander).astype(F32)
    half = np.interp(u, t_knots, rag).astype(F32) * taper * F32(width / 2)
    inside = (u >= start) & (u <= start + length)
    r = np.abs(v - centre) / np.maximum(half, F32(1e-3))
    soft = F32(max(params.softness, 0.05))
    body = F32(1.0) - smoothstep(1.0 - float(soft), 1.0 + 0.3 * float(soft), r)
    body[~inside] = 0.0
    return body.astype(F32)




@hookimpl
def register_generators(register: Callable[[type[DefectGenerator]], None]) -> None:
    register(InclusionGenerator)
