"""Physical checks of the built-in defect generators.

Each generator is tested directly (``render()`` on hand-made regions under a fixed light)
and through the Synthesizer on the fixture photographs, read with ``cv2.imread``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from defectsynth import DefectGenerator, Layer, Light, ParamSpace, Region, Synthesizer, source_id
from defectsynth.defects.crack import CrackGenerator
from defectsynth.defects.dent import DentGenerator
from defectsynth.defects.discoloration import KINDS, DiscolorationGenerator
from defectsynth.defects.pit import PitGenerator
from defectsynth.defects.scratch import ScratchGenerator
from defectsynth.defects.stain import StainGenerator
from defectsynth.plugins import BUILTIN_PLUGINS, PluginHost
from defectsynth.textures import Shading, bgr_to_lab, fbm, luminance, normals_from_slopes, shade

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
GENERATORS: list[type[DefectGenerator]] = [
    ScratchGenerator,
    DentGenerator,
    DiscolorationGenerator,
    CrackGenerator,
    PitGenerator,
    StainGenerator,
]
FIXTURE_NAMES = sorted(p.stem for p in (FIXTURES / "images").glob("*.png"))


# ---------------------------------------------------------------------------------------
# helpers


def make_region(pixels: np.ndarray, light: Light, texture_scale: float = 8.0) -> Region:
    px = np.ascontiguousarray(pixels, dtype=np.float32)
    if px.ndim == 2:
        px = px[:, :, None]
    px.flags.writeable = False
    pm = np.ones(px.shape[:2], np.float32)
    pm.flags.writeable = False
    return Region(pixels=px, product_mask=pm, light=light, texture_scale=texture_scale)


def textured(shape: tuple[int, int], channels: int = 3, seed: int = 0) -> np.ndarray:
    """A mid-grey surface with a visible texture (fBm + fine grain), tinted if colour."""
    rng = np.random.default_rng(seed)
    h, w = shape
    t = 0.5 + 0.06 * fbm((h, w), 12, rng, octaves=4) + 0.03 * rng.standard_normal((h, w))
    if channels == 1:
        return np.clip(t, 0, 1)[:, :, None].astype(np.float32)
    tint = np.array([0.85, 1.0, 1.1], np.float32)
    return np.clip(t[:, :, None] * tint, 0, 1).astype(np.float32)


def fixture(name: str) -> tuple[np.ndarray, np.ndarray]:
    image = cv2.imread(str(FIXTURES / "images" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
    mask = cv2.imread(str(FIXTURES / "masks" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
    assert image is not None and mask is not None, name
    return image, mask


def render(
    gen_cls: type[DefectGenerator], pixels: np.ndarray, light: Light, seed: int = 0, **params: Any
) -> tuple[Any, Layer]:
    gen = gen_cls()
    p = dataclasses.replace(gen_cls.Params(), **params)
    layer = gen.render(make_region(pixels, light), p, np.random.default_rng(seed))
    return p, layer


def sized(
    gen_cls: type[DefectGenerator], channels: int = 3, seed: int = 0, **params: Any
) -> np.ndarray:
    p = dataclasses.replace(gen_cls.Params(), **params)
    h, w = gen_cls().extent(p, np.random.default_rng(seed))
    return textured((h, w), channels, seed)


def extent_of(gen_cls: type[DefectGenerator], params: dict[str, Any]) -> tuple[int, int]:
    p = dataclasses.replace(gen_cls.Params(), **params)
    h, w = gen_cls().extent(p, np.random.default_rng(0))
    return int(h), int(w)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + 1e-12))


def highpass(lum: np.ndarray) -> np.ndarray:
    return lum - cv2.GaussianBlur(lum, (0, 0), 2.0)


# ---------------------------------------------------------------------------------------
# registration and description


def test_builtins_register_through_the_hook() -> None:
    host = PluginHost(entry_points=False)
    assert not [e for e in host.errors if "defects" in e], host.errors
    names = {m.rsplit(".", 1)[-1] for m in BUILTIN_PLUGINS if ".defects." in m}
    for cls in GENERATORS:
        assert cls.name in names
        assert host.generators[cls.name] is cls
        assert host.provider("generator", cls.name).source == "builtin"  # type: ignore[union-attr]


@pytest.mark.parametrize("cls", GENERATORS, ids=lambda c: c.name)
def test_documented_params_with_out_of_the_box_variation(cls: type[DefectGenerator]) -> None:
    assert cls.__doc__ and len(cls.__doc__.split()) > 30
    fields = dataclasses.fields(cls.Params)
    assert fields
    for f in fields:
        info = f.metadata["defectsynth"]
        assert info.doc, f"{cls.name}.{f.name} has no doc"
    # defaults vary: most fields are drawn when a recipe does not mention them
    varied = [f for f in fields if f.metadata["defectsynth"].vary is not None]
    assert len(varied) >= len(fields) - 1


@pytest.mark.parametrize("cls", GENERATORS, ids=lambda c: c.name)
def test_conformance_suite(cls: type[DefectGenerator]) -> None:
    testing = pytest.importorskip("defectsynth.testing")
    testing.check_generator(cls)


# ---------------------------------------------------------------------------------------
# all generators: finite, in range, untouched outside coverage, deterministic


@pytest.mark.parametrize("cls", GENERATORS, ids=lambda c: c.name)
@pytest.mark.parametrize("channels", [1, 3])
def test_render_is_clean(cls: type[DefectGenerator], channels: int) -> None:
    space = ParamSpace(cls, {})
    for seed in range(4):
        params = space.draw(np.random.default_rng(seed))
        gen = cls()
        shape = gen.extent(params, np.random.default_rng(seed))
        px = textured(shape, channels, seed)
        light = Light(37.0 + 80 * seed, 30.0 + 8 * seed)
        region = make_region(px, light)
        layer = gen.render(region, params, np.random.default_rng(seed))
        assert layer.pixels.dtype == np.float32 and layer.coverage.dtype == np.float32
        assert layer.pixels.shape == px.shape and layer.coverage.shape == px.shape[:2]
        assert np.isfinite(layer.pixels).all() and np.isfinite(layer.coverage).all()
        assert layer.pixels.min() >= 0.0 and layer.pixels.max() <= 1.0
        assert layer.coverage.min() >= 0.0 and layer.coverage.max() <= 1.0
        assert layer.coverage.max() > 0.5, f"{cls.name}: no coverage for {params}"
        outside = layer.coverage == 0
        assert np.array_equal(layer.pixels[outside], px[outside]), (
            f"{cls.name}: pixels changed where coverage is 0"
        )
        # the defect fades out before the region border
        border = np.concatenate(
            [layer.coverage[0], layer.coverage[-1], layer.coverage[:, 0], layer.coverage[:, -1]]
        )
        assert border.max() < 0.05, f"{cls.name}: coverage reaches the region border"
        again = gen.render(make_region(px, light), params, np.random.default_rng(seed))
        assert np.array_equal(again.pixels, layer.pixels)
        assert np.array_equal(again.coverage, layer.coverage)


@pytest.mark.parametrize("cls", GENERATORS, ids=lambda c: c.name)
def test_on_fixtures_through_the_synthesizer(cls: type[DefectGenerator]) -> None:
    made = 0
    for name in FIXTURE_NAMES:
        image, mask = fixture(name)
        synth = Synthesizer([{"generator": cls}], instances=1, product_mask=mask)
        sid = source_id(f"{name}.png")
        sample = synth.apply(image, seed=3, source_id=sid)
        assert sample.image.dtype == image.dtype and sample.image.shape == image.shape
        assert sample.footprint is not None
        assert np.array_equal(sample.image[~sample.footprint], image[~sample.footprint])
        for ann in sample.annotations:
            m = ann.mask
            assert m.any() and not (m & (mask == 0)).any()
            diff = cv2.absdiff(sample.image, image)
            diff = diff.max(axis=2) if diff.ndim == 3 else diff
            assert diff[m].mean() >= 0.02 * 255
        made += len(sample.annotations)
        again = synth.apply(image, seed=3, source_id=sid)
        assert np.array_equal(again.image, sample.image)
    # defaults should pass the visibility gate on (nearly) every kind of surface
    assert made >= len(FIXTURE_NAMES) - 1, f"{cls.name}: placed {made} of {len(FIXTURE_NAMES)}"


# ---------------------------------------------------------------------------------------
# scratch

STRAIGHT: dict[str, Any] = dict(
    length=100.0,
    angle=0.0,
    width=2.0,
    depth=0.8,
    curvature=0.0,
    wobble=0.0,
    micro_scratches=0,
    burr=0.0,
    exposure=0.0,
    width_variation=0.0,
    glow=0.0,  # (the groove alone: the glow and the unevenness have their own tests)
    uneven=0.0,
)


def _cross_section(layer: Layer, base: np.ndarray) -> np.ndarray:
    """Mean signed change per row across the middle of a horizontal stroke."""
    w = base.shape[1]
    d = (layer.pixels - base).mean(axis=2)
    return d[:, w // 2 - 25 : w // 2 + 25].mean(axis=1)


def test_scratch_cross_section_is_narrow() -> None:
    for width in (1.0, 2.0, 3.0):
        params: dict[str, Any] = {**STRAIGHT, "width": width}
        base = np.full(
            (*extent_of(ScratchGenerator, params), 3),
            0.5,
            np.float32,
        )
        _, layer = render(ScratchGenerator, base, Light(90.0, 35.0), **params)
        prof = _cross_section(layer, base)
        rows = np.flatnonzero(np.abs(prof) > 0.01)
        assert rows.size, "the scratch changed nothing"
        assert rows.max() - rows.min() + 1 <= width + 3, (width, prof.round(3))
        labelled = np.flatnonzero(layer.coverage[:, base.shape[1] // 2] >= 0.5)
        assert labelled.size <= width + 4


def test_scratch_contrast_follows_the_light() -> None:
    params = dataclasses.replace(ScratchGenerator.Params(), **STRAIGHT)
    h, w = ScratchGenerator().extent(params, np.random.default_rng(0))
    base = np.full((h, w, 3), 0.5, np.float32)
    cy = (h - 1) / 2
    ys = np.arange(h)

    def asymmetry(azimuth: float, elevation: float) -> float:
        _, layer = render(ScratchGenerator, base, Light(azimuth, elevation), **STRAIGHT)
        prof = _cross_section(layer, base)
        return float(prof[ys < cy].mean() - prof[ys > cy].mean())

    for el in (25.0, 45.0, 65.0):
        # light from +y: the wall on the +y side faces away from it (dark), the far
        # wall faces it (lit); rotating the light by 180 degrees swaps them
        down, up = asymmetry(90.0, el), asymmetry(270.0, el)
        assert down > 0.01 and up < -0.01, (el, down, up)
        assert abs(down + up) < 0.25 * abs(down - up)
    # light along the stroke lights both walls alike: no asymmetry, weaker contrast
    along = asymmetry(0.0, 35.0)
    assert abs(along) < 0.2 * asymmetry(90.0, 35.0)


def test_scratch_keeps_the_texture_under_it() -> None:
    params: dict[str, Any] = {**STRAIGHT, "exposure": 0.2, "micro_scratches": 2, "curvature": 0.2}
    tex = sized(ScratchGenerator, seed=1, **params)
    flat = np.full_like(tex, float(tex.mean()))
    light = Light(120.0, 40.0)
    _, on_tex = render(ScratchGenerator, tex, light, seed=5, **params)
    _, on_flat = render(ScratchGenerator, flat, light, seed=5, **params)
    m = on_tex.coverage >= 0.5
    assert m.sum() > 100
    # what the texture contributes inside the scratch still looks like the texture
    kept = (on_tex.pixels - on_flat.pixels).mean(axis=2)[m]
    orig = (tex - flat).mean(axis=2)[m]
    assert corr(kept, orig) > 0.8
    # ...whereas a painted-on stroke would erase it
    assert np.abs(kept).std() > 0.4 * np.abs(orig).std()


def test_scratch_across_brushing_grain_glints_more_than_along() -> None:
    image, _ = fixture("brushed_metal")  # grain runs (nearly) horizontally
    px = image.astype(np.float32) / 255.0
    glint = {}
    for angle in (0.0, 90.0):
        vals = []
        # azimuths at 45 degrees to both strokes: the light alone favours neither
        for k, az in enumerate((45.0, 135.0, 225.0, 315.0)):
            layers = []
            for gloss in (0.0, 0.7):
                params: dict[str, Any] = {**STRAIGHT, "angle": angle, "gloss": gloss}
                p = dataclasses.replace(ScratchGenerator.Params(), **params)
                h, w = ScratchGenerator().extent(p, np.random.default_rng(0))
                crop = px[100 + 40 * k : 100 + 40 * k + h, 150 + 60 * k : 150 + 60 * k + w]
                layers.append(render(ScratchGenerator, crop, Light(az, 60.0), seed=k, **params)[1])
            m = layers[1].coverage >= 0.5
            vals.append(np.abs(layers[1].pixels - layers[0].pixels).max(axis=2)[m].mean())
        glint[angle] = float(np.mean(vals))
    # the brushing marks already spread the highlight across the grain, so the walls of a
    # scratch along the grain (tilted across it) stay inside the lobe; across, they leave it
    assert glint[90.0] > 1.2 * glint[0.0], glint


def test_anisotropic_lobe_hides_tilts_across_the_grain() -> None:
    light = Light(0.0, 50.0).vector
    s = Shading(ambient=0.4, specular=0.5, roughness=0.25, anisotropy=0.8, grain_angle=0.0)
    slope = np.array([[0.3]], np.float32)
    zero = np.zeros_like(slope)
    # tilting along x changes the specular term far more than tilting along y (the
    # brushing marks run along x and already spread the highlight across them)
    nx, ny, nz = normals_from_slopes(slope, zero)
    _, spec_x = shade(nx, ny, nz, light, s)
    nx, ny, nz = normals_from_slopes(zero, slope)
    _, spec_y = shade(nx, ny, nz, light, s)
    assert abs(float(spec_x[0, 0])) > 2 * abs(float(spec_y[0, 0]))


# ---------------------------------------------------------------------------------------
# dent

ROUND_DENT: dict[str, Any] = dict(
    radius=25.0, aspect=1.0, irregularity=0.0, lip=0.0, warp=0.0, crush=0.0
)


def _sides(layer: Layer, base: np.ndarray, light: Light) -> tuple[float, float]:
    """Mean brightness change on the half of the dent whose walls face the light (the
    half away from it, for a depression) and on the other half."""
    h, w = layer.coverage.shape
    ys, xs = np.mgrid[0:h, 0:w]
    lx, ly, _ = light.vector
    along = (xs - (w - 1) / 2) * lx + (ys - (h - 1) / 2) * ly
    m = layer.coverage >= 0.5
    d = luminance(layer.pixels) - luminance(base)
    return float(d[m & (along < 0)].mean()), float(d[m & (along > 0)].mean())


@pytest.mark.parametrize("azimuth", [0.0, 60.0, 135.0, 250.0])
def test_dent_lit_side_is_brighter_and_flips_with_the_light(azimuth: float) -> None:
    base = sized(DentGenerator, **ROUND_DENT)
    for az in (azimuth, azimuth + 180.0):
        light = Light(az, 35.0)
        _, layer = render(DentGenerator, base, light, **ROUND_DENT)
        lit, shadow = _sides(layer, base, light)
        assert lit > shadow + 0.02, (az, lit, shadow)
    # and in absolute image terms the bright half moves to the other side
    _, a = render(DentGenerator, base, Light(azimuth, 35.0), **ROUND_DENT)
    _, b = render(DentGenerator, base, Light(azimuth + 180.0, 35.0), **ROUND_DENT)
    da = luminance(a.pixels) - luminance(base)
    db = luminance(b.pixels) - luminance(base)
    m = a.coverage >= 0.5
    assert corr(da[m], db[m]) < -0.5


def test_dent_shading_on_fixtures_follows_the_scene_light() -> None:
    checked = 0
    for name in ("brushed_metal", "painted_casing", "steel_strip_gray", "machined_flange"):
        image, mask = fixture(name)
        synth = Synthesizer(
            [{"generator": "dent", "params": {"depth": 0.2, "aspect": [0.8, 1.0]}}],
            instances=1,
            product_mask=mask,
        )
        for seed in range(3):
            sample = synth.apply(image, seed=seed, source_id=source_id(f"{name}.png"))
            if not sample.annotations:
                continue
            ann = sample.annotations[0]
            light = Light(*sample.light)
            lx, ly, _ = light.vector
            ys, xs = np.nonzero(ann.mask)
            cx, cy = ann.center
            along = (xs - cx) * lx + (ys - cy) * ly
            lum_a = luminance(sample.image.astype(np.float32))
            lum_b = luminance(image.astype(np.float32))
            d = (lum_a - lum_b)[ys, xs]
            assert d[along < 0].mean() > d[along > 0].mean(), (name, seed, sample.light)
            checked += 1
    assert checked >= 8


@pytest.mark.parametrize("azimuth", [20.0, 110.0, 200.0, 290.0])
def test_dent_on_matte_surface_is_dark_on_the_wall_nearer_the_light(azimuth: float) -> None:
    """A depression, not a bump: on a matte surface (no gloss) the wall on the light's
    side of the centre faces away from the light and darkens, the far wall faces it and
    brightens; a bump would be the other way round."""
    kw: dict[str, Any] = {**ROUND_DENT, "gloss": 0.0, "sharpness": 0.6}
    base = sized(DentGenerator, **kw)
    light = Light(azimuth, 40.0)
    _, layer = render(DentGenerator, base, light, **kw)
    far, near = _sides(layer, base, light)
    assert near < -0.02, (azimuth, near)
    assert far > near + 0.04, (azimuth, far, near)


def test_dent_rim_is_crisp_and_shades_the_floor_under_a_low_light() -> None:
    """A pressed cap is steepest at its rim, so the change of brightness is largest in
    the outer part of the dent (a soft bump's is inside); under a low light the near rim
    casts its shadow on the floor, inside the outline."""
    kw: dict[str, Any] = {**ROUND_DENT, "gloss": 0.0, "sharpness": 0.9, "depth": 0.3}
    base = np.full((*extent_of(DentGenerator, kw), 3), 0.5, np.float32)
    h, w = base.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    q = np.hypot(xs - (w - 1) / 2, ys - (h - 1) / 2) / kw["radius"]
    _, high = render(DentGenerator, base, Light(0.0, 60.0), **kw)
    d = np.abs(luminance(high.pixels) - luminance(base))
    assert d[(q > 0.6) & (q < 1.0)].mean() > 1.5 * d[q < 0.4].mean()
    _, low = render(DentGenerator, base, Light(0.0, 18.0), **kw)
    dl = luminance(low.pixels) - luminance(base)
    # the light is from +x: the shadow lies inside, on the +x half of the floor
    shadow = dl < -0.2
    assert shadow.any()
    assert (q[shadow] < 1.0).all() and (xs[shadow] > (w - 1) / 2).mean() > 0.9


def test_dent_warps_the_texture_slightly() -> None:
    base = sized(DentGenerator, **{**ROUND_DENT, "warp": 1.5})
    _, warped = render(DentGenerator, base, Light(0.0, 40.0), **{**ROUND_DENT, "warp": 1.5})
    _, flat = render(DentGenerator, base, Light(0.0, 40.0), **ROUND_DENT)
    m = warped.coverage >= 0.5
    moved = np.abs(warped.pixels - flat.pixels).max(axis=2)[m]
    assert 0.002 < float(moved.mean()) < 0.05


# ---------------------------------------------------------------------------------------
# discoloration


@pytest.mark.parametrize("kind", KINDS)
def test_discoloration_shifts_colour_and_keeps_luminance_detail(kind: str) -> None:
    image, mask = fixture("painted_casing")
    synth = Synthesizer(
        [{"generator": "discoloration", "params": {"kind": kind, "strength": 0.7}}],
        instances=1,
        product_mask=mask,
    )
    lab_b = bgr_to_lab(image.astype(np.float32) / 255.0)
    chroma_b = np.hypot(lab_b[:, :, 1], lab_b[:, :, 2])
    hp_b = highpass(lab_b[:, :, 0])
    kept: list[float] = []
    for seed in range(10):
        sample = synth.apply(image, seed=seed, source_id=source_id("painted_casing.png"))
        assert sample.annotations, (kind, seed)
        m = sample.annotations[0].mask
        lab_a = bgr_to_lab(sample.image.astype(np.float32) / 255.0)
        dab = np.hypot(lab_a[:, :, 1] - lab_b[:, :, 1], lab_a[:, :, 2] - lab_b[:, :, 2])
        chroma_a = np.hypot(lab_a[:, :, 1], lab_a[:, :, 2])
        if kind == "darkening":
            assert (lab_a[:, :, 0] - lab_b[:, :, 0])[m].mean() < -4
        else:
            # hue and/or chroma move inside the mask: the colour is different, not painted
            assert dab[m].mean() > 4.0, (kind, seed, dab[m].mean())
        if kind == "fade":
            assert (chroma_a - chroma_b)[m].mean() < -4
        # and nothing happens to the colour outside the footprint
        assert sample.footprint is not None
        assert dab[~sample.footprint].max() < 1e-3
        kept.append(corr(highpass(lab_a[:, :, 0])[m], hp_b[m]))
    # the high-frequency luminance detail under it stays (texture survives); one
    # instance's own mottle can blur it a little, never most of it
    assert float(np.median(kept)) > 0.8 and min(kept) > 0.6, (kind, kept)


@pytest.mark.parametrize("kind", KINDS)
def test_discoloration_on_gray_changes_luminance_only(kind: str) -> None:
    image, mask = fixture("steel_strip_gray")
    assert image.ndim == 2
    synth = Synthesizer(
        [{"generator": "discoloration", "params": {"kind": kind, "strength": 0.8}}],
        instances=1,
        product_mask=mask,
    )
    sample = synth.apply(image, seed=2, source_id=source_id("steel_strip_gray.png"))
    assert sample.image.ndim == 2
    assert sample.annotations, kind
    m = sample.annotations[0].mask
    a = sample.image.astype(np.float32)
    b = image.astype(np.float32)
    assert np.abs(a - b)[m].mean() > 0.02 * 255
    assert corr(highpass(a)[m], highpass(b)[m]) > 0.8


def test_fade_drops_colour_and_keeps_the_detail_s_contrast() -> None:
    """Bleaching takes the pigment, not the surface: chroma falls, and the luminance
    detail keeps its contrast relative to the level (a pale veil added on top would
    flatten it)."""
    rng = np.random.default_rng(4)
    kw: dict[str, Any] = dict(kind="fade", strength=0.9, mottle=0.0, edge=0.2)
    h, w = extent_of(DiscolorationGenerator, kw)
    detail = 0.05 * rng.standard_normal((h, w)).astype(np.float32)
    green = np.clip(np.array([0.25, 0.5, 0.15], np.float32) * (1 + detail[:, :, None]), 0, 1)
    _, layer = render(DiscolorationGenerator, green, Light(0.0, 45.0), seed=1, **kw)
    m = layer.coverage >= 0.99
    lab_a, lab_b = bgr_to_lab(layer.pixels), bgr_to_lab(green)
    chroma_a = np.hypot(lab_a[:, :, 1], lab_a[:, :, 2])[m].mean()
    chroma_b = np.hypot(lab_b[:, :, 1], lab_b[:, :, 2])[m].mean()
    assert chroma_a < 0.75 * chroma_b
    rel_a = highpass(lab_a[:, :, 0])[m].std() / lab_a[:, :, 0][m].mean()
    rel_b = highpass(lab_b[:, :, 0])[m].std() / lab_b[:, :, 0][m].mean()
    assert rel_a > 0.9 * rel_b, (rel_a, rel_b)


def test_darkening_has_a_soft_edge() -> None:
    """Soot and oil soak spread by diffusion: even at the sharpest edge the recipe may
    draw (0.1) the darkening fades over several pixels, no step at the rim."""
    kw: dict[str, Any] = dict(kind="darkening", strength=0.8, edge=0.1, size=40.0)
    base = np.full((*extent_of(DiscolorationGenerator, kw), 3), 0.6, np.float32)
    for seed in range(3):
        _, layer = render(DiscolorationGenerator, base, Light(0.0, 45.0), seed=seed, **kw)
        d = -(luminance(layer.pixels) - luminance(base)) * layer.coverage
        step = max(np.abs(np.diff(d, axis=0)).max(), np.abs(np.diff(d, axis=1)).max())
        assert step < 0.25 * d.max(), (seed, step, d.max())
        m = layer.coverage >= 0.5
        fringe = (layer.coverage > 0.05) & (layer.coverage < 0.95)
        assert fringe.sum() > 0.3 * m.sum(), seed


def test_discoloration_rendered_directly_is_a_ratio_not_paint() -> None:
    tex = sized(DiscolorationGenerator, kind="oxidation", edge=0.1)
    flat = np.full_like(tex, float(tex.mean()))
    light = Light(0.0, 45.0)
    _, on_tex = render(DiscolorationGenerator, tex, light, seed=3, kind="oxidation", edge=0.1)
    _, on_flat = render(DiscolorationGenerator, flat, light, seed=3, kind="oxidation", edge=0.1)
    m = on_tex.coverage >= 0.9
    kept = luminance(on_tex.pixels - on_flat.pixels + 0.5)[m]
    orig = luminance(tex - flat + 0.5)[m]
    assert corr(kept, orig) > 0.8


# ---------------------------------------------------------------------------------------
# crack, pit, stain


def test_crack_is_thin_dark_and_sharp() -> None:
    base = np.full((160, 160, 3), 0.6, np.float32)
    p, layer = render(CrackGenerator, base, Light(45.0, 40.0), seed=2, length=120.0, width=1.2)
    d = luminance(layer.pixels) - luminance(base)
    m = layer.coverage >= 0.5
    assert d[m].mean() < -0.05  # a dark fissure
    # thin: the labelled area is a small multiple of its length
    assert m.sum() < 6 * p.length
    # sharp: the darkest pixels are next to almost untouched ones
    dark = d < -0.25
    ring = cv2.dilate(dark.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~dark
    assert dark.any() and np.median(np.abs(d[ring])) < 0.2


def test_crack_branches() -> None:
    base = np.full((200, 200, 3), 0.6, np.float32)
    _, lone = render(CrackGenerator, base, Light(0.0, 40.0), seed=4, length=150.0, branches=0)
    _, tree = render(CrackGenerator, base, Light(0.0, 40.0), seed=4, length=150.0, branches=6)

    def junctions(layer: Layer) -> int:
        from scipy import ndimage

        skel = layer.coverage >= 0.5
        # pixels with three or more labelled neighbours that split into 3+ arms
        n = ndimage.convolve(skel.astype(int), np.ones((3, 3), int), mode="constant") - 1
        return int((skel & (n >= 5)).sum())

    assert (tree.coverage >= 0.5).sum() > 1.2 * (lone.coverage >= 0.5).sum()
    assert junctions(tree) > junctions(lone)


def test_crack_opening_and_darkness_vary_along_it_and_taper_at_the_tips() -> None:
    base = np.full((60, 200, 3), 0.6, np.float32)
    kw: dict[str, Any] = dict(length=170.0, angle=0.0, width=1.6, branches=0, jaggedness=0.2,
                              relief=0.0, variation=0.8)
    _, layer = render(CrackGenerator, base, Light(90.0, 40.0), seed=5, **kw)
    d = luminance(layer.pixels) - luminance(base)
    m = layer.coverage >= 0.5
    cols = np.flatnonzero(m.any(axis=0))
    x0, x1 = cols.min(), cols.max()
    span = x1 - x0
    # darkest point of each column: the gap's darkness along the crack
    dark = -d[:, x0 : x1 + 1].min(axis=0)
    k = max(3, int(0.07 * span))
    middle = dark[int(0.15 * span) : int(0.85 * span)]
    assert middle.std() / middle.mean() > 0.12  # not one uniform stroke
    assert middle.max() < 0.5  # not ink: even the deepest stretch keeps some light
    assert dark[:k].mean() < 0.6 * middle.mean() and dark[-k:].mean() < 0.6 * middle.mean()
    # the labelled width varies too
    widths = m[:, x0 + k : x1 - k].sum(axis=0)
    assert widths.max() >= widths.min() + 1


def test_crack_is_labelled_as_one_piece_to_its_tips() -> None:
    """Where the crack narrows below a pixel its label still follows it: one connected
    piece per crack, branches included, not a row of fragments."""
    space = ParamSpace(CrackGenerator)
    for seed in range(10):
        rng = np.random.default_rng(seed)
        p = space.draw(rng)
        gen = CrackGenerator()
        h, w = gen.extent(p, rng)
        base = np.full((h, w, 3), 0.6, np.float32)
        layer = gen.render(make_region(base, Light(30.0, 40.0)), p, rng)
        n, _ = cv2.connectedComponents((layer.coverage >= 0.5).astype(np.uint8))
        assert n - 1 == 1, (seed, n - 1)


def _principal_angle(mask: np.ndarray) -> float:
    ys, xs = np.nonzero(mask)
    c = np.cov(np.stack([xs, ys]).astype(np.float64))
    vals, vecs = np.linalg.eigh(c)
    vx, vy = vecs[:, -1]
    return float(np.degrees(np.arctan2(vy, vx)) % 180.0)


def test_crack_follows_the_grain_of_a_brushed_surface() -> None:
    rng = np.random.default_rng(0)
    streaks = cv2.GaussianBlur(rng.standard_normal((260, 260)).astype(np.float32), (0, 0),
                               sigmaX=14.0, sigmaY=0.7)
    brushed = np.repeat((0.55 + 0.6 * streaks)[:, :, None], 3, axis=2).clip(0, 1)
    kw: dict[str, Any] = dict(length=150.0, angle=80.0, branches=0)
    _, along = render(CrackGenerator, brushed, Light(30.0, 40.0), seed=1, follow_grain=1.0, **kw)
    _, free = render(CrackGenerator, brushed, Light(30.0, 40.0), seed=1, follow_grain=0.0, **kw)
    a = _principal_angle(along.coverage >= 0.5)
    b = _principal_angle(free.coverage >= 0.5)
    assert min(a, 180 - a) < 30, a  # turned to the horizontal grain
    assert abs(b - 80) < 20, b  # with follow_grain 0 it keeps its angle


def test_pit_interior_dark_on_the_light_side() -> None:
    base = np.full((40, 40, 3), 0.5, np.float32)
    for az in (0.0, 90.0, 200.0):
        light = Light(az, 35.0)
        _, layer = render(PitGenerator, base, light, count=1, radius=6.0, depth=1.0, rim=0.0)
        near_minus_far = _sides(layer, base, light)
        far, near = near_minus_far  # "far" = walls facing the light
        assert far > near + 0.05, (az, far, near)


def test_pit_cluster_has_several_craters() -> None:
    params: dict[str, Any] = dict(count=6, radius=3.0, spread=14.0)
    base = sized(PitGenerator, **params)
    _, layer = render(PitGenerator, base, Light(30.0, 40.0), seed=1, **params)
    n, _ = cv2.connectedComponents((layer.coverage >= 0.5).astype(np.uint8))
    assert n - 1 >= 3


@pytest.mark.parametrize("substance", ["oil", "coffee", "rust", "water", "dust", "grease"])
def test_stain_is_partly_transparent_with_its_own_colour(substance: str) -> None:
    kw: dict[str, Any] = dict(kind="spot", substance=substance, opacity=0.6, size=20.0)
    tex = sized(StainGenerator, **kw)
    flat = np.full_like(tex, float(tex.mean()))
    light = Light(0.0, 45.0)
    _, on_tex = render(StainGenerator, tex, light, seed=1, **kw)
    _, on_flat = render(StainGenerator, flat, light, seed=1, **kw)
    m = on_tex.coverage >= 0.9
    # the texture shows through (partly transparent)...
    kept = luminance(on_tex.pixels - on_flat.pixels + 0.5)[m]
    orig = luminance(tex - flat + 0.5)[m]
    assert corr(kept, orig) > 0.6
    # ...and the deposit has a colour of its own: the shift is not a pure brightness change
    lab_a = bgr_to_lab(on_flat.pixels)
    lab_b = bgr_to_lab(flat)
    delta = (lab_a - lab_b)[m].mean(axis=0)
    if substance in ("oil", "coffee", "rust"):
        assert delta[2] > 3.0  # towards yellow/brown (b*)
    elif substance in ("water", "dust"):
        assert delta[0] > 2.0  # a whitish residue
    else:
        assert delta[0] < -2.0  # grease darkens


def test_stain_mineral_residue_dries_to_a_thin_ring() -> None:
    """Water is a dilute solution: nearly all its minerals dry at the pinned rim (the
    coffee-ring effect), the inside is a thin film the texture shows through, even when
    the recipe asks for little ring."""
    kw: dict[str, Any] = dict(kind="spot", substance="water", size=24.0, ring=0.1, opacity=0.8)
    tex = sized(StainGenerator, **kw)
    _, layer = render(StainGenerator, tex, Light(0.0, 45.0), seed=3, **kw)
    d = luminance(layer.pixels) - luminance(tex)
    m = layer.coverage >= 0.5
    dist = cv2.distanceTransform(m.astype(np.uint8), cv2.DIST_L2, 5)
    rim = m & (dist <= 3)
    inside = m & (dist >= 0.4 * dist.max())
    assert d[rim].mean() > 2.0 * d[inside].mean() > 0
    assert d[inside].mean() < 0.05  # a film, not paint
    flat = np.full_like(tex, float(tex.mean()))
    _, on_flat = render(StainGenerator, flat, Light(0.0, 45.0), seed=3, **kw)
    kept = luminance(layer.pixels - on_flat.pixels + 0.5)[inside]
    assert corr(kept, luminance(tex - flat + 0.5)[inside]) > 0.9


@pytest.mark.parametrize("kind", ["spot", "splash"])
def test_stain_dust_is_fine_grains_thinning_out(kind: str) -> None:
    kw: dict[str, Any] = dict(kind=kind, substance="dust", size=22.0, opacity=0.7)
    base = np.full((*extent_of(StainGenerator, kw), 3), 0.3, np.float32)
    _, layer = render(StainGenerator, base, Light(0.0, 45.0), seed=2, **kw)
    d = luminance(layer.pixels) - luminance(base)
    specks = (d > 0.04).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(specks)
    areas = stats[1:, cv2.CC_STAT_AREA]
    assert n - 1 >= 30 and np.median(areas) <= 3, (n, np.median(areas))  # grains, not blobs
    m = layer.coverage >= 0.5
    assert specks[m].mean() < 0.5  # the surface shows between them
    # denser in the middle of the dusting than towards its edge
    ys, xs = np.nonzero(specks)
    r = np.hypot(*np.mgrid[0 : d.shape[0], 0 : d.shape[1]][::-1] - np.array(
        [xs.mean(), ys.mean()])[:, None, None])
    reach = np.percentile(r[specks > 0], 95)
    inner, outer = r < reach / 3, (r > 2 * reach / 3) & (r < reach)
    assert specks[inner].mean() > 1.5 * specks[outer].mean()
    # labelled as the dusted area (a splash's may be in a few parts), not as specks
    k, lab = cv2.connectedComponents(m.astype(np.uint8))
    assert np.sort(np.bincount(lab[m]))[-3:].sum() >= 0.8 * m.sum()


def test_stain_drip_runs_down_and_ends_in_a_bead() -> None:
    kw: dict[str, Any] = dict(kind="drip", substance="oil", size=16.0, angle=90.0)
    base = np.full((*extent_of(StainGenerator, kw), 3), 0.6, np.float32)
    for seed in range(4):
        _, layer = render(StainGenerator, base, Light(0.0, 45.0), seed=seed, **kw)
        m = layer.coverage >= 0.5
        rows = np.flatnonzero(m.any(axis=1))
        widths = m[rows].sum(axis=1)
        length = rows.max() - rows.min() + 1
        assert length >= 3.5 * np.median(widths), seed  # elongated: a run
        assert abs(_principal_angle(m) - 90.0) < 12, seed  # down, as gravity pulls
        third = len(widths) // 3
        head, middle, tail = widths[:third], widths[third : 2 * third], widths[2 * third :]
        assert tail.max() >= 1.2 * np.median(middle), seed  # the bead at the front
        assert head.max() <= 1.25 * tail.max(), seed  # not a tadpole's head


def test_stain_particles_cast_shadows_away_from_the_light() -> None:
    kw: dict[str, Any] = dict(kind="particles", substance="dust", count=30, size=20.0)
    base = np.full(
        (*extent_of(StainGenerator, kw), 3),
        0.45,
        np.float32,
    )
    light = Light(0.0, 30.0)  # from +x: shadows fall towards -x
    _, layer = render(StainGenerator, base, light, seed=2, **kw)
    d = luminance(layer.pixels) - luminance(base)
    bright = d > 0.03
    dark = d < -0.03
    assert bright.any() and dark.any()
    xs = np.arange(base.shape[1])[None, :].repeat(base.shape[0], 0)
    assert xs[dark].mean() < xs[bright].mean()


def test_fbm_pixels_is_fbm_on_whole_pixel_cells() -> None:
    from defectsynth.textures import fbm_pixels

    a = fbm_pixels((70, 90), 12.0, np.random.default_rng(3))
    b = fbm_pixels((70, 90), 12.0, np.random.default_rng(3))
    assert a.shape == (70, 90) and a.dtype == np.float32 and np.array_equal(a, b)
    # the same normalisation and feature size as fbm with the same octaves: compare the
    # deviation and the mean slope over many draws
    ours = [fbm_pixels((64, 64), 12.0, np.random.default_rng(s)) for s in range(60)]
    ref = [fbm((64, 64), 12.0, np.random.default_rng(s), octaves=2) for s in range(60)]
    for stat in (np.std, lambda f: np.abs(np.diff(f, axis=1)).mean()):
        mine, theirs = np.mean([stat(f) for f in ours]), np.mean([stat(f) for f in ref])
        assert abs(mine / theirs - 1.0) < 0.15, (mine, theirs)
