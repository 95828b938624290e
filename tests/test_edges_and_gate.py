"""Edge placement (the ``chip`` generator), the scene-relative visibility gate, and
one-piece scratch labels (issue 14)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from defectsynth import DefectGenerator, Gate, Layer, Region, Synthesizer, param
from defectsynth.defects.chip import ChipGenerator
from defectsynth.placement import EdgeSampler
from defectsynth.synthesizer import texture_noise
from defectsynth.testing import check_generator

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _plate(size: int = 256, radius: int = 90) -> tuple[np.ndarray, np.ndarray]:
    """A light, finely textured disc (the product) on a dark, flat background."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:size, 0:size]
    product = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 <= radius**2
    img = np.full((size, size, 3), 30, np.float32)
    img[product] = 170.0
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), product


def test_chip_conforms() -> None:
    check_generator(ChipGenerator)


def test_chip_removes_material_only_at_the_product_edge() -> None:
    img, product = _plate()
    synth = Synthesizer([{"generator": "chip"}], instances=3, product_mask=product)
    inside = cv2.distanceTransform(product.astype(np.uint8), cv2.DIST_L2, 5)
    seen = 0
    for seed in range(6):
        sample = synth(img, seed=seed)
        for a in sample.annotations:
            seen += 1
            m = a.mask
            assert not (m & ~product).any(), "a chip's label leaves the product"
            # it touches the edge, and reaches in no farther than the bite can
            assert inside[m].min() <= 1.5
            reach = a.params["depth"] * a.params["size"] * 1.3 + 2
            assert inside[m].max() <= reach
        # nothing changed away from the edge: the product's interior is untouched
        deep = inside > 60
        assert np.array_equal(sample.image[deep], img[deep])
    assert seen >= 10


def test_chip_on_a_product_filling_the_frame_has_no_room() -> None:
    img = np.full((128, 128, 3), 150, np.uint8)
    sample = Synthesizer([{"generator": "chip"}], instances=2)(img, seed=0)
    assert sample.annotations == []
    assert sample.stats["dropped_no_room"] == 2
    # other entries of the same recipe still get their defects
    synth = Synthesizer([{"generator": "chip"}, {"generator": "pit"}], instances=6)
    sample = synth(np.full((256, 256, 3), 150, np.uint8), seed=1)
    assert sample.stats["dropped_no_room"] >= 1
    assert {a.generator for a in sample.annotations} == {"pit"}


def test_edge_sampler_draws_only_edge_pixels() -> None:
    _, product = _plate(64, 20)
    sampler = EdgeSampler(product)
    eroded = cv2.erode(product.astype(np.uint8), np.ones((3, 3), np.uint8))
    rng = np.random.default_rng(0)
    for _ in range(200):
        c = sampler.draw(rng)
        assert c is not None
        x, y = c
        assert product[y, x] and not eroded[y, x]
    assert EdgeSampler(np.ones((32, 32), bool)).draw(rng) is None


class _Bump(DefectGenerator):
    """Adds a fixed amount to a disc: the same change on any surface."""

    name = "bump_test"

    @dataclass(frozen=True)
    class Params:
        amount: float = param(8.0 / 255.0, lo=0.0, hi=1.0)

    def extent(self, params: Params, rng: np.random.Generator) -> tuple[int, int]:
        return 40, 40

    def render(self, region: Region, params: Params, rng: np.random.Generator) -> Layer:
        h, w = region.shape
        yy, xx = np.mgrid[0:h, 0:w]
        cov = (((xx - w / 2) ** 2 + (yy - h / 2) ** 2) <= 12**2).astype(np.float32)
        out = np.clip(region.pixels + np.float32(params.amount), 0, 1)
        return Layer(out.astype(np.float32), cov)


def _surfaces() -> tuple[np.ndarray, np.ndarray]:
    flat = np.full((160, 160), 120, np.uint8)
    # a knurl-like pattern: detail varying by about 25 grey levels
    yy, xx = np.mgrid[0:160, 0:160]
    wave = np.sin(2 * np.pi * xx / 7) * np.sin(2 * np.pi * yy / 7)
    busy = np.clip(120 + 50 * wave, 0, 255).astype(np.uint8)
    return flat, busy


