"""The mask PNGs are written by hand (issue 19: only the box's rows are built): the
instance masks (1-bit) and the anomaly layout's ground truth (8-bit). Every reader must
still see the full-size 0/255 mask OpenCV's encoder gave."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest

from defectsynth.imagefile import mask_png
from defectsynth.rle import crop_rle
from defectsynth.run.worker import encode_mask
from defectsynth.writers.anomaly import union_crop, union_mask

CASES = [
    # (height, width), box (x1, y1, x2, y2)
    ((96, 128), (36, 37, 43, 44)),
    ((97, 131), (0, 0, 131, 97)),  # the whole image, widths not a multiple of 8
    ((50, 61), (60, 49, 61, 50)),  # one pixel in the last corner
    ((1024, 1024), (100, 200, 230, 290)),
    ((33, 9), (3, 0, 9, 33)),  # touches the right, top and bottom edges
]


def _crop(shape: tuple[int, int], seed: int) -> np.ndarray:
    crop = np.random.default_rng(seed).random(shape) < 0.5
    crop[0, 0] = True  # never empty
    return crop


def _full(crop: np.ndarray, box: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    x1, y1, x2, y2 = box
    full = np.zeros(shape, np.uint8)
    full[y1:y2, x1:x2] = crop.astype(np.uint8) * 255
    return full


@pytest.mark.parametrize(("shape", "box"), CASES)
def test_mask_png_reads_back_as_the_full_mask(
    shape: tuple[int, int], box: tuple[int, int, int, int]
) -> None:
    x1, y1, x2, y2 = box
    crop = _crop((y2 - y1, x2 - x1), seed=x1 + y1)
    data = encode_mask(crop, box, shape)
    expected = _full(crop, box, shape)

    back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint8 and back.shape == shape
    assert np.array_equal(back, expected)
    # what OpenCV's own bilevel encoder gave before, pixel for pixel
    ok, buf = cv2.imencode(".png", expected, [cv2.IMWRITE_PNG_BILEVEL, 1])
    assert ok
    assert np.array_equal(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED), back)


@pytest.mark.parametrize(("shape", "box"), CASES[:3])
def test_mask_png_is_valid_for_pillow(
    shape: tuple[int, int], box: tuple[int, int, int, int]
) -> None:
    Image = pytest.importorskip("PIL.Image")
    x1, y1, x2, y2 = box
    crop = _crop((y2 - y1, x2 - x1), seed=7)
    data = encode_mask(crop, box, shape)
    Image.open(io.BytesIO(data)).verify()  # chunk CRCs and structure
    im = Image.open(io.BytesIO(data))
    assert im.mode == "1" and im.size == (shape[1], shape[0])
    assert np.array_equal(np.asarray(im.convert("L")), _full(crop, box, shape))


def test_mask_png_is_deterministic_and_accepts_uint8_crops() -> None:
    crop = _crop((20, 30), seed=3)
    box = (5, 6, 35, 26)
    a = encode_mask(crop, box, (40, 50))
    assert a == encode_mask(crop.copy(), box, (40, 50))
    assert a == encode_mask(crop.astype(np.uint8), box, (40, 50))


@pytest.mark.parametrize(("shape", "box"), CASES)
def test_eight_bit_mask_png_reads_back_as_the_full_mask(
    shape: tuple[int, int], box: tuple[int, int, int, int]
) -> None:
    x1, y1, x2, y2 = box
    crop = _crop((y2 - y1, x2 - x1), seed=11)
    back = cv2.imdecode(
        np.frombuffer(mask_png(crop, box, shape, bits=8), np.uint8), cv2.IMREAD_UNCHANGED
    )
    assert back.dtype == np.uint8 and back.shape == shape
    assert np.array_equal(back, _full(crop, box, shape))


def test_mask_png_refuses_a_box_outside_the_image() -> None:
    with pytest.raises(ValueError, match="not inside"):
        mask_png(np.ones((2, 2), bool), (9, 9, 11, 11), (10, 10))
    with pytest.raises(ValueError, match="bits"):
        mask_png(np.ones((2, 2), bool), (0, 0, 2, 2), (10, 10), bits=4)


def test_anomaly_union_crop_is_the_union_mask_in_its_box() -> None:
    shape = (40, 50)
    rng = np.random.default_rng(5)
    annotations = []
    for box in ((3, 4, 20, 15), (10, 10, 30, 38), (45, 0, 50, 5)):  # two overlap
        x1, y1, x2, y2 = box
        crop = rng.random((y2 - y1, x2 - x1)) < 0.6
        crop[0, 0] = crop[-1, -1] = True  # the box stays tight at two corners
        annotations.append({"box": list(box), "mask_rle": crop_rle(crop, box, shape)})
    rec = {"height": shape[0], "width": shape[1], "annotations": annotations}
    crop, (x1, y1, x2, y2) = union_crop(rec)
    full = union_mask(rec)
    assert (x1, y1, x2, y2) == (3, 0, 50, 38)
    assert np.array_equal(full[y1:y2, x1:x2], crop)
    assert full.sum() == crop.sum()

