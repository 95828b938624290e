"""Dent: a local depression pressed into the surface."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from defectsynth import DefectGenerator, Layer, Region, hookimpl, param
from defectsynth.textures import (
    ellipse_extent,
    elliptic_radius,
    fbm,
    normals_from_height,
    shade,
    smoothstep,
    specular_colour,
    surface_shading,
)

F32 = np.float32


class DentGenerator(DefectGenerator):
    """A smooth depression with a soft edge, shaded from its own surface normals.

    The height map is an elliptical bowl (a Gaussian for a blunt impact, a steeper
    spherical cap as ``sharpness`` rises) with an outline roughened by fractal noise and
    an optional low lip of displaced material. Its normals are lit by the scene light:
    the inner wall facing the light brightens, the opposite wall falls into shade, and
    the lip on the light's side catches a bright rim; walls tilted towards the half
    vector glint. The texture inside is slightly warped along the slope (``cv2.remap``),
    the way a pressed sheet stretches and reflections bend (the camera's noise is not
    moved), and ``crush`` flattens fine relief at the bottom. Shading multiplies the
    surface's own colour, so nothing is painted on, and the whole effect fades smoothly
    to zero at the edge.
    """

    name = "dent"
    version = "1"

    @dataclass(frozen=True)
    class Params:
        radius: float = param(
            22.0, lo=3.0, hi=300.0, vary=(10.0, 38.0), doc="semi-major axis in px"
        )
        aspect: float = param(
            0.8, lo=0.15, hi=1.0, vary=(0.45, 1.0), doc="semi-minor / semi-major axis"
        )
        angle: float = param(
            0.0, lo=0.0, hi=180.0, vary=(0.0, 180.0), doc="direction of the major axis, degrees"
        )
        depth: float = param(
            0.18, lo=0.01, hi=0.6, vary=(0.12, 0.28), doc="depth as a fraction of the radius"
        )
        sharpness: float = param(
            0.3, lo=0.0, hi=1.0, vary=(0.0, 0.8), doc="0 smooth bowl, 1 steep-walled cap"
        )
        lip: float = param(
            0.15, lo=0.0, hi=0.6, vary=(0.0, 0.3), doc="height of the raised lip / depth"
        )
        irregularity: float = param(
            0.2, lo=0.0, hi=0.6, vary=(0.05, 0.35), doc="roughness of the outline"
        )
        warp: float = param(
            1.0, lo=0.0, hi=3.0, vary=(0.5, 1.5), doc="how much the texture inside is warped"
        )
        gloss: float = param(
            0.4, lo=0.0, hi=1.0, vary=(0.2, 0.7), doc="strength of highlights on the walls"
        )
        crush: float = param(
            0.4, lo=0.0, hi=1.0, vary=(0.2, 0.8), doc="how much fine relief the impact flattened"
        )

    def extent(self, params: Params, rng: np.random.Generator) -> tuple[int, int]:
        ra = params.radius * (1.0 + params.irregularity * 0.6) * 1.45
        return ellipse_extent(ra, ra * params.aspect, params.angle)

    def render(self, region: Region, params: Params, rng: np.random.Generator) -> Layer:
        h, w = region.shape
        pixels = region.pixels
        ys, xs = np.mgrid[0:h, 0:w].astype(F32)
        a = math.radians(params.angle)
        dx = xs - F32((w - 1) / 2)
        dy = ys - F32((h - 1) / 2)
        q = elliptic_radius(dx, dy, a, params.radius, params.radius * params.aspect)
        # a rough outline: perturb the radial coordinate with low-frequency noise
        noise = fbm((h, w), max(params.radius * 0.9, 4.0), rng, octaves=2)
        q = q * (F32(1.0) + F32(params.irregularity * 0.35) * noise)
        smooth = np.exp(F32(-2.2) * q * q)
        cap_t = np.clip(F32(1.0) - q * q, 0.0, 1.0)
        cap = cap_t * cap_t
        bowl = smooth * F32(1.0 - params.sharpness) + cap * F32(params.sharpness)
        rim = np.exp(-(((q - F32(1.0)) / F32(0.22)) ** 2))
        window = F32(1.0) - smoothstep(1.1, 1.4, q)
        depth_px = params.depth * params.radius
        height = (F32(-depth_px) * bowl + F32(depth_px * params.lip) * rim) * window
        height = cv2.GaussianBlur(height, (0, 0), 0.8)
        nx, ny, nz = normals_from_height(height)
        shading = surface_shading(pixels, ambient=0.45, specular=0.35 * params.gloss, roughness=0.3)
        ratio, spec = shade(nx, ny, nz, region.light.vector, shading)
        # the texture follows the pressed surface: sample it a little up-slope
        gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
        gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
        k = F32(params.warp * params.radius * 0.25)
        map_x = xs + np.clip(gx * k, -2.5, 2.5)
        map_y = ys + np.clip(gy * k, -2.5, 2.5)
        # only the surface's structure moves; the camera's noise stays where it was
        src = np.ascontiguousarray(pixels)
        low = _blur(src, 1.0)
        noise = src - low
        # the impact flattens fine relief (knurls, peel, grain): less texture contrast
        detail = low - _blur(low, max(region.texture_scale * 0.5, 1.5))
        flat = np.clip(-height / F32(max(depth_px, 1e-3)), 0.0, 1.0) * F32(params.crush)
        low = low - detail * flat[:, :, None]
        warped = cv2.remap(low, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if warped.ndim == 2:
            warped = warped[:, :, None]
        warped = warped + noise
        col = specular_colour(pixels)
        r = ratio[:, :, None]
        s = spec[:, :, None]
        lit = warped * (r + np.minimum(s, 0.0) * F32(1.6)) + np.maximum(s, 0.0) * col
        cov = (F32(1.0) - smoothstep(0.75, 1.2, q)).astype(F32)
        out = np.where((cov > 0)[:, :, None], np.clip(lit, 0.0, 1.0), pixels).astype(F32)
        return Layer(out, cov)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    out = cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return out[:, :, None] if out.ndim == 2 else out


@hookimpl
def register_generators(register: Callable[[type[DefectGenerator]], None]) -> None:
    register(DentGenerator)
