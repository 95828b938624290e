"""A boolean product mask array skips resolve_product_mask's ``mask > 0`` (issue 19):
the same mask, layout and samples, and the caller's array is never aliased."""

from __future__ import annotations

import numpy as np

from defectsynth import Synthesizer
from defectsynth.placement import resolve_product_mask
from defectsynth.synthesizer import _bool_mask
from defectsynth.testing import test_surface


def test_bool_mask_equals_resolved() -> None:
    rng = np.random.default_rng(0)
    img = np.zeros((50, 60, 3), np.uint8)
    masks = [
        rng.random((50, 60)) > 0.5,
        rng.random((50, 60, 3)) > 0.5,
        (rng.random((60, 50)) > 0.5).T,
        (rng.random((100, 60)) > 0.5)[::2],
    ]
    for m in masks:
        got, want = _bool_mask(m, img.shape[:2]), resolve_product_mask(m, img)
        assert got is not None
        assert got.dtype == want.dtype and got.strides == want.strides
        assert np.array_equal(got, want) and not np.shares_memory(got, m)
    assert _bool_mask(rng.random((50, 61)) > 0.5, img.shape[:2]) is None
    assert _bool_mask(np.ones((50, 60), np.uint8), img.shape[:2]) is None
    assert _bool_mask("full", img.shape[:2]) is None


def test_bool_and_uint8_masks_give_the_same_sample() -> None:
    img = test_surface((128, 160), seed=2)
    yy, xx = np.mgrid[:128, :160]
    blob = (yy - 64) ** 2 / 50.0**2 + (xx - 80) ** 2 / 60.0**2 < 1
    synth = Synthesizer([{"generator": "dent"}, {"generator": "scratch"}], instances=3)
    for seed in range(3):
        a = synth.apply(img, blob, seed=seed)
        b = synth.apply(img, blob.astype(np.uint8) * 255, seed=seed)
        assert np.array_equal(a.image, b.image)
        assert [x.box for x in a.annotations] == [x.box for x in b.annotations]
