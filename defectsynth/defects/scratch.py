"""Scratch: a groove ploughed into the surface, shaded by the scene light."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from defectsynth import DefectGenerator, Layer, Region, hookimpl, param
from defectsynth.textures import (
    luminance,
    normals_from_slopes,
    shade,
    specular_colour,
    surface_colour,
    surface_shading,
    texture_contrast,
)

F32 = np.float32


class ScratchGenerator(DefectGenerator):
    """A thin curved groove with a varying width, shaded from its own surface normals.

    The stroke is a cubic Bezier with a small random wander. Across it the surface is a
    groove (a raised-cosine section whose wall slope is ``depth``) flanked by the burr of
    displaced material; along it the width varies and tapers where the tool entered and
    lifted. Each pixel averages the groove's cross-section under its footprint
    (anti-aliasing) and is shaded by the scene light: the wall facing the light brightens,
    the other darkens, the floor falls into the near edge's shadow when the light is low
    and across the stroke, and walls tilted towards the half vector glint. A stroke along
    the light direction or along the grain of brushed metal is therefore faint, one across
    them strong (Merillou et al. 2001, Bosch et al. 2004). Shading multiplies the
    surface's own colour, so its texture stays visible in the groove. ``exposure`` lets a
    lighter substrate show at the floor (paint, anodising or solder mask scratched
    through); on strong relief (knurls) the floor shows fresh material anyway.
    ``micro_scratches`` adds parallel fine grooves, as an abrasive particle leaves them.
    """

    name = "scratch"
    version = "1"

    @dataclass(frozen=True)
    class Params:
        length: float = param(
            120.0, lo=8.0, hi=1200.0, vary=(50.0, 220.0), doc="length of the stroke in px"
        )
        angle: float = param(
            0.0, lo=0.0, hi=180.0, vary=(0.0, 180.0), doc="direction of the stroke, degrees"
        )
        width: float = param(
            1.8, lo=0.5, hi=16.0, vary=(1.1, 2.8), doc="groove width in px where widest"
        )
        depth: float = param(
            0.7, lo=0.05, hi=3.0, vary=(0.35, 1.1), doc="wall slope (depth / half-width)"
        )
        curvature: float = param(
            0.12, lo=0.0, hi=0.5, vary=(0.0, 0.3), doc="bend of the stroke, fraction of length"
        )
        wobble: float = param(
            0.6, lo=0.0, hi=4.0, vary=(0.2, 1.2), doc="random sideways wander in px"
        )
        width_variation: float = param(
            0.35, lo=0.0, hi=0.9, vary=(0.15, 0.5), doc="relative change of width along it"
        )
        burr: float = param(
            0.15, lo=0.0, hi=1.0, vary=(0.0, 0.3), doc="height of the pushed-up edges / depth"
        )
        micro_scratches: int = param(
            0, lo=0, hi=24, vary=(0, 3), doc="parallel fine scratches alongside"
        )
        spread: float = param(
            8.0, lo=1.0, hi=60.0, vary=(3.0, 14.0), doc="how far micro-scratches stray, px"
        )
        gloss: float = param(
            0.5, lo=0.0, hi=1.0, vary=(0.25, 0.8), doc="strength of the walls' glints"
        )
        exposure: float = param(
            0.2, lo=0.0, hi=1.0, vary=(0.0, 0.7), doc="lighter substrate shown at the floor"
        )

    def extent(self, params: Params, rng: np.random.Generator) -> tuple[int, int]:
        a = math.radians(params.angle)
        c, s = abs(math.cos(a)), abs(math.sin(a))
        bulge = 0.75 * params.curvature * params.length + 3.0 * params.wobble
        margin = _reach(params) + 4.0
        w = params.length * c + 2 * bulge * s + 2 * margin
        h = params.length * s + 2 * bulge * c + 2 * margin
        return int(math.ceil(h)), int(math.ceil(w))

    def render(self, region: Region, params: Params, rng: np.random.Generator) -> Layer:
        h, w = region.shape
        pixels = region.pixels
        out = np.array(pixels, dtype=F32, copy=True)
        cov_full = np.zeros((h, w), F32)
        reach = _reach(params)
        path = _stroke(params, rng, (h, w), reach + 2.0)
        tab = _grooves(params, rng, path.length)
        band = _band(path, (h, w), min(reach, tab.band))
        n = band.idx.size
        if n == 0:
            return Layer(out, cov_full)
        dist, arc = band.dist, band.arc
        burr = params.burr
        # every (groove, pixel) pair within the groove's reach, grooves in order
        near = np.abs(dist[None, :] - tab.offset[:, None]) < tab.reach[:, None]
        if params.micro_scratches:
            near &= (arc >= tab.lo[:, None]) & (arc <= tab.hi[:, None])
        pair = np.flatnonzero(near)
        gi = pair // n
        pi = pair - gi * n
        a_p = arc[pi]
        d_p = dist[pi]
        # width and depth along each groove: tapered ends, wavering width
        col = np.take(tab.cols, gi, axis=1)
        start, inv_tin, stop, inv_tout, hw0, depth_k = col
        taper = np.sqrt(_s01((a_p - start) * inv_tin) * _s01((stop - a_p) * inv_tout))
        prof = np.interp(a_p * F32(0.5) + gi * F32(tab.m), tab.xp, tab.profile)
        hw = (prof.real.astype(F32) * taper) * hw0
        dep = hw * depth_k
        d0 = d_p - prof.imag.astype(F32)
        # the main groove (the first pairs) ends in a rounded cap beyond the stroke
        n0 = int(np.searchsorted(gi, 1))
        e0 = band.end[pi[:n0]]
        d0[:n0] = np.copysign(np.sqrt(d0[:n0] * d0[:n0] + e0 * e0), d0[:n0])
        ad0 = np.abs(d0)
        c_p = F32(1.0) - _s01(ad0 - hw * F32(1.0 + burr) + F32(0.4))
        c_p *= hw > 0.05
        cov_b = np.zeros(n, F32)
        np.maximum.at(cov_b, pi, c_p)
        # only labelled pixels are drawn (the host keeps the region's own pixels where the
        # coverage is 0), and only pairs whose section reaches a sub-sample there matter
        cidx = np.flatnonzero(cov_b)
        nc = cidx.size
        if nc == 0:
            return Layer(out, cov_full)
        remap = np.full(n, -1, np.int64)
        remap[cidx] = np.arange(nc)
        pj = remap[pi]
        keep = np.flatnonzero((pj >= 0) & (ad0 < hw * F32(2.0) + F32(0.55)))
        pj = pj[keep]
        hw = hw[keep]
        dep = dep[keep]
        d0 = d0[keep]
        # stroke normal, pixel footprint across it and the light across it, per pixel
        k = band.k[cidx]
        tan = path.tan_c[k]  # tx - i ty: the normal (-ty, tx) is (imag, real)
        pnx = tan.imag
        pny = tan.real
        light = region.light.vector
        lperp = pnx * F32(light[0]) + pny * F32(light[1])
        lz = F32(max(float(light[2]), 0.05))
        # the 4 sub-pixel samples across the footprint of every pair: (4, pairs)
        foot2 = (np.abs(pnx) + np.abs(pny))[pj]  # 2 x the footprint's half-width
        d_g = d0 + _OFFS * foot2
        hgt, slope, inside, u = _section(d_g, hw, dep, burr)
        # cast shadow: does the ray to the light clear the groove's edge?
        tw = np.sign(lperp)[pj]
        rs = (lz / np.maximum(np.abs(lperp), F32(1e-3)))[pj]
        inv_dep = F32(1.0) / np.maximum(dep, F32(1e-3))
        run = np.maximum(hw - d_g * tw, F32(0.0))
        clear = (hgt + run * rs - dep * F32(burr * 0.5)) * inv_dep
        dfrac = np.clip(hgt * -inv_dep, 0.0, 1.0)
        occ_p = np.where(inside, _s01(clear * F32(1 / 0.7) + F32(0.5)) * (1 - F32(0.3) * dfrac), 1)
        flr = np.where(inside, F32(1.0) - u * u, F32(0.0))
        # sum the grooves' slopes, multiply their occlusions, keep the deepest floor
        at = (pj + np.arange(0, 4 * nc, nc)[:, None]).ravel()
        gx = np.bincount(at, slope.ravel(), 4 * nc).astype(F32).reshape(4, nc)
        occ = np.ones(4 * nc, F32)
        np.multiply.at(occ, at, occ_p.astype(F32).ravel())
        fl = np.zeros(4 * nc, F32)
        np.maximum.at(fl, at, flr.ravel())
        # the groove tilts the normal across the stroke only
        shading = surface_shading(pixels, ambient=0.5, specular=0.45 * params.gloss, roughness=0.28)
        nx, ny, nz = normals_from_slopes(gx * pnx, gx * pny)
        r, sp = shade(nx, ny, nz, light, shading, occlusion=occ.reshape(4, nc))
        ratio = (r[0] + r[1] + r[2] + r[3]) * F32(0.25)
        spec = (sp[0] + sp[1] + sp[2] + sp[3]) * F32(0.25)
        floor = fl.reshape(4, nc).sum(axis=0) * F32(0.25)
        flat = out.reshape(h * w, -1)
        pix = band.idx[cidx]
        base = np.take(flat, pix, axis=0)
        surf = surface_colour(pixels)
        spec_col = specular_colour(surf.reshape(1, 1, -1))  # the colour computed once
        lit = base * (ratio + F32(1.6) * np.minimum(spec, F32(0.0)))[:, None]
        lit += np.maximum(spec, F32(0.0))[:, None] * spec_col
        # on strong relief (knurls, weave) the tool shaves the tips flat: fresh material
        # shows in the groove whatever the coating, so the floor exposure rises with the
        # texture's contrast
        exposure = max(
            params.exposure, float(np.clip((texture_contrast(pixels) - 0.04) * 7, 0, 0.7))
        )
        if exposure > 0:
            lum = float(luminance(surf.reshape(1, 1, -1))[0, 0])
            sub = F32(min(0.95, max(lum + 0.3, 0.65)))
            e = floor * F32(exposure)
            lit += e[:, None] * (sub * ratio[:, None] - lit)
        flat[pix] = np.clip(lit, 0.0, 1.0)
        cov_full.reshape(-1)[pix] = cov_b[cidx]
        return Layer(out, cov_full)


_OFFS = np.array([-0.375, -0.125, 0.125, 0.375], F32)[:, None]


def _s01(x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at 0 to 1 at 1 (``smoothstep(0, 1, x)``), in place on ``x``."""
    t = np.clip(x, F32(0.0), F32(1.0), out=x)
    return t * t * (F32(3.0) - F32(2.0) * t)


