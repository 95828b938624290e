"""The pcb plugin: conformance, the synthesizer's invariants on a colour board photo and on
a binarised scan, and the physics of each defect (an open disconnects, a short connects,
an island touches nothing, a pin-hole is inside copper, mousebites and spurs sit on an
edge)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from defectsynth_pcb import (
    GENERATORS,
    PcbMousebiteGenerator,
    PcbOpenGenerator,
    PcbPinholeGenerator,
    PcbShortGenerator,
    PcbSpurGenerator,
    PcbSpuriousCopperGenerator,
    find_copper,
)

from defectsynth import DefectGenerator, Light, Region, Synthesizer
from defectsynth.compose import change_map
from defectsynth.plugins import PluginHost
from defectsynth.sample import tight_box
from defectsynth.testing import check_generator, test_surface

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
DEEPPCB = Path(__file__).resolve().parents[4] / "shared" / "data" / "deeppcb"
CATEGORIES = {
    "pcb_open": "open",
    "pcb_short": "short",
    "pcb_mousebite": "mousebite",
    "pcb_spur": "spur",
    "pcb_spurious_copper": "copper",
    "pcb_pinhole": "pin-hole",
}


def scan(seed: int = 0, size: int = 320) -> np.ndarray:
    """A binarised PCB scan like DeepPCB's: black copper on white (rows of traces of
    several widths, each ending in a ring pad, and a pour), with JPEG-like noise at both
    ends of the grey scale."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size), 255, np.uint8)
    y = 16
    while y < size - 20:
        w = int(rng.integers(6, 16))
        x = int(rng.integers(0, 30))
        while x < size - 40:
            end = min(x + int(rng.integers(60, 200)), size - 10)
            cv2.line(img, (x, y), (end, y), 0, w)
            if rng.random() < 0.6:
                cv2.circle(img, (end, y), w // 2 + 5, 0, -1)
                cv2.circle(img, (end, y), 3, 255, -1)  # drill hole
            x = end + int(rng.integers(24, 60))
        y += w + int(rng.integers(10, 22))
    # a pour with its clearance
    cv2.rectangle(img, (size - 84, size - 84), (size - 4, size - 4), 255, -1)
    cv2.rectangle(img, (size - 74, size - 74), (size - 14, size - 14), 0, -1)
    noise = rng.integers(0, 8, img.shape).astype(np.uint8)
    return np.where(img > 127, 255 - noise, noise).astype(np.uint8)


def fixture() -> tuple[np.ndarray, np.ndarray]:
    img = cv2.imread(str(FIXTURES / "images" / "pcb.png"))
    mask = cv2.imread(str(FIXTURES / "masks" / "pcb.png"), cv2.IMREAD_GRAYSCALE)
    assert img is not None and mask is not None
    return img, mask > 0


def samples(cls: type[DefectGenerator], img: np.ndarray, product: np.ndarray | None = None,
            n: int = 6, **params: Any) -> list[Any]:
    product = np.ones(img.shape[:2], bool) if product is None else product
    synth = Synthesizer([{"generator": cls, "params": {"fallback": False, **params}}],
                        instances=1, product_mask=product)
    return [synth.apply(img, seed=s, source_id=3) for s in range(n)]


def copper(img: np.ndarray) -> np.ndarray:
    return img < 128  # copper is black on the scan


def n_components(mask: np.ndarray) -> int:
    return int(cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0]) - 1


def window(box: tuple[int, int, int, int], shape: tuple[int, ...], m: int) -> tuple[slice, slice]:
    x1, y1, x2, y2 = box
    h, w = shape[:2]
    return slice(max(y1 - m, 0), min(y2 + m, h)), slice(max(x1 - m, 0), min(x2 + m, w))


def grow(mask: np.ndarray, px: int = 1) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)) > 0


# ---------------------------------------------------------------------------------------
# registration and conformance


def test_registered_through_the_entry_point() -> None:
    host = PluginHost()
    for cls in GENERATORS:
        assert host.generators[cls.name] is cls
        assert host.provider("generator", cls.name).source == "entry point"  # type: ignore[union-attr]


@pytest.mark.parametrize("cls", GENERATORS, ids=lambda c: c.name)
def test_described_with_deeppcb_categories(cls: type[DefectGenerator]) -> None:
    assert cls.label() == CATEGORIES[cls.name]
    assert cls.__doc__ and len(cls.__doc__.split()) > 40
    for f in dataclasses.fields(cls.Params):
        assert f.metadata["defectsynth"].doc, f"{cls.name}.{f.name} has no doc"


