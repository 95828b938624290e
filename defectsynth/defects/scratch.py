"""Scratch: a groove ploughed into the surface, shaded by the scene light."""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import cv2
import numpy as np

from defectsynth.api import DefectGenerator, Layer, Light, Region, hookimpl, param
from defectsynth.textures import (
    Shading,
    luminance,
    specular_colour,
    surface_colour,
    surface_shading,
    texture_contrast,
    value_noise,
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
            120.0, lo=8.0, hi=1200.0, vary=(50.0, 220.0), size=True,
            doc="length of the stroke in px"
        )
        angle: float = param(
            0.0, lo=0.0, hi=180.0, vary=(0.0, 180.0), doc="direction of the stroke, degrees"
        )
        width: float = param(
            1.8, lo=0.5, hi=16.0, vary=(1.1, 2.8), size=True, doc="groove width in px where widest"
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
            8.0, lo=1.0, hi=60.0, vary=(3.0, 14.0), size=True,
            doc="how far micro-scratches stray, px"
        )
        gloss: float = param(
            0.5, lo=0.0, hi=1.0, vary=(0.25, 0.8), doc="strength of the walls' glints"
        )
        exposure: float = param(
            0.2, lo=0.0, hi=1.0, vary=(0.0, 0.7), doc="lighter substrate shown at the floor"
        )
        burnish: float = param(
            0.0, lo=0.0, hi=1.0, vary=(0.0, 0.8),
            doc="how polished and bright the groove is: the tool's fresh, smooth metal sends "
            "diffuse light back (bright lines on matte scale, oxide, cast or rolled steel)"
        )
        glow: float = param(
            0.15, lo=0.0, hi=1.0, vary=(0.0, 0.35),
            doc="light scattered around the groove (a bright scratch on bare metal blooms)"
        )
        glow_radius: float = param(
            2.5, lo=0.5, hi=40.0, vary=(1.5, 4.0), size=True, doc="how far the glow reaches, px"
        )
        uneven: float = param(
            0.25, lo=0.0, hi=1.0, vary=(0.0, 0.5),
            doc="how much the groove's brightness comes and goes along it"
        )

    def plan(self, params: Params, rng: np.random.Generator) -> _Shape:
        """The stroke's course (its random draws and what they make), which extent()
        needs for the room and render() draws along."""
        return _stroke_shape(params, _stroke_draws(params, rng))

    def extent(
        self, params: Params, rng: np.random.Generator, plan: _Shape | None = None
    ) -> tuple[int, int]:
        # the stroke's own box plus what the grooves can label beside it: render() draws
        # the same stroke (the plan, or without one the same draws from the same rng:
        # extent() then looks ahead and leaves rng as it was), so nothing is clipped; in
        # another region the stroke is shrunk to fit if need be. At least _MIN_SIDE px
        # either way, so that the surface's statistics (grain, colour, texture
        # contrast) see some of the surface around a stroke
        stroke = plan if plan is not None else _stroke_ahead(params, rng)
        x0, x1, y0, y1 = stroke.box
        span_x, span_y = x1 - x0, y1 - y0
        margin = _margin(params)
        w = max(span_x + 2.0 * margin + 1.0, _MIN_SIDE)
        h = max(span_y + 2.0 * margin + 1.0, _MIN_SIDE)
        return int(math.ceil(h)), int(math.ceil(w))

    def render(
        self,
        region: Region,
        params: Params,
        rng: np.random.Generator,
        plan: _Shape | None = None,
    ) -> Layer:
    # (over 80 lines on purpose: one numeric pass whose arrays feed each other; split, it
    # would hand a dozen arrays from function to function)
        h, w = region.shape
        pixels = region.pixels
        stroke = plan if plan is not None else self.plan(params, rng)
        path = _stroke(params, stroke, (h, w), _margin(params))
        tab = _grooves(params, rng, path.length)
        band = _band(path, (h, w), tab)
        hits = _hits(band, tab, params.burr)
        if hits is None:
            return Layer(np.array(pixels, dtype=F32, copy=True), np.zeros((h, w), F32))
        pix, cov, tan, at, d0, hw, wall = hits
        # the region's statistics (one luminance image for the grain and the contrast)
        lum = luminance(pixels)[:, :, None]
        if params.gloss > 0:
            shading = surface_shading(
                lum, ambient=0.5, specular=0.45 * params.gloss, roughness=0.28
            )
        else:  # (no glints: the grain does not matter)
            shading = Shading(ambient=0.5, specular=0.0, roughness=0.28)
        # on strong relief (knurls, weave) the tool shaves the tips flat: fresh material
        # shows in the groove whatever the coating, so the floor exposure rises with the
        # texture's contrast (up to 0.7)
        exposure = params.exposure
        if exposure < 0.7:
            steep = (texture_contrast(lum) - 0.04) * 7
            exposure = max(exposure, min(max(steep, 0.0), 0.7))
        # per labelled pixel, from the stroke's direction there (tan = tx - i ty, the
        # normal (-ty, tx) = i conj(tan)): the light across the stroke and the glint's
        # terms (see _shade_across), in one product; the footprint across the stroke
        light = _light_vector(region.light)
        lobe = _lobe_terms(light, shading)
        turns = tan * lobe.turns
        lperp = turns[0].real
        foot = np.abs(tan.view(F32))
        foot2 = foot[0::2] + foot[1::2]  # 2 x the footprint's half-width
        # cast shadow: does the ray to the light from `sink` (of the depth) below the surface
        # clear the near edge, raised burr / 2 by the burr? Per unit depth it rises
        # rise / wall over the run to the edge
        toward = np.sign(lperp)
        toward *= -1.0 / math.pi
        rise = np.maximum(np.abs(lperp), 1e-3)
        if isinstance(wall, float):
            np.divide(max(light[2], 0.05) / (0.7 * wall), rise, out=rise)
        else:
            np.divide(max(light[2], 0.05) / 0.7, rise, out=rise)
        if at is not None:  # pairs -> their pixels' values
            foot2, toward, rise = foot2[at], toward[at], rise[at]
        if not isinstance(wall, float):
            rise /= wall
        slope, occ_p, flr = _section(d0, hw, wall, foot2, toward, rise, params.burr, exposure > 0)
        # sum the grooves' slopes, multiply their occlusions, keep the deepest floor
        nc = pix.size
        if at is None:
            gx, occ, fl = slope, occ_p, flr
        else:
            where = (at + np.arange(0, 4 * nc, nc)[:, None]).ravel()
            gx = np.bincount(where, slope.ravel(), 4 * nc).astype(F32).reshape(4, nc)
            occ = np.ones((4, nc), F32)
            np.multiply.at(occ.reshape(-1), where, occ_p.ravel())
            fl = None
            if flr is not None:
                fl = np.zeros((4, nc), F32)
                np.maximum.at(fl.reshape(-1), where, flr.ravel())
        # the groove tilts the normal across the stroke only
        ratio, spec = _shade_across(gx, occ, lperp, turns, light, shading, lobe)
        # (the region's own pixels, read at the drawn ones: pix holds each pixel once)
        flat = np.asarray(pixels, dtype=F32).reshape(h * w, -1)
        lit = flat.take(pix, axis=0)
        surf = surface_colour(pixels)
        spec_col = specular_colour(pixels, colour=surf)
        gain = np.minimum(spec, 0.0)
        gain *= 1.6
        gain += ratio
        lit *= gain[:, None]
        np.maximum(spec, 0.0, out=spec)
        lit += spec[:, None] * spec_col
        if fl is not None:
            sv = surf.tolist()
            lum_s = sv[0] if len(sv) == 1 else sv[0] * 0.114 + sv[1] * 0.587 + sv[2] * 0.299
            sub = min(0.95, max(lum_s + 0.3, 0.65))
            e = np.add.reduce(fl, axis=0)
            e *= 0.25 * exposure
            ratio *= sub
            mix = np.subtract(ratio[:, None], lit)
            mix *= e[:, None]
            lit += mix
        if params.burnish > 0:
            # the tool polishes what it ploughs: on a matte surface (oxide, scale, cast
            # skin) the groove's smooth metal sends the diffuse light it gets back towards
            # the camera, so it reads as a bright line whatever the light's direction
            sv = surf.tolist()
            lum_s = sv[0] if len(sv) == 1 else sv[0] * 0.114 + sv[1] * 0.587 + sv[2] * 0.299
            # (brightest along the groove's middle, and the surface's own speckle kept:
            # the polish lifts each pixel by the same factor)
            gain_b = np.float32(min(1.0, 0.45 * lum_s + 0.6) / max(lum_s, 0.05))
            orig = flat.take(pix, axis=0)
            pol = cov * np.float32(params.burnish)
            if at is None:
                mid = 1.0 - np.abs(d0) / (hw * (1.0 + params.burr) + 0.6)
                pol *= np.sqrt(np.clip(mid, 0.0, 1.0))
            lit += (orig * gain_b - lit) * pol[:, None]
        np.maximum(lit, 0.0, out=lit)
        np.minimum(lit, 1.0, out=lit)
        cov = cov.astype(F32, copy=False)
        if params.glow > 0 or params.uneven > 0:
            return _glow(pixels, lit, cov, params, rng, pix)
        out = np.array(pixels, dtype=F32, copy=True)
        # whole pixels as single items: a 1-D scatter instead of a row scatter
        item = _pixel_item(lit.shape[1])
        out.reshape(h * w, -1).view(item).put(pix, lit.view(item))
        return Layer(out, _scattered(cov, pix, (h, w)))


