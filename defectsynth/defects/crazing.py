"""Crazing: a fine network of shallow cracks over an area (hot-rolled steel strip)."""

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


class CrazingGenerator(DefectGenerator):
    """A field of fine, shallow cracks that join into irregular polygonal cells.

    The cells are a Voronoi tessellation of jittered seeds, stretched along the field's
    long side (``stretch``) and warped by fractal noise so that their edges wander like
    real crack paths rather than running straight. Only some of the edges open
    (``completeness``), and each open one fades in and out along its length, so the
    network is partial, as crazing usually is. Each crack is a narrow groove in a height
    map, lit by the scene light, with its floor darkened by how little light reaches it
    (``darkness``); the change multiplies the surface's own luminance, so the texture
    survives. The field fades out at a ragged edge. The label is the cracks themselves:
    a mask with many closed or nearly closed cells.
    """

    name = "crazing"
    version = "1"
    # the defaults were chosen on 200 x 200 photos of steel strip (NEU-DET)
    reference_size = 200

    @dataclass(frozen=True)
    class Params:
        size: float = param(
            140.0, lo=16.0, hi=1200.0, vary=(80.0, 210.0), size=True,
            doc="long side of the crazed field in px"
        )
        aspect: float = param(
            0.6, lo=0.15, hi=1.0, vary=(0.35, 0.95), doc="short / long side of the field"
        )
        rolling_angle: float = param(
            90.0, lo=0.0, hi=180.0, vary=(82.0, 98.0), doc="rolling direction, degrees (90 = down)"
        )
        cell: float = param(
            14.0, lo=4.0, hi=80.0, vary=(9.0, 22.0), size=True, doc="typical cell diameter in px"
        )
        stretch: float = param(
            1.6, lo=1.0, hi=4.0, vary=(1.1, 2.4), doc="how much longer cells are along the field"
        )
        completeness: float = param(
            0.5, lo=0.1, hi=1.0, vary=(0.3, 0.7), doc="share of the network's edges that opened"
        )
        wiggle: float = param(
            0.35, lo=0.0, hi=1.0, vary=(0.15, 0.6), doc="how far cracks wander from straight"
        )
        line_width: float = param(
            2.2, lo=0.4, hi=6.0, vary=(1.5, 3.2), size=True, doc="typical crack width in px"
        )
        depth: float = param(
            0.5, lo=0.05, hi=4.0, vary=(0.25, 0.8), size=True, doc="crack depth in px"
        )
        darkness: float = param(
            0.28, lo=0.0, hi=1.0, vary=(0.15, 0.4), doc="how little light reaches a crack's floor"
        )

    def extent(self, params: Params, rng: np.random.Generator) -> tuple[int, int]:
        angle = params.rolling_angle + 90.0
        return rotated_extent(params.size * 1.1, params.size * params.aspect * 1.1, angle)

    def render(self, region: Region, params: Params, rng: np.random.Generator) -> Layer:
        h, w = region.shape
        u, v = along_across((h, w), params.rolling_angle + 90.0)
        a = params.size / 2
        b = params.size * params.aspect / 2
        cell = params.cell
        n_edge, n_u, n_v, n_fade = fbm_fields(
            (h, w),
            [
                {"scale": max(params.size * 0.3, 4.0), "octaves": 3},
                {"scale": max(cell * 0.8, 2.0), "octaves": 2},
                {"scale": max(cell * 0.8, 2.0), "octaves": 2},
                {"scale": max(cell * 2.0, 2.0), "octaves": 2},
            ],
            rng,
        )
        # the field: a rounded rectangle with a ragged edge
        q = ((np.abs(u) / F32(a)) ** 4 + (np.abs(v) / F32(b)) ** 4) ** F32(0.25)
        q *= F32(1.0) + F32(0.18) * n_edge
        field = F32(1.0) - smoothstep(0.75, 1.0, q)
        # the network: cells elongated along u, their edges warped
        k = F32(params.wiggle * cell * 0.35)
        s = math.sqrt(params.stretch)
        x = (u + k * n_u) / F32(s)
        y = (v + k * n_v) * F32(s)
        dist, pair = _cell_edges(x, y, cell, rng)
        dist *= F32(min(s, 1.6))  # back to ~px across the (mostly along-u) edges
        open_ = _edge_draw(pair, rng) < params.completeness
        # each open edge fades in and out along its length
        strength = np.clip(F32(0.9) + F32(0.4) * n_fade, 0.0, 1.0) * open_
        # width and depth swell and thin along a crack (knots where it is darkest)
        swell = np.clip(F32(0.8) + F32(0.45) * n_fade, 0.35, 1.6)
        half = np.maximum(F32(params.line_width * 0.5) * swell, F32(0.3))
        profile = np.exp(-np.square(dist / half) * F32(0.7))
        line = profile * strength * field * swell
        # seen through the same optics as the surface: a crack is never sharper than a pixel
        line = cv2.GaussianBlur(line, (0, 0), 0.8)
        height = line * F32(-params.depth)
        cavity = F32(1.0) - F32(params.darkness) * line
        out = relight(region, height, cavity=cavity, ambient=0.5, specular=0.12)
        coverage = np.clip((line - F32(0.12)) * F32(2.6), 0.0, 1.0).astype(F32)
        return Layer(out, coverage)