def _reach(params: ScratchGenerator.Params) -> float:
    side = params.width * (1.0 + params.width_variation) * (1.0 + params.burr * 1.2) + 3.0
    if params.micro_scratches:
        side += params.spread
    return side


class _Grooves(NamedTuple):
    """The main groove (first) and the micro-scratches, side by side, for evaluating all
    (groove, pixel) pairs at once."""

    offset: np.ndarray  # (g,) sideways offset (px) from the stroke
    reach: np.ndarray  # (g,) farthest distance (px) from ``offset`` it changes anything at
    lo: np.ndarray  # (g,) arc length where it starts to matter
    hi: np.ndarray  # (g,) and stops
    cols: np.ndarray  # (6, g) start, 1/taper_in, stop, 1/taper_out, half-width, wall slope
    band: float  # farthest distance (px) from the stroke any groove changes anything at
    m: int  # samples of each groove's wave and drift, every 2 px of arc length
    xp: np.ndarray  # (g * m,) 0, 1, 2, ...
    profile: np.ndarray  # (g * m,) complex: width modulation + i sideways offset (px)


def _waves(rng: np.random.Generator, rows: int, length: float, amount: np.ndarray) -> np.ndarray:
    """``rows`` random width modulations every 2 px of arc length: slow swells and a
    little fine jitter, down by up to ``amount`` (per row) from 1, at least 0.1."""
    n = int(length / 2.0) + 3
    nk = max(3, n // 12 + 3)
    knots = rng.standard_normal((rows, nk))
    fine = rng.standard_normal((rows, n))
    # the knots linearly interpolated over the n samples
    x = np.arange(n) * ((nk - 1) / (n - 1))
    i0 = np.minimum(x.astype(np.intp), nk - 2)
    fr = x - i0
    k0 = np.take(knots, i0, axis=1)
    smooth = k0 + (np.take(knots, i0 + 1, axis=1) - k0) * fr
    v = 1.0 - amount[:, None] * 0.5 * (1.0 + np.tanh(0.8 * smooth + 0.105 * fine))
    return np.maximum(v, 0.1)


def _grooves(params: ScratchGenerator.Params, rng: np.random.Generator, length: float) -> _Grooves:
    """The main groove along the whole stroke and ``micro_scratches`` fine parallel ones
    over part of it, a little off to either side, each narrower and shallower."""
    k = params.micro_scratches
    g = k + 1
    u = rng.random((g, 9)).tolist()
    # width waves of all grooves, then the micro-scratches' sideways drifts
    amount = np.full(g + k, params.width_variation)
    amount[g:] = 1.0
    waves = _waves(rng, g + k, length, amount)
    m = waves.shape[1]
    widest = waves[:g].max(axis=1).tolist()
    swing = np.abs(waves[g:] - 0.5).max(axis=1).tolist()
    inf = float("inf")
    hw = params.width / 2.0
    # the main groove: the whole stroke, tapering in over 3-20 % and out over 15-45 %
    offset, lo, hi, amp = [0.0], [-inf], [inf], [0.0]
    cols = [[0.0, 1.0 / (length * (0.03 + 0.17 * u[0][0])), length]]
    cols[0] += [1.0 / (length * (0.15 + 0.3 * u[0][1])), hw, params.depth]
    lo_off = params.width * 0.9 + 1.0
    for v in u[1:]:
        off = (1.0 if v[0] < 0.5 else -1.0) * (lo_off + (hw * 2 + params.spread - lo_off) * v[1])
        a, b = min(v[2], v[3]) * length, max(v[2], v[3]) * length
        if b - a < 0.2 * length:
            b = min(length, a + 0.2 * length)
        span = max(b - a, 1e-6)
        offset.append(off)
        lo.append(a - 1.0)
        hi.append(b + 1.0)
        # a micro-scratch wanders 0.5-2.5 px about its offset
        amp.append(0.5 + 2.0 * v[8])
        cols.append(
            [
                a,
                1.0 / (span * (0.05 + 0.25 * v[4])),
                b,
                1.0 / (span * (0.1 + 0.3 * v[5])),
                hw * (0.25 + 0.3 * v[6]),
                params.depth * (0.5 + 0.5 * v[7]),
            ]
        )
    wander = [0.0] + [s * a for s, a in zip(swing, amp[1:])]
    reach = [
        2.0 * c[4] * top * (1.0 + params.burr) + wd + 2.0
        for c, top, wd in zip(cols, widest, wander)
    ]
    profile = np.empty((g, m), np.complex128)
    profile.real = waves[:g]
    profile.imag[0] = 0.0
    if k:
        profile.imag[1:] = (waves[g:] - 0.5) * np.array(amp[1:])[:, None]
        profile.imag[1:] += np.array(offset[1:])[:, None]
    return _Grooves(
        offset=np.array(offset, F32),
        reach=np.array(reach, F32),
        lo=np.array(lo, F32),
        hi=np.array(hi, F32),
        cols=np.array(cols, F32).T.copy(),
        band=max(abs(o) + r for o, r in zip(offset, reach)),
        m=m,
        xp=np.arange(m * g, dtype=np.float64),
        profile=profile.ravel(),
    )


def _section(
    d: np.ndarray, hw: np.ndarray, depth: np.ndarray, burr: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Height (px, negative = below the surface) and its slope across a groove, whether
    each sample is inside the groove proper and its offset in half-widths.

    A rounded V of half-width ``hw`` and ``depth``, then a burr ridge of ``burr * depth``
    out to twice the half-width.
    """
    inv_hw = F32(1.0) / np.maximum(hw, F32(1e-3))
    u = d * inv_hw
    # sin(pi u) carries the side's sign; beyond 2 half-widths both terms vanish
    t = np.clip(u, F32(-2.0), F32(2.0)) * F32(np.pi)
    c = np.cos(t)
    sn = np.sin(t)
    inside = np.abs(d) < hw
    # a raised-cosine groove (smooth at the floor and at the edges, steepest half-way),
    # then the ridge of the burr, sin^2 over the next half-width
    bh = F32(burr) * depth
    hgt = np.where(inside, depth * F32(-0.5) * (F32(1.0) + c), bh * sn * sn)
    slope = np.where(inside, depth * F32(0.5 * np.pi), bh * F32(2.0 * np.pi) * c) * sn * inv_hw
    return hgt, slope, inside, u


class _Path(NamedTuple):
    """The stroke sampled about every half pixel along its direction, in region pixels."""

    pts: np.ndarray  # (n,) complex64 x + iy
    tan_c: np.ndarray  # (n,) complex64 conjugate unit tangent, tx - i ty
    inv_step: np.ndarray  # (n,) 1 / arc length per sample index
    curvature: np.ndarray  # (n,) 1 / radius, positive turning towards the normal (-ty, tx)
    arc: np.ndarray  # (n,) arc length from the start
    length: float
    du: float  # spacing of the samples along ``direction``
    direction: tuple[float, float]


def _stroke(
    params: ScratchGenerator.Params, rng: np.random.Generator, shape: tuple[int, int], margin: float
) -> _Path:
    """The stroke, centred in the region and kept ``margin`` from its edge.

    A cubic Bezier whose control points are evenly spaced along the stroke's direction
    (so that the position along that direction is linear in the curve parameter: the
    samples are evenly spaced along it) plus a gentle random sideways wander, a
    Catmull-Rom spline through random knots (smooth, so the tangent never jumps).
    """
    h, w = shape
    a = math.radians(params.angle)
    L = params.length
    bend = 3.0 * params.curvature * L
    r1, r2 = (float(v) for v in rng.uniform(-1, 1, 2))
    knots = rng.standard_normal(max(4, int(L / 25) + 4))
    nk = knots.size
    n = max(16, int(math.ceil(2.0 * L)) + 1)
    t = np.arange(n) * (1.0 / (n - 1))
    # the Bezier's sideways offset 3 bend t (1 - t) (r1 (1 - t) + r2 t), a cubic in t
    side = ((bend * (r1 - r2) * t + bend * (r2 - 2.0 * r1)) * t + bend * r1) * t
    # the wander: Catmull-Rom segments between the knots (ends extrapolated)
    kp = np.concatenate([[2 * knots[0] - knots[1]], knots, [2 * knots[-1] - knots[-2]]])
    p0, p1, p2, p3 = kp[:-3], kp[1:-2], kp[2:-1], kp[3:]
    coef = np.stack(
        [
            p1,
            0.5 * (p2 - p0),
            p0 - 2.5 * p1 + 2.0 * p2 - 0.5 * p3,
            1.5 * (p1 - p2) + 0.5 * (p3 - p0),
        ],
        axis=1,
    )
    x = t * (nk - 1)
    seg = np.minimum(x.astype(np.intp), nk - 2)
    f = x - seg
    c = np.take(coef, seg, axis=0) * params.wobble
    side += ((c[:, 3] * f + c[:, 2]) * f + c[:, 1]) * f + c[:, 0]
    z = np.empty(n, np.complex128)
    z.real = L * (t - 0.5)
    z.imag = side
    z *= complex(math.cos(a), math.sin(a))
    x0, x1, y0, y1 = z.real.min(), z.real.max(), z.imag.min(), z.imag.max()
    scale = min(
        1.0,
        max(w - 2 * margin, 1.0) / max(x1 - x0, 1e-6),
        max(h - 2 * margin, 1.0) / max(y1 - y0, 1e-6),
    )
    z -= complex((x0 + x1) / 2, (y0 + y1) / 2)
    z *= scale
    z += complex((w - 1) / 2, (h - 1) / 2)
    # tangents by central differences (one-sided at the ends), arc length along the samples
    dz = np.empty_like(z)
    dz[1:-1] = z[2:] - z[:-2]
    dz[1:-1] *= 0.5
    dz[0] = z[1] - z[0]
    dz[-1] = z[-1] - z[-2]
    norm = np.maximum(np.abs(dz), 1e-9)
    tan_c = np.conj(dz / norm).astype(np.complex64)
    ddz = np.zeros_like(z)
    ddz[1:-1] = z[2:] + z[:-2] - 2.0 * z[1:-1]
    curvature = (np.conj(dz) * ddz).imag / norm**3
    arc = np.zeros(n)
    np.cumsum(np.abs(np.diff(z)), out=arc[1:])
    return _Path(
        pts=z.astype(np.complex64),
        tan_c=tan_c,
        inv_step=(1.0 / norm).astype(F32),
        curvature=curvature.astype(F32),
        arc=arc.astype(F32),
        length=max(float(arc[-1]), 1.0),
        du=L * scale / (n - 1),
        direction=(math.cos(a), math.sin(a)),
    )


class _Band(NamedTuple):
    """Pixels within reach of the stroke and where they are relative to it (1-D arrays).

    ``idx``: flat pixel index; ``k``: nearest path sample; ``dist``: signed distance from
    the stroke, positive towards the normal ``(-ty, tx)``; ``arc``: arc length of the
    nearest stroke point; ``end``: distance beyond the stroke's ends (0 alongside).
    """

    idx: np.ndarray
    k: np.ndarray
    dist: np.ndarray
    arc: np.ndarray
    end: np.ndarray


def _band(path: _Path, shape: tuple[int, int], reach: float) -> _Band:
    """The geometry of :func:`defectsynth.textures.path_field`, without a distance
    transform of the whole region: the band is the stroke drawn ``reach`` px thick, and
    each pixel's nearest sample comes from its position along the stroke's direction
    (which the samples are evenly spaced in) refined by two Newton steps along the
    tangent; the signed distance and arc length are then exact to the tangent line
    (within 0.01 px up to 10 px from the stroke, 0.2 px at 20 px)."""
    h, w = shape
    pts = path.pts
    n = pts.size
    mask = np.zeros((h, w), np.uint8)
    coarse = pts[::4] if (n - 1) % 4 == 0 else np.append(pts[::4], pts[-1])
    fixed = np.empty((coarse.size, 2), np.int32)
    fixed[:, 0] = np.rint(coarse.real * 16.0)
    fixed[:, 1] = np.rint(coarse.imag * 16.0)
    cv2.polylines(mask, [fixed], False, 1, 2 * int(math.ceil(reach)) + 3, cv2.LINE_8, 4)
    idx = np.flatnonzero(mask.view(bool))
    iy = idx // w
    p = np.empty(idx.size, np.complex64)
    p.real = idx - iy * w
    p.imag = iy
    p0 = complex(pts[0])
    dx, dy = path.direction
    inv = 1.0 / path.du
    fk = (p.real - F32(p0.real)) * F32(dx * inv) + (p.imag - F32(p0.imag)) * F32(dy * inv)
    top = n - 1
    k = np.clip(np.rint(fk), 0, top).astype(np.intp)
    along = ((p - pts[k]) * path.tan_c[k]).real
    fk = k + along * path.inv_step[k]
    # the second step allows for the curvature: a pixel on the outside of a bend is
    # farther along than its offset along the tangent says, one on the inside less far
    k = np.clip(np.rint(fk), 0, top).astype(np.intp)
    q = (p - pts[k]) * path.tan_c[k]
    bend = np.maximum(F32(1.0) - path.curvature[k] * q.imag, F32(0.3))
    fk = k + q.real * path.inv_step[k] / bend
    k = np.clip(np.rint(fk), 0, top).astype(np.intp)
    q = (p - pts[k]) * path.tan_c[k]
    s = path.arc[k] + q.real
    total = F32(path.arc[-1])
    end = np.maximum(np.maximum(-s, s - total), F32(0.0))
    return _Band(idx=idx, k=k, dist=q.imag, arc=np.clip(s, F32(0.0), total), end=end)


@hookimpl
def register_generators(register: Callable[[type[DefectGenerator]], None]) -> None:
    register(ScratchGenerator)
