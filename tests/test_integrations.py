"""Sample.to_target and DefectDataset: no torch needed.

Determinism is checked the way a training run meets it: in a fresh interpreter, in
worker processes started by ``spawn`` (which pickle the dataset), in any order, and
across epochs.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from dataset_factory import PLUGINS, make_inputs, write_recipe

from defectsynth import Synthesizer
from defectsynth.build import load_recipe
from defectsynth.integrations import DefectDataset, read_image
from defectsynth.plugins import PluginHost
from defectsynth.sample import convert_boxes, tight_box
from defectsynth.testing import test_surface

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost([PLUGINS], entry_points=False)


@pytest.fixture(scope="module")
def recipe_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("integrations")
    make_inputs(tmp, n=3)
    return write_recipe(tmp, variants=2, negatives=0.25)


def _synth(host: PluginHost, **kw: Any) -> Synthesizer:
    entries = [
        {"generator": "blob", "category": "dark", "params": {"strength": [-0.7, -0.35]}},
        {"generator": "blob", "category": "bright", "params": {"strength": [0.35, 0.7]}},
    ]
    return Synthesizer(entries, host=host, **kw)


def digest(item: tuple[Any, Any]) -> str:
    """sha256 of an item's image bytes and every array/scalar in its target."""
    image, target = item
    h = hashlib.sha256(np.ascontiguousarray(image).tobytes())
    h.update(str((image.shape, image.dtype)).encode())
    for key in sorted(target):
        v = target[key]
        h.update(key.encode())
        if isinstance(v, np.ndarray):
            h.update(str((v.shape, v.dtype)).encode())
            h.update(np.ascontiguousarray(v).tobytes())
        else:
            h.update(json.dumps(v, sort_keys=True, default=str).encode())
    return h.hexdigest()


# -- Sample.to_target ---------------------------------------------------------------------


def test_to_target_arrays_match_the_annotations(host: PluginHost) -> None:
    synth = _synth(host, instances=4)
    img = test_surface((96, 128))
    sample = synth(img, seed=3)
    assert len(sample) > 0
    t = sample.to_target(synth.categories)
    n = len(sample)
    assert t["boxes"].dtype == np.float32 and t["boxes"].shape == (n, 4)
    assert t["labels"].dtype == np.int64 and t["labels"].shape == (n,)
    assert t["masks"].dtype == np.uint8 and t["masks"].shape == (n, 96, 128)
    assert set(np.unique(t["masks"])) <= {0, 1}
    assert t["categories"] == sample.categories and t["image_size"] == (96, 128)
    for i, a in enumerate(sample.annotations):
        assert tuple(t["boxes"][i].astype(int)) == a.box
        assert tight_box(t["masks"][i] > 0) == a.box
        assert t["labels"][i] == synth.categories.index(a.category)
        assert t["area"][i] == a.area
    shifted = sample.to_target(synth.categories, label_offset=1, masks=False)
    assert "masks" not in shifted and np.array_equal(shifted["labels"], t["labels"] + 1)


def test_to_target_box_formats() -> None:
    xyxy = np.array([[10, 20, 30, 60]], np.float32)
    size = (100, 200)  # h, w
    assert convert_boxes(xyxy, size, "xywh").tolist() == [[10, 20, 20, 40]]
    assert convert_boxes(xyxy, size, "cxcywh").tolist() == [[20, 40, 20, 40]]
    assert np.allclose(convert_boxes(xyxy, size, "yolo"), [[0.1, 0.4, 0.1, 0.4]])
    assert np.allclose(convert_boxes(xyxy, size, "xyxy", normalized=True),
                       [[0.05, 0.2, 0.15, 0.6]])
    assert convert_boxes(np.zeros((0, 4)), size, "yolo").shape == (0, 4)
    with pytest.raises(ValueError, match="box_format 'xyz'"):
        convert_boxes(xyxy, size, "xyz")


