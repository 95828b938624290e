"""The corrosion plugin: the conformance suite, and that its rust grows in the surface."""

from __future__ import annotations

import dataclasses
from typing import Any

import cv2
import numpy as np
from defectsynth_corrosion import CorrosionGenerator

from defectsynth import Layer, Light, Region
from defectsynth.testing import check_generator


def test_conformance() -> None:
    check_generator(CorrosionGenerator)


def _surface(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A light grey metal with visible structure: streaks and fine grain."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(shape).astype(np.float32)
    streaks = cv2.GaussianBlur(noise, (0, 0), sigmaX=6.0, sigmaY=0.8)
    fine = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 0.8)
    lum = 0.62 + 0.25 * streaks / streaks.std() * 0.25 + 0.04 * fine / fine.std()
    return np.repeat(np.clip(lum, 0, 1)[:, :, None], 3, axis=2).astype(np.float32)


def _render(pixels: np.ndarray, seed: int = 1, **params: Any) -> tuple[Layer, Any]:
    p = dataclasses.replace(CorrosionGenerator.Params(), **params)
    px = np.ascontiguousarray(pixels, dtype=np.float32)
    region = Region(px, np.ones(px.shape[:2], np.float32), Light(30.0, 45.0), 8.0)
    return CorrosionGenerator().render(region, p, np.random.default_rng(seed)), p


def _extent(**params: Any) -> tuple[int, int]:
    p = dataclasses.replace(CorrosionGenerator.Params(), **params)
    return CorrosionGenerator().extent(p, np.random.default_rng(0))


def _lab(layer: Layer, base: np.ndarray) -> np.ndarray:
    """The composite as the host makes it (alpha blend by coverage), in Lab."""
    a = layer.coverage[:, :, None]
    out = layer.pixels * a + base * (1 - a)
    return cv2.cvtColor(out.astype(np.float32), cv2.COLOR_BGR2Lab)


def _highpass(a: np.ndarray) -> np.ndarray:
    return a - cv2.GaussianBlur(a, (0, 0), 2.0)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + 1e-12))


def test_rust_tints_the_surface_and_keeps_its_structure() -> None:
    """Oxide grows in the metal: what the surface's structure contributes survives a
    thin film nearly whole and, dimmed, a thick crust; a paint would erase it."""
    kw: dict[str, Any] = dict(size=60.0, halo=1.0, pits=0, opacity=0.9)
    tex = _surface(_extent(**kw))
    flat = np.full_like(tex, float(tex.mean()))
    on_tex, _ = _render(tex, **kw)
    on_flat, _ = _render(flat, **kw)
    kept = _highpass((_lab(on_tex, tex) - _lab(on_flat, flat))[:, :, 0])
    orig = _highpass(cv2.cvtColor(tex, cv2.COLOR_BGR2Lab)[:, :, 0])
    cov = on_tex.coverage
    core = cov >= 0.99
    film = (cov > 0.05) & (cov < 0.6)
    assert core.sum() > 500 and film.sum() > 300
    assert _corr(kept[film], orig[film]) > 0.8
    assert _corr(kept[core], orig[core]) > 0.35
    # and it is rust: orange-brown (a* and b* up) where it is thick
    lab = _lab(on_flat, flat)
    assert lab[:, :, 1][core].mean() > 8 and lab[:, :, 2][core].mean() > 12


def test_halo_fades_gradually() -> None:
    """The colour change falls off over the halo instead of stopping at an edge."""
    kw: dict[str, Any] = dict(size=50.0, halo=1.0, roughness=0.0, pits=0)
    base = np.full((*_extent(**kw), 3), 0.6, np.float32)
    layer, p = _render(base, **kw)
    lab = _lab(layer, base)
    ref = cv2.cvtColor(base, cv2.COLOR_BGR2Lab)
    de = np.linalg.norm(lab - ref, axis=2)
    h, w = de.shape
    yy, xx = np.mgrid[0:h, 0:w]
    q = np.hypot(xx - (w - 1) / 2, yy - (h - 1) / 2) / (50.0 / 2)  # 1 on the core's rim
    rings = [de[(q > a) & (q < a + 0.15)].mean() for a in (1.05, 1.25, 1.45, 1.65)]
    assert rings[0] > 5.0  # a visible halo...
    assert rings[0] > rings[1] > rings[2] > rings[3]  # ...thinning out...
    assert rings[2] > 0.5  # ...over a good part of the core's radius


def test_oxide_texture_is_fine_grained() -> None:
    """The crust's texture is grains of a pixel or two, not an interpolated grid: its
    fine detail decorrelates within two pixels."""
    kw: dict[str, Any] = dict(size=80.0, pits=0, roughness=0.2)
    base = np.full((*_extent(**kw), 3), 0.6, np.float32)
    layer, _ = _render(base, seed=3, **kw)
    lum = _lab(layer, base)[:, :, 0]
    hp = lum - cv2.GaussianBlur(lum, (0, 0), 3.0)
    core = cv2.erode((layer.coverage >= 0.99).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert hp[core].std() > 0.8  # visible grain (in L*)
    lag2 = _corr(hp[:, :-2][core[:, :-2]], hp[:, 2:][core[:, :-2]])
    assert lag2 < 0.5, lag2


def test_spot_is_labelled_as_regions_not_crumbs() -> None:
    """The label is the spot an inspector would outline (core and clearly tinted halo)
    and any sizeable satellite spot, not each speck: no labelled piece of a few px, and
    the spot itself holds nearly all of it."""
    from defectsynth import ParamSpace

    space = ParamSpace(CorrosionGenerator)
    for seed in range(8):
        rng = np.random.default_rng(seed)
        p = space.draw(rng)
        gen = CorrosionGenerator()
        h, w = gen.extent(p, rng)
        base = _surface((h, w), seed)
        px = np.ascontiguousarray(base)
        layer = gen.render(Region(px, np.ones((h, w), np.float32), Light(0.0, 45.0), 8.0), p, rng)
        n, _, stats, _ = cv2.connectedComponentsWithStats((layer.coverage >= 0.5).astype(np.uint8))
        areas = stats[1:, cv2.CC_STAT_AREA]
        assert areas.min() >= 12 and areas.max() >= 0.97 * areas.sum(), (seed, areas)