def test_scene_relative_gate_drops_a_change_that_hides_in_the_texture() -> None:
    flat, busy = _surfaces()
    assert texture_noise(flat, (60, 60, 100, 100)) < 1.0
    assert texture_noise(busy, (60, 60, 100, 100)) > 20.0
    synth = Synthesizer([{"generator": _Bump}], instances=1, max_attempts=2)
    # 8 grey levels: above the absolute gate (5.1) on both surfaces, below 0.4 x the
    # pattern's variation (about 9)
    on_flat = synth(flat, seed=0)
    assert len(on_flat.annotations) == 1
    on_busy = synth(busy, seed=0)
    assert on_busy.annotations == []
    assert on_busy.stats["dropped_visibility"] == 1
    # the same change, 4x stronger, stands out of the texture and is labeled
    strong = Synthesizer([{"generator": _Bump, "params": {"amount": 30 / 255}}], instances=1)
    assert len(strong(busy, seed=0).annotations) == 1
    # and the scene-relative test can be turned off
    lenient = Synthesizer([{"generator": _Bump}], instances=1, gate=Gate(min_relative=0.0))
    assert len(lenient(busy, seed=0).annotations) == 1


@pytest.mark.parametrize("fixture", ["knurled_steel", "brushed_metal"])
def test_every_labeled_instance_stands_out_of_its_texture(fixture: str) -> None:
    img = cv2.imread(str(FIXTURES / "images" / f"{fixture}.png"), cv2.IMREAD_COLOR)
    synth = Synthesizer([{"generator": g} for g in ("scratch", "scale", "crazing")],
                        instances=4)
    labeled = 0
    for seed in range(3):
        for a in synth(img, seed=seed).annotations:
            assert a.visibility >= 0.4 * texture_noise(img, a.box) - 1e-6
            labeled += 1
    assert labeled >= 3  # the gate lets findable defects through


def test_texture_noise_is_the_surface_detail_standard_deviation() -> None:
    rng = np.random.default_rng(0)
    for sigma in (3.0, 10.0, 25.0):
        img = np.clip(128 + rng.normal(0, sigma, (200, 200)), 0, 255).astype(np.uint8)
        got = texture_noise(img, (80, 80, 120, 120))
        # white noise less its local mean over a 21 px window: about sigma
        assert abs(got - sigma) <= 0.12 * sigma, (sigma, got)


@pytest.mark.parametrize("angle", [0.0, 23.0, 45.0, 71.0, 90.0, 133.0])
def test_a_thin_scratch_is_labeled_in_one_piece(angle: float) -> None:
    img = np.full((256, 256, 3), 140, np.uint8)
    synth = Synthesizer(
        [{"generator": "scratch", "params": {
            "angle": angle, "width": [0.6, 1.4], "micro_scratches": 0, "length": 150}}],
        instances=1, gate=Gate(min_contrast=0.0, min_relative=0.0),
    )
    for seed in range(4):
        (a,) = synth(img, seed=seed).annotations
        n, _ = cv2.connectedComponents(a.mask_crop.astype(np.uint8), connectivity=8)
        assert n - 1 == 1, f"scratch at {angle} deg, seed {seed}: {n - 1} pieces"
        # (not a stray fragment: a 150 px stroke, at most half of it run off the image)
        assert math.hypot(a.box[2] - a.box[0], a.box[3] - a.box[1]) > 35


@pytest.mark.parametrize("azimuth_seed", range(4))
def test_a_burnished_scratch_is_bright_whatever_the_light(azimuth_seed: int) -> None:
    rng = np.random.default_rng(azimuth_seed)
    img = np.clip(110 + rng.normal(0, 4, (200, 200)), 0, 255).astype(np.uint8)  # matte
    synth = Synthesizer(
        [{"generator": "scratch", "params": {"burnish": 1.0, "width": 3.0, "exposure": 0.0}}],
        instances=1,
    )
    plain = Synthesizer(
        [{"generator": "scratch", "params": {"burnish": 0.0, "width": 3.0, "exposure": 0.0}}],
        instances=1,
    )
    (a,) = synth(img, seed=azimuth_seed).annotations
    out = synth(img, seed=azimuth_seed).image.astype(np.float32)
    m = a.mask
    assert out[m].mean() > img[m].mean() + 15
    # without the polish the groove's shading darkens as much as it lightens
    out0 = plain(img, seed=azimuth_seed)
    (b,) = out0.annotations
    assert out0.image[b.mask].astype(np.float32).mean() < out[m].mean() - 10