def test_to_target_category_maps(host: PluginHost) -> None:
    synth = _synth(host, instances=4)
    sample = synth(test_surface((96, 128)), seed=3)
    by_map = sample.to_target({"dark": 7, "bright": 9})
    assert set(by_map["labels"].tolist()) <= {7, 9}
    first_seen = sample.to_target()
    assert first_seen["labels"][0] == 0
    with pytest.raises(KeyError, match="is not in the category map"):
        sample.to_target(["something-else"])
    yolo = sample.to_target(synth.categories, box_format="yolo")
    assert yolo["normalized"] and yolo["box_format"] == "yolo"
    assert (yolo["boxes"] > 0).all() and (yolo["boxes"] <= 1).all()


def test_to_target_of_a_clean_sample(host: PluginHost) -> None:
    sample = _synth(host)(test_surface((64, 80)), seed=1, instances=0)
    t = sample.to_target(["dark", "bright"])
    assert t["boxes"].shape == (0, 4) and t["boxes"].dtype == np.float32
    assert t["labels"].shape == (0,) and t["labels"].dtype == np.int64
    assert t["masks"].shape == (0, 64, 80) and t["masks"].dtype == np.uint8


# -- DefectDataset: determinism -------------------------------------------------------------


def test_same_index_and_epoch_give_the_same_bytes_in_any_order(
    recipe_path: Path, host: PluginHost
) -> None:
    ds = DefectDataset(None, recipe_path, host=host)
    assert len(ds) == 6 and ds.categories == ["blob", "bright"]
    forward = [digest(ds[i]) for i in range(len(ds))]
    backward = [digest(ds[i]) for i in reversed(range(len(ds)))][::-1]
    again = DefectDataset(None, recipe_path, host=host)
    assert forward == backward == [digest(again[i]) for i in range(len(ds))]
    assert len(set(forward)) == len(forward)


def test_another_epoch_gives_other_defects(recipe_path: Path, host: PluginHost) -> None:
    ds = DefectDataset(None, recipe_path, host=host, defect_fraction=1.0)
    e0 = [ds[i] for i in range(len(ds))]
    ds.set_epoch(1)
    e1 = [ds[i] for i in range(len(ds))]
    assert all(not np.array_equal(a[0], b[0]) for a, b in zip(e0, e1))
    assert [digest(x) for x in e1] == [digest(ds[(i, 1)]) for i in range(len(ds))]
    ds.set_epoch(0)
    assert [digest(x) for x in e0] == [digest(ds[i]) for i in range(len(ds))]
    # the index carries its own epoch, whatever the dataset's current one
    assert digest(ds[(2, 1)]) == digest(e1[2])


_SCRIPT = """
import hashlib, json, sys
sys.path.insert(0, {tests!r})
from test_integrations import digest
from defectsynth.integrations import DefectDataset
ds = DefectDataset(None, {recipe!r}, epoch={epoch})
print(json.dumps([digest(ds[i]) for i in range(len(ds))]))
"""


def test_identical_bytes_in_a_fresh_interpreter(recipe_path: Path, host: PluginHost) -> None:
    ds = DefectDataset(None, recipe_path, host=host, epoch=3)
    here = [digest(ds[i]) for i in range(len(ds))]
    code = _SCRIPT.format(tests=str(Path(__file__).parent), recipe=str(recipe_path), epoch=3)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == here


def _item_digest(args: tuple[DefectDataset, int]) -> str:
    ds, i = args
    return digest(ds[i])


def test_identical_bytes_in_spawned_workers(recipe_path: Path, host: PluginHost) -> None:
    """Spawned workers unpickle the dataset and rebuild its synthesizer from the recipe."""
    ds = DefectDataset(None, recipe_path, host=host, epoch=1)
    here = [digest(ds[i]) for i in range(len(ds))]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        there = pool.map(_item_digest, [(ds, i) for i in range(len(ds))], chunksize=1)
    assert there == here