def _glow(
    pixels: np.ndarray,
    lit: np.ndarray,
    cov: np.ndarray,
    params: ScratchGenerator.Params,
    rng: np.random.Generator,
    pix: np.ndarray,
) -> Layer:
    """The groove's change, made uneven along it and bloomed around it (``lit``, the
    groove's pixels, and ``cov``, their coverage, at the flat indices ``pix``).

    ``uneven``: the change is scaled by a smooth random field of feature size a few
    widths (the tool chatters, the polish varies): 1 + 0.7 uneven x unit noise clipped to
    +-1, so that at ``uneven`` 1 the line runs from 0.3x to 1.7x, bright beads and dim
    stretches, and never breaks (its label stays one piece).
    ``glow``: a bright groove on bare metal scatters light into the surface around it, and
    the camera's optics spread it further: the change, blurred (a Gaussian of sigma
    ``glow_radius``), is added, its peak ``glow`` x the groove's own. The halo is labelled
    where it is at least half its peak and changes the surface by 0.03 or more (its
    coverage is its share of the larger of the two), so the label still follows what
    changed visibly.
    """
    h, w = pixels.shape[:2]
    field = None
    if params.uneven > 0:  # drawn over the whole region (the same draws, the same field)
        cell = max(4.0 * params.width, 6.0)
        field = value_noise((h, w), cell, rng)
    # the layer is the region (clipped) but where the new coverage is > 0; only the halo
    # is made densely, in the box of the drawn pixels widened by the blur's reach (4
    # sigma: beyond it the halo is exactly 0, the border constant); the rest happens at
    # the pixels that change
    res = np.clip(pixels, 0.0, 1.0)
    c = 1 if pixels.ndim == 2 else pixels.shape[2]
    res_flat = res.reshape(h * w, c)
    base_flat = pixels.reshape(h * w, c)
    box = _flat_box(pix, w)
    if box is None:
        return Layer(res, np.zeros((h, w), F32))
    # the change at the drawn pixels, by the coverage (and the unevenness)
    base_p = base_flat.take(pix, axis=0)
    delta = lit - base_p
    delta *= cov[:, None]
    if field is not None:
        fp = field.reshape(-1).take(pix)
        np.clip(fp, -1.0, 1.0, out=fp)
        fp *= F32(0.7 * params.uneven)
        fp += F32(1.0)
        delta *= fp[:, None]
    at, total, cov_at = pix, delta, cov
    new_cov = None
    if params.glow > 0:
        reach = int(math.ceil(4.0 * params.glow_radius)) + 2
        y0, y1 = max(box[0] - reach, 0), min(box[1] + reach, h)
        x0, x1 = max(box[2] - reach, 0), min(box[3] + reach, w)
        bw = x1 - x0
        rows = pix // w
        local = (rows - y0) * bw + (pix - rows * w - x0)
        dense = np.zeros((y1 - y0, bw, c), F32)
        dense.reshape(-1, c)[local] = delta
        halo = cv2.GaussianBlur(dense, (0, 0), params.glow_radius,
                                borderType=cv2.BORDER_CONSTANT)
        if halo.ndim == 2:
            halo = halo[:, :, None]
        peak = _abs_max(delta)
        mag = _abs_channel_max(halo)
        hp = float(mag.max())
        if hp > 1e-6 and peak > 1e-6:
            k = F32(params.glow * peak / hp)
            mag *= k
            mag[mag < F32(0.02 * params.glow * peak)] = 0.0
            # labelled (coverage >= 0.5) where the halo is at least half its peak and
            # plainly visible (0.03, ~8 grey levels): a faint halo is a soft edge
            cov_b = _scattered(cov, local, (y1 - y0, bw))
            np.maximum(cov_b, mag * F32(1.0 / max(params.glow * peak, _GLOW_SEEN)),
                       out=cov_b)
            np.minimum(cov_b, 1.0, out=cov_b)
            new_cov = np.zeros((h, w), F32)
            new_cov[y0:y1, x0:x1] = cov_b
            # the pixels that change: the groove's and the labelled or visible halo's
            ib = np.flatnonzero(cov_b)
            hal: np.ndarray = halo.reshape(-1, c).take(ib, axis=0)
            hal *= k
            hal *= (mag.reshape(-1).take(ib) > 0)[:, None]
            total = dense.reshape(-1, c).take(ib, axis=0)
            total += hal
            by = ib // bw
            at = (by + y0) * w + (ib - by * bw + x0)
            cov_at = cov_b.reshape(-1).take(ib)
            base_p = base_flat.take(at, axis=0)
    # the layer's pixels give the change at the new coverage: base + total / coverage
    np.add(base_p, total, out=total)
    np.clip(total, 0.0, 1.0, out=total)
    total -= base_p
    safe = np.where(cov_at > 0, cov_at, 1.0)[:, None]
    total /= safe
    total += base_p
    np.clip(total, 0.0, 1.0, out=total)
    res_flat[at] = total
    if new_cov is None:
        new_cov = _scattered(cov, pix, (h, w))
    return Layer(res, new_cov)