def test_centres_on_a_ragged_product_are_the_same_every_time() -> None:
    """The exact allowed set (thin or ragged products) comes from an exact distance
    transform; OpenCV's precise mode differed by a few 1e-6 from call to call, which
    flipped pixels at whole distances from the edge."""
    from defectsynth.placement import CentreSampler

    rng = np.random.default_rng(4)
    product = (rng.random((90, 120)) > 0.2).astype(np.uint8)
    product = cv2.morphologyEx(product, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
    first = CentreSampler(product, 3)._exact()
    for _ in range(20):
        assert np.array_equal(CentreSampler(product.copy(), 3)._exact(), first)
    # and it is the disc test: every allowed pixel has the whole disc on the product
    s = CentreSampler(product, 3)
    for flat in first[::7]:
        assert s._allowed(int(flat % 120), int(flat // 120))


def test_texture_noise_on_the_product_is_the_products_own() -> None:
    """A product with fine grain (sigma 4) beside a flat background: around a box astride
    the edge (where a chip sits) the measure is the product's grain, neither lowered by
    the flat background nor raised by the step between them."""
    rng = np.random.default_rng(0)
    img = np.full((120, 120), 30.0)
    img[:, 60:] = 180 + rng.normal(0, 4, (120, 60))
    img = np.clip(img, 0, 255).astype(np.uint8)
    product = np.zeros((120, 120), bool)
    product[:, 60:] = True
    for box in ((50, 40, 80, 70), (55, 40, 70, 70), (40, 40, 90, 70)):
        assert abs(texture_noise(img, box, product) - 4.0) < 0.6
        assert texture_noise(img, box) < 3.2  # half of the crop is flat background
    full = np.ones_like(product)
    assert texture_noise(img, (80, 40, 110, 70), full) == texture_noise(img, (80, 40, 110, 70))


def _burnished(img: np.ndarray, **extra: float) -> tuple[np.ndarray, np.ndarray]:
    """The composite and the label of one straight, burnished vertical scratch."""
    params = {"burnish": 1.0, "width": 3.0, "exposure": 0.0, "angle": 90.0, "length": 120.0,
              "curvature": 0.0, "wobble": 0.0, "width_variation": 0.0, "micro_scratches": 0,
              **extra}
    synth = Synthesizer([{"generator": "scratch", "params": params}], instances=1,
                        gate=Gate(min_contrast=0.0, min_relative=0.0))
    s = synth(img, seed=1)
    (a,) = s.annotations
    return s.image.astype(np.float32), a.mask


def test_a_glowing_scratch_lights_the_surface_beside_it_and_labels_the_bright_part() -> None:
    img = np.full((200, 200), 100, np.uint8)  # flat: every change is the scratch's
    plain, m0 = _burnished(img, glow=0.0, uneven=0.0)
    glow, m1 = _burnished(img, glow=0.8, glow_radius=5.0, uneven=0.0)
    cols0 = np.flatnonzero(m0.any(axis=0))
    # beside the groove (3 to 6 px out) the plain scratch left the surface alone...
    beside = np.zeros_like(m0)
    beside[:, max(cols0[0] - 6, 0) : cols0[0] - 2] = True
    beside[:, cols0[-1] + 3 : cols0[-1] + 7] = True
    beside &= m0.any(axis=1)[:, None]
    assert np.abs(plain[beside] - 100).max() <= 1
    # ...the glowing one lit it, softly: brighter than the surface, darker than the groove
    assert glow[beside].mean() > 100 + 4
    assert glow[beside].mean() < glow[m0].mean()
    # the label grew with the bright halo, and nothing changed off the layer's coverage
    assert m1.sum() > 1.5 * m0.sum()
    changed = glow != 100
    far = cv2.dilate(m1.astype(np.uint8), np.ones((41, 41), np.uint8)) == 0
    assert not (changed & far).any()


def test_an_uneven_scratch_comes_and_goes_along_its_length() -> None:
    """The same groove (the unevenness is drawn after its course), its brightening
    scaled row by row: by about 1 all along when even, by 0.3 here and 1.6 there when
    uneven."""
    img = np.full((200, 200), 100, np.uint8)
    even, m = _burnished(img, uneven=0.0, glow=0.0)
    uneven, m1 = _burnished(img, uneven=1.0, glow=0.0)
    assert np.array_equal(m1 & m, m1)  # nothing labelled beyond the groove
    rows = np.flatnonzero(m.any(axis=1))[20:-20]  # (not the tapered ends)
    ratio = np.array([(uneven[r][m[r]] - 100).mean() / (even[r][m[r]] - 100).mean()
                      for r in rows])
    assert ratio.std() > 0.15
    assert ratio.max() - ratio.min() > 0.6
