"""Pit: small craters or pinholes, alone or in clusters."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from defectsynth import DefectGenerator, Layer, Region, hookimpl, param
from defectsynth.textures import (
    normals_from_height,
    shade,
    smoothstep,
    specular_colour,
    surface_shading,
)

F32 = np.float32
SS = 3  # supersampling factor


class PitGenerator(DefectGenerator):
    """Small round craters or pinholes, one or a cluster, lit by the scene light.

    Each pit is a steep-walled bowl (depth relative to its radius) with an optional low
    rim of pushed-up material; a cluster scatters pits of varied size around a centre,
    denser in the middle (corrosion, porosity, weld spatter craters). The height map is
    built at 3x resolution, its normals lit by the scene light, and the rim's cast shadow
    traced along the light direction: the near wall (on the light's side) is dark, the
    far wall catches the light, and deep pinholes stay dark inside (less sky reaches the
    bottom). The result is box-filtered back to pixels and multiplies the surface's own
    colour.
    """

    name = "pit"
    version = "1"

    @dataclass(frozen=True)
    class Params:
        count: int = param(1, lo=1, hi=60, vary=(1, 9), doc="number of pits")
        radius: float = param(3.5, lo=1.0, hi=40.0, vary=(2.0, 5.5), doc="typical pit radius in px")
        size_variation: float = param(
            0.35, lo=0.0, hi=0.9, vary=(0.2, 0.6), doc="spread of radii within a cluster"
        )
        spread: float = param(14.0, lo=2.0, hi=200.0, vary=(8.0, 28.0), doc="cluster radius in px")
        depth: float = param(0.9, lo=0.1, hi=3.0, vary=(0.5, 1.4), doc="depth / radius of each pit")
        rim: float = param(0.15, lo=0.0, hi=0.6, vary=(0.0, 0.35), doc="height of the rim / depth")
        darkness: float = param(
            0.5, lo=0.0, hi=1.0, vary=(0.3, 0.85), doc="how little light reaches the floor"
        )

    def extent(self, params: Params, rng: np.random.Generator) -> tuple[int, int]:
        rmax = params.radius * (1.0 + params.size_variation)
        reach = (params.spread if params.count > 1 else 0.0) + rmax * 1.6 + 4.0
        side = int(math.ceil(2 * reach))
        return side, side

    def render(self, region: Region, params: Params, rng: np.random.Generator) -> Layer:
        h, w = region.shape
        pixels = region.pixels
        pits = _scatter(params, rng, (h, w))
        hh, ww = h * SS, w * SS
        height = np.zeros((hh, ww), F32)
        shadow = np.ones((hh, ww), F32)
        cavity = np.zeros((hh, ww), F32)
        cov = np.zeros((h, w), F32)
        light = region.light.vector
        lxy = math.hypot(float(light[0]), float(light[1]))
        lx, ly = (float(light[0]) / lxy, float(light[1]) / lxy) if lxy > 1e-6 else (1.0, 0.0)
        tan_el = float(light[2]) / max(lxy, 1e-3)
        for cx, cy, r, d in pits:
            # supersampled window around the pit
            R = r * 1.6 + 1.0
            x0, x1 = max(0, int((cx - R) * SS)), min(ww, int(math.ceil((cx + R + 1) * SS)))
            y0, y1 = max(0, int((cy - R) * SS)), min(hh, int(math.ceil((cy + R + 1) * SS)))
            if x0 >= x1 or y0 >= y1:
                continue
            xs = (np.arange(x0, x1, dtype=F32) + F32(0.5)) / F32(SS) - F32(0.5)
            ys = (np.arange(y0, y1, dtype=F32) + F32(0.5)) / F32(SS) - F32(0.5)
            px = xs[None, :] - F32(cx)
            py = ys[:, None] - F32(cy)
            rho2 = (px * px + py * py) / F32(r * r)
            rho = np.sqrt(rho2)
            inside = rho < 1.0
            bowl = -F32(d) * np.clip(F32(1.0) - rho2, 0.0, 1.0) ** F32(0.7)
            lip = F32(d * params.rim) * np.exp(-(((rho - F32(1.08)) / F32(0.22)) ** 2))
            height[y0:y1, x0:x1] += (bowl + lip).astype(F32)
            # cast shadow: distance towards the light to the rim, and the height gained
            b = px * F32(lx) + py * F32(ly)
            c = px * px + py * py - F32(r * r)
            t = -b + np.sqrt(np.maximum(b * b - c, 0.0))
            clear = bowl + t * F32(tan_el)
            lit = np.where(inside, smoothstep(-0.25 * d, 0.1 * d, clear), 1.0)
            shadow[y0:y1, x0:x1] = np.minimum(shadow[y0:y1, x0:x1], lit)
            cav = np.where(inside, (F32(1.0) - rho2) * F32(min(1.0, d / r)), 0.0)
            cavity[y0:y1, x0:x1] = np.maximum(cavity[y0:y1, x0:x1], cav)
        for cx, cy, r, _ in pits:
            ix0, ix1 = max(0, int(cx - r * 1.6 - 3)), min(w, int(cx + r * 1.6 + 4))
            iy0, iy1 = max(0, int(cy - r * 1.6 - 3)), min(h, int(cy + r * 1.6 + 4))
            if ix0 >= ix1 or iy0 >= iy1:
                continue
            gx = np.arange(ix0, ix1, dtype=F32)[None, :] - F32(cx)
            gy = np.arange(iy0, iy1, dtype=F32)[:, None] - F32(cy)
            dist = np.sqrt(gx * gx + gy * gy)
            edge = r * (1.0 + 0.5 * params.rim) - 0.2
            c1 = F32(1.0) - smoothstep(edge, edge + 1.2, dist)
            cov[iy0:iy1, ix0:ix1] = np.maximum(cov[iy0:iy1, ix0:ix1], c1)
        nx, ny, nz = normals_from_height(height)
        shading = surface_shading(pixels, ambient=0.45, specular=0.25, roughness=0.35)
        occ = shadow * (F32(1.0) - F32(0.85 * params.darkness) * cavity)
        ratio, spec = shade(nx, ny, nz, light, shading, occlusion=occ)
        ratio = cv2.resize(ratio, (w, h), interpolation=cv2.INTER_AREA)
        spec = cv2.resize(spec, (w, h), interpolation=cv2.INTER_AREA)
        col = specular_colour(pixels)
        r3 = ratio[:, :, None]
        s3 = spec[:, :, None]
        lit_px = pixels * (r3 + np.minimum(s3, 0.0) * F32(1.6)) + np.maximum(s3, 0.0) * col
        out = np.where((cov > 0)[:, :, None], np.clip(lit_px, 0.0, 1.0), pixels)
        return Layer(out.astype(F32), cov.astype(F32))


def _scatter(
    params: PitGenerator.Params, rng: np.random.Generator, shape: tuple[int, int]
) -> list[tuple[float, float, float, float]]:
    """(x, y, radius, depth) of each pit, non-overlapping where possible."""
    h, w = shape
    cx0, cy0 = (w - 1) / 2, (h - 1) / 2
    pits: list[tuple[float, float, float, float]] = []
    rmax = params.radius * (1.0 + params.size_variation)
    for i in range(params.count):
        r = params.radius * math.exp(float(rng.normal(0.0, 0.5 * params.size_variation)))
        r = float(min(max(r, 0.6), rmax))
        d = r * params.depth * float(rng.uniform(0.75, 1.25))
        if i == 0 or params.count == 1:
            x, y = cx0, cy0
        else:
            x, y = cx0, cy0
            for _ in range(16):
                # denser towards the middle of the cluster, craters rarely merging
                rr = params.spread * min(1.0, abs(float(rng.normal(0.0, 0.55))))
                th = float(rng.uniform(0, 2 * math.pi))
                x, y = cx0 + rr * math.cos(th), cy0 + rr * math.sin(th)
                gap = [math.hypot(x - px, y - py) - (r + pr) * 1.25 for px, py, pr, _ in pits]
                if min(gap) > 1.0:
                    break
        lim_x = (w - 1) / 2 - rmax * 1.6 - 2
        lim_y = (h - 1) / 2 - rmax * 1.6 - 2
        x = float(np.clip(x, cx0 - lim_x, cx0 + lim_x))
        y = float(np.clip(y, cy0 - lim_y, cy0 + lim_y))
        pits.append((x, y, r, d))
    return pits


@hookimpl
def register_generators(register: Callable[[type[DefectGenerator]], None]) -> None:
    register(PitGenerator)