def test_defect_fraction(recipe_path: Path, host: PluginHost) -> None:
    none = DefectDataset(None, recipe_path, host=host, defect_fraction=0.0, length=8)
    for i in range(len(none)):
        image, target = none[i]
        assert len(target["boxes"]) == 0
        assert np.array_equal(image, none.source_image(i % 3))
    assert none.sample(0).stats["requested"] == 0
    every = DefectDataset(None, recipe_path, host=host, defect_fraction=1.0, length=8)
    assert all(every.sample(i).stats["requested"] >= 1 for i in range(len(every)))
    half = DefectDataset(None, recipe_path, host=host, defect_fraction=0.5, length=400)
    share = np.mean([half.streams(i)[2] for i in range(len(half))])
    assert 0.4 < share < 0.6


def test_meta_remakes_the_item_alone(recipe_path: Path, host: PluginHost) -> None:
    ds = DefectDataset(None, recipe_path, host=host, epoch=2)
    image, target = ds[4]
    meta = target["meta"]
    assert meta["index"] == 4 and meta["epoch"] == 2 and target["image_id"] == 4
    recipe = load_recipe(recipe_path, host=host)
    synth = Synthesizer.from_recipe(recipe, host)
    src = next(s for s in recipe.sources() if s.rel == meta["source"])
    again = synth.apply(
        cv2.imread(src.path, cv2.IMREAD_UNCHANGED),
        recipe.mask_path(src),
        seed=meta["seed"],
        source_id=meta["source_id"],
        variant=meta["variant"],
        instances=None if ds.streams(4, 2)[2] else 0,
    )
    assert np.array_equal(again.image, image)
    assert np.array_equal(again.to_target(ds.category_map)["boxes"], target["boxes"])


# -- DefectDataset: sources and options ----------------------------------------------------


def test_sources_as_folder_list_and_arrays(recipe_path: Path, host: PluginHost) -> None:
    synth = _synth(host, instances=2)
    folder = recipe_path.parent / "images"
    by_folder = DefectDataset(folder, synth, seed=4)
    assert by_folder.sources == ["p0.png", "p1.png", "p2.png"]
    files = sorted(folder.glob("*.png"))
    by_list = DefectDataset(files, synth, seed=4)
    assert by_list.sources == by_folder.sources
    assert [digest(by_list[i]) for i in range(3)] == [digest(by_folder[i]) for i in range(3)]
    by_glob = DefectDataset(str(folder / "p[01].png"), synth, seed=4)
    assert by_glob.sources == ["p0.png", "p1.png"]
    arrays = [cv2.imread(str(f)) for f in files]
    by_array = DefectDataset(arrays, synth, seed=4, length=5)
    assert by_array.sources == ["<array 0>", "<array 1>", "<array 2>"] and len(by_array) == 5
    image, target = by_array[4]
    assert image.shape == arrays[1].shape and target["meta"]["source"] == "<array 1>"


def test_rgb_swaps_channels_around_the_synthesizer(recipe_path: Path, host: PluginHost) -> None:
    synth = _synth(host, instances=2)
    bgr = [cv2.imread(str(recipe_path.parent / "images" / "p0.png"))]
    rgb = [bgr[0][:, :, ::-1].copy()]
    out_bgr, t_bgr = DefectDataset(bgr, synth)[0]
    out_rgb, t_rgb = DefectDataset(rgb, synth, rgb=True)[0]
    assert np.array_equal(out_rgb, out_bgr[:, :, ::-1])
    assert np.array_equal(t_rgb["boxes"], t_bgr["boxes"])


def test_product_mask_pattern_and_list(recipe_path: Path, host: PluginHost) -> None:
    synth = _synth(host, instances=3, margin=0)
    folder = recipe_path.parent / "images"
    left = np.zeros((96, 128), np.uint8)
    left[:, :40] = 1
    ds = DefectDataset(folder, synth, product_mask=[left] * 3, length=6)
    for i in range(len(ds)):
        _, t = ds[i]
        assert not t["masks"][:, :, 40:].any()
    by_pattern = DefectDataset(folder, synth, product_mask="../masks/{stem}.png", length=3)
    for i in range(3):
        _, t = by_pattern[i]
        assert not t["masks"][:, :6].any() and not t["masks"][:, :, -6:].any()


