"""Crack: a branching, jagged fissure through the surface."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from defectsynth import DefectGenerator, Layer, Region, hookimpl, param
from defectsynth.textures import normals_from_height, shade, surface_shading

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
            90.0, lo=10.0, hi=1000.0, vary=(40.0, 170.0), doc="tip-to-tip length in px"
        )
        angle: float = param(
            0.0, lo=0.0, hi=180.0, vary=(0.0, 180.0), doc="overall direction, degrees"
        )
        width: float = param(
            1.1, lo=0.3, hi=8.0, vary=(0.55, 1.6), doc="opening at the origin in px"
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
        side = int(math.ceil(params.length * 1.1 + 12 + 2 * params.width))
        return side, side

    def render(self, region: Region, params: Params, rng: np.random.Generator) -> Layer:
        h, w = region.shape
        pixels = region.pixels
        segments = _grow(params, rng, (h, w))
        f = 4 if max(h, w) <= 600 else 2
        canvas = np.zeros((h * f, w * f), np.uint8)
        for x0, y0, x1, y1, wd in segments:
            th = max(1, int(round(wd * f)))
            p0 = (int(round((x0 + 0.5) * f - 0.5)), int(round((y0 + 0.5) * f - 0.5)))
            p1 = (int(round((x1 + 0.5) * f - 0.5)), int(round((y1 + 0.5) * f - 0.5)))
            cv2.line(canvas, p0, p1, 255, th, cv2.LINE_8)
        opening = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(F32)
        opening *= F32(1.0 / 255.0)
        # relief of the rims: the gap as a shallow trough in a height map
        trough = cv2.GaussianBlur(opening, (0, 0), 0.9) * F32(-1.6 * params.relief)
        nx, ny, nz = normals_from_height(trough)
        shading = surface_shading(pixels, ambient=0.5, specular=0.0, roughness=0.3)
        ratio, _ = shade(nx, ny, nz, region.light.vector, shading)
        gap = F32(1.0) - F32(params.darkness) * opening ** F32(0.75)
        factor = (ratio * gap)[:, :, None]
        near = cv2.GaussianBlur(opening, (0, 0), 0.6)
        cov = np.clip(near * F32(4.0), 0.0, 1.0).astype(F32)
        cov[cov < 0.02] = 0.0
        out = np.where((cov > 0)[:, :, None], np.clip(pixels * factor, 0.0, 1.0), pixels)
        return Layer(out.astype(F32), cov)


def _walk(
    rng: np.random.Generator,
    start: tuple[float, float],
    heading: float,
    length: float,
    width0: float,
    jag: float,
    taper: float,
) -> list[_Segment]:
    """A persistent random walk of short straight steps, width closing towards the tip."""
    segs: list[_Segment] = []
    x, y = start
    travelled = 0.0
    h = heading
    while travelled < length:
        step = float(rng.uniform(2.0, 5.5))
        # a fracture turns sharply at grain boundaries but keeps its overall course
        h = heading + 0.55 * (h - heading) + float(rng.normal(0.0, 0.15 + 0.6 * jag))
        nx, ny = x + step * math.cos(h), y + step * math.sin(h)
        frac = min(1.0, (travelled + step) / max(length, 1e-6))
        wd = width0 * max(0.0, 1.0 - frac) ** taper
        segs.append((x, y, nx, ny, wd))
        x, y = nx, ny
        travelled += step
    return segs


def _grow(
    params: CrackGenerator.Params, rng: np.random.Generator, shape: tuple[int, int]
) -> list[_Segment]:
    h, w = shape
    a = math.radians(params.angle)
    half = params.length / 2.0
    split = float(rng.uniform(0.35, 0.65))
    jag = params.jaggedness
    main = _walk(rng, (0.0, 0.0), a, 2 * half * split, params.width, jag, 0.6)
    other = _walk(rng, (0.0, 0.0), a + math.pi, 2 * half * (1 - split), params.width, jag, 0.6)
    segs = main + other
    trunk = main + other
    for _ in range(params.branches):
        # branch from a point on the trunk away from the tips
        for _ in range(6):
            sx, sy, ex, ey, wd = trunk[int(rng.integers(len(trunk)))]
            if wd >= 0.3 * params.width:
                break
        base = math.atan2(ey - sy, ex - sx)
        turn = math.radians(float(rng.uniform(25.0, 60.0))) * (1 if rng.random() < 0.5 else -1)
        blen = params.length * float(rng.uniform(0.12, 0.4))
        limb = _walk(rng, (ex, ey), base + turn, blen, wd * 0.75, jag, 0.9)
        segs += limb
        if limb and rng.random() < 0.4:
            tx, ty, ux, uy, tw = limb[int(rng.integers(len(limb)))]
            twig_dir = math.atan2(uy - ty, ux - tx) - turn * float(rng.uniform(0.6, 1.2))
            segs += _walk(rng, (ux, uy), twig_dir, blen * 0.4, tw * 0.7, jag, 1.0)
    pts = np.array([[s[0], s[1]] for s in segs] + [[s[2], s[3]] for s in segs])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    margin = 4.0 + 2 * params.width
    room = np.array([w - 2 * margin, h - 2 * margin])
    scale = float(min(1.0, *(np.maximum(room, 1.0) / np.maximum(hi - lo, 1e-6))))
    cx, cy = (lo + hi) / 2
    ox, oy = (w - 1) / 2, (h - 1) / 2
    return [
        (
            (x0 - cx) * scale + ox,
            (y0 - cy) * scale + oy,
            (x1 - cx) * scale + ox,
            (y1 - cy) * scale + oy,
            wd,
        )
        for x0, y0, x1, y1, wd in segs
    ]


@hookimpl
def register_generators(register: Callable[[type[DefectGenerator]], None]) -> None:
    register(CrackGenerator)
