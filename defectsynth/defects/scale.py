"""Rolled-in scale: flakes of oxide pressed into the surface, in clusters."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from defectsynth.api import DefectGenerator, Layer, Region, hookimpl, param
from defectsynth.defects._steel import relight, rotated_extent

F32 = np.float32
SS = 2  # flakes are drawn at twice the resolution, then averaged back


class ScaleGenerator(DefectGenerator):
    """A cluster of small dark oxide flakes pressed into the surface (rolled-in scale).

    Scale left on the strip breaks into brittle flakes that the rolls press into the
    steel. Stretching along the rolling direction (``rolling_angle``; 90 = down) cracks
    the brittle layer across it, so each flake is a short jagged sliver lying *across*
    rolling, while the cluster as a whole is drawn out *along* it. Each flake sits in a
    shallow pocket (``depth``) with a raised rim of displaced metal; the oxide reflects
    less (``darkness``) and the fresh metal of the rim more (``rim``), and the relief is
    lit by the scene light. Everything multiplies the surface's own luminance, so its
    texture survives. The label is the flakes and their rims: many small parts.
    """

    name = "scale"
    version = "1"
    # the defaults were chosen on 200 x 200 photos of steel strip (NEU-DET)
    reference_size = 200

    @dataclass(frozen=True)
    class Params:
        size: float = param(
            85.0, lo=8.0, hi=1200.0, vary=(45.0, 150.0), size=True,
            doc="cluster length along rolling, px"
        )
        aspect: float = param(
            0.8, lo=0.15, hi=1.5, vary=(0.5, 1.3), doc="width / length of the cluster"
        )
        rolling_angle: float = param(
            90.0, lo=0.0, hi=180.0, vary=(84.0, 96.0), doc="rolling direction, degrees (90 = down)"
        )
        crowding: float = param(
            0.4, lo=0.02, hi=3.0, vary=(0.2, 0.8), doc="flakes per flake length squared of cluster"
        )
        flake_length: float = param(
            8.0, lo=2.0, hi=60.0, vary=(5.0, 12.0), size=True,
            doc="typical flake length (across rolling), px"
        )
        flake_aspect: float = param(
            0.4, lo=0.1, hi=1.0, vary=(0.25, 0.6), doc="flake width / length"
        )
        darkness: float = param(
            0.18, lo=0.0, hi=0.9, vary=(0.1, 0.26), doc="share of the light the oxide absorbs"
        )
        rim: float = param(
            0.4, lo=0.0, hi=1.0, vary=(0.1, 0.7), doc="brightness and height of the raised rims"
        )
        depth: float = param(
            0.35, lo=0.0, hi=4.0, vary=(0.15, 0.6), size=True, doc="depth of a flake's pocket in px"
        )

    def extent(self, params: Params, rng: np.random.Generator) -> tuple[int, int]:
        reach = params.flake_length * 1.5 + 6.0
        return rotated_extent(
            params.size + reach, params.size * params.aspect + reach, params.rolling_angle
        )

    def render(self, region: Region, params: Params, rng: np.random.Generator) -> Layer:
        h, w = region.shape
        a = math.radians(params.rolling_angle)
        along = np.array([math.cos(a), math.sin(a)])
        across = np.array([-math.sin(a), math.cos(a)])
        half_l, half_w = params.size / 2, params.size * params.aspect / 2
        area = math.pi * half_l * half_w
        # flakes per square px from the crowding: the same look at any scale
        density = params.crowding / params.flake_length**2
        n = max(3, int(rng.poisson(density * area)))
        # clumped: a few sub-clusters, flakes scattered around them (Gaussian)
        groups = max(1, int(round(n / 10)))
        gc = rng.uniform(-0.6, 0.6, (groups, 2)) * [half_l, half_w]
        pick = rng.integers(0, groups, n)
        pos = gc[pick] + rng.normal(0.0, 0.35, (n, 2)) * [half_l, half_w]
        pos[:, 0] = np.clip(pos[:, 0], -half_l, half_l)
        pos[:, 1] = np.clip(pos[:, 1], -half_w, half_w)
        centre = np.array([(w - 1) / 2, (h - 1) / 2])
        xy = centre + pos[:, :1] * along + pos[:, 1:] * across
        lengths = params.flake_length * np.exp(rng.normal(0.0, 0.35, n))
        flakes = np.zeros((h * SS, w * SS), np.uint8)
        for k in range(n):
            _draw_flake(flakes, xy[k], float(lengths[k]), params, across, rng)
        body = cv2.resize(flakes.astype(F32) / F32(255.0), (w, h), interpolation=cv2.INTER_AREA)
        body = cv2.GaussianBlur(body, (0, 0), 1.0)
        # the rim: a ring of displaced metal around each pocket
        spread = cv2.GaussianBlur(body, (0, 0), 1.6)
        ring = np.clip(spread * F32(1.6) - body, 0.0, 1.0)
        height = (ring * F32(0.5 * params.rim) - body) * F32(params.depth)
        albedo = F32(1.0) - F32(params.darkness) * body + F32(0.35 * params.rim) * ring
        cavity = F32(1.0) - F32(0.4 * params.darkness) * body
        out = relight(region, height, albedo, cavity=cavity, ambient=0.5, specular=0.2)
        mark = np.maximum(body, ring * F32(0.6))
        coverage = np.clip((mark - F32(0.08)) * F32(3.0), 0.0, 1.0).astype(F32)
        return Layer(out, coverage)


def _draw_flake(
    canvas: np.ndarray,
    xy: np.ndarray,
    length: float,
    params: ScaleGenerator.Params,
    across: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """A jagged flake, longest across rolling, filled into the supersampled canvas."""
    m = 9
    t = np.sort(rng.uniform(0.0, 2 * math.pi, m))
    # outline radii: an ellipse (length across rolling), roughened
    tilt = rng.normal(0.0, 0.3)
    ca, sa = math.cos(tilt), math.sin(tilt)
    ax = across * ca + np.array([across[1], -across[0]]) * sa  # flake axis
    ay = np.array([-ax[1], ax[0]])
    ra = length / 2 * rng.uniform(0.75, 1.25, m)
    rb = length * params.flake_aspect / 2 * rng.uniform(0.6, 1.3, m)
    px = np.cos(t)[:, None] * ra[:, None] * ax + np.sin(t)[:, None] * rb[:, None] * ay
    pts = (xy + px + 0.5) * SS - 0.5
    cv2.fillPoly(canvas, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)


@hookimpl
def register_generators(register: Callable[[type[DefectGenerator]], None]) -> None:
    register(ScaleGenerator)