@pytest.mark.parametrize("cls", GENERATORS, ids=lambda c: c.name)
def test_conformance(cls: type[DefectGenerator]) -> None:
    check_generator(cls)


# ---------------------------------------------------------------------------------------
# finding the copper


def _region(pixels: np.ndarray) -> Region:
    px = pixels.astype(np.float32) / 255.0
    px = px[:, :, None] if px.ndim == 2 else px
    return Region(px, np.ones(px.shape[:2], np.float32), Light(30.0, 45.0), 6.0)


def test_finds_the_copper_of_a_scan_and_of_a_green_board() -> None:
    img = scan(1)
    layer = find_copper(_region(img))
    assert layer.found and layer.edge_sigma == 0.0
    assert (layer.copper == copper(img)).mean() > 0.99
    board, _ = fixture()
    crop = board[180:300, 20:160]  # traces, a pad row and silkscreen text
    layer = find_copper(_region(crop))
    assert layer.found and layer.edge_sigma > 0.0
    lum = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).astype(float)
    cu, sub = lum[layer.copper], lum[~layer.copper & layer.usable]
    assert cu.mean() > sub.mean() + 15  # traces are the lighter green
    white = crop.min(axis=2) > 170  # silkscreen and tinned pads: neither copper nor gap
    assert not (layer.usable & white).any()


def test_copper_polarity_is_checked_and_obeyed() -> None:
    img = scan(1)
    with pytest.raises(ValueError, match="copper"):
        find_copper(_region(img), "copper-ish")
    light = find_copper(_region(img), "light")
    assert light.found and (light.copper == ~copper(img)).mean() > 0.99


def test_a_plain_surface_has_no_copper_and_fallback_false_skips_it() -> None:
    img = test_surface((256, 256), channels=3, seed=2)
    assert not find_copper(_region(img)).found
    for cls in GENERATORS:
        made = sum(len(s.annotations) for s in samples(cls, img, n=3))
        assert made == 0, cls.name


# ---------------------------------------------------------------------------------------
# the synthesizer's invariants


@pytest.mark.parametrize("cls", GENERATORS, ids=lambda c: c.name)
@pytest.mark.parametrize("where", ["scan", "board", "board16"])
def test_labels_are_the_changed_pixels_and_deterministic(
    cls: type[DefectGenerator], where: str
) -> None:
    if where == "scan":
        img, product = scan(2), None
    else:
        img, product = fixture()
        if where == "board16":
            img = img.astype(np.uint16) * 257
    made = 0
    for seed, sample in enumerate(samples(cls, img, product, n=4)):
        again = samples(cls, img, product, n=seed + 1)[seed]
        assert np.array_equal(sample.image, again.image)
        assert [a.box for a in sample.annotations] == [a.box for a in again.annotations]
        assert sample.image.dtype == img.dtype and sample.image.shape == img.shape
        changed = change_map(sample.image, img) > 0
        assert not (changed & ~sample.footprint).any()
        labelled = np.zeros(img.shape[:2], bool)
        for a in sample.annotations:
            assert a.category == CATEGORIES[cls.name]
            assert a.mask.any() and tight_box(a.mask) == a.box
            assert (a.mask & changed).sum() == a.mask.sum()  # every labelled pixel changed
            labelled |= a.mask
        if where == "scan":
            # the label is exactly the copper that changed; the rest of the change is the
            # JPEG ringing within a few px of it
            assert np.array_equal(labelled, copper(sample.image) != copper(img))
            assert not (changed & ~grow(labelled, 5)).any()
            plain = samples(cls, img, product, n=seed + 1, compression=0.0)[seed]
            flipped = copper(plain.image) != copper(img)
            assert np.array_equal(flipped, change_map(plain.image, img) > 0)
        made += len(sample.annotations)
    assert made >= 3, f"{cls.name} placed {made} of 4 on {where}"


# ---------------------------------------------------------------------------------------
# physics, on the scan (copper is black)


def _instances(cls: type[DefectGenerator], n: int = 8) -> list[tuple[np.ndarray, np.ndarray, Any]]:
    out = []
    for seed in range(3):
        img = scan(10 + seed)
        for sample in samples(cls, img, n=n):
            for a in sample.annotations:
                out.append((copper(img), copper(sample.image), a))
    assert len(out) >= 10, f"{cls.name}: only {len(out)} instances"
    return out


