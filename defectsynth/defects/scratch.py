"""Scratch: a groove ploughed into the surface, shaded by the scene light."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from defectsynth import DefectGenerator, Layer, Region, hookimpl, param
from defectsynth.textures import (
    bezier,
    luminance,
    normals_from_slopes,
    path_field,
    shade,
    smoothstep,
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
        reach = _reach(params)
        path = _stroke(params, rng, (h, w), reach + 2.0)
        length = max(float(np.sqrt((np.diff(path, axis=0) ** 2).sum(axis=1)).sum()), 1.0)
        grooves = [_main_groove(params, rng, length)]
        for _ in range(params.micro_scratches):
            grooves.append(_micro_groove(params, rng, length))
        field = path_field(path, (h, w), reach)
        iy, ix = field.iy, field.ix
        dist, arc, end, pnx, pny = field.dist, field.arc, field.end, field.nx, field.ny
        pixels = region.pixels
        out = np.array(pixels, dtype=F32, copy=True)
        cov_full = np.zeros((h, w), F32)
        if iy.size == 0:
            return Layer(out, cov_full)
        # the pixel footprint seen across the stroke: a box of this width
        foot = (np.abs(pnx) + np.abs(pny)) * F32(0.5)
        light = region.light.vector
        lperp = pnx * F32(light[0]) + pny * F32(light[1])
        lz = F32(max(float(light[2]), 0.05))
        shading = surface_shading(pixels, ambient=0.5, specular=0.45 * params.gloss, roughness=0.28)
        n = iy.size
        offs = np.array([-0.375, -0.125, 0.125, 0.375], F32)
        m = offs.size
        gx = np.zeros((m, n), F32)
        occ = np.ones((m, n), F32)
        fl = np.zeros((m, n), F32)
        cov = np.zeros(n, F32)
        act = np.zeros(n, bool)
        toward = np.sign(lperp)
        rise = lz / np.maximum(np.abs(lperp), F32(1e-3))
        for g in grooves:
            # only the pixels this groove can reach
            near = np.abs(dist - F32(g.offset)) < F32(g.reach(params.burr))
            if g.offset != 0.0:
                near &= (arc >= g.start - 1.0) & (arc <= g.stop + 1.0)
            sel = np.flatnonzero(near)
            if sel.size == 0:
                continue
            a_s = arc[sel]
            hw, dep = g.profile(a_s)
            d0 = dist[sel] - g.shift(a_s)
            if g.offset == 0.0:
                e_s = end[sel]
                d0 = np.where(e_s > 0, np.sign(d0) * np.hypot(d0, e_s), d0)
            reach_g = hw * F32(1.0 + params.burr) + F32(0.6)
            c_g = np.where(hw > 0.05, 1.0 - smoothstep(0.0, 1.0, np.abs(d0) - reach_g + 1.0), 0.0)
            cov[sel] = np.maximum(cov[sel], c_g)
            act[sel] = True
            f2 = foot[sel] * F32(2.0)
            tw = toward[sel]
            rs = rise[sel]
            inv_hw = F32(1.0) / np.maximum(hw, F32(1e-3))
            inv_dep = F32(1.0) / np.maximum(dep, F32(1e-3))
            edge = dep * F32(params.burr * 0.5)
            # all sub-pixel samples across the footprint at once: (m, len(sel))
            d_g = d0[None, :] + offs[:, None] * f2[None, :]
            hgt, slope = _section(d_g, hw[None, :], dep[None, :], params.burr)
            gx[:, sel] += slope
            # cast shadow: does the ray to the light clear the groove's edge?
            run = np.maximum(hw[None, :] - d_g * tw[None, :], 0.0)
            clear = hgt + run * rs[None, :] - edge[None, :]
            inside = np.abs(d_g) < hw[None, :]
            shadow = np.where(inside, smoothstep(-0.35, 0.35, clear * inv_dep[None, :]), 1.0)
            depth_frac = np.where(inside, -hgt * inv_dep[None, :], 0.0)
            occ[:, sel] *= shadow * (F32(1.0) - F32(0.3) * np.clip(depth_frac, 0.0, 1.0))
            flr = np.where(inside, 1.0 - (d_g * inv_hw[None, :]) ** 2, 0.0)
            fl[:, sel] = np.maximum(fl[:, sel], flr)
        idx = np.flatnonzero(act)
        floor = fl[:, idx].mean(axis=0)
        g_k = gx[:, idx]
        # the groove tilts the normal across the stroke only
        nx, ny, nz = normals_from_slopes(g_k * pnx[idx][None, :], g_k * pny[idx][None, :])
        r, sp = shade(nx, ny, nz, light, shading, occlusion=occ[:, idx])
        ratio = r.mean(axis=0)
        spec = sp.mean(axis=0)
        iy, ix = iy[idx], ix[idx]
        cov = cov[idx]
        base = pixels[iy, ix]
        col = surface_colour(pixels)
        spec_col = specular_colour(pixels)
        lit = base * ratio[:, None] + np.maximum(spec, 0.0)[:, None] * spec_col
        lit = lit + np.minimum(spec, 0.0)[:, None] * base * F32(1.6)
        # on strong relief (knurls, weave) the tool shaves the tips flat: fresh material
        # shows in the groove whatever the coating, so the floor exposure rises with the
        # texture's contrast
        exposure = max(
            params.exposure, float(np.clip((texture_contrast(pixels) - 0.04) * 7, 0, 0.7))
        )
        if exposure > 0:
            lum = float(luminance(col[None, None, :].reshape(1, 1, -1))[0, 0])
            sub = F32(min(0.95, max(lum + 0.3, 0.65)))
            e = floor * F32(exposure)
            lit = lit + e[:, None] * (sub * ratio[:, None] - lit)
        out[iy, ix] = np.clip(lit, 0.0, 1.0)
        cov_full[iy, ix] = cov
        out = np.where((cov_full > 0)[:, :, None], out, pixels).astype(F32)
        return Layer(out, cov_full)


@dataclass(frozen=True)
class _Groove:
    offset: float
    half_width: float
    depth: float
    start: float
    stop: float
    taper_in: float
    taper_out: float
    wave: np.ndarray  # width modulation sampled every 2 px of arc length
    drift: np.ndarray  # sideways offset (px) sampled every 2 px of arc length

    def profile(self, arc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Half-width and depth (px) at each arc length."""
        t_in = smoothstep(self.start, self.start + self.taper_in, arc)
        t_out = F32(1.0) - smoothstep(self.stop - self.taper_out, self.stop, arc)
        taper = np.sqrt(t_in * t_out)
        idx = arc * F32(0.5)
        wv = np.interp(idx, np.arange(self.wave.size, dtype=F32), self.wave).astype(F32)
        hw = F32(self.half_width) * wv * taper
        return hw, hw * F32(self.depth)

    def reach(self, burr: float) -> float:
        """Farthest distance (px) from the stroke at which this groove changes anything."""
        wander = float(np.abs(self.drift - self.offset).max()) if self.drift.size else 0.0
        return 2.0 * self.half_width * float(self.wave.max()) * (1.0 + burr) + wander + 2.0

    def shift(self, arc: np.ndarray) -> np.ndarray:
        """Sideways offset (px) of this groove from the stroke at each arc length."""
        idx = arc * F32(0.5)
        return np.interp(idx, np.arange(self.drift.size, dtype=F32), self.drift).astype(F32)


