"""Writers: each format read back by its own conventions (pycocotools for COCO)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from dataset_factory import PLUGINS, make_inputs, write_recipe

from defectsynth.build import load_recipe
from defectsynth.plugins import PluginHost
from defectsynth.rle import decode_rle
from defectsynth.run import generate, iter_records
from defectsynth.writing import atomic_write_text, link_or_copy


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("writers")
    make_inputs(tmp, n=4)
    write_recipe(tmp, variants=4, negatives=0.3)
    host = PluginHost([PLUGINS])
    generate(load_recipe(tmp / "recipe.yaml", host=host), tmp / "ds", host=host, workers=1)
    return tmp / "ds"


def _records(ds: Path) -> list[dict[str, Any]]:
    return list(iter_records(ds))


def test_builtin_writers_are_plugins() -> None:
    host = PluginHost(entry_points=False)
    assert {"coco", "yolo", "yolo-seg", "voc", "anomaly"} <= set(host.writers)
    assert host.provider("writer", "coco").source == "builtin"  # type: ignore[union-attr]


def test_coco_reads_back_with_pycocotools(dataset: Path) -> None:
    coco_mod = pytest.importorskip("pycocotools.coco")
    cocoeval = pytest.importorskip("pycocotools.cocoeval")
    mask_utils = pytest.importorskip("pycocotools.mask")
    records = {r["task"] + 1: r for r in _records(dataset)}
    seen_ann_ids: set[int] = set()
    for split in ("train", "val", "test"):
        path = dataset / "annotations" / f"instances_{split}.json"
        with contextlib.redirect_stdout(io.StringIO()):
            coco = coco_mod.COCO(str(path))
        cats = coco.loadCats(coco.getCatIds())
        assert [(c["id"], c["name"]) for c in cats] == [(1, "blob"), (2, "bright")]
        for img in coco.loadImgs(coco.getImgIds()):
            rec = records[img["id"]]
            assert rec["split"] == split and img["file_name"] == Path(rec["image"]).name
            assert (dataset / "images" / split / img["file_name"]).is_file()
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
            assert len(anns) == len(rec["annotations"])
            for ann, a in zip(anns, rec["annotations"]):
                assert ann["id"] not in seen_ann_ids
                seen_ann_ids.add(ann["id"])
                mask = coco.annToMask(ann).astype(bool)
                ours = cv2.imread(str(dataset / a["mask"]), cv2.IMREAD_GRAYSCALE) > 0
                assert np.array_equal(mask, ours)
                x1, y1, x2, y2 = a["box"]
                assert ann["bbox"] == [x1, y1, x2 - x1, y2 - y1]
                assert ann["area"] == int(mask.sum()) == a["area"]
                assert ann["iscrowd"] == 0
                rle = coco.annToRLE(ann)
                assert mask_utils.toBbox(rle).tolist() == ann["bbox"]
        if not coco.getAnnIds():
            continue
        # ground truth against itself: AP 1.0 for boxes and masks
        dets = []
        for ann in coco.loadAnns(coco.getAnnIds()):
            dets.append({**ann, "score": 1.0})
        with contextlib.redirect_stdout(io.StringIO()):
            dt = coco.loadRes(dets)
            for iou_type in ("bbox", "segm"):
                ev = cocoeval.COCOeval(coco, dt, iou_type)
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
                assert ev.stats[0] == pytest.approx(1.0), (split, iou_type)


def test_yolo_labels_and_data_yaml(dataset: Path) -> None:
    data = yaml.safe_load((dataset / "data.yaml").read_text())
    assert data["path"] == str(dataset.absolute())
    assert data["train"] == "images/train" and data["val"] == "images/val"
    assert data["names"] == {0: "blob", 1: "bright"} and data["nc"] == 2
    for rec in _records(dataset):
        stem = rec["name"]
        txt = (dataset / "labels" / rec["split"] / f"{stem}.txt").read_text()
        lines = txt.splitlines()
        assert len(lines) == len(rec["annotations"])
        if rec["negative"]:
            assert txt == ""
        w, h = rec["width"], rec["height"]
        for line, a in zip(lines, rec["annotations"]):
            c, cx, cy, bw, bh = line.split()
            assert int(c) == ["blob", "bright"].index(a["category"])
            x1, y1, x2, y2 = a["box"]
            assert float(cx) == pytest.approx((x1 + x2) / 2 / w, abs=1e-6)
            assert float(bw) == pytest.approx((x2 - x1) / w, abs=1e-6)
            assert float(cy) == pytest.approx((y1 + y2) / 2 / h, abs=1e-6)
            assert float(bh) == pytest.approx((y2 - y1) / h, abs=1e-6)


def test_yolo_seg_polygons_and_hardlinked_images(dataset: Path) -> None:
    seg = dataset / "yolo-seg"
    assert yaml.safe_load((seg / "data.yaml").read_text())["path"] == str(seg.absolute())
    for rec in _records(dataset):
        img = seg / "images" / rec["split"] / Path(rec["image"]).name
        assert os.path.samefile(img, dataset / rec["image"])
        lines = (seg / "labels" / rec["split"] / f"{rec['name']}.txt").read_text().splitlines()
        assert len(lines) == len(rec["annotations"])
        for line, a in zip(lines, rec["annotations"]):
            vals = [float(v) for v in line.split()[1:]]
            assert len(vals) % 2 == 0 and len(vals) >= 6
            xs = np.array(vals[0::2]) * rec["width"]
            ys = np.array(vals[1::2]) * rec["height"]
            x1, y1, x2, y2 = a["box"]
            assert xs.min() >= x1 and xs.max() <= x2 and ys.min() >= y1 and ys.max() <= y2


def test_voc_layout(dataset: Path) -> None:
    voc = dataset / "voc"
    sets = {
        s: (voc / "ImageSets" / "Main" / f"{s}.txt").read_text().split()
        for s in ("train", "val", "test")
    }
    trainval = (voc / "ImageSets" / "Main" / "trainval.txt").read_text().split()
    assert trainval == sets["train"] + sets["val"]
    for rec in _records(dataset):
        assert rec["name"] in sets[rec["split"]]
        root = ET.parse(voc / "Annotations" / f"{rec['name']}.xml").getroot()
        assert root.findtext("filename") == Path(rec["image"]).name
        assert int(root.findtext("size/width") or 0) == rec["width"]
        assert os.path.samefile(
            voc / "JPEGImages" / Path(rec["image"]).name, dataset / rec["image"]
        )
        objs = root.findall("object")
        assert len(objs) == len(rec["annotations"])
        for obj, a in zip(objs, rec["annotations"]):
            x1, y1, x2, y2 = a["box"]
            got = [int(obj.findtext(f"bndbox/{k}") or 0) for k in ("xmin", "ymin", "xmax", "ymax")]
            assert got == [x1 + 1, y1 + 1, x2, y2]  # VOC: 1-based, inclusive
            assert obj.findtext("name") == a["category"]


def test_anomaly_layout(dataset: Path) -> None:
    root = dataset / "anomaly"
    placed = 0
    for rec in _records(dataset):
        fname = Path(rec["image"]).name
        cats = {a["category"] for a in rec["annotations"]}
        if not cats:
            folder = "train/good" if rec["split"] == "train" else "test/good"
            assert (root / folder / fname).is_file()
            placed += 1
            continue
        if rec["split"] == "train":
            assert not list(root.rglob(fname))  # train defects would leak into test
            continue
        cat = cats.pop() if len(cats) == 1 else "combined"
        assert (root / "test" / cat / fname).is_file()
        gt = cv2.imread(str(root / "ground_truth" / cat / f"{rec['name']}_mask.png"), 0)
        union = np.zeros_like(gt, dtype=bool)
        for a in rec["annotations"]:
            union |= decode_rle(a["mask_rle"])
        assert gt.dtype == np.uint8 and set(np.unique(gt)) <= {0, 255}
        assert np.array_equal(gt > 0, union)
        placed += 1
    assert placed > 0


def test_category_ids_are_stable_across_splits_and_formats(dataset: Path) -> None:
    names = yaml.safe_load((dataset / "data.yaml").read_text())["names"]
    for split in ("train", "val", "test"):
        cats = json.loads((dataset / "annotations" / f"instances_{split}.json").read_text())
        assert {c["id"] - 1: c["name"] for c in cats["categories"]} == names


def test_atomic_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    atomic_write_text(tmp_path / "a" / "x.txt", "hello")
    assert (tmp_path / "a" / "x.txt").read_text() == "hello"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.txt"]
    link_or_copy(tmp_path / "a" / "x.txt", tmp_path / "b" / "y.txt")
    assert os.path.samefile(tmp_path / "a" / "x.txt", tmp_path / "b" / "y.txt")
    link_or_copy(tmp_path / "a" / "x.txt", tmp_path / "b" / "y.txt")  # already linked: no-op

    def no_links(*_: object) -> None:
        raise OSError("links not supported")

    monkeypatch.setattr(os, "link", no_links)
    link_or_copy(tmp_path / "a" / "x.txt", tmp_path / "c" / "z.txt")
    assert (tmp_path / "c" / "z.txt").read_text() == "hello"
    assert not os.path.samefile(tmp_path / "a" / "x.txt", tmp_path / "c" / "z.txt")


def test_jpg_output(tmp_path: Path) -> None:
    make_inputs(tmp_path, n=2)
    write_recipe(tmp_path, variants=1, output={"image_format": "jpg", "jpg_quality": 90})
    host = PluginHost([PLUGINS])
    generate(load_recipe(tmp_path / "recipe.yaml", host=host), tmp_path / "ds", host=host)
    recs = list(iter_records(tmp_path / "ds"))
    assert all(r["image"].endswith(".jpg") for r in recs)
    raw = (tmp_path / "ds" / recs[0]["image"]).read_bytes()
    assert raw[:3] == b"\xff\xd8\xff"


def test_crop_rle_equals_full_mask_rle() -> None:
    from defectsynth.rle import encode_rle
    from defectsynth.run import crop_rle
    from defectsynth.sample import tight_box

    rng = np.random.default_rng(0)
    for _ in range(500):
        h, w = (int(v) for v in rng.integers(1, 24, 2))
        m = rng.random((h, w)) < rng.random()
        box = tight_box(m)
        if box is None:
            continue
        x1, y1, x2, y2 = box
        assert crop_rle(m[y1:y2, x1:x2], box, (h, w)) == encode_rle(m)