def test_cache_keeps_file_and_auto_masks_and_changes_no_byte(
    recipe_path: Path, host: PluginHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    import defectsynth.placement as placement

    reads: list[str] = []
    real = placement.load_mask_file
    monkeypatch.setattr(placement, "load_mask_file",
                        lambda path, shape: reads.append(str(path)) or real(path, shape))
    plain = DefectDataset(None, recipe_path, host=host, defect_fraction=1.0)
    cached = DefectDataset(None, recipe_path, host=host, defect_fraction=1.0, cache=True)
    for epoch in (0, 1):
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        expected = [digest(plain[i]) for i in range(len(plain))]
        del reads[:]
        assert [digest(cached[i]) for i in range(len(cached))] == expected
        # each of the 3 sources' mask files was decoded once, in the first epoch only
        assert len(reads) == (3 if epoch == 0 else 0) and len(set(reads)) == len(reads)
    folder = recipe_path.parent / "images"
    auto = [DefectDataset(folder, _synth(host), product_mask="auto", length=3, cache=c)
            for c in (False, True)]
    assert [digest(auto[0][i]) for i in range(3)] == [digest(auto[1][i]) for i in range(3)]


def test_transform_and_target_options(recipe_path: Path, host: PluginHost) -> None:
    def flip(image: np.ndarray, target: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        return image[:, ::-1], {**target, "flipped": True}

    ds = DefectDataset(None, recipe_path, host=host, transform=flip, box_format="yolo",
                       masks=False, label_offset=1, defect_fraction=1.0)
    plain = DefectDataset(None, recipe_path, host=host, defect_fraction=1.0)
    image, target = ds[1]
    assert target["flipped"] and "masks" not in target
    assert np.array_equal(image, plain[1][0][:, ::-1])
    assert (target["boxes"] <= 1).all() and (target["labels"] >= 1).all()


def test_errors_name_the_problem(recipe_path: Path, host: PluginHost, tmp_path: Path) -> None:
    ds = DefectDataset(None, recipe_path, host=host)
    with pytest.raises(IndexError, match="out of range"):
        ds[len(ds)]
    assert digest(ds[-1]) == digest(ds[len(ds) - 1])
    with pytest.raises(TypeError, match="recipe must be"):
        DefectDataset(None, 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sources=None"):
        DefectDataset(None, _synth(host))
    with pytest.raises(ValueError, match="no source images"):
        DefectDataset(tmp_path, _synth(host))
    with pytest.raises(ValueError, match="defect_fraction"):
        DefectDataset(None, recipe_path, host=host, defect_fraction=1.5)
    with pytest.raises(ValueError, match="does not map 'bright'"):
        DefectDataset(None, recipe_path, host=host, categories=["blob"])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="bad.png: is not an image: its content is not PNG"):
        DefectDataset([bad], _synth(host))[0]


def test_importing_defectsynth_imports_no_training_framework() -> None:
    code = (
        "import sys, defectsynth, defectsynth.integrations\n"
        "from defectsynth.integrations import DefectDataset\n"
        "bad = [m for m in ('torch', 'torchvision', 'albumentations') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""


def test_read_image_is_the_untrusted_file_reader(tmp_path: Path) -> None:
    """DefectDataset reads files like ``generate`` does: the header is checked against the
    pixel limit before anything is decoded, and folders or FIFOs are refused by name."""
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), np.zeros((120, 200, 3), np.uint8))
    assert read_image(big).shape == (120, 200, 3)
    with pytest.raises(ValueError, match=r"big\.png: is 200x120 px .* above the limit"):
        read_image(big, max_pixels=10_000)
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ValueError, match=r"dir\.png: "):
        read_image(tmp_path / "dir.png")