def _reach(params: ScratchGenerator.Params) -> float:
    side = params.width * (1.0 + params.width_variation) * (1.0 + params.burr * 1.2) + 3.0
    if params.micro_scratches:
        side += params.spread
    return side


def _wave(rng: np.random.Generator, length: float, amount: float) -> np.ndarray:
    n = int(length / 2.0) + 3
    knots = rng.standard_normal(max(3, n // 12 + 3))
    x = np.linspace(0, len(knots) - 1, n)
    smooth = np.interp(x, np.arange(len(knots)), knots)
    fine = rng.standard_normal(n) * 0.35
    v = 1.0 - amount * 0.5 * (1.0 + np.tanh(0.8 * smooth + 0.3 * fine))
    return np.clip(v, 0.1, None).astype(F32)


def _main_groove(
    params: ScratchGenerator.Params, rng: np.random.Generator, length: float
) -> _Groove:
    return _Groove(
        offset=0.0,
        half_width=params.width / 2.0,
        depth=params.depth,
        start=0.0,
        stop=length,
        taper_in=length * float(rng.uniform(0.03, 0.2)),
        taper_out=length * float(rng.uniform(0.15, 0.45)),
        wave=_wave(rng, length, params.width_variation),
        drift=np.zeros(2, F32),
    )


def _micro_groove(
    params: ScratchGenerator.Params, rng: np.random.Generator, length: float
) -> _Groove:
    side = 1.0 if rng.random() < 0.5 else -1.0
    off = side * float(rng.uniform(params.width * 0.9 + 1.0, params.width + params.spread))
    a, b = sorted(rng.uniform(0.0, length, size=2))
    if b - a < 0.2 * length:
        b = min(length, a + 0.2 * length)
    return _Groove(
        offset=off,
        half_width=params.width / 2.0 * float(rng.uniform(0.25, 0.55)),
        depth=params.depth * float(rng.uniform(0.5, 1.0)),
        start=float(a),
        stop=float(b),
        taper_in=(b - a) * float(rng.uniform(0.05, 0.3)),
        taper_out=(b - a) * float(rng.uniform(0.1, 0.4)),
        wave=_wave(rng, length, params.width_variation),
        drift=(off + (_wave(rng, length, 1.0) - 0.5) * float(rng.uniform(0.5, 2.5))).astype(F32),
    )


def _section(
    d: np.ndarray, hw: np.ndarray, depth: np.ndarray, burr: float
) -> tuple[np.ndarray, np.ndarray]:
    """Height (px, negative = below the surface) and its slope across a groove.

    A rounded V of half-width ``hw`` and ``depth``, then a burr ridge of ``burr * depth``
    out to twice the half-width.
    """
    hw = np.maximum(hw, F32(1e-3))
    u = d / hw
    a = np.abs(u)
    sg = np.sign(u)
    # a raised-cosine groove: smooth at the floor and at the edges, steepest half-way
    inner = a < 1.0
    h_in = -depth * F32(0.5) * (F32(1.0) + np.cos(F32(np.pi) * a))
    s_in = depth * F32(0.5 * np.pi) * np.sin(F32(np.pi) * a) * sg / hw
    ridge = (a >= 1.0) & (a < 2.0)
    t = np.clip(a - 1.0, 0.0, 1.0)
    bh = F32(burr) * depth
    h_r = bh * np.sin(np.pi * t) ** 2
    s_r = bh * F32(np.pi) * np.sin(F32(2.0 * np.pi) * t) * sg / hw
    hgt = np.where(inner, h_in, np.where(ridge, h_r, 0.0)).astype(F32)
    slope = np.where(inner, s_in, np.where(ridge, s_r, 0.0)).astype(F32)
    return hgt, slope


def _stroke(
    params: ScratchGenerator.Params, rng: np.random.Generator, shape: tuple[int, int], margin: float
) -> np.ndarray:
    """Points (x, y) of the stroke, centred in the region and kept ``margin`` from its edge."""
    h, w = shape
    a = math.radians(params.angle)
    d = np.array([math.cos(a), math.sin(a)])
    nrm = np.array([-d[1], d[0]])
    L = params.length
    bend = params.curvature * L
    ctrl = np.stack(
        [
            -0.5 * L * d,
            (-1 / 6) * L * d + nrm * bend * rng.uniform(-1, 1),
            (1 / 6) * L * d + nrm * bend * rng.uniform(-1, 1),
            0.5 * L * d,
        ]
    )
    n = max(8, int(L / 2))
    pts = bezier(ctrl, n)
    # a gentle random sideways wander
    knots = rng.standard_normal(max(4, int(L / 25) + 4))
    wander = np.interp(np.linspace(0, len(knots) - 1, n), np.arange(len(knots)), knots)
    pts = pts + nrm[None, :] * (params.wobble * wander)[:, None]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    span = np.maximum(hi - lo, 1e-6)
    room = np.array([w - 2 * margin, h - 2 * margin], dtype=np.float64)
    scale = float(min(1.0, *(np.maximum(room, 1.0) / span)))
    pts = (pts - (lo + hi) / 2) * scale + np.array([(w - 1) / 2, (h - 1) / 2])
    return pts


@hookimpl
def register_generators(register: Callable[[type[DefectGenerator]], None]) -> None:
    register(ScratchGenerator)
