"""Broken on purpose: registers a non-generator and a generator with bad Params;
its one valid generator must still load."""

from dataclasses import dataclass

from defectsynth import DefectGenerator, Layer, hookimpl, param


class NotAGenerator:
    name = "not_a_generator"


class BadParamsGenerator(DefectGenerator):
    name = "bad_params"

    @dataclass(frozen=True)
    class Params:
        width: float = param(50.0, lo=0.0, hi=10.0)  # default outside its own range

    def extent(self, params, rng):
        return 8, 8

    def render(self, region, params, rng):
        return Layer(region.pixels.copy(), region.pixels[..., 0] * 0)


class FineGenerator(BadParamsGenerator):
    name = "fine"

    @dataclass(frozen=True)
    class Params:
        width: float = param(5.0, lo=0.0, hi=10.0)


@hookimpl
def register_generators(register):
    register(NotAGenerator)
    register(BadParamsGenerator)
    register(FineGenerator)
