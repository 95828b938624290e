"""Scratch: a groove ploughed into the surface, shaded by the scene light."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import cv2
import numpy as np

from defectsynth import DefectGenerator, Layer, Region, hookimpl, param
from defectsynth.textures import (
    Shading,
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
        # the stroke's own box plus what the grooves can label beside it: render() draws
        # the same stroke from the same rng (extent() looks ahead on a copy of it), so
        # nothing is clipped; with another rng the stroke is shrunk to fit if need be.
        # At least _MIN_SIDE px either way, so that the surface's statistics (grain,
        # colour, texture contrast) see some of the surface around a stroke
        x0, x1, y0, y1 = _stroke_ahead(params, rng).box
        span_x, span_y = x1 - x0, y1 - y0
        margin = _margin(params)
        w = max(span_x + 2.0 * margin + 1.0, _MIN_SIDE)
        h = max(span_y + 2.0 * margin + 1.0, _MIN_SIDE)
        return int(math.ceil(h)), int(math.ceil(w))

    def render(self, region: Region, params: Params, rng: np.random.Generator) -> Layer:
        h, w = region.shape
        pixels = region.pixels
        out = np.array(pixels, dtype=F32, copy=True)
        cov_full = np.zeros((h, w), F32)
        path = _stroke(params, rng, (h, w), _margin(params))
        tab = _grooves(params, rng, path.length)
        band = _band(path, (h, w), tab)
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
        # the grooves' half-width and sideways drift along them, sampled every 2 px
        start, inv_tin, stop, inv_tout, hw0, wall, base = np.take(tab.cols, gi, axis=1)
        prof = np.interp(a_p + base, tab.xp, tab.profile)
        # tapered ends: the two ramps never overlap (taper_in + taper_out < the length),
        # so sqrt(smoothstep(ramp in) * smoothstep(ramp out)) is that of the nearer one
        ramp = np.minimum((a_p - start) * inv_tin, (stop - a_p) * inv_tout)
        hw = _s01(ramp)
        np.sqrt(hw, out=hw)
        hw *= hw0
        hw *= prof.real
        d0 = np.subtract(dist[pi], prof.imag, dtype=F32)
        # (beyond the stroke's ends the arc length is clipped there, where the taper makes
        # every groove 0 wide: nothing is drawn past the ends)
        ad0 = np.abs(d0)
        cov_p = _s01(hw * F32(1.0 + burr) + F32(0.6) - ad0)
        cov_p *= hw > 0.05
        cov_b = np.zeros(n, F32)
        np.maximum.at(cov_b, pi, cov_p)
        # only labelled pixels are drawn (the host keeps the region's own pixels where the
        # coverage is 0), and only pairs whose section reaches a sub-sample there matter
        cidx = np.flatnonzero(cov_b > 0)
        nc = cidx.size
        if nc == 0:
            return Layer(out, cov_full)
        remap = np.full(n, -1, np.intp)
        remap[cidx] = np.arange(nc)
        pj = remap[pi]
        keep = np.flatnonzero((pj >= 0) & (ad0 < hw * F32(2.0) + F32(0.6)))
        pj = pj[keep]
        hw = hw[keep]
        wall = wall[keep]
        d0 = d0[keep]
        # stroke normal, pixel footprint across it and the light across it, per pixel
        tan = band.tan[cidx]  # tx - i ty: the normal (-ty, tx) is (imag, real)
        pnx = tan.imag
        pny = tan.real
        light = region.light.vector
        lperp = pnx * F32(light[0]) + pny * F32(light[1])
        lz = F32(max(float(light[2]), 0.05))
        # the 4 sub-pixel samples across the footprint of every pair: (4, pairs)
        foot2 = (np.abs(pnx) + np.abs(pny))[pj]  # 2 x the footprint's half-width
        d_g = d0 + _OFFS * foot2
        slope, inside, u, sink = _section(d_g, hw, wall, burr)
        # cast shadow: does the ray to the light from `sink` (of the depth) below the surface
        # clear the near edge, raised burr / 2 by the burr? Per unit depth it rises
        # rise / wall over the run to the edge
        toward = np.sign(lperp)[pj]
        rise = (lz / np.maximum(np.abs(lperp), F32(1e-3)))[pj] / wall
        run = F32(1.0) - u * toward
        clear = np.maximum(run, F32(0.0), out=run) * rise - sink
        shadow = _s01(clear * F32(1 / 0.7) + F32(0.5 - burr / 1.4))
        # ...and a cavity sees less of the sky the deeper it is
        shadow *= F32(1.0) - F32(0.3) * sink
        occ_p = np.where(inside, shadow, F32(1.0))
        flr = np.where(inside, F32(1.0) - u * u, F32(0.0))
        # sum the grooves' slopes, multiply their occlusions, keep the deepest floor (every
        # labelled pixel has a pair: when it has only one, the pairs are its pixels)
        if pj.size == nc:
            gx, occ, fl = (np.empty((4, nc), F32) for _ in range(3))
            gx[:, pj] = slope
            occ[:, pj] = occ_p
            fl[:, pj] = flr
        else:
            at = (pj + np.arange(0, 4 * nc, nc)[:, None]).ravel()
            gx = np.bincount(at, slope.ravel(), 4 * nc).astype(F32).reshape(4, nc)
            occ = np.ones((4, nc), F32)
            np.multiply.at(occ.reshape(-1), at, occ_p.ravel())
            fl = np.zeros((4, nc), F32)
            np.maximum.at(fl.reshape(-1), at, flr.ravel())
        # the groove tilts the normal across the stroke only
        shading = surface_shading(pixels, ambient=0.5, specular=0.45 * params.gloss, roughness=0.28)
        r, sp = _shade_across(gx, occ, pnx, pny, lperp, light, shading)
        ratio = np.add.reduce(r, axis=0)
        ratio *= F32(0.25)
        spec = np.add.reduce(sp, axis=0)
        spec *= F32(0.25)
        floor = np.add.reduce(fl, axis=0)
        floor *= F32(0.25)
        flat = out.reshape(h * w, -1)
        pix = band.idx[cidx]
        base = np.take(flat, pix, axis=0)
        surf = surface_colour(pixels)
        spec_col = specular_colour(pixels, colour=surf)
        lit = base * (ratio + F32(1.6) * np.minimum(spec, F32(0.0)))[:, None]
        lit += np.maximum(spec, F32(0.0))[:, None] * spec_col
        # on strong relief (knurls, weave) the tool shaves the tips flat: fresh material
        # shows in the groove whatever the coating, so the floor exposure rises with the
        # texture's contrast
        exposure = max(
            params.exposure, float(np.clip((texture_contrast(pixels) - 0.04) * 7, 0, 0.7))
        )
        if exposure > 0:
            lum = float(surf[0]) if surf.size == 1 else float(surf @ _LUMA)
            sub = F32(min(0.95, max(lum + 0.3, 0.65)))
            e = floor * F32(exposure)
            lit += e[:, None] * (sub * ratio[:, None] - lit)
        np.maximum(lit, F32(0.0), out=lit)
        np.minimum(lit, F32(1.0), out=lit)
        # whole pixels as single items: a 1-D scatter instead of a row scatter
        item = np.dtype((np.void, lit.itemsize * lit.shape[1]))
        np.put(out.reshape(h * w, -1).view(item), pix, lit.view(item))
        cov_full.reshape(-1)[pix] = cov_b[cidx]
        return Layer(out, cov_full)


_LUMA = np.array([0.114, 0.587, 0.299], F32)  # Rec. 601, B G R (as luminance())
_OFFS = np.array([-0.375, -0.125, 0.125, 0.375], F32)[:, None]


def _s01(x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at 0 to 1 at 1 (``smoothstep(0, 1, x)``), in place on ``x``."""
    t = np.maximum(x, F32(0.0), out=x)
    np.minimum(t, F32(1.0), out=t)
    return t * t * (F32(3.0) - F32(2.0) * t)


