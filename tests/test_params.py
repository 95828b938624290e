"""Parameter resolution: fixed values, ranges, choices, and the errors that name the field."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from defectsynth import DefectGenerator, Layer, ParamError, ParamSpace, param


class Gen(DefectGenerator):
    name = "gen"

    @dataclass(frozen=True)
    class Params:
        width: float = param(2.0, lo=0.5, hi=20.0, doc="stroke width")
        count: int = param(3, lo=1, hi=10, vary=(2, 5))
        style: str = param("a", choices=("a", "b", "c"))
        sharp: bool = param(False)

    def extent(self, params, rng):  # type: ignore[no-untyped-def]
        return 8, 8

    def render(self, region, params, rng):  # type: ignore[no-untyped-def]
        return Layer(region.pixels.copy(), region.pixels[..., 0] * 0)


def draws(spec: dict, n: int = 200) -> list:
    space = ParamSpace(Gen, spec)
    rng = np.random.default_rng(0)
    return [space.draw(rng) for _ in range(n)]


def test_defaults_and_declared_variation() -> None:
    ps = draws({})
    assert {p.width for p in ps} == {2.0}
    assert {p.count for p in ps} == {2, 3, 4, 5}  # vary=(2, 5) is inclusive, ints stay ints
    assert all(isinstance(p.count, int) for p in ps)


def test_fixed_range_and_choices() -> None:
    ps = draws({"width": [1.0, 3.0], "count": [4, 6], "style": ["b", "c"], "sharp": True})
    assert all(1.0 <= p.width <= 3.0 for p in ps)
    assert len({p.width for p in ps}) > 100
    assert {p.count for p in ps} == {4, 5, 6}
    assert {p.style for p in ps} == {"b", "c"}
    assert all(p.sharp is True for p in ps)


def test_int_accepts_integral_float_and_float_accepts_int() -> None:
    (p,) = draws({"count": 7.0, "width": 3}, n=1)
    assert p.count == 7 and isinstance(p.count, int)
    assert p.width == 3.0 and isinstance(p.width, float)


def test_draws_are_reproducible() -> None:
    assert draws({"width": [1, 9]}, 20) == draws({"width": [1, 9]}, 20)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"widht": 2}, r"gen: unknown parameter 'widht' \(did you mean 'width'\?\); known: "
                       r"width, count, style, sharp"),
        ({"width": "wide"}, r"gen\.width: 'wide' is not a number \(expected \[0\.5, 20\]\)"),
        ({"width": True}, r"gen\.width: True is not a number"),
        ({"width": 0.1}, r"gen\.width: 0\.1 is below the minimum 0\.5"),
        ({"width": 25}, r"gen\.width: 25 is above the maximum 20"),
        ({"width": [5, 2]}, r"gen\.width: range \[5\.0, 2\.0\] has lo > hi"),
        ({"width": [1, 2, 3]}, r"gen\.width: a range is \[lo, hi\], got \[1, 2, 3\] "
                               r"\(allowed \[0\.5, 20\]\)"),
        ({"width": [0, 2]}, r"gen\.width: 0 is below the minimum 0\.5"),
        ({"width": float("nan")}, r"gen\.width: nan is not finite"),
        ({"count": 2.5}, r"gen\.count: 2\.5 is not an integer \(expected \[1, 10\]\)"),
        ({"style": "d"}, r"gen\.style: 'd' is not one of 'a', 'b', 'c'"),
        ({"style": ["a", "x"]}, r"gen\.style: 'x' is not one of"),
        ({"style": []}, r"gen\.style: empty list of choices"),
        ({"sharp": "yes"}, r"gen\.sharp: 'yes' is not true or false"),
    ],
)
def test_resolution_errors_name_generator_field_value_and_range(spec: dict, message: str) -> None:
    with pytest.raises(ParamError, match=message):
        ParamSpace(Gen, spec)
