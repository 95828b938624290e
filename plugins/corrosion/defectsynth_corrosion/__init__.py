"""Corrosion: rust spots with pitting and a discoloured halo, for defectsynth.

Rust is an oxide that grows *in* the surface, not a paint laid on it. Where it grows the
metal's own reflection is attenuated and tinted by the oxide (orange lepidocrocite to
red-brown hematite, dark magnetite where it is thickest), so the surface keeps its
structure underneath: brushing, machining marks, print and the lighting gradient show
through a thin film and fade only where the crust is thick and matte. The oxide film
thins out gradually around a spot (the halo), with a few satellite specks where
corrosion started on its own; in the spot, pitting leaves small dark cavities.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from defectsynth import DefectGenerator, Layer, Region, hookimpl, param

__version__ = "0.1.0"

# Lab (OpenCV float convention: L 0..100, a/b about -127..127) of common iron oxides
_OXIDES = np.array(
    [
        [48.0, 28.0, 45.0],  # orange-brown (lepidocrocite / goethite)
        [36.0, 26.0, 30.0],  # red-brown (hematite)
        [24.0, 10.0, 14.0],  # dark brown-black (magnetite)
    ],
    dtype=np.float32,
)


def _noise(h: int, w: int, rng: np.random.Generator, size: float) -> np.ndarray:
    """Smooth random field of unit deviation with features about ``size`` px across:
    white noise blurred, so there is no grid to show when zoomed in. Features of 6 px
    and more are blurred on a grid a third of their size and upsampled (the blur spans
    more than a cell, so the interpolation has nothing blocky to show, at a fraction of
    the cost); finer ones at full resolution."""
    k = max(1, int(size // 3))
    if k == 1:
        white = rng.standard_normal((h, w)).astype(np.float32)
        field = cv2.GaussianBlur(white, (0, 0), max(size / 2.5, 0.5), borderType=cv2.BORDER_REFLECT)
    else:
        gh, gw = h // k + 3, w // k + 3
        white = rng.standard_normal((gh, gw)).astype(np.float32)
        small = cv2.GaussianBlur(white, (0, 0), size / 2.5 / k, borderType=cv2.BORDER_REFLECT)
        up = cv2.resize(small, (gw * k, gh * k), interpolation=cv2.INTER_CUBIC)
        field = up[k : k + h, k : k + w]
    return field / max(float(field.std()), 1e-6)


def _fractal(h: int, w: int, rng: np.random.Generator, size: float, octaves: int) -> np.ndarray:
    """Sum of :func:`_noise` fields, each half the size and half the weight of the last."""
    out = np.zeros((h, w), np.float32)
    amp = 1.0
    for _ in range(octaves):
        out += amp * _noise(h, w, rng, size)
        size, amp = size / 2.0, amp / 2.0
    return out / max(float(out.std()), 1e-6)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


class CorrosionGenerator(DefectGenerator):
    """Rust spot with pits and a halo: an oxide that grows in the metal, thick, rough and
    matte in the core (colour between orange and dark brown, fine-grained), thinning out
    gradually into a tinted halo with a few satellite specks, and small dark pits inside.
    The oxide attenuates and tints the surface's own light rather than replacing it, so
    what lies underneath shows through the halo and, dimmed, through the core."""

    name = "corrosion"
    version = __version__

    @dataclass(frozen=True)
    class Params:
        size: float = param(36.0, lo=6.0, hi=600.0, vary=(18.0, 60.0),
                            doc="diameter of the rust core in px")
        roughness: float = param(0.6, lo=0.0, hi=1.0, vary=(0.4, 0.8),
                                 doc="how ragged the outline is (0 round, 1 very irregular)")
        oxide: float = param(0.4, lo=0.0, hi=1.0, vary=(0.1, 0.9),
                             doc="colour from orange (0) through red-brown to dark (1)")
        opacity: float = param(0.85, lo=0.1, hi=1.0, vary=(0.7, 0.95),
                               doc="how much of the surface's structure the core hides")
        halo: float = param(0.6, lo=0.0, hi=2.0, vary=(0.3, 1.0),
                            doc="halo width as a fraction of the core radius")
        pits: int = param(3, lo=0, hi=40, vary=(0, 6), doc="number of pits inside the core")

    def extent(self, params: Params, rng: np.random.Generator) -> tuple[int, int]:
        side = int(np.ceil(params.size * (1.0 + params.halo) * 1.3)) + 8
        return side, side

    def render(self, region: Region, params: Params, rng: np.random.Generator) -> Layer:
        h, w = region.shape
        r = params.size / 2.0
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        dist = np.hypot(xx - (w - 1) / 2.0, yy - (h - 1) / 2.0) / r
        # 1 on the core's ragged outline, < 1 inside
        field = dist + params.roughness * 0.35 * _fractal(h, w, rng, max(r / 1.2, 2.0), 3)
        # oxide thickness: a thick crust in the core (varying), thinning out over the halo
        # (a Gaussian falloff, no edge), with satellite specks where the film is thin
        core = _smoothstep(1.08, 0.92, field)
        var = _fractal(h, w, rng, max(r / 2.5, 2.0), 3)
        halo_w = max(params.halo, 0.05)
        outside = np.maximum(field - 1.0, 0.0) / halo_w
        film = np.exp(-2.5 * outside * outside) * (0.12 + 0.22 * min(params.halo, 1.0))
        # the spot as an inspector outlines it: the core and the clearly tinted halo
        # (on a gray image the halo's colour is lost and only its slight darkening
        # shows, so less of it is clearly tinted)
        seen = film if region.is_color else film * 0.4
        spot = _smoothstep(0.05, 0.12, core + (1.0 - core) * seen)
        specks = _smoothstep(1.6, 2.4, _noise(h, w, rng, 2.5)) * np.exp(-3.0 * outside * outside)
        # the film grows unevenly too: grainy, not airbrushed
        film *= np.clip(1.0 + 0.55 * _fractal(h, w, rng, 4.0, 2), 0.15, 1.9)
        film = film + 0.5 * specks * (outside > 0)
        thick = core * (0.75 + 0.25 * np.clip(var, -1.5, 1.5)) + (1.0 - core) * film
        # fade to nothing before the region's border
        edge = min(h, w) / 2.0 / r
        thick *= _smoothstep(edge, edge - 0.12 * edge, dist)

        # oxide colour varies across the spot; thicker (more central) means darker, and a
        # thin film is the first, orange oxide
        t = np.clip(params.oxide + 0.3 * var + 0.3 * (1.0 - np.clip(field, 0, 1)), 0.0, 1.0)
        t *= np.clip(thick * 1.4, 0.0, 1.0)
        pos = t * (len(_OXIDES) - 1)
        i0 = np.clip(np.floor(pos).astype(int), 0, len(_OXIDES) - 2)
        frac = (pos - i0)[..., None]
        oxide = _OXIDES[i0] * (1 - frac) + _OXIDES[i0 + 1] * frac
        # rough oxide: fine grains (1-2 px) and a mottle a few px across, in lightness
        grain = 0.6 * _noise(h, w, rng, 1.6) + 0.4 * _noise(h, w, rng, 5.0)
        oxide[..., 0] *= 1.0 + 0.16 * grain * np.clip(thick * 2.0, 0.0, 1.0)

        # pits: small dark cavities with a lit far wall
        lv = region.light.vector
        cavity = np.ones((h, w), np.float32)
        for _ in range(params.pits):
            ang = rng.uniform(0, 2 * np.pi)
            rad = r * 0.7 * np.sqrt(rng.uniform(0, 1))
            px_, py_ = (w - 1) / 2.0 + rad * np.cos(ang), (h - 1) / 2.0 + rad * np.sin(ang)
            pr = rng.uniform(0.6, 1.8) + r * 0.04
            d = np.hypot(xx - px_, yy - py_) / pr
            cav = np.clip(1.0 - d, 0.0, 1.0) ** 0.7
            side = ((xx - px_) * lv[0] + (yy - py_) * lv[1]) / pr  # > 0: wall facing away
            cavity *= 1.0 - 0.7 * cav * (1.0 - 0.5 * np.clip(-side, 0, 1))

        # How far the colour has moved towards the oxide's, and how much of the
        # surface's own structure the thick, matte crust hides.
        # A thin film shifts the colour before it darkens much; a thick one does both.
        tint = 1.0 - np.exp(-3.5 * thick)
        tint_l = 1.0 - np.exp(-1.6 * thick)
        hide = params.opacity * 0.55 * core * np.clip(thick, 0.0, 1.0)
        base = region.pixels
        if region.is_color:
            lab = cv2.cvtColor(np.ascontiguousarray(base), cv2.COLOR_BGR2Lab)
        else:
            lab = np.zeros((h, w, 3), np.float32)
            lab[..., 0] = base[..., 0] * 100.0
        L = lab[..., 0]
        ref = float(np.median(L)) + 1.0
        # the surface's structure as a ratio to its typical lightness, kept through the
        # film (a multiplication) and flattened in the crust
        structure = np.power(np.maximum(L + 1.0, 1.0) / ref, 1.0 - hide)
        level = ref * np.power(oxide[..., 0] / ref, tint_l)
        new_l = np.clip(level * structure * cavity - 1.0, 0.0, 100.0)
        if region.is_color:
            a = lab[..., 1] * (1 - tint) + oxide[..., 1] * tint
            b = lab[..., 2] * (1 - tint) + oxide[..., 2] * tint
            out = cv2.cvtColor(np.dstack([new_l, a, b]).astype(np.float32), cv2.COLOR_Lab2BGR)
        else:
            out = (new_l / 100.0)[..., None]
        out = np.clip(out, 0.0, 1.0).astype(np.float32)
        # where the oxide changed the surface, and the label: the spot and any satellite
        # spot of its own (specks, grains and crumbs of a few px beyond it are drawn, a
        # little faded, but not labelled)
        n, parts, stats, _ = cv2.connectedComponentsWithStats((spot >= 0.5).astype(np.uint8))
        crumbs = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] < max(12.0, 0.004 * r * r)) + 1
        if len(crumbs):
            spot = np.where(np.isin(parts, crumbs), np.minimum(spot, 0.45), spot)
        coverage = np.maximum(np.minimum(_smoothstep(0.008, 0.2, thick), 0.45), spot)
        coverage[thick < 0.004] = 0.0
        return Layer(pixels=out, coverage=coverage.astype(np.float32))


@hookimpl
def register_generators(register: Callable[[type[DefectGenerator]], None]) -> None:
    register(CorrosionGenerator)
