"""Chip: an edge break, where material is missing at the product's edge."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from defectsynth.api import DefectGenerator, Layer, Region, hookimpl, param
from defectsynth.textures import fbm_pixels, shade_slopes, surface_shading

F32 = np.float32


class ChipGenerator(DefectGenerator):
    """A chip broken out of the product's edge (edge break, fray).

    Placed on the product's edge only (``placement = "edge"``: it needs a product mask
    whose edge lies inside the image; a product filling the frame has none). A knock at
    the edge splits off a shell-shaped flake: seen from above, a bite out of the edge,
    widest along it (``size``) and reaching ``depth`` x size into the product, its inner
    outline ragged (``roughness``) and following the edge's own curve. Inside the bite
    the coating and the top layer are gone and the fracture surface shows: a scoop that
    falls from the bite's inner outline towards the edge, rippled by the arcs a
    conchoidal fracture leaves around the point of impact (``ripples``), rough and
    matte, and lighter than the worn, coated or oxidised surface around it (``fresh``),
    lit by the scene light from its own slopes. Where the flake went through the whole
    part (the outer ``through`` share of the bite), the background shows, estimated from
    the region's own background pixels. The label is the missing region: the whole bite.
    """

    name = "chip"
    version = "1"
    placement = "edge"

    @dataclass(frozen=True)
    class Params:
        size: float = param(
            30.0, lo=4.0, hi=600.0, vary=(16.0, 50.0), size=True,
            doc="width of the bite along the edge in px"
        )
        depth: float = param(
            0.45, lo=0.1, hi=1.5, vary=(0.25, 0.7), doc="how far it reaches in, x size"
        )
        roughness: float = param(
            0.35, lo=0.0, hi=1.0, vary=(0.15, 0.6), doc="raggedness of the inner outline"
        )
        through: float = param(
            0.3, lo=0.0, hi=1.0, vary=(0.0, 0.6),
            doc="outer share of the bite broken through (background shows)"
        )
        ripples: float = param(
            0.5, lo=0.0, hi=1.0, vary=(0.2, 0.8), doc="strength of the conchoidal ripples"
        )
        fresh: float = param(
            0.35, lo=0.0, hi=1.0, vary=(0.15, 0.6),
            doc="how much lighter the fracture is than the surface"
        )

    def extent(self, params: Params, rng: np.random.Generator) -> tuple[int, int]:
        # the bite fits in a circle of radius max(size / 2, depth x size) around the
        # edge point; room around it for the local edge direction and the background
        r = max(params.size * 0.5, params.depth * params.size) * 1.3 + 8.0
        side = int(math.ceil(2.0 * r)) + 1
        return side, side

    # (one numeric pass, kept whole like dent's and scratch's: outline, fracture relief,
    # its colour, the broken-through part)
    def render(self, region: Region, params: Params, rng: np.random.Generator) -> Layer:
        h, w = region.shape
        pixels = region.pixels
        out = np.array(pixels, dtype=F32, copy=True)
        prod = region.product_mask > 0.5
        cov = np.zeros((h, w), F32)
        if prod.all() or not prod.any():
            return Layer(out, cov)  # no edge here: nothing to break off
        cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
        # inward distance from the background: the bite follows the edge's own curve
        # (scipy's exact transform: OpenCV's precise mode is not the same from call to call;
        # imported here: scipy.ndimage costs every process that loads the plugins 0.1-0.2 s)
        from scipy import ndimage

        inside = ndimage.distance_transform_edt(prod).astype(F32)
        # the edge's tangent at the centre, from the smoothed mask's gradient
        sm = cv2.GaussianBlur(prod.astype(F32), (0, 0), max(params.size / 6.0, 1.5))
        gx = float(cv2.Sobel(sm, cv2.CV_32F, 1, 0, ksize=3)[int(cy), int(cx)])
        gy = float(cv2.Sobel(sm, cv2.CV_32F, 0, 1, ksize=3)[int(cy), int(cx)])
        norm = math.hypot(gx, gy)
        if norm < 1e-6:
            gx, gy, norm = 1.0, 0.0, 1.0
        tx, ty = -gy / norm, gx / norm
        xx = np.arange(w, dtype=F32)[None, :] - F32(cx)
        yy = np.arange(h, dtype=F32)[:, None] - F32(cy)
        u = xx * F32(tx) + yy * F32(ty)  # along the edge
        half = params.size * 0.5
        reach = params.depth * params.size
        # the bite's inner outline: a shell profile along the edge, ragged
        t = np.clip(u / F32(half), -1.0, 1.0)
        profile = np.sqrt(np.maximum(1.0 - t * t, 0.0)).astype(F32)
        rag = fbm_pixels((h, w), max(params.size / 3.0, 2.0), rng, octaves=3)
        limit = reach * profile * (1.0 + F32(0.3 * params.roughness) * rag)
        field = limit - inside  # > 0 inside the bite
        cov = np.clip(field + 0.5, 0.0, 1.0).astype(F32)
        cov *= prod
        # (a bite wider than a small bore would wrap around it: keep it within its own
        # reach of the point of impact)
        dist = np.hypot(xx, yy)
        cov[(np.abs(u) > half + 1.0) | (dist > 1.1 * max(half, reach) + 1.0)] = 0.0
        if not (cov >= 0.5).any():
            return Layer(out, np.zeros((h, w), F32))
        # the fracture surface: a scoop from 0 at the inner outline down towards the edge,
        # conchoidal ripples around the point of impact, fine roughness
        rel = np.clip(field / F32(max(reach, 1.0)), 0.0, 1.0)
        height = -F32(0.35 * reach) * rel ** 0.8
        wave = max(params.size / 7.0, 2.0)
        phase = float(rng.uniform(0.0, 2.0 * math.pi))
        height += F32(0.35 * params.ripples) * np.sin(dist * F32(2 * math.pi / wave) + F32(phase))
        height += F32(0.12) * fbm_pixels((h, w), 2.0, rng, octaves=2)
        height = cv2.GaussianBlur(height.astype(F32), (0, 0), 0.8)
        sx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
        sy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
        shading = surface_shading(pixels, ambient=0.55, specular=0.05, roughness=0.6)
        ratio, _ = shade_slopes(sx, sy, region.light.vector, shading)
        # the fracture's colour: the surface around it, lighter and less saturated (the
        # material under the coating or the oxide), with its own fine mottling
        # (the local colour of the intact surface, blurred over the product only, so that
        # the fracture keeps the scene's shading gradients and never takes the background's)
        sig = max(params.size / 4.0, 2.0)
        keep = (prod & (field < -1.0)).astype(F32)
        wsum = cv2.GaussianBlur(keep, (0, 0), sig)
        local = cv2.GaussianBlur(pixels * keep[:, :, None], (0, 0), sig)
        if local.ndim == 2:
            local = local[:, :, None]
        base = local / np.maximum(wsum, 1e-3)[:, :, None]
        grey = base.mean(axis=2, keepdims=True)
        fresh = base + (grey - base) * F32(0.5 * params.fresh)
        fresh = fresh + (1.0 - fresh) * F32(0.3 * params.fresh)
        mottle = 1.0 + F32(0.03) * fbm_pixels((h, w), 3.0, rng, octaves=2)
        frac = fresh * (ratio * mottle)[:, :, None]
        # broken through: the background, with a dark line where the remaining wall is
        # seen edge-on
        bg_px = pixels[~prod]
        bg = np.median(bg_px, axis=0).astype(F32) if bg_px.size else np.zeros(pixels.shape[2], F32)
        result = frac
        if params.through > 0:
            thr = F32(1.0 - params.through)
            gone = np.clip((rel - thr) / F32(0.08), 0.0, 1.0)[:, :, None]
            wall = np.exp(-(((rel - thr) / F32(0.05)) ** 2))[:, :, None] * F32(0.35)
            result = (frac * (1.0 - gone) + bg.reshape(1, 1, -1) * gone) * (1.0 - wall)
        inside_bite = cov > 0
        out[inside_bite] = np.clip(result[inside_bite], 0.0, 1.0)
        return Layer(out, cov)


@hookimpl
def register_generators(register: Callable[[type[DefectGenerator]], None]) -> None:
    register(ChipGenerator)
