"""Pit: small craters or pinholes, alone or in clusters."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from defectsynth.api import DefectGenerator, Layer, Region, hookimpl, param
from defectsynth.textures import (
    shade_slopes,
    smoothstep,
    specular_colour,
    surface_colour,
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
        radius: float = param(
            3.5, lo=1.0, hi=40.0, vary=(2.0, 5.5), size=True,
            doc="typical pit radius in px"
        )
        size_variation: float = param(
            0.35, lo=0.0, hi=0.9, vary=(0.2, 0.6), doc="spread of radii within a cluster"
        )
        spread: float = param(
            14.0, lo=2.0, hi=200.0, vary=(8.0, 28.0), size=True,
            doc="cluster radius in px"
        )
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
        pits = np.array(_scatter(params, rng, (h, w)), dtype=np.float64)
        # Everything happens in the box around the pits' windows (r_max * 1.6 + 3 px
        # around each centre: the rim, the labelled edge's fade and the slopes' reach of
        # every pixel they touch); the region is ~4x larger.
        r_max = float(pits[:, 2].max())
        reach = r_max * 1.6 + 3.0
        x0 = max(0, int(math.floor(float(pits[:, 0].min()) - reach)))
        y0 = max(0, int(math.floor(float(pits[:, 1].min()) - reach)))
        x1 = min(w, int(math.ceil(float(pits[:, 0].max()) + reach)) + 1)
        y1 = min(h, int(math.ceil(float(pits[:, 1].max()) + reach)) + 1)
        bh, bw = y1 - y0, x1 - x0
        pits[:, 0] -= x0  # whole pixels: the subsample grid stays aligned
        pits[:, 1] -= y0
        hh, ww = bh * SS, bw * SS
        # The canvases get a margin wide enough for every pit's window, so that stamps are
        # drawn by plain slices and flat indices; only the box inside it is used.
        over = max(
            -float(pits[:, 0].min()),
            -float(pits[:, 1].min()),
            float(pits[:, 0].max()) - bw,
            float(pits[:, 1].max()) - bh,
        )
        pad = max(0, int(math.ceil(over + _RIM_REACH * r_max)) + 2)
        hp, wp = hh + 2 * pad * SS, ww + 2 * pad * SS
        inside = (slice(pad * SS, pad * SS + hh), slice(pad * SS, pad * SS + ww))
        height = np.zeros((hp, wp), F32)
        # slopes x and y (filled later), cast shadow (min over pits), cavity (max): one
        # array, so that a pixel's subsamples of all four are gathered by one indexing
        planes = np.empty((4, hp, wp), F32)
        planes[2] = 1.0
        planes[3] = 0.0
        # signed distance (px) beyond each crater's labelled edge, nearest crater wins
        beyond = np.full((bh + 2 * pad, bw + 2 * pad), F32(1e3), F32)
        light = region.light.vector
        lxy = math.hypot(float(light[0]), float(light[1]))
        lx, ly = (float(light[0]) / lxy, float(light[1]) / lxy) if lxy > 1e-6 else (1.0, 0.0)
        tan_el = float(light[2]) / max(lxy, 1e-3)
        n_rim = int(math.ceil(2 * _RIM_REACH * r_max * SS)) + 5
        per_chunk = max(1, _STAMP_BUDGET // (n_rim * n_rim))
        for k0 in range(0, len(pits), per_chunk):
            chunk = pits[k0 : k0 + per_chunk]
            _stamp_relief(chunk, params, (lx, ly, tan_el), pad * SS, height, planes[2:])
            _stamp_edge(chunk, params, pad, beyond)
        beyond = beyond[pad : pad + bh, pad : pad + bw]
        cov_b = F32(1.0) - smoothstep(0.0, 1.2, beyond)
        relief = height[inside]
        cv2.Sobel(relief, cv2.CV_32F, 1, 0, dst=planes[0][inside], ksize=3, scale=0.125)
        cv2.Sobel(relief, cv2.CV_32F, 0, 1, dst=planes[1][inside], ksize=3, scale=0.125)
        # light only the pixels the pits touch: their 3x3 subsamples, gathered pixel-major
        iy, ix = np.nonzero(beyond < F32(1.2))
        sub = np.arange(SS)
        offs = (sub[:, None] * wp + sub[None, :]).ravel()
        idx = ((iy + pad) * (SS * wp) + (ix + pad) * SS)[:, None] + offs[None, :]
        # four takes: ~2x faster than one fancy index of the (4, n) planes
        flat = planes.reshape(4, -1)
        gx, gy, occ, cav = (flat[i].take(idx) for i in range(4))
        cav *= F32(-0.85 * params.darkness)
        cav += F32(1.0)
        occ *= cav
        shading = surface_shading(pixels, ambient=0.45, specular=0.25, roughness=0.35)
        ratio, spec = shade_slopes(gx, gy, light, shading, occlusion=occ)
        # box filter back to pixels (the 3x3 subsamples of a pixel are one row; OpenCV's
        # row average is ~3x numpy's mean over a 9-wide axis)
        r1 = _row_means(ratio)
        s1 = _row_means(spec)
        box = pixels[y0:y1:2, x0:x1:2]  # the colour the pits sit on (every 2nd pixel)
        col = specular_colour(box, colour=surface_colour(box))
        iy += y0
        ix += x0
        lit_px = pixels[iy, ix] * (r1 + np.minimum(s1, F32(0.0)) * F32(1.6))[:, None]
        lit_px += np.maximum(s1, F32(0.0))[:, None] * col
        out = np.array(pixels, dtype=F32)
        out[iy, ix] = np.clip(lit_px, 0.0, 1.0)
        cov = np.zeros((h, w), F32)
        cov[y0:y1, x0:x1] = cov_b
        return Layer(out, cov)


def _row_means(a: np.ndarray) -> np.ndarray:
    """Mean of each row of a 2-D float32 array, as a 1-D array."""
    if a.shape[0] == 0:
        return np.zeros(0, F32)
    return cv2.reduce(np.ascontiguousarray(a, F32), 1, cv2.REDUCE_AVG).reshape(-1)


# elements per batch of stamps (float32): bounds the memory of huge pits or clusters
_STAMP_BUDGET = 1 << 18
# the rim (a Gaussian ring at 1.08 r, width 0.22 r) is below 1e-4 of its height beyond
# 1.74 r: its window stops there
_RIM_REACH = 1.74


def _stamp_relief(
    pits: np.ndarray,
    params: PitGenerator.Params,
    light: tuple[float, float, float],
    pad: int,
    height: np.ndarray,
    occl: np.ndarray,
) -> None:
    """Add the bowls and rims of ``pits`` (rows x, y, r, d; px in the box) to the padded
    supersampled height map, and their cast shadows and cavity darkness to ``occl[0]``
    (min) and ``occl[1]`` (max); ``pad`` is the canvases' margin in subsamples.

    Every pit gets a square window of subsamples, one size for all so that they are
    evaluated together: the rim on the whole window (added by slices), the bowl, shadow
    and cavity only on the subsamples inside its crater (in the window's middle part),
    gathered and scattered back by flat index.
    """
    # (over 80 lines on purpose: one numeric pass whose arrays feed each other; split, it
    # would hand a dozen arrays from function to function)
    lx, ly, tan_el = light
    wp = height.shape[1]
    k = len(pits)
    cx, cy, r, d = (pits[:, i].tolist() for i in range(4))
    r_max = max(r)
    n_in = int(math.ceil(2 * r_max * SS)) + 3  # the craters' part
    m = int(math.ceil((_RIM_REACH - 1.0) * r_max * SS)) + 1 if params.rim > 0 else 0
    n = n_in + 2 * m
    # first subsample of each window (x of every pit, then y), in the box
    start = [math.floor((c - r_max + 0.5) * SS - 0.5) - m for c in cx + cy]
    # subsample centres relative to the pit, (2k, n): as the canvas has them, px
    rel = np.array(start, F32)[:, None] + np.arange(n, dtype=F32)
    rel += F32(0.5)
    rel /= F32(SS)
    rel -= F32(0.5)
    rel -= np.array(cx + cy, F32)[:, None]
    sq = rel * rel
    dist2 = sq[k:, :, None] + sq[:k, None, :]  # (k, n, n)
    mid = (slice(None), slice(m, m + n_in), slice(m, m + n_in))
    per = (slice(None), None, None)  # a per-pit value against (k, n, n)
    const = np.array(
        [
            [-1.0 / (ri * ri) for ri in r],
            [1.0 / (0.22 * ri) for ri in r],
            [math.log(di * params.rim) if params.rim > 0 else 0.0 for di in d],
        ],
        F32,
    )
    inner = dist2[mid] * const[0][per]
    inner += F32(1.0)  # 1 - rho^2, > 0 inside the crater
    if params.rim > 0:
        # rim = d rim exp(-((rho - 1.08 r) / 0.22 r)^2), the factor folded into the exp
        u = np.sqrt(dist2, out=dist2)
        u *= const[1][per]
        u -= F32(1.08 / 0.22)
        np.square(u, out=u)
        np.subtract(const[2][per], u, out=u)
        lip = np.exp(u, out=u)
        for i in range(k):
            y, x = start[k + i] + pad, start[i] + pad
            height[y : y + n, x : x + n] += lip[i]
    crater = inner > 0
    count = np.add.reduce(crater.reshape(k, -1), axis=1, dtype=np.intp)
    at = np.flatnonzero(crater)
    # flat index in the canvas of each crater subsample
    step = np.arange(m, m + n_in)
    rows = (np.array(start[k:], np.intp) + pad)[:, None] + step
    cols = (np.array(start[:k], np.intp) + pad)[:, None] + step
    spot = (rows * wp)[:, :, None] + cols[:, None, :]
    spot = spot.take(at)
    inner = inner.take(at)
    # cast shadow: distance towards the light to the rim, and the height gained there
    b = rel[k:, m : m + n_in, None] * F32(ly) + rel[:k, None, m : m + n_in] * F32(lx)
    b = b.take(at)
    # per-pit constants, one per subsample: r^2, tan(el) / (0.35 d), -d, cavity depth
    each = np.array(
        [
            [ri * ri for ri in r],
            [tan_el / (0.35 * di) for di in d],
            [-di for di in d],
            [min(1.0, di / ri) for ri, di in zip(r, d)],
        ],
        F32,
    )
    r2, slope, neg_d, deep = np.repeat(each, count, axis=1)
    # inner ** 0.7 as exp(0.7 log inner): ~6x faster than numpy's float32 pow
    bowl = np.log(inner)
    bowl *= F32(0.7)
    np.exp(bowl, out=bowl)
    # smoothstep(-0.25 d, 0.1 d, clear) with the 1 / (0.35 d) folded into its terms
    clear = b * b
    clear += inner * r2  # b^2 - rho^2 + r^2
    np.sqrt(clear, out=clear)
    clear -= b
    clear *= slope
    clear -= bowl * F32(1.0 / 0.35)
    clear += F32(0.25 / 0.35)
    t = np.maximum(clear, F32(0.0), out=clear)
    np.minimum(t, F32(1.0), out=t)
    lit = t * F32(-2.0)
    lit += F32(3.0)
    t *= t
    lit *= t
    bowl *= neg_d
    inner *= deep
    np.add.at(height.reshape(-1), spot, bowl)
    np.minimum.at(occl[0].reshape(-1), spot, lit)
    np.maximum.at(occl[1].reshape(-1), spot, inner)


def _stamp_edge(
    pits: np.ndarray, params: PitGenerator.Params, pad: int, beyond: np.ndarray
) -> None:
    """Lower ``beyond`` (a canvas of pixels with a margin of ``pad``) to each pixel's
    distance outside the nearest crater's edge."""
    cx, cy, r = pits[:, 0], pits[:, 1], pits[:, 2]
    # the edge's fade ends 1.2 px beyond r (1 + rim / 2) - 0.2
    n = int(math.ceil(2 * (float(r.max()) * (1.0 + 0.5 * params.rim) + 1.0))) + 2
    x0 = np.floor(cx - (n - 1) / 2).astype(np.int64)
    y0 = np.floor(cy - (n - 1) / 2).astype(np.int64)
    step = np.arange(n, dtype=F32)
    gx = (x0.astype(F32)[:, None] + step) - cx.astype(F32)[:, None]
    gy = (y0.astype(F32)[:, None] + step) - cy.astype(F32)[:, None]
    dist = (gy * gy)[:, :, None] + (gx * gx)[:, None, :]
    np.sqrt(dist, out=dist)
    dist -= (r * (1.0 + 0.5 * params.rim) - 0.2).astype(F32)[:, None, None]
    for k, (y, x) in enumerate(zip((y0 + pad).tolist(), (x0 + pad).tolist())):
        win = beyond[y : y + n, x : x + n]
        np.minimum(win, dist[k], out=win)


def _scatter(
    params: PitGenerator.Params, rng: np.random.Generator, shape: tuple[int, int]
) -> list[tuple[float, float, float, float]]:
    """(x, y, radius, depth) of each pit, non-overlapping where possible."""
    h, w = shape
    n = params.count
    cx0, cy0 = (w - 1) / 2, (h - 1) / 2
    rmax = params.radius * (1.0 + params.size_variation)
    radii = params.radius * np.exp(rng.normal(0.0, 0.5 * params.size_variation, n))
    radii = np.minimum(np.maximum(radii, 0.6), rmax)
    depths = radii * params.depth * rng.uniform(0.75, 1.25, n)
    lim_x = (w - 1) / 2 - rmax * 1.6 - 2
    lim_y = (h - 1) / 2 - rmax * 1.6 - 2
    x_lo, x_hi, y_lo, y_hi = cx0 - lim_x, cx0 + lim_x, cy0 - lim_y, cy0 + lim_y
    rs = radii.tolist()
    placed = [(min(max(cx0, x_lo), x_hi), min(max(cy0, y_lo), y_hi), rs[0])]
    if n > 1:
        # up to 16 candidate spots per pit, denser towards the middle of the cluster; the
        # first that keeps clear of the pits already placed wins (craters rarely merge)
        tries = 16
        rr = params.spread * np.minimum(1.0, np.abs(rng.normal(0.0, 0.55, (n - 1, tries))))
        th = rng.uniform(0, 2 * math.pi, (n - 1, tries))
        cand_x = (cx0 + rr * np.cos(th)).tolist()
        cand_y = (cy0 + rr * np.sin(th)).tolist()
        hypot = math.hypot
        for i in range(1, n):
            r = rs[i]
            x, y = cand_x[i - 1][-1], cand_y[i - 1][-1]
            for qx, qy in zip(cand_x[i - 1], cand_y[i - 1]):
                for px, py, pr in placed:
                    if hypot(qx - px, qy - py) - (r + pr) * 1.25 <= 1.0:
                        break  # too close to this pit
                else:
                    x, y = qx, qy
                    break
            placed.append((min(max(x, x_lo), x_hi), min(max(y, y_lo), y_hi), r))
    return [(x, y, r, float(d)) for (x, y, r), d in zip(placed, depths.tolist())]


@hookimpl
def register_generators(register: Callable[[type[DefectGenerator]], None]) -> None:
    register(PitGenerator)
