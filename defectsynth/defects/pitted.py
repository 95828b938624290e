"""Pitted surface: a field of many small pits spread over an area."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from defectsynth.api import DefectGenerator, Layer, Region, hookimpl, param
from defectsynth.defects._steel import along_across, relight, rotated_extent
from defectsynth.textures import fbm_fields, smoothstep

F32 = np.float32


class PittedGenerator(DefectGenerator):
    """A field of many small pits, unevenly spread over an area (pitted surface).

    Hundreds of small pits, not one crater: where scale was pressed in and fell out, or
    where the surface corroded, the strip is peppered with pits a pixel or a few across,
    denser in some parts of the area than others (``clustering``); ``cover`` is the share
    of the area they cover, so the look is the same at any image scale. Each pit is a small
    bowl in a height map, a little longer along the rolling direction, lit by the scene
    light (the wall facing the light is dark, the far wall catches it) and darkened inside
    by how little light reaches its floor. The change multiplies the surface's own
    luminance. Unlike ``pit`` (a few shaded craters placed one by one, at most 60),
    the pits here are laid by density over a whole area at once, so a field of 1000 pits
    costs about as much as one of 10. The label is the pits themselves: many separate
    small parts; its box is the pitted area.
    """

    name = "pitted"
    version = "1"
    # the defaults were chosen on 200 x 200 photos of steel strip (NEU-DET)
    reference_size = 200

    @dataclass(frozen=True)
    class Params:
        size: float = param(
            180.0, lo=12.0, hi=1500.0, vary=(120.0, 260.0), size=True,
            doc="length of the pitted area in px"
        )
        aspect: float = param(
            0.75, lo=0.15, hi=1.0, vary=(0.4, 1.0), doc="width / length of the area"
        )
        rolling_angle: float = param(
            90.0, lo=0.0, hi=180.0, vary=(84.0, 96.0), doc="rolling direction, degrees (90 = down)"
        )
        cover: float = param(
            0.075, lo=0.002, hi=0.4, vary=(0.04, 0.15), doc="share of the area the pits cover"
        )
        radius: float = param(
            1.1, lo=0.5, hi=8.0, vary=(0.7, 1.6), size=True, doc="typical pit radius in px"
        )
        size_variation: float = param(
            0.4, lo=0.0, hi=1.0, vary=(0.2, 0.6), doc="spread of the pits' radii"
        )
        elongation: float = param(
            1.4, lo=1.0, hi=4.0, vary=(1.0, 1.9), doc="length / width of a pit, along rolling"
        )
        clustering: float = param(
            0.5, lo=0.0, hi=1.0, vary=(0.2, 0.8), doc="how unevenly the pits are spread"
        )
        depth: float = param(
            0.45, lo=0.05, hi=3.0, vary=(0.2, 0.7), doc="depth / radius of a pit"
        )
        darkness: float = param(
            0.22, lo=0.0, hi=1.0, vary=(0.1, 0.35), doc="how little light reaches a pit's floor"
        )

    def extent(self, params: Params, rng: np.random.Generator) -> tuple[int, int]:
        return rotated_extent(params.size, params.size * params.aspect, params.rolling_angle)

    def render(self, region: Region, params: Params, rng: np.random.Generator) -> Layer:
        h, w = region.shape
        u, v = along_across((h, w), params.rolling_angle)
        a = params.size / 2
        b = params.size * params.aspect / 2
        edge, dens = fbm_fields(
            (h, w),
            [
                {"scale": max(params.size * 0.3, 4.0), "octaves": 3},
                {"scale": max(params.size * 0.25, 4.0), "octaves": 3, "gain": 0.6},
            ],
            rng,
        )
        # the area: a rounded rectangle with a ragged edge; inside it, uneven density
        q = ((np.abs(u) / F32(a)) ** 4 + (np.abs(v) / F32(b)) ** 4) ** F32(0.25)
        q *= F32(1.0) + F32(0.15) * edge
        area = F32(1.0) - smoothstep(0.8, 1.0, q)
        c = params.clustering
        local = area * np.clip(F32(1.0 - 0.5 * c) + F32(0.9 * c) * dens, 0.0, 2.0)
        # pits by density: candidates uniform over the region, kept in proportion
        # pits per square px from the share they cover: the same look at any scale
        density = params.cover / (math.pi * params.radius**2)
        n = int(rng.poisson(density * h * w * 1.5))
        xs = rng.uniform(0.0, w - 1.0, n)
        ys = rng.uniform(0.0, h - 1.0, n)
        keep = rng.random(n) * 1.5 < local[ys.astype(np.int64), xs.astype(np.int64)]
        xs, ys = xs[keep], ys[keep]
        radii = params.radius * np.exp(rng.normal(0.0, 0.5 * params.size_variation, len(xs)))
        radii = np.clip(radii, 0.5, params.radius * (1.0 + 2.0 * params.size_variation))
        depths = radii * params.depth * rng.uniform(0.6, 1.3, len(xs))
        height = _stamp_pits(
            (h, w), xs, ys, radii, depths, params.elongation, params.rolling_angle
        )
        # how deep each pixel is, relative to the pits' typical depth
        rel = np.clip(height * F32(-1.0 / max(params.radius * params.depth, 1e-3)), 0.0, 1.0)
        cavity = F32(1.0) - F32(params.darkness) * rel
        out = relight(region, height, cavity=cavity, ambient=0.5, specular=0.15)
        coverage = np.clip((rel - F32(0.12)) * F32(3.0), 0.0, 1.0).astype(F32)
        return Layer(out, coverage)


def _stamp_pits(
    shape: tuple[int, int],
    xs: np.ndarray,
    ys: np.ndarray,
    radii: np.ndarray,
    depths: np.ndarray,
    elongation: float,
    angle_deg: float,
) -> np.ndarray:
    """Height map (px, <= 0) of Gaussian-bowled pits: impulses splatted bilinearly per
    radius class, each class blurred by its own (turned, elongated) Gaussian."""
    h, w = shape
    height = np.zeros((h, w), F32)
    if len(xs) == 0:
        return height
    # a few radius classes, geometric steps of 1.35: one blur each
    lr = np.log(radii)
    step = math.log(1.35)
    cls = np.round((lr - lr.min()) / step).astype(np.int64)
    for k in np.unique(cls).tolist():
        sel = cls == k
        r = float(np.exp(lr.min() + k * step))
        sa = max(0.9, 0.8 * r * math.sqrt(elongation))
        sb = max(0.9, 0.8 * r / math.sqrt(elongation))
        kern = _gauss_kernel(sa, sb, angle_deg)
        # the impulse of a pit of depth d: d times the kernel's own peak's inverse
        imp = np.zeros((h, w), F32)
        _splat(imp, xs[sel], ys[sel], depths[sel] / float(kern.max()))
        height -= cv2.filter2D(imp, cv2.CV_32F, kern, borderType=cv2.BORDER_CONSTANT)
    return height


def _gauss_kernel(sa: float, sb: float, angle_deg: float) -> np.ndarray:
    """Normalised 2-D Gaussian with deviations ``sa`` along ``angle_deg`` and ``sb`` across."""
    r = int(math.ceil(3.0 * max(sa, sb))) + 1
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(F32)
    t = math.radians(angle_deg)
    ua = xx * F32(math.cos(t)) + yy * F32(math.sin(t))
    va = yy * F32(math.cos(t)) - xx * F32(math.sin(t))
    k = np.exp(-0.5 * (np.square(ua / F32(sa)) + np.square(va / F32(sb)))).astype(F32)
    return k / F32(k.sum())


def _splat(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, wts: np.ndarray) -> None:
    """Add each weight at (x, y), shared bilinearly by the four nearest pixels."""
    h, w = img.shape
    x0 = np.floor(xs).astype(np.int64)
    y0 = np.floor(ys).astype(np.int64)
    fx = xs - x0
    fy = ys - y0
    flat = img.reshape(-1)
    for dy, dx, wt in (
        (0, 0, (1 - fx) * (1 - fy)),
        (0, 1, fx * (1 - fy)),
        (1, 0, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        yy = np.clip(y0 + dy, 0, h - 1)
        xx = np.clip(x0 + dx, 0, w - 1)
        np.add.at(flat, yy * w + xx, (wts * wt).astype(F32))


@hookimpl
def register_generators(register: Callable[[type[DefectGenerator]], None]) -> None:
    register(PittedGenerator)
