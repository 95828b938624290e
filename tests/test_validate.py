"""`defectsynth validate` names each corruption that readers accept silently."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from dataset_factory import PLUGINS, make_inputs, write_recipe

from defectsynth.build import load_recipe
from defectsynth.cli import cli
from defectsynth.plugins import PluginHost
from defectsynth.run import generate, iter_records
from defectsynth.validate import validate_dataset


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("validate")
    make_inputs(tmp, n=4)
    write_recipe(tmp, variants=3, negatives=0.3, instances=[2, 3])
    host = PluginHost([PLUGINS])
    generate(load_recipe(tmp / "recipe.yaml", host=host), tmp / "ds", host=host, workers=1)
    return tmp / "ds"


def _coco(ds: Path, split: str = "val") -> tuple[Path, dict]:  # type: ignore[type-arg]
    p = ds / "annotations" / f"instances_{split}.json"
    return p, json.loads(p.read_text())


def _edit_coco(ds: Path, fn: Callable[[dict], None]) -> None:  # type: ignore[type-arg]
    p, data = _coco(ds)
    assert data["annotations"], "fixture must have val annotations"
    fn(data)
    p.write_text(json.dumps(data))


def _first_label(ds: Path) -> Path:
    rec = next(r for r in iter_records(ds) if r["annotations"])
    return ds / "labels" / rec["split"] / f"{rec['name']}.txt"


def dup_ann_id(ds: Path) -> None:
    def f(d: dict) -> None:  # type: ignore[type-arg]
        d["annotations"][1]["id"] = d["annotations"][0]["id"]

    _edit_coco(ds, f)


def zero_width(ds: Path) -> None:
    _edit_coco(ds, lambda d: d["annotations"][0]["bbox"].__setitem__(2, 0))


def negative_height(ds: Path) -> None:
    _edit_coco(ds, lambda d: d["annotations"][0]["bbox"].__setitem__(3, -4))


def unknown_category(ds: Path) -> None:
    _edit_coco(ds, lambda d: d["annotations"][0].__setitem__("category_id", 9))


def box_outside(ds: Path) -> None:
    _edit_coco(ds, lambda d: d["annotations"][0]["bbox"].__setitem__(0, 120))


def rle_sum(ds: Path) -> None:
    _edit_coco(ds, lambda d: d["annotations"][0]["segmentation"]["counts"].append(7))


def odd_polygon(ds: Path) -> None:
    _edit_coco(ds, lambda d: d["annotations"][0].__setitem__("segmentation", [[1, 2, 3, 4, 5]]))


def mask_not_box(ds: Path) -> None:
    def f(d: dict) -> None:  # type: ignore[type-arg]
        b = d["annotations"][0]["bbox"]
        b[2] -= 1

    _edit_coco(ds, f)


def dropped_annotation(ds: Path) -> None:
    _edit_coco(ds, lambda d: d["annotations"].pop(0))


def yolo_pixels(ds: Path) -> None:
    p = _first_label(ds)
    c, *vals = p.read_text().splitlines()[0].split()
    px = [float(vals[0]) * 128, float(vals[1]) * 96, float(vals[2]) * 128, float(vals[3]) * 96]
    p.write_text(f"{c} " + " ".join(f"{v:.1f}" for v in px) + "\n")


def yolo_label_without_image(ds: Path) -> None:
    (ds / "labels" / "train" / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")


def yolo_image_without_label(ds: Path) -> None:
    _first_label(ds).unlink()


def yolo_bad_class(ds: Path) -> None:
    p = _first_label(ds)
    p.write_text("7" + p.read_text()[1:])


def yolo_seg_odd(ds: Path) -> None:
    rec = next(r for r in iter_records(ds) if r["annotations"])
    p = ds / "yolo-seg" / "labels" / rec["split"] / f"{rec['name']}.txt"
    lines = p.read_text().splitlines()
    lines[0] = " ".join(lines[0].split()[:-1])
    p.write_text("\n".join(lines) + "\n")


def voc_outside(ds: Path) -> None:
    rec = next(r for r in iter_records(ds) if r["annotations"])
    p = ds / "voc" / "Annotations" / f"{rec['name']}.xml"
    text = p.read_text()
    start = text.index("<xmax>") + len("<xmax>")
    end = text.index("</xmax>")
    p.write_text(text[:start] + "999" + text[end:])


def anomaly_missing_mask(ds: Path) -> None:
    masks = sorted((ds / "anomaly" / "ground_truth").glob("*/*_mask.png"))
    masks[0].unlink()


def anomaly_missing_image(ds: Path) -> None:
    good = sorted((ds / "anomaly" / "train" / "good").iterdir())
    good[0].unlink()


def missing_image(ds: Path) -> None:
    rec = next(iter(iter_records(ds)))
    (ds / rec["image"]).unlink()


CORRUPTIONS = [
    (dup_ann_id, "duplicate annotation id"),
    (zero_width, "zero or negative width/height"),
    (negative_height, "zero or negative width/height"),
    (unknown_category, "category_id 9 is not in 'categories'"),
    (box_outside, "is outside the image 128x96"),
    (rle_sum, "RLE counts sum to"),
    (odd_polygon, "polygon with 5 coordinates"),
    (mask_not_box, "is not the tight box"),
    (dropped_annotation, "coco has"),
    (yolo_pixels, "labels in pixel units?"),
    (yolo_label_without_image, "ghost.txt: label file without an image"),
    (yolo_image_without_label, "image without a label file"),
    (yolo_bad_class, "class 7 is not in 0..1"),
    (yolo_seg_odd, "polygon with"),
    (voc_outside, "is outside 1..128"),
    (anomaly_missing_mask, "no ground-truth mask"),
    (anomaly_missing_image, "is missing from train/good/"),
    (missing_image, "missing or unreadable"),
]


def test_clean_dataset_validates(clean: Path) -> None:
    report = validate_dataset(clean)
    assert report.ok, report.problems
    assert report.formats == ["coco", "yolo", "yolo-seg", "voc", "anomaly"]


@pytest.mark.parametrize(
    ("corrupt", "expected"), CORRUPTIONS, ids=lambda v: getattr(v, "__name__", "")
)
def test_corruption_is_named(
    clean: Path, tmp_path: Path, corrupt: Callable[[Path], None], expected: str
) -> None:
    ds = tmp_path / "ds"
    shutil.copytree(clean, ds)
    corrupt(ds)
    problems = validate_dataset(ds).problems
    assert any(expected in p for p in problems), problems


def test_cli_validate_exit_status(clean: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(cli, ["validate", str(clean)])
    assert ok.exit_code == 0 and "OK" in ok.output
    ds = tmp_path / "ds"
    shutil.copytree(clean, ds)
    dup_ann_id(ds)
    bad = runner.invoke(cli, ["validate", str(ds), "--json"])
    assert bad.exit_code == 1
    assert any("duplicate annotation id" in p for p in json.loads(bad.output)["problems"])
