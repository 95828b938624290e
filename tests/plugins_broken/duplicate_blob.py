"""Broken on purpose: registers a generator named "blob", already taken."""

from dataclasses import dataclass

from defectsynth import DefectGenerator, Layer, hookimpl


class AnotherBlob(DefectGenerator):
    name = "blob"

    @dataclass(frozen=True)
    class Params:
        pass

    def extent(self, params, rng):
        return 8, 8

    def render(self, region, params, rng):
        return Layer(region.pixels.copy(), region.pixels[..., 0] * 0)


@hookimpl
def register_generators(register):
    register(AnotherBlob)
