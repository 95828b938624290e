"""The plan step, ParamError.field and the builder's hand-over (issue 18)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from defectsynth.build import check_recipe
from defectsynth.errors import ParamError, RecipeError
from defectsynth.generator import Light, ParamSpace, Region, plans
from defectsynth.plugins import get_host
from defectsynth.recipe import parse_recipe
from defectsynth.synthesizer import Synthesizer


@pytest.mark.parametrize("name", ["scratch", "crack"])
def test_a_plan_gives_the_layer_a_direct_call_gives(name: str) -> None:
    cls = get_host().generator(name)
    assert plans(cls)
    gen = cls()
    params = ParamSpace(cls).draw(np.random.default_rng(1))
    pixels = np.full((1, 1, 3), 0.5, np.float32)

    def layer(with_plan: bool) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
        rng = np.random.default_rng(7)
        kw = {"plan": gen.plan(params, rng)} if with_plan else {}
        h, w = gen.extent(params, rng, **kw)
        region = Region(
            pixels=np.broadcast_to(pixels, (h, w, 3)).copy(),
            product_mask=np.ones((h, w), np.float32),
            light=Light(30.0, 45.0),
            texture_scale=lambda: 8.0,
        )
        out = gen.render(region, params, rng, **kw)
        return (h, w), out.pixels, out.coverage

    (size_a, px_a, cov_a), (size_b, px_b, cov_b) = layer(True), layer(False)
    assert size_a == size_b
    assert np.array_equal(px_a, px_b) and np.array_equal(cov_a, cov_b)


def test_generators_without_a_plan_are_called_as_before() -> None:
    assert not plans(get_host().generator("dent"))


def test_param_error_names_its_field_and_keeps_it_across_processes() -> None:
    cls = get_host().generator("dent")
    with pytest.raises(ParamError) as info:
        ParamSpace(cls, {"depth": "deep"})
    assert info.value.field == "depth"
    again = pickle.loads(pickle.dumps(info.value))
    assert again.field == "depth" and str(again) == str(info.value)


def test_recipe_error_key_comes_from_the_field(tmp_path: Path) -> None:
    recipe = parse_recipe(
        {"inputs": {"images": "."}, "defects": [{"generator": "dent", "params": {"depth": -5}}]},
        base_dir=tmp_path,
    )
    with pytest.raises(RecipeError) as info:
        check_recipe(recipe)
    assert info.value.key == "defects[0].params.depth"


def test_the_builder_hands_its_prepared_entries_to_the_synthesizer(tmp_path: Path) -> None:
    recipe = parse_recipe(
        {"inputs": {"images": "."}, "defects": ["dent", {"generator": "pit", "weight": 2}]},
        base_dir=tmp_path,
    )
    _, prepared = check_recipe(recipe)
    synth = Synthesizer.from_recipe(recipe)
    assert [type(p.generator).name for p in synth._prepared] == ["dent", "pit"]
    assert [p.entry for p in synth._prepared] == [p.entry for p in prepared]
