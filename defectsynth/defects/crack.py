"""Crack: a branching fissure through the surface."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import cv2
import numpy as np

from defectsynth.api import DefectGenerator, Layer, Region, hookimpl, param
from defectsynth.textures import Shading, grain_orientation, luminance, shade_slopes

F32 = np.float32

_Segment = tuple[float, float, float, float, float, float]  # x0, y0, x1, y1, width, depth


class CrackGenerator(DefectGenerator):
    """A thin, branching fissure whose opening and depth vary along its length.

    The fissure grows from an origin in two opposite directions as a random walk whose
    heading meanders on two scales: a slow drift (the crack's course bends) and small
    kinks where it meets grain boundaries (``jaggedness``), never a regular zig-zag. On a
    surface with a grain (brushing, rolling lines) its course turns towards the grain and
    each step is pulled along it (``follow_grain``, in proportion to how pronounced the
    grain is): cracks open most easily along the weakened, elongated structure. The
    opening is widest near the origin, swells and narrows along the way and tapers to
    nothing at the tips; side branches leave at 25-60 degrees and taper faster. The gap
    darkens the surface by how much light it traps: a deep, wide stretch is dark, a
    shallow or hairline one only dims the pixel it crosses (``darkness`` is the darkest
    it gets). Rasterised at 4x and box-filtered: crisp, anti-aliased edges. The rims get a
    hint of relief from the scene light (the lip facing the light a little brighter, the
    other in shade).
    """

    name = "crack"
    version = "2"

    @dataclass(frozen=True)
    class Params:
        length: float = param(
            90.0, lo=10.0, hi=1000.0, vary=(40.0, 170.0), size=True, doc="tip-to-tip length in px"
        )
        angle: float = param(
            0.0, lo=0.0, hi=180.0, vary=(0.0, 180.0), doc="overall direction, degrees"
        )
        width: float = param(
            1.1, lo=0.3, hi=8.0, vary=(0.55, 1.6), size=True, doc="opening at the origin in px"
        )
        jaggedness: float = param(
            0.5, lo=0.0, hi=1.0, vary=(0.3, 0.85), doc="how sharply the path kinks"
        )
        branches: int = param(2, lo=0, hi=16, vary=(0, 5), doc="number of side branches")
        darkness: float = param(
            0.55, lo=0.1, hi=1.0, vary=(0.35, 0.75), doc="how dark the deepest gap is (1 = black)"
        )
        relief: float = param(
            0.5, lo=0.0, hi=1.0, vary=(0.2, 0.8), doc="light and shade on the rims"
        )
        variation: float = param(
            0.5, lo=0.0, hi=1.0, vary=(0.3, 0.8),
            doc="how much opening and darkness change along the crack",
        )
        follow_grain: float = param(
            0.7, lo=0.0, hi=1.0, vary=(0.4, 1.0),
            doc="how strongly the crack turns to the surface's grain",
        )

    def plan(self, params: Params, rng: np.random.Generator) -> _Ahead:
        """The fissure grown on a surface without grain, looking ahead on a copy of
        ``rng`` (render() grows it from ``rng`` itself, towards the region's grain)."""
        return _grow_ahead(params, rng)

    def extent(
        self, params: Params, rng: np.random.Generator, plan: _Ahead | None = None
    ) -> tuple[int, int]:
        # the fissure's own box plus _margin(): render() grows the same fissure from the
        # same rng (the plan looks ahead on a copy of it), so it fits unscaled; with
        # another rng it is shrunk to fit if need be. When it may turn towards a grain
        # that only render() sees, the box is the square it fits in at any turn.
        segs = (plan if plan is not None else _grow_ahead(params, rng)).segments
        m = 2.0 * _margin(params) + 1.0
        if params.follow_grain > 0:
            xs, ys = segs[:, 0:4:2], segs[:, 1:4:2]
            cx, cy = (xs.max() + xs.min()) / 2, (ys.max() + ys.min()) / 2
            side = 2.0 * float(np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2).max()) + m
            return int(math.ceil(side)), int(math.ceil(side))
        span_x = float(segs[:, 0:4:2].max() - segs[:, 0:4:2].min())
        span_y = float(segs[:, 1:4:2].max() - segs[:, 1:4:2].min())
        return int(math.ceil(span_y + m)), int(math.ceil(span_x + m))

    def render(
        self,
        region: Region,
        params: Params,
        rng: np.random.Generator,
        plan: _Ahead | None = None,
    ) -> Layer:
        h, w = region.shape
        pixels = region.pixels
        out = np.array(pixels, dtype=F32, copy=True)
        cov = np.zeros((h, w), F32)
        grain = _grain(region, params)
        segs, (left, top, right, bottom) = _place(_grown(params, rng, grain, plan), params, (h, w))
        # everything happens in the fissure's bounding box, padded by its half-width, the
        # supersampled pixel and the reach of the blurs and slopes below (7 px) so that
        # nothing differs from working on the whole region
        pad = int(math.ceil(float(segs[:, 4].max()) / 2.0)) + 10
        x0 = max(0, int(math.floor(left)) - pad)
        x1 = min(w, int(math.ceil(right)) + pad + 1)
        y0 = max(0, int(math.floor(top)) - pad)
        y1 = min(h, int(math.ceil(bottom)) + pad + 1)
        hc, wc = y1 - y0, x1 - x0
        if hc <= 0 or wc <= 0:
            return Layer(out, cov)
        f = 4 if max(h, w) <= 600 else 2
        canvas = np.zeros((hc * f, wc * f), np.uint8)
        deep = np.zeros((hc * f, wc * f), np.uint8)
        # ends on the supersampled grid and stroke widths, rounded as a whole; one
        # polylines call per width draws exactly what a cv2.line per segment would
        shift = np.array([x0, y0, x0, y0], np.float64)
        ends = np.rint((segs[:, :4] - shift + 0.5) * f - 0.5).astype(np.int32).reshape(-1, 2, 2)
        # a stroke narrower than a subpixel is drawn one subpixel wide with its darkness
        # scaled by the part of it that is open
        wsub = segs[:, 4] * f
        thick = np.maximum(np.rint(wsub), 1).astype(np.int32)
        frac = np.minimum(wsub / thick, 1.0)
        for th in sorted(set(thick.tolist())):
            cv2.polylines(canvas, ends[thick == th], False, 255, th, cv2.LINE_8)
        # the gap's depth (how much light it traps) along the crack, per segment
        level = np.clip(np.rint(255.0 * segs[:, 5] * frac), 1, 255).astype(np.int32)
        for (a, b), th, lv in zip(ends.tolist(), thick.tolist(), level.tolist()):
            cv2.line(deep, tuple(a), tuple(b), lv, th, cv2.LINE_8)
        opening8 = cv2.resize(canvas, (wc, hc), interpolation=cv2.INTER_AREA)
        opening = np.multiply(opening8, F32(1.0 / 255.0), dtype=F32)
        depth8 = cv2.resize(deep, (wc, hc), interpolation=cv2.INTER_AREA)
        near = cv2.GaussianBlur(opening, (0, 0), 0.6)
        cov_c = np.multiply(near, F32(4.0), out=near)
        np.minimum(cov_c, F32(1.0), out=cov_c)  # the blur of a 0..1 image is >= 0
        cov_c[cov_c < 0.02] = 0.0
        # the label follows the crack as one line where it narrows below a pixel's
        # reach (an inspector traces a crack whole, to its tips, not as a row of
        # fragments): its path, one pixel wide
        path = np.zeros((hc, wc), np.uint8)
        ends1 = np.rint(segs[:, :4] - shift).astype(np.int32).reshape(-1, 2, 2)
        cv2.polylines(path, list(ends1), False, 1, 1, cv2.LINE_8)
        np.maximum(cov_c, path * F32(0.55), out=cov_c)
        cov[y0:y1, x0:x1] = cov_c
        idx = np.flatnonzero(cov_c)
        if idx.size == 0:
            return Layer(out, cov)
        # relief of the rims: the gap as a shallow trough in a height map, whose slopes
        # (central differences, as normals_from_height) matter only where labelled
        trough = cv2.GaussianBlur(opening, (0, 0), 0.9)
        k = 0.125 * -1.6 * params.relief
        gx = cv2.Sobel(trough, cv2.CV_32F, 1, 0, ksize=3, scale=k).ravel()[idx]
        gy = cv2.Sobel(trough, cv2.CV_32F, 0, 1, ksize=3, scale=k).ravel()[idx]
        # diffuse only (no specular lobe), so the grain's anisotropy plays no part
        ratio, _ = shade_slopes(gx, gy, region.light.vector, _RIM_SHADING)
        # the gap's darkening, 1 - darkness * (open part x depth) ** 0.75, per 8-bit level
        ratio *= (1.0 - params.darkness * _LUT).astype(F32)[depth8.ravel()[idx]]
        # crop index -> region index
        at = idx + (y0 * w + x0) + (idx // wc) * (w - wc)
        flat = out.reshape(h * w, -1)
        # the factor is >= 0 (darkness <= 1), so only the top needs clipping
        flat[at] = np.minimum(flat[at] * ratio[:, None], F32(1.0))
        return Layer(out, cov)


_RIM_SHADING = Shading(ambient=0.5, specular=0.0, roughness=0.3)
_LUT = np.power(np.arange(256, dtype=np.float64) / 255.0, 0.75)  # (8-bit open part x depth) ** 0.75

# (heading of the grain in radians, how strongly it pulls: 0..1), or None
_Grain = tuple[float, float] | None


def _grain(region: Region, params: CrackGenerator.Params) -> _Grain:
    """The surface's grain as the crack feels it: its direction and a pull that grows
    with the grain's coherence (brushed metal ~0.3-0.9, isotropic surfaces ~0)."""
    if params.follow_grain <= 0:
        return None
    angle, coherence = grain_orientation(luminance(region.pixels))
    pull = params.follow_grain * min(max((coherence - 0.12) * 2.5, 0.0), 1.0)
    return (angle, pull) if pull > 0.02 else None


class _Noise1D:
    """A smooth random function of arc length: the sum of a few sinusoids of random
    phase with wavelengths of ``scale`` px and shorter, of unit deviation."""

    def __init__(self, u: list[float], scale: float) -> None:
        self.terms = [
            (2 * math.pi / (scale / k), 2 * math.pi * u[i], 1.0 / k)
            for i, k in enumerate((1.0, 2.1, 4.3))
        ]
        self.norm = math.sqrt(2.0 / sum(a * a for _, _, a in self.terms))

    def __call__(self, s: float) -> float:
        return self.norm * sum(a * math.sin(f * s + p) for f, p, a in self.terms)


def _walk(
    draws: tuple[list[float], list[float]],
    start: tuple[float, float],
    heading: float,
    length: float,
    width0: float,
    params: CrackGenerator.Params,
    taper: float,
    shape: tuple[_Noise1D, _Noise1D, float],
    grain: _Grain,
) -> list[_Segment]:
    """A random walk of short straight steps with a meandering heading; the opening
    follows ``width0``, swells and narrows along the way (``shape``: noise of the width
    and of the depth, and the arc length where this walk starts on them) and tapers to
    nothing at the tip (and a little at the start, for a branch).

    ``draws``: step lengths (uniform 2..5.5 px) and standard normal turns, consumed from
    the end (so that the walks of one fissure share one draw of each).
    """
    steps, turns = draws
    segs: list[_Segment] = []
    append, pop = segs.append, steps.pop
    turn = turns.pop
    x, y = start
    travelled = 0.0
    jag = params.jaggedness
    var = params.variation
    wnoise, dnoise, s0 = shape
    # the two noises written out (the same sums, in the same order, as _Noise1D's)
    (wf1, wp1, wa1), (wf2, wp2, wa2), (wf3, wp3, wa3) = wnoise.terms
    (df1, dp1, da1), (df2, dp2, da2), (df3, dp3, da3) = dnoise.terms
    wnorm, dnorm = wnoise.norm, dnoise.norm
    wvar, dvar = 0.45 * var, 0.5 * var
    # kinks: small, independent turns at grain boundaries; drift: the course bends slowly
    kink_sd = 0.06 + 0.5 * jag * jag
    drift_sd = 0.05 + 0.06 * jag
    drift = 0.0
    inv = 1.0 / max(length, 1e-6)
    opens = taper > 0.7
    opening = max(3.0 * width0, 1.0)
    cos, sin, hypot = math.cos, math.sin, math.hypot
    pulled = grain is not None
    if grain is not None:
        ga, pull = grain
        gdx, gdy = cos(ga), sin(ga)
    while travelled < length:
        step = pop()
        drift = 0.9 * drift + drift_sd * turn()
        h = heading + drift + kink_sd * turn()
        dx, dy = cos(h), sin(h)
        if pulled:
            # pulled along the grain, whichever way of it is closer to the step
            sg = 1.0 if dx * gdx + dy * gdy >= 0 else -1.0
            dx += pull * sg * gdx
            dy += pull * sg * gdy
            n = hypot(dx, dy) or 1.0
            dx, dy = dx / n, dy / n
        nx, ny = x + step * dx, y + step * dy
        travelled += step
        u = min(1.0, travelled * inv)
        # closes towards the tip; a branch also opens over its first steps
        env = (1.0 - u) ** taper
        if opens:
            env *= min(1.0, 0.3 + travelled / opening)
        a = s0 + travelled
        wn = wnorm * (0 + wa1 * sin(wf1 * a + wp1) + wa2 * sin(wf2 * a + wp2)
                      + wa3 * sin(wf3 * a + wp3))
        dn = dnorm * (0 + da1 * sin(df1 * a + dp1) + da2 * sin(df2 * a + dp2)
                      + da3 * sin(df3 * a + dp3))
        wd = width0 * env * max(0.15, 1.0 + wvar * wn)
        depth = min(1.0, max(0.1, (1.0 + dvar * dn) * (0.35 + 0.65 * env**0.5)))
        append((x, y, nx, ny, wd, depth))
        x, y = nx, ny
    return segs


def _trace(
    params: CrackGenerator.Params,
    draws: tuple[list[float], list[float]],
    taken: int,
    segs: list[_Segment],
    start: tuple[float, float],
    heading: float,
    grain: _Grain,
) -> list[_Segment]:
    """The walk of :func:`_walk` that took the draws from ``taken`` on (``draws``: the
    step lengths and turns in the order the walks took them) and made ``segs``, started
    at ``start`` towards ``heading`` and pulled by ``grain``: the same steps, turns,
    opening and depth (none depends on the course), the course computed anew as _walk
    computes it."""
    steps, turns = draws
    jag = params.jaggedness
    kink_sd = 0.06 + 0.5 * jag * jag
    drift_sd = 0.05 + 0.06 * jag
    drift = 0.0
    out: list[_Segment] = []
    append = out.append
    x, y = start
    cos, sin, hypot = math.cos, math.sin, math.hypot
    pulled = grain is not None
    if grain is not None:
        ga, pull = grain
        gdx, gdy = cos(ga), sin(ga)
    for i, seg in enumerate(segs, taken):
        step = steps[i]
        drift = 0.9 * drift + drift_sd * turns[2 * i]
        h = heading + drift + kink_sd * turns[2 * i + 1]
        dx, dy = cos(h), sin(h)
        if pulled:
            sg = 1.0 if dx * gdx + dy * gdy >= 0 else -1.0
            dx += pull * sg * gdx
            dy += pull * sg * gdy
            n = hypot(dx, dy) or 1.0
            dx, dy = dx / n, dy / n
        nx, ny = x + step * dx, y + step * dy
        append((x, y, nx, ny, seg[4], seg[5]))
        x, y = nx, ny
    return out


def _margin(params: CrackGenerator.Params) -> float:
    """Room kept between the fissure's ends and the region's edge: its half-width, the
    supersampled pixel and the coverage's blur (~2 px) are well inside it."""
    return 4.0 + 2 * params.width


class _Ahead(NamedTuple):
    """The fissure grown ahead on a copy of the rng, on a surface without grain: what
    extent() measures, and what render() takes when its rng is in the same state: as it
    is where it feels no grain, or turned to a grain by :func:`_retrace` (with another
    rng state render() grows its own)."""

    before: Mapping[str, Any]  # the rng's state before the growth
    segments: np.ndarray
    after: Mapping[str, Any]  # and after it
    skeleton: _Skeleton  # its draws and walks, for _retrace


def _grow_ahead(params: CrackGenerator.Params, rng: np.random.Generator) -> _Ahead:
    """The fissure :func:`_grown` will give for ``rng`` on a surface without grain,
    leaving ``rng`` as it is."""
    # grown from rng itself, then rng put back (a fresh bit generator to grow it from
    # would be seeded from the OS's entropy first, only to be overwritten)
    bits = rng.bit_generator
    before = bits.state
    skeleton = _Skeleton(([], []), [])
    segs = _grow(params, rng, None, skeleton)
    after = bits.state
    bits.state = before
    return _Ahead(before, segs, after, skeleton)


def _grown(
    params: CrackGenerator.Params,
    rng: np.random.Generator,
    grain: _Grain,
    ahead: _Ahead | None,
) -> np.ndarray:
    """:func:`_grow`, or what :func:`_grow_ahead` grew from this very rng state (turned
    to the grain if there is one)."""
    if ahead is not None and rng.bit_generator.state == ahead.before:
        rng.bit_generator.state = ahead.after
        if grain is None:
            return ahead.segments.copy()
        return _retrace(params, ahead.skeleton, grain)
    return _grow(params, rng, grain)


# a walk of the fissure as _grow took it: how it starts ("trunk": from the origin at the
# course plus the angle; "limb": from the end of trunk segment i, turned by the angle from
# it; "twig": from the end of segment i of the last limb, turned back by the angle) and
# its segments
_Walked = tuple[str, int, float, list[_Segment]]


class _Skeleton(NamedTuple):
    """A fissure's draws (step lengths and turns, in the order its walks took them) and
    walks: all :func:`_retrace` needs to turn it to a grain."""

    draws: tuple[list[float], list[float]]
    walks: list[_Walked]


def _course(params: CrackGenerator.Params, grain: _Grain) -> float:
    """The fissure's overall direction, radians: its angle turned towards the nearer
    direction of the grain."""
    a = math.radians(params.angle)
    if grain is not None:
        ga, pull = grain
        off = (ga - a + math.pi / 2) % math.pi - math.pi / 2
        a += off * pull
    return a


def _retrace(params: CrackGenerator.Params, skeleton: _Skeleton, grain: _Grain) -> np.ndarray:
    """What :func:`_grow` gives with ``grain`` for the draws it took as ``skeleton``
    (grown without grain): the course of each walk computed anew, the rest kept."""
    a = _course(params, grain)
    segs: list[_Segment] = []
    trunk: list[_Segment] = []
    limb: list[_Segment] = []
    taken = 0
    for kind, i, angle, walked in skeleton.walks:
        if kind == "trunk":
            start, heading = (0.0, 0.0), a + angle
        elif kind == "limb":
            sx, sy, ex, ey = trunk[i][:4]
            start, heading = (ex, ey), math.atan2(ey - sy, ex - sx) + angle
        else:
            tx, ty, ux, uy = limb[i][:4]
            start, heading = (ux, uy), math.atan2(uy - ty, ux - tx) - angle
        walk = _trace(params, skeleton.draws, taken, walked, start, heading, grain)
        taken += len(walked)
        if kind == "trunk":
            trunk += walk
        elif kind == "limb":
            limb = walk
        segs += walk
    return np.array(segs, dtype=np.float64).reshape(-1, 6)


def _grow(
    params: CrackGenerator.Params,
    rng: np.random.Generator,
    grain: _Grain,
    skeleton: _Skeleton | None = None,
) -> np.ndarray:
    """The fissure's segments as an (n, 6) array of x0, y0, x1, y1, width, depth (0..1),
    unscaled, about the origin. ``skeleton``, if given, receives its walks (see
    :func:`_retrace`)."""
    # the course turns towards the nearer direction of the grain
    a = _course(params, grain)
    half = params.length / 2.0
    nb = params.branches
    # every draw at once: the walks' steps (at least 2 px each, so the trunk and the
    # longest possible branches and twigs (0.4 and 0.16 of the length) need at most
    # this many), two turns per step, 12 uniforms per branch and 6 phases
    n = int(params.length * (1.0 + 0.56 * nb) / 2.0) + 4 * (nb + 2)
    steps = rng.uniform(2.0, 5.5, n).tolist()
    turns = rng.standard_normal(2 * n).tolist()
    u = rng.random(1 + 12 * nb + 6).tolist()
    draws = (steps, turns)
    if skeleton is not None:  # (the walks take them from the end)
        skeleton.draws[0].extend(reversed(steps))
        skeleton.draws[1].extend(reversed(turns))
    scale = max(12.0, params.length * 0.45)
    shape = (_Noise1D(u[-6:-3], scale), _Noise1D(u[-3:], scale * 0.8))
    split = 0.35 + 0.3 * u[0]
    main = _walk(draws, (0.0, 0.0), a, 2 * half * split, params.width, params, 0.6,
                 (*shape, 0.0), grain)
    other = _walk(draws, (0.0, 0.0), a + math.pi, 2 * half * (1 - split), params.width,
                  params, 0.6, (*shape, 500.0), grain)
    if skeleton is not None:
        skeleton.walks.extend((("trunk", 0, 0.0, main), ("trunk", 0, math.pi, other)))
    segs = main + other
    trunk = main + other
    for b in range(nb):
        ub = u[1 + 12 * b : 13 + 12 * b]
        # branch from a point on the trunk away from the tips: the first of a few
        # candidates that is still at least 0.3 of the full opening (else the last)
        for v in ub[:6]:
            at = int(v * len(trunk))
            sx, sy, ex, ey, wd, _ = trunk[at]
            if wd >= 0.3 * params.width:
                break
        base = math.atan2(ey - sy, ex - sx)
        turn = math.radians(25.0 + 35.0 * ub[6]) * (1 if ub[7] < 0.5 else -1)
        blen = params.length * (0.12 + 0.28 * ub[8])
        limb = _walk(draws, (ex, ey), base + turn, blen, wd * 0.75, params, 0.9,
                     (*shape, 1000.0 + 200.0 * b), grain)
        segs += limb
        if skeleton is not None:
            skeleton.walks.append(("limb", at, turn, limb))
        if limb and ub[9] < 0.4:
            at = int(ub[10] * len(limb))
            tx, ty, ux, uy, tw, _ = limb[at]
            back = turn * (0.6 + 0.6 * ub[11])
            twig = _walk(draws, (ux, uy), math.atan2(uy - ty, ux - tx) - back, blen * 0.4,
                         tw * 0.7, params, 1.0, (*shape, 3000.0 + 200.0 * b), grain)
            segs += twig
            if skeleton is not None:
                skeleton.walks.append(("twig", at, back, twig))
    return np.array(segs, dtype=np.float64).reshape(-1, 6)


def _place(
    arr: np.ndarray, params: CrackGenerator.Params, shape: tuple[int, int]
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The segments centred in the region, shrunk to keep :func:`_margin` from its edge
    if need be, and their box (x0, y0, x1, y1) there."""
    h, w = shape
    lo = arr[:, :4].min(axis=0).tolist()
    hi = arr[:, :4].max(axis=0).tolist()
    lx, ly = min(lo[0], lo[2]), min(lo[1], lo[3])
    hx, hy = max(hi[0], hi[2]), max(hi[1], hi[3])
    margin = _margin(params)
    scale = min(1.0, max(w - 2 * margin, 1.0) / max(hx - lx, 1e-6),
                max(h - 2 * margin, 1.0) / max(hy - ly, 1e-6))
    cx, cy = (lx + hx) / 2, (ly + hy) / 2
    ox, oy = (w - 1) / 2, (h - 1) / 2
    arr[:, 0:4:2] = (arr[:, 0:4:2] - cx) * scale + ox
    arr[:, 1:4:2] = (arr[:, 1:4:2] - cy) * scale + oy
    # the box moved the same way: rounding is monotonic, so these are the new extremes
    box = ((lx - cx) * scale + ox, (ly - cy) * scale + oy,
           (hx - cx) * scale + ox, (hy - cy) * scale + oy)
    return arr, box


@hookimpl
def register_generators(register: Callable[[type[DefectGenerator]], None]) -> None:
    register(CrackGenerator)
