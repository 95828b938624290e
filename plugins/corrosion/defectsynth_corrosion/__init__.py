"""Corrosion: rust spots with pitting and a discoloured halo, for defectsynth.

Rust is a rough, matte oxide layer: where it grows the metal loses its specular sheen
and takes the oxide's own colour (orange lepidocrocite to red-brown hematite, dark
magnetite in the thickest places). Around a spot, a thin oxide film tints the metal
without hiding it (the halo); in the spot, pitting leaves small dark cavities.
"""

from __future__ import annotations

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


def _noise(h: int, w: int, rng: np.random.Generator, cell: float, octaves: int = 4) -> np.ndarray:
    """Fractal value noise in about [-1, 1], built on small grids and upsampled."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        c = max(cell / (2**o), 1.5)
        gh, gw = max(2, int(h / c) + 2), max(2, int(w / c) + 2)
        grid = rng.standard_normal((gh, gw)).astype(np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    return out / total


class CorrosionGenerator(DefectGenerator):
    """Rust spot with pits and a halo: an opaque, matte oxide core whose colour varies
    between orange and dark brown, small dark pits inside it, and a faint rust-tinted halo
    that lets the metal show through."""

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
                               doc="how much of the metal the core hides")
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
        shape_noise = _noise(h, w, rng, cell=max(r / 1.5, 2.0))
        field = dist + params.roughness * 0.6 * shape_noise
        core = np.clip((1.0 - field) / 0.12, 0.0, 1.0)
        halo_w = max(params.halo, 1e-3)
        halo = np.clip((1.0 + halo_w - field) / halo_w, 0.0, 1.0) ** 2 * 0.35 * min(
            params.halo, 1.0
        )
        coverage = np.maximum(core * params.opacity, halo).astype(np.float32)

        # oxide colour varies across the spot; thicker (more central) means darker
        var = _noise(h, w, rng, cell=max(r / 3.0, 2.0), octaves=3)
        t = np.clip(params.oxide + 0.35 * var + 0.3 * (1.0 - np.clip(field, 0, 1)), 0.0, 1.0)
        pos = t * (len(_OXIDES) - 1)
        i0 = np.clip(np.floor(pos).astype(int), 0, len(_OXIDES) - 2)
        frac = (pos - i0)[..., None]
        lab = _OXIDES[i0] * (1 - frac) + _OXIDES[i0 + 1] * frac
        grain = _noise(h, w, rng, cell=2.0, octaves=2)
        lab[..., 0] *= 1.0 + 0.18 * grain  # rough oxide: granular luminance

        # pits: small dark cavities with a lit far wall
        lv = region.light.vector
        for _ in range(params.pits):
            ang = rng.uniform(0, 2 * np.pi)
            rad = r * 0.7 * np.sqrt(rng.uniform(0, 1))
            px_, py_ = (w - 1) / 2.0 + rad * np.cos(ang), (h - 1) / 2.0 + rad * np.sin(ang)
            pr = rng.uniform(0.6, 1.8) + r * 0.04
            d = np.hypot(xx - px_, yy - py_) / pr
            cav = np.clip(1.0 - d, 0.0, 1.0)
            side = ((xx - px_) * lv[0] + (yy - py_) * lv[1]) / pr  # > 0: wall facing light
            lab[..., 0] *= 1.0 - 0.7 * cav * (1.0 - 0.5 * np.clip(side, 0, 1))

        base = region.pixels
        if region.is_color:
            surf_lab = cv2.cvtColor(np.ascontiguousarray(base), cv2.COLOR_BGR2Lab)
            # the halo is a thin film: tint the metal rather than replace it
            film = np.clip((halo - core * params.opacity) / 0.35, 0.0, 1.0)[..., None]
            mixed = lab.copy()
            tinted = surf_lab.copy()
            tinted[..., 0] *= 0.85
            tinted[..., 1:] = surf_lab[..., 1:] * 0.5 + lab[..., 1:] * 0.5
            mixed = mixed * (1 - film) + tinted * film
            out = cv2.cvtColor(mixed.astype(np.float32), cv2.COLOR_Lab2BGR)
        else:
            gray = base[..., 0]
            film = np.clip((halo - core * params.opacity) / 0.35, 0.0, 1.0)
            rust_l = lab[..., 0] / 100.0
            out = (rust_l * (1 - film) + gray * 0.82 * film)[..., None]
        out = np.clip(out, 0.0, 1.0).astype(np.float32)
        return Layer(pixels=out, coverage=np.clip(coverage, 0.0, 1.0))


@hookimpl
def register_generators(register):  # type: ignore[no-untyped-def]
    register(CorrosionGenerator)
