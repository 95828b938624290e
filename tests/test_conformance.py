"""The conformance suite over every registered generator, found by introspection."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from defectsynth import DefectGenerator, Layer, param
from defectsynth.plugins import PluginHost
from defectsynth.testing import check_generator

HERE = Path(__file__).parent
HOST = PluginHost([HERE / "plugins", Path(__file__).parents[1] / "plugins" / "examples"])


@pytest.mark.parametrize("name", sorted(HOST.generators))
def test_every_registered_generator_conforms(name: str) -> None:
    check_generator(HOST.generators[name])


class _Base(DefectGenerator):
    name = "bad"

    @dataclass(frozen=True)
    class Params:
        k: float = param(1.0, lo=0.0, hi=2.0)

    def extent(self, params, rng):  # type: ignore[no-untyped-def]
        return 24, 24

    def render(self, region, params, rng):  # type: ignore[no-untyped-def]
        cov = np.zeros(region.shape, np.float32)
        cov[8:16, 8:16] = 1
        return Layer(np.clip(region.pixels * 0.2, 0, 1).astype(np.float32), cov)


class Nondeterministic(_Base):
    def render(self, region, params, rng):  # type: ignore[no-untyped-def]
        layer = super().render(region, params, rng)
        noise = np.random.default_rng().random(region.pixels.shape, dtype=np.float32) * 0.1
        return Layer(layer.pixels * 0.9 + noise, layer.coverage)


class Mutates(_Base):
    def render(self, region, params, rng):  # type: ignore[no-untyped-def]
        region.pixels[0, 0, 0] = 1.0
        return super().render(region, params, rng)


class CoverageOutOfRange(_Base):
    def render(self, region, params, rng):  # type: ignore[no-untyped-def]
        layer = super().render(region, params, rng)
        return Layer(layer.pixels, layer.coverage * 1.5)


class WrongDtype(_Base):
    def render(self, region, params, rng):  # type: ignore[no-untyped-def]
        layer = super().render(region, params, rng)
        return Layer(layer.pixels.astype(np.float64), layer.coverage)


class NaNs(_Base):
    def render(self, region, params, rng):  # type: ignore[no-untyped-def]
        layer = super().render(region, params, rng)
        px = layer.pixels.copy()
        px[0, 0] = np.nan
        return Layer(px, layer.coverage)


class BreaksAtRangeEnd(_Base):
    def render(self, region, params, rng):  # type: ignore[no-untyped-def]
        if params.k == 2.0:
            raise ZeroDivisionError("k at its maximum")
        return super().render(region, params, rng)


class Invisible(_Base):
    def render(self, region, params, rng):  # type: ignore[no-untyped-def]
        layer = super().render(region, params, rng)
        return Layer(region.pixels.copy(), layer.coverage)


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (Nondeterministic, "not deterministic"),
        (Mutates, "writes into region.pixels"),
        (CoverageOutOfRange, "coverage outside"),
        (WrongDtype, "dtype float64, expected float32"),
        (NaNs, "NaN or inf"),
        (BreaksAtRangeEnd, "ZeroDivisionError"),
        (Invisible, "no instance passed the visibility gate"),
    ],
)
def test_the_suite_catches_broken_generators(cls: type, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_generator(cls)