def test_an_open_disconnects_the_trace_it_cuts() -> None:
    for before, after, a in _instances(PcbOpenGenerator):
        assert (before & ~after)[a.mask].all()  # copper removed, nothing added
        sl = window(a.box, before.shape, 2)
        assert n_components(after[sl]) > n_components(before[sl])


def test_a_short_connects_two_traces() -> None:
    for before, after, a in _instances(PcbShortGenerator):
        assert (after & ~before)[a.mask].all()
        sl = window(a.box, before.shape, 2)
        assert n_components(after[sl]) < n_components(before[sl])
        # the bridge touches copper that was there, on two separate pieces of it
        lab = cv2.connectedComponents(before[sl].astype(np.uint8), connectivity=8)[1]
        touched = set(np.unique(lab[grow(a.mask[sl]) & before[sl]])) - {0}
        assert len(touched) >= 2


def test_spurious_copper_is_an_island_touching_no_copper() -> None:
    for before, after, a in _instances(PcbSpuriousCopperGenerator):
        assert (after & ~before)[a.mask].all()
        assert not (grow(a.mask, 2) & before).any()
        sl = window(a.box, before.shape, 3)
        assert n_components(after[sl]) == n_components(before[sl]) + 1


def test_a_pinhole_is_a_hole_inside_copper() -> None:
    for before, after, a in _instances(PcbPinholeGenerator):
        assert (before & ~after)[a.mask].all()
        assert before[grow(a.mask)].all()  # copper all around it
        sl = window(a.box, before.shape, 3)
        holes = n_components(~after[sl]) - n_components(~before[sl])
        assert holes == 1


def test_a_mousebite_bites_a_trace_edge_without_cutting_it() -> None:
    for before, after, a in _instances(PcbMousebiteGenerator):
        assert (before & ~after)[a.mask].all()
        assert (grow(a.mask) & ~before).any()  # open to the gap beside the trace
        sl = window(a.box, before.shape, 4)
        assert n_components(after[sl]) == n_components(before[sl])


def test_a_spur_grows_from_a_trace_edge_and_touches_nothing_else() -> None:
    for before, after, a in _instances(PcbSpurGenerator):
        assert (after & ~before)[a.mask].all()
        assert (grow(a.mask) & before).any()  # attached to the trace
        sl = window(a.box, before.shape, 4)
        assert n_components(after[sl]) == n_components(before[sl])


def test_the_new_copper_looks_like_the_boards_copper() -> None:
    """An island takes the colour of the board's copper nearby, a hole the colour of the
    substrate nearby (the lighter and darker green of the fixture)."""
    img, product = fixture()
    checked = 0
    for cls in (PcbSpuriousCopperGenerator, PcbPinholeGenerator):
        for sample in samples(cls, img, product, n=4):
            for a in sample.annotations:
                core = cv2.erode(a.mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
                core = core if core.any() else a.mask
                sl = window(a.box, img.shape, 40)
                layer = find_copper(_region(img[sl]))
                if not layer.found:
                    continue  # (this window, unlike the generator's, shows no traces)
                want = layer.copper if cls is PcbSpuriousCopperGenerator else (
                    ~layer.copper & layer.usable & ~grow(a.mask[sl], 2))
                tone = img[sl][want].astype(float).mean(axis=0)
                got = sample.image[core].astype(float).mean(axis=0)
                was = img[core].astype(float).mean(axis=0)
                assert np.abs(got - tone).max() < 25, (cls.name, got, tone)
                assert np.abs(got - was).max() > 12  # and it changed
                checked += 1
    assert checked >= 5


@pytest.mark.skipif(not DEEPPCB.is_dir(), reason="DeepPCB not present in ../shared/data")
def test_places_every_defect_on_a_deeppcb_template() -> None:
    path = sorted(DEEPPCB.glob("group*/*/*_temp.jpg"))[0]
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    for cls in GENERATORS:
        made = sum(len(s.annotations) for s in samples(cls, img, n=4))
        assert made >= 3, cls.name


def test_a_misspelt_copper_polarity_is_refused_when_the_recipe_is_read() -> None:
    from defectsynth import ParamError, Synthesizer

    with pytest.raises(ParamError) as err:
        Synthesizer([{"generator": "pcb_open", "params": {"copper": "copperish"}}])
    assert err.value.field == "copper"
