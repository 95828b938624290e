"""The Synthesizer's contracts: labels match the pixels, determinism, inputs."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from defectsynth import (
    DefectGenerator,
    Gate,
    InputImageError,
    Layer,
    Synthesizer,
    param,
    source_id,
)
from defectsynth.compose import change_map
from defectsynth.placement import CentreSampler, estimate_product_mask
from defectsynth.plugins import PluginHost
from defectsynth.sample import tight_box
from defectsynth.testing import test_surface

HERE = Path(__file__).parent
HOST = PluginHost([HERE / "plugins", HERE.parent / "plugins" / "examples"])


class PoissonBlob(DefectGenerator):
    """The test blob, blended with cv2.seamlessClone."""

    name = "poisson_blob"
    blend = "poisson"

    @dataclass(frozen=True)
    class Params:
        radius: float = param(9.0, lo=3.0, hi=30.0, vary=(5.0, 12.0))

    def extent(self, params, rng):  # type: ignore[no-untyped-def]
        s = int(params.radius * 2 + 12)
        return s, s

    def render(self, region, params, rng):  # type: ignore[no-untyped-def]
        h, w = region.shape
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r = np.hypot(xx - (w - 1) / 2, yy - (h - 1) / 2) / params.radius
        cov = np.clip((1 - r) * 4, 0, 1).astype(np.float32)
        px = np.clip(region.pixels * 0.3 + 0.02, 0, 1).astype(np.float32)
        return Layer(px, cov)


GENERATORS: dict[str, type[DefectGenerator]] = {**HOST.generators, "poisson_blob": PoissonBlob}


def make_image(rng: np.random.Generator, h: int, w: int, channels: int, dtype: type) -> np.ndarray:
    img = test_surface((h, w), channels=3 if channels == 4 else channels, dtype=dtype,
                       seed=int(rng.integers(1000)))
    if channels == 4:
        maxval = np.iinfo(dtype).max
        alpha = np.full((h, w), maxval, dtype)
        alpha[:, : w // 3] = 0  # the left third is transparent: no defects there
        img = np.dstack([img, alpha])
    return img


def check_invariants(src: np.ndarray, product: np.ndarray, sample, gate: Gate) -> None:
    out = sample.image
    assert out.dtype == src.dtype and out.shape == src.shape
    # 1. nothing changes outside the footprint (the union of the kept instances' coverage)
    assert np.array_equal(out[~sample.footprint], src[~sample.footprint])
    if src.ndim == 3 and src.shape[2] == 4:
        assert np.array_equal(out[..., 3], src[..., 3])
        product = product & (src[..., 3] > 0)
    # ... and the footprint is explained by kept instances: every changed pixel lies in it
    changed = change_map(out[..., :3] if out.ndim == 3 else out,
                         src[..., :3] if src.ndim == 3 else src) > 0
    assert not (changed & ~sample.footprint).any()
    if not sample.annotations:
        assert not changed.any(), "pixels changed but no instance was kept"
    maxval = np.iinfo(src.dtype).max
    union = np.zeros(src.shape[:2], bool)
    for a in sample.annotations:
        m = a.mask
        # 2. box == tight box of a non-empty mask inside the image and the product
        assert m.any()
        assert tight_box(m) == a.box
        assert not (m & ~product).any()
        # masks of kept instances do not overlap: occluded parts were removed
        assert not (m & union).any()
        union |= m
        # 3. the visibility gate, measured here from output and source
        diff = change_map(out[..., :3] if out.ndim == 3 else out,
                          src[..., :3] if src.ndim == 3 else src)
        assert a.area >= gate.min_area
        assert diff[m].mean() >= gate.min_contrast * maxval - 1e-9, (a.generator, a.visibility)
        assert a.area == int(m.sum())


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(GENERATORS)),
    h=st.integers(16, 120),
    w=st.integers(16, 120),
    channels=st.sampled_from([1, 3, 4]),
    dtype=st.sampled_from([np.uint8, np.uint16]),
    product_kind=st.sampled_from(["full", "rect", "blob"]),
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 4),
    contrast=st.sampled_from([0.01, 0.02, 0.06]),
    min_area=st.sampled_from([1, 16, 40]),
    max_overlap=st.sampled_from([0.0, 0.25, 1.0]),
)
def test_invariants_hold_for_every_generator(
    name: str, h: int, w: int, channels: int, dtype: type, product_kind: str, seed: int,
    n: int, contrast: float, min_area: int, max_overlap: float,
) -> None:
    rng = np.random.default_rng(seed)
    src = make_image(rng, h, w, channels, dtype)
    product = np.ones((h, w), bool)
    if product_kind == "rect":
        product[:] = False
        product[h // 5: h - h // 6, w // 4: w - w // 7] = True
    elif product_kind == "blob":
        product = np.zeros((h, w), np.uint8)
        cv2.ellipse(product, (w // 2, h // 2), (w // 3, h // 3), 20, 0, 360, 1, -1)
        product = product.astype(bool)
    gate = Gate(min_contrast=contrast, min_area=min_area)
    synth = Synthesizer([{"generator": GENERATORS[name]}], instances=n, gate=gate,
                        max_overlap=max_overlap, host=HOST, margin=2)
    src_before = src.copy()
    sample = synth.apply(src, product, seed=seed, source_id=3, variant=1)
    assert np.array_equal(src, src_before), "apply() modified its input"
    check_invariants(src, product, sample, gate)
    st_ = sample.stats
    assert st_["placed"] == len(sample.annotations)
    assert st_["requested"] == n
    assert st_["placed"] + st_["dropped_visibility"] + st_["dropped_no_room"] + st_[
        "dropped_overlap"] == n
    # determinism: same inputs give the same bytes
    again = synth.apply(src, product, seed=seed, source_id=3, variant=1)
    assert np.array_equal(again.image, sample.image)
    assert [a.box for a in again.annotations] == [a.box for a in sample.annotations]


def test_a_mix_of_all_generators_keeps_the_invariants_on_a_large_image() -> None:
    src = test_surface((384, 512), channels=3, seed=5)
    product = np.ones(src.shape[:2], bool)
    entries = [{"generator": g} for g in GENERATORS.values()]
    synth = Synthesizer(entries, instances=(6, 10), host=HOST, max_overlap=0.5)
    total = 0
    for seed in range(4):
        sample = synth.apply(src, seed=seed, source_id=1, variant=0)
        check_invariants(src, product, sample, synth.gate)
        total += len(sample)
    assert total >= 12


def test_another_variant_gives_another_sample() -> None:
    src = test_surface((128, 128))
    synth = Synthesizer([{"generator": "blob"}], instances=2, host=HOST)
    a = synth.apply(src, seed=1, source_id=2, variant=0)
    b = synth.apply(src, seed=1, source_id=2, variant=1)
    c = synth.apply(src, seed=1, source_id=3, variant=0)
    assert not np.array_equal(a.image, b.image)
    assert not np.array_equal(a.image, c.image)


def test_same_bytes_in_another_process() -> None:
    """No hidden state (hash randomization, globals): a fresh interpreter agrees."""
    code = (
        "import sys, hashlib, numpy as np\n"
        "from pathlib import Path\n"
        "from defectsynth import Synthesizer\n"
        "from defectsynth.plugins import PluginHost\n"
        "from defectsynth.testing import test_surface\n"
        f"h = PluginHost([{str(HERE / 'plugins')!r}])\n"
        "s = Synthesizer([{'generator': 'blob'}], instances=3, host=h)\n"
        "smp = s.apply(test_surface((96, 128)), seed=9, source_id=4, variant=2)\n"
        "print(hashlib.sha256(smp.image.tobytes()).hexdigest(), [a.box for a in smp.annotations])\n"
    )
    outs = set()
    for hashseed in ("1", "2"):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={"PYTHONHASHSEED": hashseed, "PATH": ""}, timeout=120)
        assert proc.returncode == 0, proc.stderr
        outs.add(proc.stdout)
    local = Synthesizer([{"generator": "blob"}], instances=3, host=HOST).apply(
        test_surface((96, 128)), seed=9, source_id=4, variant=2)
    expected = f"{hashlib.sha256(local.image.tobytes()).hexdigest()} " \
               f"{[a.box for a in local.annotations]}\n"
    assert outs == {expected}


def test_source_id_is_a_stable_hash_of_the_relative_posix_path() -> None:
    digest = hashlib.sha256(b"parts/a.png").digest()
    assert source_id("parts/a.png") == int.from_bytes(digest[:8], "big") >> 1
    assert source_id(Path("parts") / "a.png") == source_id("parts/a.png")
    assert source_id("parts/b.png") != source_id("parts/a.png")


def test_an_annotation_reproduces_alone() -> None:
    """params + seed recorded on an annotation re-render the same layer."""
    src = test_surface((128, 128))
    synth = Synthesizer([{"generator": "blob"}], instances=1, host=HOST)
    sample = synth.apply(src, seed=3)
    (a,) = sample.annotations
    gen = HOST.generators[a.generator]
    params = gen.Params(**a.params)
    rng = np.random.default_rng(a.seed)
    # the synthesizer draws params from the same rng first; replay that
    from defectsynth.generator import ParamSpace

    assert ParamSpace(gen).draw(rng) == params
    assert gen().extent(params, rng) == gen().extent(params, np.random.default_rng(0))


def _spy(name: str, seen: list[Any], look: Any) -> type[DefectGenerator]:
    """The alpha-blended test blob, noting ``look(region)`` in ``seen`` at every render."""

    class Spy(PoissonBlob):
        blend = "alpha"

        def render(self, region, params, rng):  # type: ignore[no-untyped-def]
            seen.append(look(region))
            return super().render(region, params, rng)

    Spy.name = name
    return Spy


def test_light_is_shared_by_all_defects_of_an_image() -> None:
    seen: list[Any] = []
    synth = Synthesizer([{"generator": _spy("spy", seen, lambda r: r.light)}], instances=4,
                        host=HOST)
    synth.apply(test_surface((128, 128)), seed=1, variant=0)
    assert len(set(seen)) == 1
    first = seen[0]
    seen.clear()
    synth.apply(test_surface((128, 128)), seed=1, variant=1)
    assert seen[0] != first
    assert 25.0 <= first.elevation <= 65.0


def test_texture_scale_is_measured_once_per_image_and_only_when_read(monkeypatch) -> None:
    import defectsynth.synthesizer as synth_mod

    calls = []
    real = synth_mod._texture_scale
    monkeypatch.setattr(synth_mod, "_texture_scale",
                        lambda *a: calls.append(1) or real(*a))
    scales: list[Any] = []
    reader = _spy("reader", scales, lambda r: (r.texture_scale, r.texture_scale))
    image = test_surface((128, 128))
    Synthesizer([{"generator": PoissonBlob}], instances=3, host=HOST).apply(image, seed=1)
    assert calls == []  # nobody read it
    sample = Synthesizer([{"generator": reader}], instances=3, host=HOST).apply(image, seed=1)
    assert len(sample.annotations) == 3 and len(scales) >= 3
    assert calls == [1]  # measured once for the image, shared by every instance
    assert {v for pair in scales for v in pair} == {real(image, np.ones((128, 128), bool))}


def test_region_is_read_only() -> None:
    from defectsynth import Light, Region

    px = np.zeros((8, 8, 3), np.float32)
    region = Region(px, np.ones((8, 8), np.float32), Light(10.0, 40.0), 6.0)
    assert region.texture_scale == 6.0 and region.shape == (8, 8) and region.is_color
    with pytest.raises(AttributeError, match="read-only"):
        region.pixels = px  # type: ignore[misc]


def test_layer_pixels_are_checked_where_blending_reads_them() -> None:
    from defectsynth import GeneratorFailure

    class Sloppy(PoissonBlob):
        name = "sloppy"
        blend = "alpha"
        where = "corner"

        def render(self, region, params, rng):  # type: ignore[no-untyped-def]
            layer = super().render(region, params, rng)
            h, w = region.shape
            y, x = (0, 0) if self.where == "corner" else (h // 2, w // 2)
            layer.pixels[y, x] = np.nan
            return layer

    image = test_surface((96, 96))
    # a NaN where coverage is 0 is never read: the instance is kept, the image is clean
    sample = Synthesizer([{"generator": Sloppy}], instances=2, host=HOST).apply(image, seed=3)
    assert len(sample.annotations) == 2
    Sloppy.where = "centre"
    with pytest.raises(GeneratorFailure, match="Layer.pixels contains NaN"):
        Synthesizer([{"generator": Sloppy}], instances=1, host=HOST).apply(image, seed=3)


def test_occluded_instance_keeps_only_what_remains_visible() -> None:
    src = test_surface((96, 96))
    big = {"generator": "blob", "params": {"radius": 30.0, "strength": -0.4,
                                           "softness": 0.05}}
    small = {"generator": "blob", "params": {"radius": 8.0, "strength": 0.45,
                                             "softness": 0.05}}
    found = False
    for seed in range(60):
        synth = Synthesizer([small], instances=1, host=HOST, max_overlap=1.0)
        first = synth.apply(src, seed=seed)
        if not first.annotations:
            continue
        both = Synthesizer([small, big], instances=2, host=HOST, max_overlap=1.0)
        sample = both.apply(src, seed=seed)
        check_invariants(src, np.ones((96, 96), bool), sample, both.gate)
        if len(sample) == 2 and sample.annotations[0].area < first.annotations[0].area:
            found = True
    assert found, "no seed produced a partly occluded instance"


def test_no_room_is_counted() -> None:
    src = test_surface((64, 64))
    synth = Synthesizer([{"generator": "blob"}], instances=3, host=HOST, margin=10)
    product = np.zeros((64, 64), bool)
    product[30:36, 30:36] = True  # 6 px wide: nothing is 10 px from its edge
    sample = synth.apply(src, product, seed=1)
    assert len(sample) == 0 and sample.stats["dropped_no_room"] == 3
    assert np.array_equal(sample.image, src)


@pytest.mark.parametrize("shape", ["ring", "blobs", "full"])
def test_centres_are_uniform_over_pixels_margin_inside_the_product(shape: str) -> None:
    """The sampler's fast path (candidates in the product's box, kept when the disc of
    radius margin is on the product) and its exact fallback (distance transform, for thin
    products) agree with the definition: every centre is farther than the margin from
    the background and the image border, and every allowed pixel can be drawn."""
    h, w, margin = 60, 80, 5
    product = np.zeros((h, w), np.uint8)
    if shape == "ring":  # thin: most candidates in its box fail, the fallback runs
        cv2.circle(product, (40, 30), 24, 1, 13)
    elif shape == "blobs":
        cv2.circle(product, (20, 20), 14, 1, -1)
        cv2.rectangle(product, (45, 25), (78, 59), 1, -1)
    else:
        product[:] = 1
    dist = cv2.distanceTransform(np.pad(product, 1), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    allowed = dist[1:-1, 1:-1] > margin
    sampler = CentreSampler(product > 0, margin)
    rng = np.random.default_rng(0)
    hits = np.zeros((h, w), np.int64)
    n = 40 * int(allowed.sum())
    for _ in range(n):
        centre = sampler.draw(rng)
        assert centre is not None
        hits[centre[1], centre[0]] += 1
    assert not (hits > 0)[~allowed].any(), "a centre closer than the margin to the edge"
    assert (hits > 0)[allowed].all(), "an allowed pixel was never drawn"
    # uniform: each allowed pixel drawn ~40 times; a chi-square-ish spread check
    counts = hits[allowed]
    assert counts.std() < 3 * np.sqrt(40.0)


def test_invisible_defects_are_dropped_and_counted() -> None:
    src = test_surface((64, 64))
    synth = Synthesizer([{"generator": "blob", "params": {"strength": 0.005}}], instances=2,
                        host=HOST, max_attempts=2)
    sample = synth.apply(src, seed=1)
    assert len(sample) == 0
    assert sample.stats["dropped_visibility"] == 2 and sample.stats["redraws"] == 2
    assert np.array_equal(sample.image, src)


def test_defects_stay_on_opaque_pixels_of_bgra() -> None:
    src = make_image(np.random.default_rng(0), 96, 96, 4, np.uint8)
    synth = Synthesizer([{"generator": "blob"}], instances=4, host=HOST)
    for seed in range(5):
        s = synth.apply(src, seed=seed)
        assert not s.footprint[:, :32].any()
        assert s.image.shape == (96, 96, 4)


def test_product_mask_from_file_and_array(tmp_path: Path) -> None:
    src = test_surface((80, 80))
    product = np.zeros((80, 80), np.uint8)
    product[20:60, 20:60] = 255
    cv2.imwrite(str(tmp_path / "m.png"), product)
    synth = Synthesizer([{"generator": "blob"}], instances=3, host=HOST)
    a = synth.apply(src, tmp_path / "m.png", seed=2)
    b = synth.apply(src, product, seed=2)
    assert np.array_equal(a.image, b.image) and len(a) > 0
    assert not a.footprint[:20].any() and not a.footprint[60:].any()
    with pytest.raises(InputImageError, match=r"product mask .*nope\.png.* does not exist"):
        synth.apply(src, tmp_path / "nope.png")
    with pytest.raises(InputImageError, match=r"is 80x40, the image is 80x80"):
        cv2.imwrite(str(tmp_path / "small.png"), product[:40])
        synth.apply(src, tmp_path / "small.png")


def test_auto_product_mask_finds_a_part_on_a_background() -> None:
    rng = np.random.default_rng(0)
    img = np.full((240, 320, 3), (40, 45, 50), np.uint8)
    img = cv2.add(img, rng.integers(0, 10, img.shape).astype(np.uint8))
    truth = np.zeros((240, 320), np.uint8)
    cv2.circle(truth, (170, 120), 80, 1, -1)
    cv2.circle(truth, (170, 120), 25, 0, -1)  # a bore: a real hole through the part
    part = test_surface((240, 320), seed=1)
    img[truth > 0] = part[truth > 0]
    est = estimate_product_mask(img)
    t = truth > 0
    iou = (est & t).sum() / (est | t).sum()
    assert iou > 0.9, iou


def test_auto_product_mask_falls_back_to_full_on_a_uniform_surface() -> None:
    est = estimate_product_mask(test_surface((128, 128)))
    assert est.all()


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((32, 32, 3), np.float32), "dtype float32 is not supported"),
        (np.zeros((0, 0, 3), np.uint8), "too small"),
        (np.zeros((15, 64), np.uint8), "image of 64x15 px is too small"),
        (np.zeros((32, 32, 5), np.uint8), r"shape \(32, 32, 5\) is not supported"),
        (np.zeros((32, 32, 2), np.uint8), r"shape \(32, 32, 2\) is not supported"),
        ([[1, 2], [3, 4]], "must be a numpy array, got list"),
    ],
)
def test_bad_inputs_say_what_was_received_and_what_is_accepted(image, message) -> None:
    synth = Synthesizer([{"generator": "blob"}], host=HOST)
    with pytest.raises(InputImageError, match=message) as info:
        synth.apply(image)
    assert "accepted: uint8 or uint16" in str(info.value)


def test_entry_validation() -> None:
    with pytest.raises(ValueError, match="all generator weights are zero"):
        Synthesizer([{"generator": "blob", "weight": 0}], host=HOST)
    with pytest.raises(ValueError, match=r"entries\[0\] \(blob\): weight -1"):
        Synthesizer([{"generator": "blob", "weight": -1}], host=HOST)
    with pytest.raises(KeyError, match="unknown generator 'blop'"):
        Synthesizer([{"generator": "blop"}], host=HOST)


def test_category_rename_and_weights() -> None:
    synth = Synthesizer(
        [{"generator": "blob", "category": "spot", "weight": 3},
         {"generator": "paint_chip", "weight": 1}],
        instances=4, host=HOST, max_overlap=1.0,
    )
    assert synth.categories == ["spot", "paint_chip"]
    cats = []
    for seed in range(30):
        cats += synth.apply(test_surface((128, 128)), seed=seed).categories
    assert set(cats) == {"spot", "paint_chip"}
    assert cats.count("spot") > cats.count("paint_chip")


def test_zero_weight_entries_are_never_drawn() -> None:
    """Weighted choice by one uniform draw: proportions follow the weights, and an entry of
    weight 0 (first or last, where rounding of the cumulative sum could reach it) never
    comes up."""
    synth = Synthesizer(
        [{"generator": "paint_chip", "weight": 0}, {"generator": "blob", "weight": 3},
         {"generator": "blob", "category": "other", "weight": 1},
         {"generator": "paint_chip", "category": "never", "weight": 0}],
        instances=4, host=HOST, max_overlap=1.0,
    )
    cats: list[str] = []
    for seed in range(60):
        cats += synth.apply(test_surface((128, 128)), seed=seed).categories
    assert "paint_chip" not in cats and "never" not in cats
    assert 2.0 < cats.count("blob") / max(cats.count("other"), 1) < 4.5


def test_sample_draw_gives_a_bgr_picture() -> None:
    synth = Synthesizer([{"generator": "blob"}], instances=2, host=HOST)
    pic = synth.apply(test_surface((64, 64), channels=1, dtype=np.uint16), seed=1).draw()
    assert pic.dtype == np.uint8 and pic.shape == (64, 64, 3)


def _contact(ann: Any, hole: np.ndarray) -> int:
    """Label pixels with a 4-neighbour in ``hole`` (where a clipped defect was cut)."""
    m = ann.mask.astype(np.uint8)
    near = cv2.dilate(hole.astype(np.uint8), np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]],
                                                      np.uint8)) > 0
    return int(np.count_nonzero((m > 0) & near))


def test_within_product_draws_a_defect_again_instead_of_clipping_it_at_the_mask() -> None:
    """A product mask with holes in one continuous surface (marks left out): by default a
    defect that reaches a hole is clipped to its straight edge; ``within_product`` draws
    it again elsewhere, so no label runs along a hole's edge."""
    image = test_surface((256, 256), channels=3, seed=3)
    product = np.ones((256, 256), bool)
    holes = np.zeros_like(product)
    for y, x in ((30, 30), (30, 150), (150, 30), (150, 150)):
        holes[y : y + 70, x : x + 70] = True
    product &= ~holes
    runs: dict[bool, list[tuple[int, int]]] = {}
    for within in (False, True):
        synth = Synthesizer([{"generator": "crack"}], instances=2, within_product=within)
        runs[within] = [
            (_contact(a, holes), a.area)
            for v in range(20)
            for a in synth.apply(image, product, seed=1, variant=v).annotations
        ]
    clipped = [c for c, area in runs[False] if c > 0.05 * area]
    assert len(clipped) >= 3  # cracks on a holed surface are cut by the holes (6 of 40)
    assert len(runs[True]) >= 20  # with within_product they are still placed ...
    assert all(c <= 0.05 * area for c, area in runs[True])  # ... off the holes


def test_within_product_off_by_default_keeps_the_samples_byte_identical() -> None:
    image = test_surface((128, 128), channels=3, seed=5)
    a = Synthesizer([{"generator": "scratch"}]).apply(image, seed=2, variant=0)
    b = Synthesizer([{"generator": "scratch"}], within_product=False).apply(
        image, seed=2, variant=0)
    assert np.array_equal(a.image, b.image)
