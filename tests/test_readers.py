"""Real readers accept our output: ultralytics' own dataset checks, supervision's loaders.

These need heavy packages (torch, ultralytics, supervision, anomalib) and skip cleanly
without them.
Run them in a separate environment::

    python -m venv /work/venv-readers
    /work/venv-readers/bin/pip install torch==2.14.1 torchvision==0.29.1
    /work/venv-readers/bin/pip install -e ".[test,readers]"
    /work/venv-readers/bin/pytest -m readers tests/test_readers.py
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from dataset_factory import PLUGINS, make_inputs, write_recipe

from defectsynth.build import load_recipe
from defectsynth.plugins import PluginHost
from defectsynth.run import generate, iter_records

pytestmark = pytest.mark.readers


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("readers")
    make_inputs(tmp, n=4)
    write_recipe(tmp, variants=3, negatives=0.25)
    host = PluginHost([PLUGINS])
    generate(load_recipe(tmp / "recipe.yaml", host=host), tmp / "ds", host=host, workers=1)
    with pytest.MonkeyPatch.context() as mp:
        # ultralytics must neither download nor install anything, nor write to $HOME
        mp.setenv("YOLO_OFFLINE", "1")
        mp.setenv("YOLO_AUTOINSTALL", "False")
        mp.setenv("YOLO_CONFIG_DIR", str(tmp / "yolo-config"))
        yield tmp / "ds"


def _expected(ds: Path) -> dict[str, list[tuple[int, int, int, int]]]:
    return {
        Path(r["image"]).name: [tuple(a["box"]) for a in r["annotations"]] for r in iter_records(ds)
    }


@pytest.mark.parametrize("variant", ["yolo", "yolo-seg"])
def test_ultralytics_checks_accept_yolo(dataset: Path, variant: str) -> None:
    pytest.importorskip("ultralytics")
    from ultralytics.data.utils import check_det_dataset, verify_image_label

    root = dataset if variant == "yolo" else dataset / "yolo-seg"
    data = check_det_dataset(str(root / "data.yaml"))
    assert data["nc"] == 2 and data["names"] == {0: "blob", 1: "bright"}
    assert Path(data["train"]) == root / "images" / "train"
    expected = _expected(dataset)
    checked = 0
    for split in ("train", "val", "test"):
        for img in sorted((root / "images" / split).iterdir()):
            label = root / "labels" / split / f"{img.stem}.txt"
            out = verify_image_label((str(img), str(label), "", False, 2, 0, 0, False))
            _im, lb, shape, segments, _kp, nm, nf, ne, nc, msg = out
            assert nc == 0 and nm == 0 and nf == 1 and msg == "", msg  # nothing corrupt/dropped
            boxes = expected[img.name]
            assert len(lb) == len(boxes)
            assert ne == (1 if not boxes else 0)
            if variant == "yolo-seg":
                assert len(segments) == len(boxes)
            h, w = shape
            for row, (x1, y1, x2, y2) in zip(lb, boxes):
                cx, cy, bw, bh = row[1:]
                tol = 1.0 if variant == "yolo" else 2.0
                assert abs((cx - bw / 2) * w - x1) <= tol and abs((cx + bw / 2) * w - x2) <= tol
                assert abs((cy - bh / 2) * h - y1) <= tol and abs((cy + bh / 2) * h - y2) <= tol
            checked += 1
    assert checked == len(expected)


def _boxes_by_name(ds: object) -> dict[str, np.ndarray]:
    out = {}
    for path, _image, det in ds:  # type: ignore[attr-defined]
        order = np.lexsort(det.xyxy.T[::-1]) if len(det) else []
        out[Path(path).name] = det.xyxy[order] if len(det) else np.zeros((0, 4))
    return out


def test_supervision_loads_the_same_boxes_from_three_formats(dataset: Path) -> None:
    sv = pytest.importorskip("supervision")
    expected = _expected(dataset)
    for split in ("train", "val", "test"):
        images = str(dataset / "images" / split)
        coco = sv.DetectionDataset.from_coco(
            images, str(dataset / "annotations" / f"instances_{split}.json")
        )
        yolo = sv.DetectionDataset.from_yolo(
            images, str(dataset / "labels" / split), str(dataset / "data.yaml")
        )
        names = (dataset / "voc" / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        voc = sv.DetectionDataset.from_pascal_voc(
            str(dataset / "voc" / "JPEGImages"), str(dataset / "voc" / "Annotations")
        )
        assert coco.classes == yolo.classes == ["blob", "bright"]
        got_coco, got_yolo, got_voc = (_boxes_by_name(d) for d in (coco, yolo, voc))
        assert set(got_coco) == set(got_yolo) == {f"{n}.png" for n in names}
        for name in got_coco:
            want = np.array(sorted(expected[name]), dtype=float).reshape(-1, 4)
            # COCO [x, y, w, h] -> xyxy is exact; YOLO goes through 6 decimals; VOC is
            # 1-based inclusive, which supervision reads as is (x1 off by one)
            assert np.allclose(got_coco[name], want, atol=0.01), name
            assert np.allclose(got_yolo[name], want, atol=1.0), name
            assert np.allclose(got_voc[name], want, atol=1.0), name



def test_anomalib_folder_datamodule_reads_the_anomaly_layout(dataset: Path) -> None:
    """anomalib's own Folder datamodule (2.x): train/good are all normal, every image of
    test/<category> is abnormal with its ground_truth mask paired by name and non-empty,
    test/good is normal."""
    pytest.importorskip("anomalib")
    from anomalib.data import Folder

    root = dataset / "anomaly"
    cats = sorted(p.name for p in (root / "test").iterdir() if p.name != "good")
    assert cats
    dm = Folder(
        name="defectsynth", root=root, normal_dir="train/good",
        abnormal_dir=[f"test/{c}" for c in cats], normal_test_dir="test/good",
        mask_dir=[f"ground_truth/{c}" for c in cats], num_workers=0,
        train_batch_size=4, eval_batch_size=4, val_split_mode="none",
    )
    dm.setup()
    train = dm.train_data.samples
    assert len(train) == len(list((root / "train" / "good").iterdir())) > 0
    assert set(train.label_index.tolist()) == {0}
    test = dm.test_data.samples
    abnormal = test[test.label_index == 1]
    n_abnormal = sum(len(list((root / "test" / c).iterdir())) for c in cats)
    assert len(abnormal) == n_abnormal
    for image, mask in zip(abnormal.image_path, abnormal.mask_path, strict=True):
        cat = Path(image).parent.name
        assert Path(mask) == root / "ground_truth" / cat / f"{Path(image).stem}_mask.png"
    good = root / "test" / "good"
    n_good = len(list(good.iterdir())) if good.is_dir() else 0
    assert int((test.label_index == 0).sum()) == n_good
    for batch in dm.test_dataloader():
        for label, mask, image in zip(batch.gt_label, batch.gt_mask, batch.image, strict=True):
            assert mask.shape[-2:] == image.shape[-2:]
            assert bool(mask.any()) == bool(label)
