"""Crack: a branching, jagged fissure through the surface."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from defectsynth import DefectGenerator, Layer, Region, hookimpl, param
from defectsynth.textures import Shading, shade_slopes

F32 = np.float32

_Segment = tuple[float, float, float, float, float]  # x0, y0, x1, y1, width


class CrackGenerator(DefectGenerator):
    """A thin, jagged, branching fissure with sharp edges.

    The fissure grows from an origin in two opposite directions as a persistent random
    walk of short straight steps (the jagged, zig-zag path of a brittle fracture); its
    opening is widest at the origin and closes towards the tips. Side branches leave at
    25-60 degrees and taper faster; some branch again. The opening is rasterised at 4x and
    box-filtered, so edges are crisp but anti-aliased. Inside, the surface is multiplied
    towards black (a deep, shadowed gap); the rims get a hint of relief from the scene
    light (the lip facing the light a little brighter, the other in shade).
    """

    name = "crack"
    version = "1"

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
            0.5, lo=0.0, hi=1.0, vary=(0.3, 0.85), doc="how much each step turns"
        )
        branches: int = param(2, lo=0, hi=16, vary=(0, 5), doc="number of side branches")
        darkness: float = param(
            0.7, lo=0.1, hi=1.0, vary=(0.45, 0.85), doc="how dark the gap is (1 = black)"
        )
        relief: float = param(
            0.5, lo=0.0, hi=1.0, vary=(0.2, 0.8), doc="light and shade on the rims"
        )

    def extent(self, params: Params, rng: np.random.Generator) -> tuple[int, int]:
        # the fissure's own box plus _margin(): render() grows the same fissure from the
        # same rng (extent() looks ahead on a copy of it), so it fits unscaled; with
        # another rng it is shrunk to fit if need be
        segs = _grow_ahead(params, rng)
        span_x = float(segs[:, 0:4:2].max() - segs[:, 0:4:2].min())
        span_y = float(segs[:, 1:4:2].max() - segs[:, 1:4:2].min())
        m = 2.0 * _margin(params) + 1.0
        return int(math.ceil(span_y + m)), int(math.ceil(span_x + m))

    def render(self, region: Region, params: Params, rng: np.random.Generator) -> Layer:
        h, w = region.shape
        pixels = region.pixels
        out = np.array(pixels, dtype=F32, copy=True)
        cov = np.zeros((h, w), F32)
        segs = _place(_grown(params, rng), params, (h, w))
        # everything happens in the fissure's bounding box, padded by its half-width, the
        # supersampled pixel and the reach of the blurs and slopes below (7 px) so that
        # nothing differs from working on the whole region
        pad = int(math.ceil(float(segs[:, 4].max()) / 2.0)) + 10
        x0 = max(0, int(math.floor(float(segs[:, 0:4:2].min()))) - pad)
        x1 = min(w, int(math.ceil(float(segs[:, 0:4:2].max()))) + pad + 1)
        y0 = max(0, int(math.floor(float(segs[:, 1:4:2].min()))) - pad)
        y1 = min(h, int(math.ceil(float(segs[:, 1:4:2].max()))) + pad + 1)
        hc, wc = y1 - y0, x1 - x0
        if hc <= 0 or wc <= 0:
            return Layer(out, cov)
        f = 4 if max(h, w) <= 600 else 2
        canvas = np.zeros((hc * f, wc * f), np.uint8)
        # ends on the supersampled grid and stroke widths, rounded as a whole; one
        # polylines call per width draws exactly what a cv2.line per segment would
        shift = np.array([x0, y0, x0, y0], np.float64)
        ends = np.rint((segs[:, :4] - shift + 0.5) * f - 0.5).astype(np.int32).reshape(-1, 2, 2)
        thick = np.maximum(np.rint(segs[:, 4] * f), 1).astype(np.int32)
        for th in sorted(set(thick.tolist())):
            cv2.polylines(canvas, ends[thick == th], False, 255, th, cv2.LINE_8)
        opening8 = cv2.resize(canvas, (wc, hc), interpolation=cv2.INTER_AREA)
        opening = np.multiply(opening8, F32(1.0 / 255.0), dtype=F32)
        near = cv2.GaussianBlur(opening, (0, 0), 0.6)
        cov_c = np.multiply(near, F32(4.0), out=near)
        np.minimum(cov_c, F32(1.0), out=cov_c)  # the blur of a 0..1 image is >= 0
        cov_c[cov_c < 0.02] = 0.0
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
        # the gap's darkening, 1 - darkness * opening ** 0.75, for every 8-bit opening
        ratio *= (1.0 - params.darkness * _LUT).astype(F32)[opening8.ravel()[idx]]
        # crop index -> region index
        at = idx + (y0 * w + x0) + (idx // wc) * (w - wc)
        flat = out.reshape(h * w, -1)
        # the factor is >= 0 (darkness <= 1), so only the top needs clipping
        flat[at] = np.minimum(flat[at] * ratio[:, None], F32(1.0))
        return Layer(out, cov)


_RIM_SHADING = Shading(ambient=0.5, specular=0.0, roughness=0.3)
_LUT = np.power(np.arange(256, dtype=np.float64) / 255.0, 0.75)  # 8-bit opening ** 0.75


def _walk(
    draws: tuple[list[float], list[float]],
    start: tuple[float, float],
    heading: float,
    length: float,
    width0: float,
    jag: float,
    taper: float,
) -> list[_Segment]:
    """A persistent random walk of short straight steps, width closing towards the tip.

    ``draws``: step lengths (uniform 2..5.5 px) and standard normal turns, consumed from
    the end (so that the walks of one fissure share one draw of each).
    """
    steps, turns = draws
    segs: list[_Segment] = []
    x, y = start
    travelled = 0.0
    h = heading
    sd = 0.15 + 0.6 * jag
    inv = 1.0 / max(length, 1e-6)
    cos, sin = math.cos, math.sin
    while travelled < length:
        step = steps.pop()
        # a fracture turns sharply at grain boundaries but keeps its overall course
        h = heading + 0.55 * (h - heading) + sd * turns.pop()
        nx, ny = x + step * cos(h), y + step * sin(h)
        travelled += step
        wd = width0 * max(0.0, 1.0 - min(1.0, travelled * inv)) ** taper
        segs.append((x, y, nx, ny, wd))
        x, y = nx, ny
    return segs


def _margin(params: CrackGenerator.Params) -> float:
    """Room kept between the fissure's ends and the region's edge: its half-width, the
    supersampled pixel and the coverage's blur (~2 px) are well inside it."""
    return 4.0 + 2 * params.width


