"""Recipe loading: typed config, defaults, and errors that name the file and key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from dataset_factory import PLUGINS, make_inputs, recipe_dict, write_recipe

from defectsynth import Synthesizer, load_recipe
from defectsynth.cli import cli
from defectsynth.errors import RecipeError
from defectsynth.plugins import PluginHost
from defectsynth.recipe import parse_recipe, read_recipe


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost([PLUGINS])


def test_valid_recipe_is_typed_with_defaults(tmp_path: Path, host: PluginHost) -> None:
    make_inputs(tmp_path, n=2)
    r = load_recipe(write_recipe(tmp_path, instances=2, output=None), host=host)
    assert r.seed == 5 and r.variants == 3 and r.instances == (2, 2)
    assert r.splits == ("train", "val", "test")
    assert r.output.formats == ("coco", "yolo", "voc", "anomaly")
    assert r.output.image_format == "png" and r.placement.margin == 4
    assert r.categories == ("blob", "bright")
    assert [s.rel for s in r.sources()] == ["p0.png", "p1.png"]
    assert r.to_dict()["defects"][1]["category"] == "bright"


def test_paths_are_relative_to_the_recipe_file(
    tmp_path: Path, host: PluginHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_inputs(tmp_path / "data", n=1)
    write_recipe(tmp_path / "data", name="r.yaml")
    monkeypatch.chdir(tmp_path)
    r = load_recipe("data/r.yaml", host=host)
    (src,) = r.sources()
    assert Path(src.path) == (tmp_path / "data" / "images" / "p0.png").absolute()
    assert r.mask_path(src) == (tmp_path / "data" / "masks" / "p0.png").absolute()


def test_glob_inputs_recursive_and_sorted(tmp_path: Path) -> None:
    make_inputs(tmp_path / "a" / "x", n=2)
    make_inputs(tmp_path / "a" / "y", n=1)
    (tmp_path / "a" / "notes.txt").write_text("no")
    r = parse_recipe(recipe_dict(inputs={"images": "a/**/*.png"}), base_dir=tmp_path)
    rels = [s.rel for s in r.sources()]
    assert rels == sorted(rels) and "x/images/p1.png" in rels and "y/masks/p0.png" in rels
    r2 = parse_recipe(recipe_dict(inputs={"images": "a/x/images"}), base_dir=tmp_path)
    assert [s.rel for s in r2.sources()] == ["p0.png", "p1.png"]


def test_synthesizer_from_recipe(tmp_path: Path, host: PluginHost) -> None:
    make_inputs(tmp_path, n=1)
    path = write_recipe(tmp_path)
    synth = Synthesizer.from_recipe(path, host=host)
    assert synth.categories == ["blob", "bright"]
    assert Synthesizer.from_recipe(load_recipe(path, host=host), host=host).instances == (1, 3)


ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"sede": 1}, "recipe.yaml: sede: unknown key 'sede' (did you mean 'seed'?)"),
    ({"seed": -1}, "recipe.yaml: seed: -1 is below the minimum 0"),
    ({"seed": "x"}, "recipe.yaml: seed: 'x' (str) is not an integer"),
    ({"variants": 10**12}, "variants: 1000000000000 is above the maximum"),
    ({"instances": [3, 1]}, "instances: range [3, 1] has lo > hi"),
    ({"inputs": None}, "inputs: missing"),
    ({"inputs": {"image": "images"}}, "inputs.image: unknown key 'image' (did you mean 'images'?)"),
    ({"inputs": {"images": "i", "product_mask": "m/{stm}.png"}}, "unknown placeholder {stm}"),
    (
        {"defects": [{"generator": "blob"}, {"generator": "blob", "params": {"radius": 0}}]},
        "recipe.yaml: defects[1].params.radius: 0 is below the minimum 1",
    ),
    (
        {"defects": [{"generator": "blob", "params": {"radus": 3}}]},
        "defects[0].params.radus: unknown parameter of generator 'blob' (did you mean 'radius'?)",
    ),
    (
        {"defects": [{"generator": "blob", "params": {"radius": [9, 2]}}]},
        "defects[0].params.radius: range [9.0, 2.0] has lo > hi",
    ),
    ({"defects": [{"generator": "blobb"}]}, "defects[0].generator: unknown generator 'blobb'"),
    ({"defects": [{"generator": "blob", "weight": -1}]}, "defects[0].weight: -1 is below"),
    ({"defects": [{"generator": "blob", "weight": 0}]}, "defects: all weights are zero"),
    ({"defects": []}, "defects: expected a non-empty list"),
    ({"defects": [{"generator": "blob", "category": "../x"}]}, "defects[0].category: category"),
    ({"defects": [{"generator": "blob", "category": "good"}]}, "reserved by the anomaly layout"),
    ({"split": {"train": 0.5, "val": 0.2}}, "split: fractions add up to 0.7"),
    ({"split": {"tran": 1.0}}, "split.tran: unknown key 'tran' (did you mean 'train'?)"),
    ({"negatives": 1.5}, "negatives: 1.5 is above the maximum 1"),
    ({"output": {"image_format": "tiff"}}, "output.image_format: 'tiff' is not one of png, jpg"),
    ({"output": {"formats": ["coco", "yoloo"]}}, "output.formats[1]: unknown output format"),
    ({"output": {"jpg_quality": 0}}, "output.jpg_quality: 0 is below the minimum 1"),
    ({"gate": {"min_area": 0}}, "gate.min_area: 0 is below the minimum 1"),
    ({"placement": {"max_overlap": 2}}, "placement.max_overlap: 2 is above the maximum 1"),
    ({"placement": {"within_product": "yes"}},
     "placement.within_product: 'yes' (str) is not true or false"),
]


@pytest.mark.parametrize(("over", "message"), ERRORS)
def test_recipe_errors_name_file_and_key(
    tmp_path: Path, host: PluginHost, over: dict[str, Any], message: str
) -> None:
    make_inputs(tmp_path, n=1)
    data = recipe_dict()
    for k, v in over.items():
        if v is None:
            data.pop(k)
        else:
            data[k] = v
    import yaml

    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(RecipeError) as info:
        load_recipe(path, host=host)
    assert message in str(info.value)
    assert str(info.value).startswith(str(path))


def test_yaml_problems(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("seed: 1\ndefects: [\n", encoding="utf-8")
    with pytest.raises(RecipeError, match=r"bad\.yaml: line \d+, column \d+: invalid YAML"):
        read_recipe(p)
    p.write_text("seed: !!python/object/apply:os.system ['echo hi']\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="YAML tags that build Python objects are refused"):
        read_recipe(p)
    p.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="a recipe is a mapping"):
        read_recipe(p)
    with pytest.raises(RecipeError, match="no such recipe file"):
        read_recipe(tmp_path / "missing.yaml")


def test_no_matching_inputs(tmp_path: Path) -> None:
    r = parse_recipe(recipe_dict(inputs={"images": "nothing/*.png"}), file="r.yaml")
    with pytest.raises(RecipeError, match=r"r\.yaml: inputs\.images: no image file matches"):
        r.sources()


def test_cli_recipe_error_exits_2_without_traceback(tmp_path: Path) -> None:
    make_inputs(tmp_path, n=1)
    path = write_recipe(tmp_path, defects=[{"generator": "blob", "params": {"radius": 0}}])
    res = CliRunner().invoke(cli, ["generate", str(path), "-o", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert "defects[0].params.radius: 0 is below the minimum 1" in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def test_placement_within_product_reaches_the_synthesizer(tmp_path: Path, host: PluginHost
                                                          ) -> None:
    import yaml

    make_inputs(tmp_path, n=1)
    data = recipe_dict()
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    plain = load_recipe(path, host=host)
    assert not plain.placement.within_product
    assert "within_product" not in plain.to_dict()["placement"]  # old fingerprints kept
    data["placement"] = {"within_product": True}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    rec = load_recipe(path, host=host)
    assert rec.placement.within_product and rec.to_dict()["placement"]["within_product"]
    from defectsynth import Synthesizer

    assert Synthesizer.from_recipe(rec, host).within_product
