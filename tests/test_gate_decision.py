"""Gate.passes decides by counting detail values against the bound (issue 19): the same
decision, to the bit, as comparing with the exact median (texture_noise), including at
and a hair either side of the bound."""

from __future__ import annotations

import numpy as np
import pytest

from defectsynth.visibility import Gate, texture_noise


@pytest.mark.parametrize("seed", range(4))
def test_passes_equals_exact_median_decision(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for t in range(150):
        h, w = (int(v) for v in rng.integers(20, 160, 2))
        if t % 3 == 0:
            src = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        elif t % 3 == 1:
            src = rng.normal(30000, rng.uniform(1, 3000), (h, w)).clip(0, 65535)
            src = src.astype(np.uint16)
        else:  # few distinct values: many ties at the median
            src = np.full((h, w), 100, np.uint8)
            src[::2] += np.uint8(rng.integers(0, 3))
        x1, y1 = int(rng.integers(0, w - 2)), int(rng.integers(0, h - 2))
        x2, y2 = int(rng.integers(x1 + 1, w + 1)), int(rng.integers(y1 + 1, h + 1))
        box = (x1, y1, x2, y2)
        product = None if t % 4 == 0 else rng.random((h, w)) < rng.uniform(0, 1.2)
        gate = Gate(min_relative=float(rng.choice([0.4, 0.37, 1.0, 0.0])))
        at = gate.min_relative * texture_noise(src, box, product)
        for vis in (at, np.nextafter(at, 0), np.nextafter(at, 1e9), at * (1 + 5e-7),
                    at * (1 - 5e-7), 2 * at, at / 2, 0.0, float(rng.uniform(0, 50))):
            vis = float(vis)
            exact = gate.min_relative <= 0 or vis >= at
            assert gate.passes(vis, 0.0, src, box, product) == exact, (t, vis, at)