# the fissure extent() grew ahead of render(): (params, rng state before, segments, rng
# state after); render() takes it when its params and rng state are those, else grows
# its own (the same one). One entry, replaced whole (safe across threads)
_AHEAD: list[tuple[object, Mapping[str, Any], np.ndarray, Mapping[str, Any]] | None] = [None]


def _grow_ahead(params: CrackGenerator.Params, rng: np.random.Generator) -> np.ndarray:
    """The fissure :func:`_grown` will give for ``rng``, leaving ``rng`` as it is."""
    before = rng.bit_generator.state
    bits = type(rng.bit_generator)()
    bits.state = before
    segs = _grow(params, np.random.Generator(bits))
    _AHEAD[0] = (params, before, segs, bits.state)
    return segs


def _grown(params: CrackGenerator.Params, rng: np.random.Generator) -> np.ndarray:
    """:func:`_grow`, or what :func:`_grow_ahead` grew from this very rng state."""
    ahead = _AHEAD[0]
    if ahead is not None and ahead[0] == params:
        before = rng.bit_generator.state
        if before == ahead[1]:
            rng.bit_generator.state = ahead[3]
            return ahead[2].copy()
    return _grow(params, rng)


def _grow(params: CrackGenerator.Params, rng: np.random.Generator) -> np.ndarray:
    """The fissure's segments as an (n, 5) array of x0, y0, x1, y1, width, unscaled,
    about the origin."""
    a = math.radians(params.angle)
    half = params.length / 2.0
    jag = params.jaggedness
    nb = params.branches
    # every draw at once: the walks' steps (at least 2 px each, so the trunk and the
    # longest possible branches and twigs (0.4 and 0.16 of the length) need at most
    # this many) and 12 uniforms per branch
    n = int(params.length * (1.0 + 0.56 * nb) / 2.0) + 4 * (nb + 2)
    steps = rng.uniform(2.0, 5.5, n).tolist()
    turns = rng.standard_normal(n).tolist()
    u = rng.random(1 + 12 * nb).tolist()
    draws = (steps, turns)
    split = 0.35 + 0.3 * u[0]
    main = _walk(draws, (0.0, 0.0), a, 2 * half * split, params.width, jag, 0.6)
    other = _walk(draws, (0.0, 0.0), a + math.pi, 2 * half * (1 - split), params.width, jag, 0.6)
    segs = main + other
    trunk = main + other
    for b in range(nb):
        ub = u[1 + 12 * b : 13 + 12 * b]
        # branch from a point on the trunk away from the tips: the first of a few
        # candidates that is still at least 0.3 of the full opening (else the last)
        for v in ub[:6]:
            sx, sy, ex, ey, wd = trunk[int(v * len(trunk))]
            if wd >= 0.3 * params.width:
                break
        base = math.atan2(ey - sy, ex - sx)
        turn = math.radians(25.0 + 35.0 * ub[6]) * (1 if ub[7] < 0.5 else -1)
        blen = params.length * (0.12 + 0.28 * ub[8])
        limb = _walk(draws, (ex, ey), base + turn, blen, wd * 0.75, jag, 0.9)
        segs += limb
        if limb and ub[9] < 0.4:
            tx, ty, ux, uy, tw = limb[int(ub[10] * len(limb))]
            twig_dir = math.atan2(uy - ty, ux - tx) - turn * (0.6 + 0.6 * ub[11])
            segs += _walk(draws, (ux, uy), twig_dir, blen * 0.4, tw * 0.7, jag, 1.0)
    return np.array(segs, dtype=np.float64).reshape(-1, 5)


def _place(arr: np.ndarray, params: CrackGenerator.Params, shape: tuple[int, int]) -> np.ndarray:
    """The segments centred in the region, shrunk to keep :func:`_margin` from its edge
    if need be."""
    h, w = shape
    xs = arr[:, 0:4:2]
    ys = arr[:, 1:4:2]
    lo = np.array([xs.min(), ys.min()])
    hi = np.array([xs.max(), ys.max()])
    margin = _margin(params)
    room = np.array([w - 2 * margin, h - 2 * margin])
    scale = float(min(1.0, *(np.maximum(room, 1.0) / np.maximum(hi - lo, 1e-6))))
    cx, cy = (lo + hi) / 2
    ox, oy = (w - 1) / 2, (h - 1) / 2
    arr[:, 0:4:2] = (xs - cx) * scale + ox
    arr[:, 1:4:2] = (ys - cy) * scale + oy
    return arr


@hookimpl
def register_generators(register: Callable[[type[DefectGenerator]], None]) -> None:
    register(CrackGenerator)