def _scattered(values: np.ndarray, at: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A float32 array of ``shape``, 0 but ``values`` at the flat indices ``at``."""
    a = np.zeros(shape, F32)
    a.reshape(-1)[at] = values
    return a


def _flat_box(pix: np.ndarray, w: int) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of the pixels at flat indices ``pix`` of a ``w`` wide image
    (end exclusive); None if there are none."""
    if pix.size == 0:
        return None
    rows = pix // w
    cols = pix - rows * w
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


def _abs_max(a: np.ndarray) -> float:
    """max(|a|) of a float array."""
    return max(float(a.max()), -float(a.min())) if a.size else 0.0


def _abs_channel_max(a: np.ndarray) -> np.ndarray:
    """max over the last axis of |a| (h, w, c) -> (h, w), channel by channel: numpy's
    reduction along a short last axis is ~10x slower."""
    m = np.abs(a[:, :, 0])
    for c in range(1, a.shape[2]):
        np.maximum(m, np.abs(a[:, :, c]), out=m)
    return m


_GLOW_SEEN = 0.06  # 2 x the change from which a halo is labelled (see _glow)
_OFFS = np.array([-0.375, -0.125, 0.125, 0.375], F32)[:, None]
_PI = F32(math.pi)


@functools.lru_cache(maxsize=16)
def _light_vector(light: Light) -> tuple[float, float, float]:
    """``light.vector`` as floats (one light per image, several scratches)."""
    lx, ly, lz = light.vector.tolist()
    return lx, ly, lz


@functools.lru_cache(maxsize=8)
def _pixel_item(channels: int) -> np.dtype[Any]:
    """A float32 pixel of ``channels`` channels as one opaque item."""
    return np.dtype((np.void, 4 * channels))


def _s01(x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at 0 to 1 at 1 (``smoothstep(0, 1, x)``); ``x`` is clipped in
    place and the step returned in a new array."""
    t = np.maximum(x, 0.0, out=x)
    np.minimum(t, 1.0, out=t)
    s = t * -2.0
    s += 3.0
    s *= t
    s *= t
    return s


class _Lobe(NamedTuple):
    """The specular lobe's terms for a light and a surface (see :func:`_shade_across`)."""

    # (2, 1) or (3, 1) complex64: tan x these gives the light across the stroke (real
    # part), E1 (real part) and, when the lobe is anisotropic, the normal's sine to the
    # grain (imaginary part)
    turns: np.ndarray
    e2: float  # E2 where the lobe is round, else its value along the grain
    e2_across: float  # E2's change with the sine^2
    gain: float  # strength x the flat surface's lobe value / 4


def _lobe_terms(light: tuple[float, float, float], shading: Shading) -> _Lobe:
    """The lobe's slope-space offset from the half vector along / ra and across / rc is
    a0 + gx b and c0 + gx d, where b = ia Re(m) and d = -ic Im(m) with m = tan (sa - i ca)
    (the normal's cosine and sine to the grain), so its exponent is
    E0 + gx (E1 + gx E2): E1 = -(a0 b + c0 d), E2 = -(b^2 + d^2) / 2 (|m| = 1)."""
    lx, ly, lz = light
    lz = max(lz, 0.02)
    # the half vector (lx, ly, lz + 1)'s slopes
    hx, hy = lx / (lz + 1.0), ly / (lz + 1.0)
    ca, sa = math.cos(shading.grain_angle), math.sin(shading.grain_angle)
    r = max(shading.roughness, 1e-3)
    ia = 1.0 / r
    ic = 1.0 / (r * (1.0 + 3.0 * shading.anisotropy))
    a0 = (hx * ca + hy * sa) * ia
    c0 = (-hx * sa + hy * ca) * ic
    flat_lobe = math.exp(-0.5 * (a0 * a0 + c0 * c0))
    turn = complex(sa, -ca)
    # (the light across the stroke: Re(tan (ly - i lx)) = pnx lx + pny ly)
    turns = [complex(ly, -lx), turn * complex(-a0 * ia, -c0 * ic)]
    if ic != ia:
        turns.append(turn)
    return _Lobe(
        turns=np.array(turns, np.complex64)[:, None],
        e2=-0.5 * ia * ia,
        e2_across=0.5 * (ia * ia - ic * ic),
        gain=0.25 * shading.specular * flat_lobe,
    )


def _shade_across(
    gx: np.ndarray,
    occ: np.ndarray,
    lperp: np.ndarray,
    turns: np.ndarray,
    light: tuple[float, float, float],
    shading: Shading,
    lobe: _Lobe,
) -> tuple[np.ndarray, np.ndarray]:
    """The mean over the sub-samples (rows) of :func:`defectsynth.textures.shade` of
    ``normals_from_slopes(gx * pnx, gx * pny)`` with ``occlusion=occ``: the surface
    tilted by slopes ``gx`` (sub-samples, pixels) across the stroke only, whose unit
    normal is ``(pnx, pny)`` per pixel (``lperp``: the light's component along it;
    ``turns``: the stroke's direction times ``lobe.turns``). The same model, written for
    a tilt in one direction: with ``s = 1 / sqrt(1 + gx^2)`` the normal is
    ``s (-gx pnx, -gx pny, 1)``, so ``n . l = s (lz - gx lperp)`` and the lobe's
    slope-space offset from the half vector is linear in ``gx`` (see :func:`_lobe_terms`)."""
    lz = max(light[2], 0.02)
    amb = shading.ambient
    flat = amb + (1.0 - amb) * lz
    # (the mean's 1/4 folded into the constants)
    scale = 0.25 * (1.0 - amb) / flat
    ndl = gx * (lperp * scale)
    np.subtract(lz * scale, ndl, out=ndl)
    root = gx * gx
    root += 1.0
    ndl /= np.sqrt(root, out=root)
    np.maximum(ndl, 0.0, out=ndl)
    ndl *= occ
    ndl += 0.25 * amb / flat
    # cavities also see less of the sky
    sky = occ * 0.45
    sky += 0.55
    ndl *= sky
    ratio = np.add.reduce(ndl, axis=0)
    if shading.specular <= 0:
        return ratio, np.zeros_like(ratio)
    e2: np.ndarray | float
    if turns.shape[0] == 2:
        e2 = lobe.e2
    else:
        im = turns[2].imag
        e2 = im * im
        e2 *= lobe.e2_across
        e2 += lobe.e2
    glint = gx * e2
    glint += turns[1].real
    glint *= gx
    np.exp(glint, out=glint)
    glint *= occ
    spec = np.add.reduce(glint, axis=0)
    spec -= 4.0
    spec *= lobe.gain
    return ratio, spec


_MIN_SIDE = 24.0


def _margin(params: ScratchGenerator.Params) -> float:
    """How far from the stroke a groove can label a pixel (+ 1 px): the main groove out
    to hw (1 + burr) + 0.6, a micro-scratch from its offset (up to width + spread) and
    its drift (up to 1.25 px) out to 0.55 hw (1 + burr) + 0.6, hw = width / 2."""
    hw = 0.5 * params.width
    side = hw * (1.0 + params.burr) + 0.6
    if params.micro_scratches:
        side = max(side, 2.0 * hw + params.spread + 1.25 + 0.55 * hw * (1.0 + params.burr) + 0.6)
    if params.glow > 0:  # the halo, out to where it falls under 2 % of its peak
        side += 2.8 * params.glow_radius
    return side + 1.0


class _Grooves(NamedTuple):
    """The main groove (first) and the micro-scratches, side by side, for evaluating all
    (groove, pixel) pairs at once."""

    offset: list[float]  # sideways offset (px) from the stroke, per groove
    label: list[float]  # farthest distance (px) from ``offset`` it labels a pixel at
    lo: list[float]  # arc length where it starts to matter
    hi: list[float]  # and stops
    # the main groove alone (no micro-scratches): 1/taper_in, stop, 1/taper_out, wall
    # slope; else None
    main: tuple[float, float, float, float] | None
    # the grooves' window about the pixels' (arc length + i distance): its middle, (g,)
    # complex64, and (2, g, 1) float32 half-length and reach (the farthest distance from
    # ``offset`` a groove changes anything at); with the main groove alone, None
    centre: np.ndarray | None
    bounds: np.ndarray | None
    # (7, g) float32: start less the window's middle, 1/taper_in, stop less the middle,
    # 1/taper_out, wall slope, the middle / 2 and where its samples start in ``table``
    cols: np.ndarray | None
    # the grooves' half-width (+ i sideways offset from their own offset) every 2 px of
    # arc length, each groove's m samples after the last's, with the step to the next
    # sample: (g m, 2) complex64, or (m, 2) float32 half-widths for the main groove alone
    table: np.ndarray


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


def _waves(
    rng: np.random.Generator,
    rows: int,
    length: float,
    scale: float | np.ndarray,
    shift: float | np.ndarray,
    low: float | np.ndarray,
) -> np.ndarray:
    """``rows`` random modulations every 2 px of arc length: slow swells and a little fine
    jitter through a soft step (-1..1), x ``scale`` + ``shift``, at least ``low`` (each a
    float or per row, a column)."""
    n = int(length / 2.0) + 3
    nk = max(3, n // 12 + 3)
    knots = rng.standard_normal((rows, nk))
    # 0.8 x the knots interpolated, plus fine jitter (normal(0, 0.105), the same draws)
    swell = rng.standard_normal((rows, n))
    swell *= 0.105
    swell += knots @ _wave_basis(n, nk)
    np.tanh(swell, out=swell)
    swell *= scale
    swell += shift
    return np.maximum(swell, low, out=swell)


def _lerp_table(values: np.ndarray, dtype: type) -> np.ndarray:
    """(len, 2): ``values`` and the step from each to the next (0 after the last), for
    linear interpolation between them by :func:`_lerp`."""
    table: np.ndarray = np.empty((values.size, 2), dtype)
    table[:, 0] = values
    np.subtract(values[1:], values[:-1], out=table[:-1, 1])
    table[-1, 1] = 0.0
    return table


def _lerp(table: np.ndarray, x: np.ndarray, first: np.ndarray | None = None) -> np.ndarray:
    """``np.interp(x + first, arange(len), table[:, 0])`` for 0 <= x + first <= len - 1
    (float32 x; ``first``: whole numbers, as float32, or None for 0)."""
    whole = np.floor(x)
    frac = x - whole
    if first is not None:
        whole += first
    at = table.take(whole.astype(np.intp), axis=0)
    value = at[:, 1] * frac
    value += at[:, 0]
    return value


def _grooves(params: ScratchGenerator.Params, rng: np.random.Generator, length: float) -> _Grooves:
    """The main groove along the whole stroke and ``micro_scratches`` fine parallel ones
    over part of it, a little off to either side, each narrower and shallower."""
    # (over 80 lines on purpose: one numeric pass whose arrays feed each other; split, it
    # would hand a dozen arrays from function to function)
    k = params.micro_scratches
    g = k + 1
    u = rng.random((g, 9)).tolist()
    hw = params.width / 2.0
    # a groove labels pixels out to hw (1 + burr) + 0.6 and its section (sampled up to
    # 0.53 px either side of a pixel) spans 2 hw: nothing changes farther out
    spread = max(1.0 + params.burr, 2.0)
    # (and labels pixels out to hw (1 + burr) + 0.6 from its drifting middle)
    sides = 1.0 + params.burr
    # the main groove: the whole stroke, tapering in over 3-20 % and out over 15-45 %
    inv_tin = 1.0 / (length * (0.03 + 0.17 * u[0][0]))
    inv_tout = 1.0 / (length * (0.15 + 0.3 * u[0][1]))
    # a width wave is hw (1 - a/2 - a/2 swell), at least hw / 10, down by up to the width
    # variation a from hw
    var = 0.5 * params.width_variation
    if not k:
        wave = _waves(rng, 1, length, -var * hw, (1.0 - var) * hw, 0.1 * hw)[0]
        top = float(np.maximum.reduce(wave))
        return _Grooves(
            offset=[0.0],
            label=[top * sides + 0.6],
            lo=[-math.inf],
            hi=[math.inf],
            main=(inv_tin, length, inv_tout, params.depth),
            centre=None,
            bounds=None,
            cols=None,
            table=_lerp_table(wave, F32),
        )
    m = int(length / 2.0) + 3  # (the waves' samples)
    offset, lo, hi, half = [0.0], [-math.inf], [math.inf], [hw]
    # window middles (+ i the offset) and half-lengths; the main groove's is everywhere
    centre, span = [0j], [math.inf]
    # per groove: start, 1/taper_in, stop, 1/taper_out, wall slope (start and stop less
    # the window's middle), the window's middle / 2, and its first sample
    cols = [(0.0, inv_tin, length, inv_tout, params.depth, 0.0, 0.0)]
    amp = []
    lo_off = params.width * 0.9 + 1.0
    far = hw * 2 + params.spread - lo_off
    depth = params.depth
    for j, v in enumerate(u[1:], 1):
        off = (1.0 if v[0] < 0.5 else -1.0) * (lo_off + far * v[1])
        a, b = min(v[2], v[3]) * length, max(v[2], v[3]) * length
        if b - a < 0.2 * length:
            b = min(length, a + 0.2 * length)
        d = max(b - a, 1e-6)
        c = 0.5 * (a + b)
        offset.append(off)
        lo.append(a - 1.0)
        hi.append(b + 1.0)
        centre.append(complex(c, off))
        span.append(0.5 * (b - a) + 1.0)
        # a micro-scratch wanders 0.5-2.5 px about its offset
        amp.append(0.5 + 2.0 * v[8])
        half.append(hw * (0.25 + 0.3 * v[6]))
        cols.append(
            (
                a - c,
                1.0 / (d * (0.05 + 0.25 * v[4])),
                b - c,
                1.0 / (d * (0.1 + 0.3 * v[5])),
                depth * (0.5 + 0.5 * v[7]),
                0.5 * c,
                m * j,
            )
        )
    # the grooves' half-widths, then the micro-scratches' sideways drifts about their
    # offsets, amp (0.5 - wave), the wave 0.5 - swell / 2 and at least 0.1
    coef = np.array(
        [
            [-var * h for h in half] + [-0.5 * a for a in amp],
            [(1.0 - var) * h for h in half] + [0.0] * k,
            [0.1 * h for h in half] + [-0.4 * a for a in amp],
        ]
    )[:, :, None]
    waves = _waves(rng, g + k, length, coef[0], coef[1], coef[2])
    top = np.maximum.reduce(waves, axis=1).tolist()
    drop = np.minimum.reduce(waves[g:], axis=1).tolist()
    # how far each drift strays from its offset
    wander = [0.0] + [max(t, -b) for t, b in zip(top[g:], drop)]
    reach = [t * spread + wd + 0.7 for t, wd in zip(top, wander)]
    label = [t * sides + wd + 0.6 for t, wd in zip(top, wander)]
    # half-widths (+ i the drift) along each groove, and the steps to the next sample
    # (none after a groove's last)
    table = np.zeros((g, m, 2), np.complex64)
    table[:, :, 0].real = waves[:g]
    table[1:, :, 0].imag = waves[g:]
    np.subtract(table[:, 1:, 0], table[:, :-1, 0], out=table[:, :-1, 1])
    return _Grooves(
        offset=offset,
        label=label,
        lo=lo,
        hi=hi,
        main=None,
        centre=np.array(centre, np.complex64),
        bounds=np.array([span, reach], F32)[:, :, None],
        cols=np.array(cols, F32).T,
        table=table.reshape(g * m, 2),
    )


class _Hits(NamedTuple):
    """The labelled pixels, and the (groove, pixel) pairs whose section reaches a
    sub-sample of one."""

    pix: np.ndarray  # the pixels' flat indices
    cov: np.ndarray  # their coverage
    tan: np.ndarray  # the stroke's conjugate unit tangent at each
    # per pair, which labelled pixel it is at (None: the pairs are the labelled pixels,
    # in order, as they are unless grooves overlap)
    at: np.ndarray | None
    d0: np.ndarray  # per pair, the offset from its groove's middle
    hw: np.ndarray  # the groove's half-width there
    wall: np.ndarray | float  # and its wall slope (one float for the main groove alone)


# the least half-width (less 0.1) a groove labels to: pixels whose centres lie within
# 0.51 px of a line form one 8-connected run whatever its direction, so a groove thinner
# than a pixel, or tapering at its ends, is labeled as one piece (it covers half of the
# pixel nearest its middle), not as a row of fragments
_REACH = 0.41


def _hits(band: _Band, tab: _Grooves, burr: float) -> _Hits | None:
    """:class:`_Hits` of the grooves in the band; None if nothing is labelled."""
    # (over 80 lines on purpose: one numeric pass whose arrays feed each other; split, it
    # would hand a dozen arrays from function to function)
    n = band.idx.size
    if n == 0:
        return None
    pos = band.pos
    arc, dist = pos.real, pos.imag
    sides = 1.0 + burr
    if tab.main is not None:
        # the main groove alone: one pair per pixel; it reaches as far as it labels
        # (the arc length is clipped to the stroke, inside both ramps)
        inv_tin, stop, inv_tout, wall = tab.main
        ramp = arc * inv_tin
        out = np.subtract(stop, arc)
        out *= inv_tout
        np.minimum(ramp, out, out=ramp)
        np.minimum(ramp, 1.0, out=ramp)
        # tapered ends: sqrt(smoothstep(ramp)) = ramp sqrt(3 - 2 ramp) on 0..1
        hw = ramp * -2.0
        hw += 3.0
        np.sqrt(hw, out=hw)
        hw *= ramp
        hw *= _lerp(tab.table, arc * 0.5)
        x = hw * sides
        np.maximum(x, _REACH, out=x)
        x -= np.abs(dist)
        x += 0.6
        lab = ((x > 0) & (hw > 0.05)).nonzero()[0]
        if lab.size == 0:
            return None
        return _Hits(band.idx[lab], _s01(x[lab]), band.tan[lab], None, dist[lab], hw[lab], wall)
    assert tab.centre is not None and tab.bounds is not None and tab.cols is not None
    # every (groove, pixel) pair within the groove's reach and its window along the
    # stroke, grooves in order; the pair's (arc length + i distance) less the window's
    # middle
    rel = pos[None, :] - tab.centre[:, None]
    near = np.abs(rel.imag) < tab.bounds[1]
    near &= np.abs(rel.real) < tab.bounds[0]
    pair = near.ravel().nonzero()[0]
    rel = rel.ravel()[pair]
    a_p, d_p = rel.real, rel.imag
    start, inv_tin, stop, inv_tout, wall, half_mid, first = tab.cols.repeat(
        np.add.reduce(near, axis=1), axis=1
    )
    # the grooves' half-width and sideways drift along them, sampled every 2 px
    x = a_p * 0.5
    x += half_mid
    prof = _lerp(tab.table, x, first)
    # tapered ends: the two ramps never overlap (taper_in + taper_out < the length),
    # so sqrt(smoothstep(ramp in) * smoothstep(ramp out)) is that of the nearer one
    ramp = a_p - start
    ramp *= inv_tin
    out = stop - a_p
    out *= inv_tout
    np.minimum(ramp, out, out=ramp)
    np.maximum(ramp, 0.0, out=ramp)
    np.minimum(ramp, 1.0, out=ramp)
    hw = ramp * -2.0
    hw += 3.0
    np.sqrt(hw, out=hw)
    hw *= ramp
    hw *= prof.real
    d0 = d_p - prof.imag
    # (beyond the stroke's ends the arc length is clipped there, where the taper makes
    # every groove 0 wide: nothing is drawn past the ends)
    ad0 = np.abs(d0)
    x = hw * sides
    np.maximum(x, _REACH, out=x)
    x -= ad0
    x += 0.6
    lab = ((x > 0) & (hw > 0.05)).nonzero()[0]
    if lab.size == 0:
        return None
    # only labelled pixels are drawn (the host keeps the region's own pixels where the
    # coverage is 0), and only pairs whose section reaches a sub-sample there matter
    pl = pair[lab] % n
    at_lab = np.zeros(n, bool)
    at_lab[pl] = True
    nc = int(np.count_nonzero(at_lab))
    if nc == lab.size:
        # no two labelled pairs at a pixel; if no other pair there reaches a sub-sample
        # either, the labelled pairs are the pixels
        alone = np.count_nonzero(near & at_lab) == nc
        if not alone:
            pi = pair % n
            reaches = hw * 2.0
            reaches += 0.6
            alone = np.count_nonzero(at_lab[pi] & (ad0 < reaches)) == nc
        if alone:
            return _Hits(band.idx[pl], _s01(x[lab]), band.tan[pl], None, d0[lab], hw[lab],
                         wall[lab])
    pi = pair % n
    cov_b = np.zeros(n, F32)
    np.maximum.at(cov_b, pl, _s01(x[lab]))
    cidx = np.flatnonzero(at_lab)
    remap = np.full(n, -1, np.intp)
    remap[cidx] = np.arange(nc)
    pj = remap[pi]
    keep = np.flatnonzero((pj >= 0) & (ad0 < hw * 2.0 + 0.6))
    return _Hits(band.idx[cidx], cov_b[cidx], band.tan[cidx], pj[keep], d0[keep], hw[keep],
                 wall[keep])


def _section(
    d0: np.ndarray,
    hw: np.ndarray,
    wall: np.ndarray | float,
    foot2: np.ndarray,
    toward: np.ndarray,
    rise: np.ndarray,
    burr: float,
    floor: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """At the 4 sub-samples across the footprint of every (groove, pixel) pair (rows):
    the slope across the groove, the occlusion (cast shadow and the sky a cavity sees)
    and, if ``floor``, how far inside the floor it is (1 - u^2 in the groove, else 0).

    The groove is a raised cosine of half-width ``hw`` (smooth at the floor and at the
    edges, steepest half-way), then a burr ridge ``burr`` x as high, sin^2 over the next
    half-width; ``d0`` is the pixel's offset from its middle, ``foot2`` twice the
    footprint's half-width across it, ``toward`` -1/pi x the sign of the light across it
    and ``rise`` lz / |lperp| / 0.7 / the wall slope (all per pair).
    """
    # v = pi u, u the offset in half-widths
    inv_hw = np.maximum(hw, 1e-3)
    np.divide(_PI, inv_hw, out=inv_hw)
    d = _OFFS * foot2
    d += d0
    v = d * inv_hw
    # inside the groove proper (as 0 / 1)
    np.abs(d, out=d)
    inside = np.less(d, hw, out=d)
    # sin(pi u) carries the side's sign; beyond 2 half-widths both terms vanish
    t = np.maximum(v, -2.0 * _PI)
    np.minimum(t, 2.0 * _PI, out=t)
    c = np.cos(t)
    sn = np.sin(t, out=t)
    # slope: inside pi/2 sin(pi u), on the burr 2 pi burr cos(pi u) sin(pi u), x the wall
    # slope (less where the groove is thinner than 1e-3 px)
    kc = c * (2.0 * burr)
    slope = np.subtract(0.5, kc)
    slope *= inside
    slope += kc
    slope *= sn
    wpi = hw * inv_hw
    wpi *= wall
    slope *= wpi
    # cast shadow: clear = max(1 - u toward, 0) rise / wall - sink, sink = (1 + cos) / 2
    # of the depth; the shadow is smoothstep(clear / 0.7 + 0.5 - burr / 1.4). It only
    # matters inside the groove, where |u| < 1: there 1 - u toward > 0
    run = v * (toward * rise)
    run += rise + (0.5 - burr / 1.4 - 0.5 / 0.7)
    run -= c * (0.5 / 0.7)
    shadow = _s01(run)
    # ...and a cavity sees less of the sky the deeper it is: x (1 - 0.3 sink)
    sky = c * -0.15
    sky += 0.85
    shadow *= sky
    # occlusion 1 outside the groove
    shadow -= 1.0
    shadow *= inside
    shadow += 1.0
    flr = None
    if floor:
        flr = v * v
        flr *= -1.0 / (math.pi * math.pi)
        flr += 1.0
        flr *= inside
    return slope, shadow, flr


class _Path(NamedTuple):
    """The stroke sampled about every half pixel along its direction, in region pixels."""

    # (n, 4) complex64 per sample: x + iy; the conjugate unit tangent tx - i ty;
    # 1 / (arc length per sample index) + i curvature (1 / radius, positive turning
    # towards the normal (-ty, tx)); arc length from the start + i (the index + 0.5)
    table: np.ndarray
    length: float
    # 1 / (the samples' spacing along the stroke's direction) x that direction's conjugate
    across: complex
    kmax: float  # the largest |curvature|


def _stroke_basis(n: int, nk: int) -> tuple[np.ndarray, np.ndarray]:
    """The stroke's sideways offset at n evenly spaced values of the curve parameter t:
    (2 + nk, n) such that ``[bend r1, bend r2, wobble * knots] @ basis`` gives it for a
    Bezier whose inner control points are ``bend r1`` and ``bend r2`` off the line and a
    Catmull-Rom wander through nk knots (ends extrapolated). Also t - 1/2, as complex
    numbers."""
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
    # (transposed: the product then runs along contiguous rows)
    basis = np.ascontiguousarray(basis.T)
    basis.flags.writeable = False
    tm = (t - 0.5).astype(np.complex128)
    tm.flags.writeable = False
    return basis, tm


_stroke_basis_cached = functools.lru_cache(maxsize=24)(_stroke_basis)


@functools.lru_cache(maxsize=64)
def _half_index(n: int) -> np.ndarray:
    """0.5, 1.5, ..., n - 0.5 (float32)."""
    a = np.arange(n, dtype=F32)
    a += 0.5
    a.flags.writeable = False
    return a


class _Shape(NamedTuple):
    """The stroke about its middle, before it is placed in the region."""

    n: int  # samples
    side: np.ndarray  # (n,) sideways offset
    z: np.ndarray  # (n,) complex128 samples, x + iy
    rot: complex  # the stroke's direction
    box: tuple[float, float, float, float]  # x0, x1, y0, y1 of ``z``


def _stroke_draws(params: ScratchGenerator.Params, rng: np.random.Generator) -> np.ndarray:
    """The stroke's random draws: the bend of its two inner control points and the
    wander's knots (see :func:`_stroke`)."""
    L = params.length
    bend = params.curvature * L
    coef = np.empty(2 + max(4, int(L / 25) + 4))
    # rng.uniform(-bend, bend, 2), the same draws: low + (high - low) x random()
    r1, r2 = rng.random(2).tolist()
    coef[0] = -bend + (bend + bend) * r1
    coef[1] = -bend + (bend + bend) * r2
    rng.standard_normal(out=coef[2:])
    coef[2:] *= params.wobble
    return coef


def _stroke_shape(params: ScratchGenerator.Params, coef: np.ndarray) -> _Shape:
    """What the stroke's draws make of it (see :func:`_stroke`)."""
    L = params.length
    n = 32 * int(math.ceil(2.0 * L / 32.0)) + 1
    # (strokes up to 512 px share cached bases, < 0.2 MB each)
    basis, tm = (_stroke_basis_cached if n <= 1025 else _stroke_basis)(n, coef.size - 2)
    side = np.einsum("ji,j->i", basis, coef)  # (no BLAS threads for a small product)
    a = math.radians(params.angle)
    rot = complex(math.cos(a), math.sin(a))
    z: np.ndarray = tm * L
    z.imag = side
    z *= rot
    lo, hi = np.minimum.reduce, np.maximum.reduce
    box = (float(lo(z.real)), float(hi(z.real)), float(lo(z.imag)), float(hi(z.imag)))
    return _Shape(n, side, z, rot, box)


def _stroke_ahead(params: ScratchGenerator.Params, rng: np.random.Generator) -> _Shape:
    """The stroke ``plan(params, rng)`` will give, leaving ``rng`` as it is (it draws
    from ``rng`` and puts its state back: quicker than drawing from a copy)."""
    bits = rng.bit_generator
    before = bits.state
    try:
        coef = _stroke_draws(params, rng)
    finally:
        bits.state = before
    return _stroke_shape(params, coef)


def _stroke(
    params: ScratchGenerator.Params, stroke: _Shape, shape: tuple[int, int], margin: float
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
    n, side, z, rot, (x0, x1, y0, y1) = stroke
    scale = min(
        1.0,
        max(w - 2 * margin, 1.0) / max(x1 - x0, 1e-6),
        max(h - 2 * margin, 1.0) / max(y1 - y0, 1e-6),
    )
    shift = complex((w - 1) / 2, (h - 1) / 2) - complex((x0 + x1) / 2, (y0 + y1) / 2) * scale
    # per sample: the step along the direction, the sideways step and its change
    du = L * scale / (n - 1)
    dside = np.subtract(side[1:], side[:-1])
    # the sideways offset's first (np.gradient) and second difference
    dv = np.empty(n)
    np.add(dside[1:], dside[:-1], out=dv[1:-1])
    dv[1:-1] *= 0.5
    dv[0], dv[-1] = dside[0], dside[-1]
    dd = np.empty(n)
    np.subtract(dside[1:], dside[:-1], out=dd[1:-1])
    dd[0] = dd[-1] = 0.0
    table = np.empty((n, 4), np.complex64)
    cols = table.view(F32)  # (n, 8): the columns' real and imaginary parts
    if scale != 1.0:  # (z is the plan's: never in place)
        z = np.multiply(z, scale)
        dv *= scale
        dside *= scale
    np.add(z, shift, out=table[:, 0])
    norm = dv * dv
    norm += du * du
    np.sqrt(norm, out=norm)
    # the conjugate unit tangent, (du - i dv) / norm x the direction's conjugate
    rc = rot.conjugate()
    tan_c = dv * (-1j * rc)
    tan_c += du * rc
    np.divide(tan_c, norm, out=table[:, 1])
    np.divide(1.0, norm, out=cols[:, 4])
    curv = dd * (du * scale)
    norm *= norm * norm
    np.divide(curv, norm, out=cols[:, 5])
    # arc length: the chords between samples
    dside *= dside
    dside += du * du
    arc = np.add.accumulate(np.sqrt(dside, out=dside))
    cols[0, 6] = 0.0
    cols[1:, 6] = arc
    cols[:, 7] = _half_index(n)
    kmax = float(np.maximum.reduce(np.abs(cols[:, 5])))
    return _Path(
        table=table,
        length=max(float(arc[-1]), 1.0),
        across=rc / du,
        kmax=kmax,
    )


class _Band(NamedTuple):
    """Pixels within reach of the stroke and where they are relative to it (1-D arrays).

    ``idx``: flat pixel index; ``tan``: conjugate unit tangent of the stroke at the
    nearest sample; ``pos``: arc length of the nearest stroke point, clipped to the
    stroke's ends, + i the signed distance from the stroke, positive towards the normal
    ``(-ty, tx)`` (complex64).
    """

    idx: np.ndarray
    tan: np.ndarray
    pos: np.ndarray


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
    cols = table.view(F32)
    top = table.shape[0] - 1
    # the chords between every 16th sample (8 px apart: they stray < 0.3 px from a
    # stroke in the usual range) sag up to 8 px^2 x the curvature off the stroke (more
    # on the outside of a bend)
    kmax = path.kmax
    mask = np.zeros((h, w), np.uint8)
    m = top // 16 + 1
    fixed = np.empty((m, 2), np.int32)
    np.rint(cols[::16, 0:2] * 16.0, out=fixed, casting="unsafe")
    sag = min(8.0 * kmax, 2.0)
    thick = int(math.ceil(2.0 * tab.label[0] + _SLACK + 2.0 * sag))
    cv2.polylines(mask, [fixed], False, 1, thick, cv2.LINE_8, 4)
    if len(tab.label) > 1:
        # the micro-scratches: each over part of the stroke, off to one side, along the
        # unit normals i x the tangent
        # (x 16: the points' fixed-point fraction)
        coarse = np.multiply(table[::16, 0], 16.0, dtype=np.complex128)
        normal = np.conj(table[::16, 1]) * 16j
        arcs = cols[::16, 6].tolist()
        for off, reach, a0, a1 in zip(tab.offset[1:], tab.label[1:], tab.lo[1:], tab.hi[1:]):
            j0 = max(bisect.bisect_left(arcs, a0) - 1, 0)
            j1 = min(bisect.bisect_left(arcs, a1) + 1, m)
            strip = coarse[j0:j1] + normal[j0:j1] * off
            k = strip.size
            np.rint(strip.view(np.float64).reshape(k, 2), out=fixed[:k], casting="unsafe")
            sag = min(8.0 * kmax * (1.0 + abs(off) * kmax) ** 2, 2.0)
            thick = int(math.ceil(2.0 * reach + _SLACK + 2.0 * sag))
            cv2.polylines(mask, [fixed[:k]], False, 1, thick, cv2.LINE_8, 4)
    idx = mask.view(bool).ravel().nonzero()[0]
    iy, ix = np.divmod(idx, w)
    p = np.empty(idx.size, np.complex64)
    p.real = ix
    p.imag = iy
    # the sample index from the position along the stroke's direction, then two steps
    # along the tangent; the second allows for the curvature: a pixel on the outside of a
    # bend is farther along than its offset along the tangent says, one on the inside
    # less. Kept as index + 0.5 (clipped to 0.5 .. top + 0.5), so that truncating it
    # rounds the index
    lo, hi = 0.5, (top + 0.5)
    across = complex(path.across)
    fk = ((p - np.complex64(complex(table[0, 0]) - 0.5 / across)) * np.complex64(across)).real
    fk = np.maximum(fk, lo)
    for step in range(3):
        np.minimum(fk, hi, out=fk)
        k = fk.astype(np.intp)
        g = table.take(k, axis=0)
        gc = g.view(F32)
        q = p - g[:, 0]
        q *= g[:, 1]
        if step == 2:
            break
        fk = q.real * gc[:, 4]
        if step == 1:
            den = gc[:, 5] * q.imag
            np.subtract(1.0, den, out=den)
            np.maximum(den, 0.3, out=den)
            fk /= den
        fk += gc[:, 7]
        np.maximum(fk, lo, out=fk)
    arc = q.real
    arc += gc[:, 6]
    np.maximum(arc, 0.0, out=arc)
    np.minimum(arc, cols[top, 6], out=arc)
    return _Band(idx=idx, tan=g[:, 1], pos=q)


@hookimpl
def register_generators(register: Callable[[type[DefectGenerator]], None]) -> None:
    register(ScratchGenerator)
