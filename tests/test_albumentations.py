"""AddDefects inside a real albumentations 2.x Compose (marker ``albumentations``, no torch).

    pip install "albumentations>=2,<3"
    python -m pytest -m albumentations tests/test_albumentations.py
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dataset_factory import PLUGINS, make_inputs, write_recipe

from defectsynth import Synthesizer
from defectsynth.plugins import PluginHost
from defectsynth.sample import tight_box
from defectsynth.testing import test_surface

A = pytest.importorskip("albumentations")
from defectsynth.integrations.albumentations import AddDefects  # noqa: E402

pytestmark = pytest.mark.albumentations

H, W = 96, 120
# one pre-existing box (in pixels: x 10..40, y 12..30) in each bbox format
EXISTING = {
    "pascal_voc": [10.0, 12.0, 40.0, 30.0],
    "coco": [10.0, 12.0, 30.0, 18.0],
    "yolo": [25.0 / W, 21.0 / H, 30.0 / W, 18.0 / H],
    "albumentations": [10.0 / W, 12.0 / H, 40.0 / W, 30.0 / H],
}
LATER = {
    "hflip": lambda: [A.HorizontalFlip(p=1.0)],
    "vflip+transpose": lambda: [A.VerticalFlip(p=1.0), A.Transpose(p=1.0)],
    "rot90": lambda: [A.RandomRotate90(p=1.0)],
    "d4": lambda: [A.D4(p=1.0)],
    "none": lambda: [A.NoOp()],
}


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost([PLUGINS], entry_points=False)


@pytest.fixture(scope="module")
def synth(host: PluginHost) -> Synthesizer:
    entries = [
        {"generator": "blob", "category": "dark", "params": {"strength": [-0.7, -0.35]}},
        {"generator": "blob", "category": "bright", "params": {"strength": [0.35, 0.7]}},
    ]
    return Synthesizer(entries, instances=3, margin=0, host=host)


def _image() -> np.ndarray:
    return test_surface((H, W))


def _to_pixels(box: list[float], fmt: str, h: int, w: int) -> tuple[int, ...]:
    """A box in ``fmt`` as pixel xyxy, rounded (albumentations works in float)."""
    x, y, a, b = box[:4]
    if fmt == "coco":
        xyxy = [x, y, x + a, y + b]
    elif fmt == "yolo":
        xyxy = [(x - a / 2) * w, (y - b / 2) * h, (x + a / 2) * w, (y + b / 2) * h]
    elif fmt == "albumentations":
        xyxy = [x * w, y * h, a * w, b * h]
    else:
        xyxy = [x, y, a, b]
    assert all(abs(v - round(v)) < 1e-3 for v in xyxy), xyxy
    return tuple(int(round(v)) for v in xyxy)


def _compose(transforms: list[Any], fmt: str, seed: int = 7, **bbox: Any) -> Any:
    return A.Compose(
        transforms,
        bbox_params=A.BboxParams(format=fmt, label_fields=bbox.pop("label_fields", ["labels"]),
                                 **bbox),
        seed=seed,
    )


@pytest.mark.parametrize("fmt", list(EXISTING))
@pytest.mark.parametrize("later", list(LATER))
def test_existing_targets_are_kept_and_new_boxes_match_their_masks(
    synth: Synthesizer, fmt: str, later: str
) -> None:
    image = _image()
    existing_mask = np.zeros((H, W), np.uint8)
    existing_mask[12:30, 10:40] = 1
    aug = _compose([AddDefects(synth, p=1.0), *LATER[later]()], fmt)
    reference = _compose(LATER[later](), fmt)
    added = 0
    for seed in range(4):
        aug.set_random_seed(seed)
        reference.set_random_seed(seed)
        out = aug(image=image, bboxes=[EXISTING[fmt]], labels=["clamp"], masks=[existing_mask])
        ref = reference(image=image, bboxes=[EXISTING[fmt]], labels=["clamp"],
                        masks=[existing_mask])
        h, w = out["image"].shape[:2]
        # the pre-existing box, label and mask: exactly what the same pipeline without
        # AddDefects makes of them
        assert out["labels"][0] == "clamp"
        assert np.allclose(out["bboxes"][0], ref["bboxes"][0], atol=1e-6)
        assert np.array_equal(out["masks"][0], ref["masks"][0])
        assert len(out["bboxes"]) == len(out["labels"]) == len(out["masks"])
        for box, label, mask in zip(out["bboxes"][1:], out["labels"][1:], out["masks"][1:]):
            assert label in ("dark", "bright")
            assert tight_box(np.asarray(mask) > 0) == _to_pixels(list(box), fmt, h, w)
            added += 1
    assert added > 0


def test_existing_targets_untouched_when_not_applied(synth: Synthesizer) -> None:
    image = _image()
    aug = _compose([AddDefects(synth, p=0.0)], "coco")
    out = aug(image=image, bboxes=[EXISTING["coco"]], labels=["clamp"], masks=[])
    assert np.array_equal(out["image"], image)
    assert out["labels"] == ["clamp"] and np.allclose(out["bboxes"], [EXISTING["coco"]])


def test_defects_change_only_their_footprint(synth: Synthesizer) -> None:
    image = _image()
    t = AddDefects(synth, p=1.0)
    out = _compose([t], "pascal_voc")(image=image, bboxes=[], labels=[], masks=[])
    sample = t.get_applied_params()["defect_sample"]
    assert len(sample) > 0 and sample.footprint is not None
    assert np.array_equal(out["image"][~sample.footprint], image[~sample.footprint])
    assert not np.array_equal(out["image"], image)


def test_probability_p(synth: Synthesizer) -> None:
    image = _image()
    aug = _compose([AddDefects(synth, p=0.5)], "coco", seed=3)
    applied = sum(
        len(aug(image=image, bboxes=[], labels=[])["bboxes"]) > 0 for _ in range(40)
    )
    assert 8 <= applied <= 32


def test_compose_seed_makes_it_reproducible(synth: Synthesizer) -> None:
    image = _image()

    def run(seed: int) -> list[Any]:
        aug = _compose([AddDefects(synth, p=0.8), A.HorizontalFlip(p=0.5)], "coco", seed=seed)
        return [aug(image=image, bboxes=[], labels=[]) for _ in range(4)]

    a, b, c = run(11), run(11), run(12)
    assert all(np.array_equal(x["image"], y["image"]) and x["bboxes"] == y["bboxes"]
               for x, y in zip(a, b))
    assert any(not np.array_equal(x["image"], z["image"]) for x, z in zip(a, c))


@pytest.mark.parametrize(
    ("labels", "mode", "expected"),
    [
        (["clamp"], "auto", str),  # a field of names gets names
        ([5], "auto", float),  # a numeric field gets ids (albumentations returns floats)
        (np.array([5]), "auto", np.integer),  # an int array keeps its dtype
        ([], "auto", str),  # an empty field: names
        ([], "id", float),
    ],
)
def test_label_values(synth: Synthesizer, labels: Any, mode: str, expected: type) -> None:
    image = _image()
    aug = _compose([AddDefects(synth, p=1.0, label=mode)], "coco")
    boxes = [EXISTING["coco"]] if len(labels) else []
    out = aug(image=image, bboxes=boxes, labels=labels)
    new = list(out["labels"])[len(labels):]
    assert new
    for v in new:
        assert isinstance(v, expected), (v, type(v))
        if expected is str:
            assert v in synth.categories
        else:
            assert int(v) in (0, 1)
    if len(labels):
        assert list(out["labels"])[0] == labels[0]


def test_two_label_fields_and_a_custom_category_map(synth: Synthesizer) -> None:
    aug = _compose([AddDefects(synth, {"dark": 3, "bright": 4}, p=1.0)], "coco",
                   label_fields=["names", "ids"])
    out = aug(image=_image(), bboxes=[EXISTING["coco"]], names=["clamp"], ids=[9])
    assert out["names"][0] == "clamp" and out["ids"][0] == 9
    pairs = set(zip(out["names"][1:], (int(v) for v in out["ids"][1:])))
    assert pairs and pairs <= {("dark", 3), ("bright", 4)}


def test_labels_of_another_type_are_refused(synth: Synthesizer) -> None:
    aug = _compose([AddDefects(synth, p=1.0, label="name")], "coco")
    with pytest.raises(ValueError, match="holds numbers"):
        aug(image=_image(), bboxes=[EXISTING["coco"]], labels=[5])
    aug = _compose([AddDefects(synth, p=1.0, label="id")], "coco")
    with pytest.raises(ValueError, match="holds names"):
        aug(image=_image(), bboxes=[EXISTING["coco"]], labels=["clamp"])


def test_label_types_across_calls_of_one_compose(synth: Synthesizer) -> None:
    """albumentations keeps a field's label encoder between calls; the labels already
    present must decode unchanged whatever came before."""
    aug = _compose([AddDefects(synth, p=1.0)], "coco")
    first = aug(image=_image(), bboxes=[], labels=[])  # an image without boxes first
    assert all(v in synth.categories for v in first["labels"])
    out = aug(image=_image(), bboxes=[EXISTING["coco"]], labels=[5])
    assert out["labels"][0] == 5 and all(int(v) in (0, 1) for v in out["labels"][1:])
    out = aug(image=_image(), bboxes=[EXISTING["coco"]], labels=[7])
    assert out["labels"][0] == 7


def test_inline_extra_column_gets_the_id(synth: Synthesizer) -> None:
    aug = A.Compose([AddDefects(synth, p=1.0)], bbox_params=A.BboxParams(format="coco"),
                    seed=1)
    out = aug(image=_image(), bboxes=[[*EXISTING["coco"], 9.0]])
    rows = np.asarray(out["bboxes"])
    assert rows.shape[1] == 5 and rows[0, 4] == 9.0 and set(rows[1:, 4]) <= {0.0, 1.0}


def test_masks_array_input_and_mask_value(synth: Synthesizer) -> None:
    existing = np.zeros((1, H, W), np.uint8)
    existing[0, 12:30, 10:40] = 255
    aug = _compose([AddDefects(synth, p=1.0, mask_value=255)], "coco")
    out = aug(image=_image(), bboxes=[EXISTING["coco"]], labels=["clamp"], masks=existing)
    masks = np.asarray(out["masks"])
    assert masks.shape[0] == len(out["bboxes"]) > 1
    assert np.array_equal(masks[0], existing[0])
    assert set(np.unique(masks[1:])) == {0, 255}
    # without a masks key nothing is added there, and nothing breaks
    out = aug(image=_image(), bboxes=[], labels=[])
    assert "masks" not in out and len(out["bboxes"]) > 0


def test_product_mask_as_an_additional_target(synth: Synthesizer) -> None:
    product = np.zeros((H, W), np.uint8)
    product[:, :50] = 1  # the left part; after the flip the defects are on the right
    aug = A.Compose(
        [A.HorizontalFlip(p=1.0), AddDefects(synth, p=1.0)],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"]),
        additional_targets={"product_mask": "mask"},
        seed=2,
    )
    for _ in range(3):
        out = aug(image=_image(), bboxes=[], labels=[], masks=[], product_mask=product)
        assert len(out["bboxes"]) > 0
        for box in out["bboxes"]:
            assert box[0] >= W - 50 - 1e-3
        assert np.array_equal(out["product_mask"], product[:, ::-1])


def test_rgb_swaps_channels_around_the_synthesizer(synth: Synthesizer) -> None:
    bgr = _image().copy()
    bgr[:, :, 0] = 40  # make the channels clearly different
    rgb = bgr[:, :, ::-1].copy()
    a = _compose([AddDefects(synth, p=1.0)], "coco", seed=4)(image=rgb, bboxes=[], labels=[])
    b = _compose([AddDefects(synth, p=1.0, rgb=False)], "coco", seed=4)(
        image=bgr, bboxes=[], labels=[])
    assert np.array_equal(a["image"], b["image"][:, :, ::-1])
    assert a["bboxes"] == b["bboxes"]


def test_float_and_gray_images(synth: Synthesizer) -> None:
    image = _image()
    as_float = image.astype(np.float32) / 255.0
    out = _compose([AddDefects(synth, p=1.0)], "coco", seed=5)(
        image=as_float, bboxes=[], labels=[])
    assert out["image"].dtype == np.float32 and out["image"].shape == image.shape
    assert len(out["bboxes"]) > 0 and out["image"].max() <= 1.0
    gray = image[:, :, 1]
    for img in (gray, gray[:, :, None]):
        out = _compose([AddDefects(synth, p=1.0)], "coco", seed=5)(
            image=img, bboxes=[], labels=[])
        assert out["image"].shape == img.shape and len(out["bboxes"]) > 0


def test_from_a_recipe_and_pickled(tmp_path: Path, host: PluginHost) -> None:
    make_inputs(tmp_path, n=1)
    recipe = write_recipe(tmp_path, output={"formats": ["yolo"]})
    t = AddDefects(recipe, p=1.0, host=host)
    assert sorted(t.categories) == ["blob", "bright"]
    clone = pickle.loads(pickle.dumps(t))  # what a spawned DataLoader worker does
    image = _image()
    a = _compose([t], "coco", seed=9)(image=image, bboxes=[], labels=[])
    b = _compose([clone], "coco", seed=9)(image=image, bboxes=[], labels=[])
    assert np.array_equal(a["image"], b["image"]) and a["bboxes"] == b["bboxes"]
    assert "AddDefects(" in repr(t)


def test_bad_arguments(synth: Synthesizer) -> None:
    with pytest.raises(ValueError, match="label 'names'"):
        AddDefects(synth, label="names")
    with pytest.raises(ValueError, match="does not map 'bright'"):
        AddDefects(synth, ["dark"])
    with pytest.raises(TypeError, match="recipe must be"):
        AddDefects(3)  # type: ignore[arg-type]