def _cell_edges(
    x: np.ndarray, y: np.ndarray, cell: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Distance (in the warped space) of every pixel to the nearest Voronoi edge of
    jittered seeds, one per ``cell`` x ``cell`` square, and an id of that edge (the
    pair of cells it separates)."""
    gx = np.floor(x / F32(cell)).astype(np.int64)
    gy = np.floor(y / F32(cell)).astype(np.int64)
    x0, y0 = int(gx.min()) - 1, int(gy.min()) - 1
    nx, ny = int(gx.max()) - x0 + 2, int(gy.max()) - y0 + 2
    jitter = rng.uniform(0.1, 0.9, (2, ny, nx)).astype(F32)
    seed_x = ((np.arange(nx, dtype=F32) + F32(x0))[None, :] + jitter[0]).ravel() * F32(cell)
    seed_y = ((np.arange(ny, dtype=F32) + F32(y0))[:, None] + jitter[1]).ravel() * F32(cell)
    own = ((gy - y0) * nx + (gx - x0)).astype(np.int32)
    # the two nearest of the seeds in the 3 x 3 cells around each pixel's own, kept in
    # place (copyto with a mask: several times faster than np.where)
    best = [np.full(x.shape, np.inf, F32), np.full(x.shape, np.inf, F32)]
    ids = [np.zeros(x.shape, np.int32), np.zeros(x.shape, np.int32)]
    for oy in (-1, 0, 1):
        for ox in (-1, 0, 1):
            f = own + np.int32(oy * nx + ox)
            d2 = np.square(x - seed_x.take(f))
            d2 += np.square(y - seed_y.take(f))
            first = d2 < best[0]
            second = (d2 < best[1]) & ~first
            np.copyto(best[1], best[0], where=first)
            np.copyto(ids[1], ids[0], where=first)
            np.copyto(best[1], d2, where=second)
            np.copyto(ids[1], f, where=second)
            np.copyto(best[0], d2, where=first)
            np.copyto(ids[0], f, where=first)
    dsx = seed_x.take(ids[1]) - seed_x.take(ids[0])
    dsy = seed_y.take(ids[1]) - seed_y.take(ids[0])
    best2 = best
    # distance to the bisector of the two nearest seeds: the same width everywhere along
    # an edge, junctions included
    sep = np.hypot(dsx, dsy)
    dist = (best2[1] - best2[0]) / np.maximum(F32(2.0) * sep, F32(1e-3))
    dist = dist.astype(F32)
    lo, hi = np.minimum(ids[0], ids[1]), np.maximum(ids[0], ids[1])
    return dist, lo.astype(np.int64) * (nx * ny) + hi


def _edge_draw(pair: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniform draw in [0, 1) per edge id, the same for every pixel of that edge (a
    random table indexed by a hash of the id: a sort of the ids costs 10x more)."""
    table = rng.random(4093).astype(F32)
    return table[(pair * 2654435761) % 4093]


@hookimpl
def register_generators(register: Callable[[type[DefectGenerator]], None]) -> None:
    register(CrazingGenerator)