def _shade_across(
    gx: np.ndarray,
    occ: np.ndarray,
    pnx: np.ndarray,
    pny: np.ndarray,
    lperp: np.ndarray,
    light: np.ndarray,
    shading: Shading,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`defectsynth.textures.shade` of ``normals_from_slopes(gx * pnx, gx * pny)``
    with ``occlusion=occ``: the surface tilted by slopes ``gx`` (sub-samples, pixels)
    across the stroke only, whose unit normal is ``(pnx, pny)`` per pixel (``lperp``: the
    light's component along it). The same model, written for a tilt in one direction:
    with ``s = 1 / sqrt(1 + gx^2)`` the normal is ``s (-gx pnx, -gx pny, 1)``, so
    ``n . l = s (lz - gx lperp)`` and the lobe's slope-space offset from the half vector
    is linear in ``gx``."""
    lx, ly, lz = (float(v) for v in light)
    lz = max(lz, 0.02)
    amb = shading.ambient
    flat = amb + (1.0 - amb) * lz
    inv = gx * gx
    inv += F32(1.0)
    np.sqrt(inv, out=inv)
    np.divide(F32(1.0), inv, out=inv)
    ndl = gx * lperp
    np.subtract(F32(lz), ndl, out=ndl)
    ndl *= inv
    np.maximum(ndl, F32(0.0), out=ndl)
    ndl *= occ
    ratio = ndl
    ratio *= F32((1.0 - amb) / flat)
    ratio += F32(amb / flat)
    # cavities also see less of the sky
    ratio *= occ * F32(0.45) + F32(0.55)
    if shading.specular <= 0:
        return ratio, np.zeros_like(ratio)
    # the half vector (lx, ly, lz + 1)'s slopes
    hx, hy = lx / (lz + 1.0), ly / (lz + 1.0)
    ca, sa = math.cos(shading.grain_angle), math.sin(shading.grain_angle)
    r = max(shading.roughness, 1e-3)
    ia = 1.0 / r
    ic = 1.0 / (r * (1.0 + 3.0 * shading.anisotropy))
    # along / ra and across / rc: a + gx b and c + gx d
    a0 = (hx * ca + hy * sa) * ia
    c0 = (-hx * sa + hy * ca) * ic
    flat_lobe = math.exp(-0.5 * (a0 * a0 + c0 * c0))
    b = pnx * F32(ca * ia) + pny * F32(sa * ia)
    d = pny * F32(ca * ic) - pnx * F32(sa * ic)
    along = gx * b
    along += F32(a0)
    along *= along
    across = gx * d
    across += F32(c0)
    across *= across
    along += across
    along *= F32(-0.5)
    lobe = np.exp(along, out=along)
    lobe *= occ
    lobe -= F32(flat_lobe)
    lobe *= F32(shading.specular)
    return ratio, lobe


_MIN_SIDE = 24.0


def _margin(params: ScratchGenerator.Params) -> float:
    """How far from the stroke a groove can label a pixel (+ 1 px): the main groove out
    to hw (1 + burr) + 0.6, a micro-scratch from its offset (up to width + spread) and
    its drift (up to 1.25 px) out to 0.55 hw (1 + burr) + 0.6, hw = width / 2."""
    hw = 0.5 * params.width
    side = hw * (1.0 + params.burr) + 0.6
    if params.micro_scratches:
        side = max(side, 2.0 * hw + params.spread + 1.25 + 0.55 * hw * (1.0 + params.burr) + 0.6)
    return side + 1.0


class _Grooves(NamedTuple):
    """The main groove (first) and the micro-scratches, side by side, for evaluating all
    (groove, pixel) pairs at once."""

    offset: np.ndarray  # (g,) sideways offset (px) from the stroke
    reach: np.ndarray  # (g,) farthest distance (px) from ``offset`` it changes anything at
    label: list[float]  # (g,) farthest distance (px) from ``offset`` it labels a pixel at
    lo: np.ndarray  # (g,) arc length where it starts to matter
    hi: np.ndarray  # (g,) and stops
    # (7, g) start, 1/taper_in, stop, 1/taper_out, half-width, wall slope, and where its
    # samples start in ``xp``
    cols: np.ndarray
    m: int  # samples of each groove's wave and drift, every 2 px of arc length
    xp: np.ndarray  # (g * m,) 0, 2, 4, ...: arc length, each groove's 2 m further on
    profile: np.ndarray  # (g * m,) complex: width modulation + i sideways offset (px)


@functools.lru_cache(maxsize=128)
def _wave_basis(n: int, nk: int) -> np.ndarray:
    """(nk, n): ``knots @ basis`` interpolates nk knots linearly over n samples, times 0.8."""
    x = np.arange(n) * ((nk - 1) / (n - 1))
    i0 = np.minimum(x.astype(np.intp), nk - 2)
    fr = x - i0
    basis = np.zeros((nk, n))
    basis[i0, np.arange(n)] = 0.8 * (1.0 - fr)
    basis[i0 + 1, np.arange(n)] += 0.8 * fr
    basis.flags.writeable = False
    return basis


def _waves(rng: np.random.Generator, rows: int, length: float, amount: np.ndarray) -> np.ndarray:
    """``rows`` random width modulations every 2 px of arc length: slow swells and a
    little fine jitter, down by up to ``amount`` (per row, a column) from 1, at least 0.1."""
    n = int(length / 2.0) + 3
    nk = max(3, n // 12 + 3)
    knots = rng.standard_normal((rows, nk))
    # 0.8 x the knots interpolated, plus fine jitter, through a soft step
    swell = np.tanh(rng.normal(0.0, 0.105, (rows, n)) + knots @ _wave_basis(n, nk))
    return np.maximum((1.0 - 0.5 * amount) - (0.5 * amount) * swell, 0.1)


def _grooves(params: ScratchGenerator.Params, rng: np.random.Generator, length: float) -> _Grooves:
    """The main groove along the whole stroke and ``micro_scratches`` fine parallel ones
    over part of it, a little off to either side, each narrower and shallower."""
    k = params.micro_scratches
    g = k + 1
    u = rng.random((g, 9)).tolist()
    # width waves of all grooves, then the micro-scratches' sideways drifts
    amount = np.full((g + k, 1), params.width_variation)
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
    cols[0] += [1.0 / (length * (0.15 + 0.3 * u[0][1])), hw, params.depth, 0.0]
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
                2.0 * m * len(cols),
            ]
        )
    wander = [0.0] + [s * a for s, a in zip(swing, amp[1:])]
    # a groove labels pixels out to hw (1 + burr) + 0.6 and its section (sampled up to
    # 0.53 px either side of a pixel) spans 2 hw: nothing changes farther out
    spread = max(1.0 + params.burr, 2.0)
    reach = [c[4] * top * spread + wd + 0.7 for c, top, wd in zip(cols, widest, wander)]
    # (and labels pixels out to hw (1 + burr) + 0.6 from its drifting middle)
    sides = 1.0 + params.burr
    label = [c[4] * top * sides + wd + 0.6 for c, top, wd in zip(cols, widest, wander)]
    profile = np.empty((g, m), np.complex128)
    profile.real = waves[:g]
    profile.imag[0] = 0.0
    if k:
        profile.imag[1:] = (waves[g:] - 0.5) * np.array(amp[1:])[:, None]
        profile.imag[1:] += np.array(offset[1:])[:, None]
    return _Grooves(
        offset=np.array(offset, F32),
        reach=np.array(reach, F32),
        label=label,
        lo=np.array(lo, F32),
        hi=np.array(hi, F32),
        cols=np.array(cols, F32).T.copy(),
        m=m,
        xp=np.arange(0.0, 2.0 * m * g, 2.0),
        profile=profile.ravel(),
    )


def _section(
    d: np.ndarray, hw: np.ndarray, wall: np.ndarray, burr: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The slope across a groove at offsets ``d`` from its middle, whether they are inside
    the groove proper, the offsets in half-widths and, inside, how deep the surface is
    there as a fraction of the groove's depth ``wall * hw``.

    A raised-cosine groove of half-width ``hw`` (smooth at the floor and at the edges,
    steepest half-way), then a burr ridge ``burr`` x as high, sin^2 over the next
    half-width.
    """
    inv_hw = F32(1.0) / np.maximum(hw, F32(1e-3))
    u = d * inv_hw
    # sin(pi u) carries the side's sign; beyond 2 half-widths both terms vanish
    t = np.maximum(u, F32(-2.0))
    np.minimum(t, F32(2.0), out=t)
    t *= F32(np.pi)
    c = np.cos(t)
    sn = np.sin(t, out=t)
    inside = np.abs(d) < hw
    sink = F32(0.5) + F32(0.5) * c
    slope = np.where(inside, F32(0.5 * np.pi), F32(2.0 * np.pi * burr) * c)
    slope *= sn
    slope *= wall * (hw * inv_hw)
    return slope, inside, u, sink


class _Path(NamedTuple):
    """The stroke sampled about every half pixel along its direction, in region pixels."""

    # (n, 4) complex64 per sample: x + iy; the conjugate unit tangent tx - i ty;
    # 1 / (arc length per sample index) + i curvature (1 / radius, positive turning
    # towards the normal (-ty, tx)); arc length from the start
    table: np.ndarray
    length: float
    # 1 / (the samples' spacing along the stroke's direction) x that direction's conjugate
    across: complex


def _stroke_basis(n: int, nk: int) -> tuple[np.ndarray, np.ndarray]:
    """The stroke's sideways offset at n evenly spaced values of the curve parameter t,
    its first and its second difference (per sample), stacked: (3 n, 2 + nk) such that
    ``basis @ [bend r1, bend r2, wobble * knots]`` gives them for a Bezier whose inner
    control points are ``bend r1`` and ``bend r2`` off the line and a Catmull-Rom wander
    through nk knots (ends extrapolated). Also t - 1/2."""
    t = np.arange(n) * (1.0 / (n - 1))
    basis = np.zeros((n, 2 + nk))
    # the Bezier's sideways offset is 3 bend t (1 - t) (r1 (1 - t) + r2 t)
    basis[:, 0] = 3.0 * t * (1.0 - t) ** 2
    basis[:, 1] = 3.0 * t * t * (1.0 - t)
    x = t * (nk - 1)
    seg = np.minimum(x.astype(np.intp), nk - 2)
    f = x - seg
    rows = np.arange(n)
    # Catmull-Rom weights of knots seg - 1 .. seg + 2
    weights = (
        ((-0.5 * f + 1.0) * f - 0.5) * f,
        (1.5 * f - 2.5) * f * f + 1.0,
        ((-1.5 * f + 2.0) * f + 0.5) * f,
        (0.5 * f - 0.5) * f * f,
    )
    flat = basis.reshape(-1)
    width = 2 + nk
    for j, wj in enumerate(weights):
        col = seg - 1 + j
        # a knot before the first or after the last: extrapolated linearly (2 k0 - k1)
        lo, hi = col < 0, col > nk - 1
        mid = ~(lo | hi)
        np.add.at(flat, rows[mid] * width + 2 + col[mid], wj[mid])
        np.add.at(flat, rows[lo] * width + 2, 2.0 * wj[lo])
        np.add.at(flat, rows[lo] * width + 3, -wj[lo])
        np.add.at(flat, rows[hi] * width + 2 + nk - 1, 2.0 * wj[hi])
        np.add.at(flat, rows[hi] * width + 2 + nk - 2, -wj[hi])
    first = np.gradient(basis, axis=0)
    second = np.zeros_like(basis)
    second[1:-1] = basis[2:] + basis[:-2] - 2.0 * basis[1:-1]
    stacked = np.concatenate([basis, first, second])
    stacked.flags.writeable = False
    tm = t - 0.5
    tm.flags.writeable = False
    return stacked, tm


_stroke_basis_cached = functools.lru_cache(maxsize=24)(_stroke_basis)


class _Shape(NamedTuple):
    """The stroke about its middle, before it is placed in the region."""

    n: int  # samples
    both: np.ndarray  # (3 n,) sideways offset, its first and second difference
    z: np.ndarray  # (n,) complex128 samples, x + iy
    rot: complex  # the stroke's direction
    box: tuple[float, float, float, float]  # x0, x1, y0, y1 of ``z``


def _stroke_shape(params: ScratchGenerator.Params, rng: np.random.Generator) -> _Shape:
    """The stroke's random draws and what they make of it (see :func:`_stroke`)."""
    L = params.length
    bend = params.curvature * L
    coef = np.empty(2 + max(4, int(L / 25) + 4))
    coef[:2] = rng.uniform(-bend, bend, 2)
    coef[2:] = rng.standard_normal(coef.size - 2)
    coef[2:] *= params.wobble
    n = 32 * int(math.ceil(2.0 * L / 32.0)) + 1
    # (strokes up to 512 px share cached bases, < 0.6 MB each)
    basis, tm = (_stroke_basis_cached if n <= 1025 else _stroke_basis)(n, coef.size - 2)
    both = np.einsum("ij,j->i", basis, coef)  # (no BLAS threads for a small product)
    a = math.radians(params.angle)
    rot = complex(math.cos(a), math.sin(a))
    z = np.empty(n, np.complex128)
    z.real = tm
    z.real *= L
    z.imag = both[:n]
    z *= rot
    box = (float(z.real.min()), float(z.real.max()), float(z.imag.min()), float(z.imag.max()))
    return _Shape(n, both, z, rot, box)


# the stroke extent() drew ahead of render(): (params, rng state before, shape, rng state
# after); render() takes it when its params and rng state are those, else draws its own
# (the same one). One entry, replaced whole (safe across threads)
_AHEAD: list[tuple[object, Mapping[str, Any], _Shape, Mapping[str, Any]] | None] = [None]
_SEED = np.random.SeedSequence(0)  # (a bit generator seeded from it is quick to make)


def _stroke_ahead(params: ScratchGenerator.Params, rng: np.random.Generator) -> _Shape:
    """The stroke :func:`_stroke_drawn` will give for ``rng``, leaving ``rng`` as it is."""
    before = rng.bit_generator.state
    bits = type(rng.bit_generator)(_SEED)
    bits.state = before
    shape = _stroke_shape(params, np.random.Generator(bits))
    _AHEAD[0] = (params, before, shape, bits.state)
    return shape


def _stroke_drawn(params: ScratchGenerator.Params, rng: np.random.Generator) -> _Shape:
    """:func:`_stroke_shape`, or what :func:`_stroke_ahead` drew from this very rng state."""
    ahead = _AHEAD[0]
    if ahead is not None and ahead[0] == params:
        if rng.bit_generator.state == ahead[1]:
            rng.bit_generator.state = ahead[3]
            return ahead[2]
    return _stroke_shape(params, rng)


def _stroke(
    params: ScratchGenerator.Params, rng: np.random.Generator, shape: tuple[int, int], margin: float
) -> _Path:
    """The stroke, centred in the region and kept ``margin`` from its edge.

    A cubic Bezier whose control points are evenly spaced along the stroke's direction
    (so that the position along that direction is linear in the curve parameter: the
    samples, about every half pixel, are evenly spaced along it) plus a gentle random
    sideways wander, a Catmull-Rom spline through random knots (smooth, so the tangent
    never jumps).
    """
    h, w = shape
    L = params.length
    n, both, z, rot, (x0, x1, y0, y1) = _stroke_drawn(params, rng)
    side = both[:n]
    scale = min(
        1.0,
        max(w - 2 * margin, 1.0) / max(x1 - x0, 1e-6),
        max(h - 2 * margin, 1.0) / max(y1 - y0, 1e-6),
    )
    z = z.copy()  # (it may be extent()'s)
    z *= scale
    z += complex((w - 1) / 2, (h - 1) / 2) - complex((x0 + x1) / 2, (y0 + y1) / 2) * scale
    # per sample: the step along the direction, the sideways step and its change
    du = L * scale / (n - 1)
    dv = both[n : 2 * n] * scale
    norm = np.sqrt(dv * dv + du * du)
    tan_c = np.empty(n, np.complex128)  # the conjugate unit tangent, tx - i ty
    tan_c.real = du
    tan_c.imag = -dv
    tan_c /= norm
    tan_c *= rot.conjugate()
    # arc length: the chords between samples
    arc = np.zeros(n)
    dside = side[1:] - side[:-1]
    np.cumsum(np.sqrt((dside * dside) * (scale * scale) + du * du), out=arc[1:])
    table = np.empty((n, 4), np.complex64)
    table[:, 0] = z
    table[:, 1] = tan_c
    table[:, 2].real = 1.0 / norm
    table[:, 2].imag = both[2 * n :] * (du * scale) / (norm * norm * norm)
    table[:, 3] = arc
    return _Path(table=table, length=max(float(arc[-1]), 1.0), across=rot.conjugate() / du)


class _Band(NamedTuple):
    """Pixels within reach of the stroke and where they are relative to it (1-D arrays).

    ``idx``: flat pixel index; ``tan``: conjugate unit tangent of the stroke at the
    nearest sample; ``dist``: signed distance from the stroke, positive towards the
    normal ``(-ty, tx)``; ``arc``: arc length of the nearest stroke point, clipped to the
    stroke's ends.
    """

    idx: np.ndarray
    tan: np.ndarray
    dist: np.ndarray
    arc: np.ndarray


_SLACK = 2.0  # px added to a strip's width for the pixel grid


def _band(path: _Path, shape: tuple[int, int], tab: _Grooves) -> _Band:
    """The geometry of :func:`defectsynth.textures.path_field` for the pixels the grooves
    can label, without a distance transform of the whole region: each groove's strip (as
    far out as it labels pixels) is drawn into a mask, and each pixel's nearest stroke
    sample comes from its position along the stroke's direction (which the samples are
    evenly spaced in) refined by two Newton steps along the tangent; the signed distance
    and arc length are then exact to the tangent line (within 0.01 px up to 10 px from
    the stroke, 0.2 px at 20 px)."""
    h, w = shape
    table = path.table
    top = table.shape[0] - 1
    # every 16th sample (8 px apart: the chords stray < 0.3 px from a stroke in the
    # usual range), and the unit normals there, i x the tangent
    coarse = table[::16, 0].astype(np.complex128)
    normal = np.conj(table[::16, 1]) * 1j
    # where each micro-scratch starts and ends among them
    found = np.searchsorted(table[::16, 3].real, np.concatenate([tab.lo[1:], tab.hi[1:]]))
    ends = found.reshape(2, -1).tolist()
    # the chords between them sag up to 8 px^2 x the curvature off the stroke (more on
    # the outside of a bend)
    kmax = float(np.abs(table[:, 2].imag).max())
    mask = np.zeros((h, w), np.uint8)
    fixed = np.empty((coarse.size, 2), np.int32)
    for i, (off, reach) in enumerate(zip(tab.offset.tolist(), tab.label)):
        j0, j1 = 0, coarse.size
        if i:  # a micro-scratch covers part of the stroke, off to one side
            j0, j1 = max(ends[0][i - 1] - 1, 0), min(ends[1][i - 1] + 1, coarse.size)
        strip = coarse[j0:j1] + off * normal[j0:j1]
        m = strip.size
        fixed[:m, 0] = np.rint(strip.real * 16.0)
        fixed[:m, 1] = np.rint(strip.imag * 16.0)
        sag = min(8.0 * kmax * (1.0 + abs(off) * kmax) ** 2, 2.0)
        thick = int(math.ceil(2.0 * reach + _SLACK + 2.0 * sag))
        cv2.polylines(mask, [fixed[:m]], False, 1, thick, cv2.LINE_8, 4)
    idx = np.flatnonzero(mask.view(bool))
    iy = idx // w
    p = np.empty(idx.size, np.complex64)
    p.real = idx - iy * w
    p.imag = iy
    # the sample index from the position along the stroke's direction, then two steps
    # along the tangent; the second allows for the curvature: a pixel on the outside of a
    # bend is farther along than its offset along the tangent says, one on the inside less
    fk = ((p - table[0, 0]) * np.complex64(path.across)).real
    for step in range(3):
        np.maximum(fk, F32(0.0), out=fk)
        np.minimum(fk, F32(top), out=fk)
        k = (fk + F32(0.5)).astype(np.intp)
        g = np.take(table, k, axis=0)
        q = (p - g[:, 0]) * g[:, 1]
        if step == 2:
            break
        fk = q.real * g[:, 2].real
        if step == 1:
            fk /= np.maximum(F32(1.0) - g[:, 2].imag * q.imag, F32(0.3))
        fk += k
    s = g[:, 3].real + q.real
    np.maximum(s, F32(0.0), out=s)
    arc = np.minimum(s, F32(table[top, 3].real), out=s)
    return _Band(idx=idx, tan=g[:, 1], dist=q.imag, arc=arc)


@hookimpl
def register_generators(register: Callable[[type[DefectGenerator]], None]) -> None:
    register(ScratchGenerator)
