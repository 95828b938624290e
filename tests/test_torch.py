"""defectsynth.integrations.torch with a real torch DataLoader (marker ``torch``).

Run in a venv with torch (``pip install torch==2.13.0`` first, the small CPU build)::

    python -m pytest -m torch tests/test_torch.py

The torchvision tests also need torchvision (``torch==2.14.1 torchvision==0.29.1``) and
skip without it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dataset_factory import PLUGINS, make_inputs, write_recipe

from defectsynth.integrations import DefectDataset
from defectsynth.plugins import PluginHost
from defectsynth.sample import tight_box

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader  # noqa: E402

from defectsynth.integrations.torch import (  # noqa: E402
    EpochSampler,
    ToTensors,
    collate,
    collate_stacked,
    has_torchvision,
    to_tensors,
)

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def recipe_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("torch")
    make_inputs(tmp, n=3)
    return write_recipe(tmp, variants=2, negatives=0.25)


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost([PLUGINS], entry_points=False)


def _digests(loader: Any) -> dict[int, str]:
    """item index -> sha256 of its image and target tensors, over one pass of a loader."""
    out: dict[int, str] = {}
    for images, targets in loader:
        for image, target in zip(images, targets):
            h = hashlib.sha256(image.numpy().tobytes())
            for key in ("boxes", "labels", "masks"):
                h.update(target[key].numpy().tobytes())
            out[target["meta"]["index"]] = h.hexdigest()
    return out


def test_to_tensors_shapes_and_dtypes(recipe_path: Path, host: PluginHost) -> None:
    ds = DefectDataset(None, recipe_path, host=host, defect_fraction=1.0)
    image, target = ds[0]
    img_t, t = to_tensors(image, target, tv_tensors=False)
    n = len(target["boxes"])
    assert n > 0
    assert type(img_t) is torch.Tensor and img_t.dtype == torch.uint8
    assert tuple(img_t.shape) == (3, *image.shape[:2])
    assert np.array_equal(img_t.permute(1, 2, 0).numpy(), image)
    assert t["boxes"].dtype == torch.float32 and tuple(t["boxes"].shape) == (n, 4)
    assert t["labels"].dtype == torch.int64 and t["masks"].dtype == torch.uint8
    assert t["area"].dtype == torch.float32 and t["meta"] == target["meta"]
    scaled, _ = to_tensors(image, target, scale=True, tv_tensors=False)
    assert scaled.dtype == torch.float32 and float(scaled.max()) <= 1.0
    assert torch.allclose(scaled * 255, img_t.float())
    gray, _ = to_tensors(image[:, :, 0], target, tv_tensors=False)
    assert tuple(gray.shape) == (1, *image.shape[:2])
    u16, _ = to_tensors(image.astype(np.uint16) * 257, target, scale=True, tv_tensors=False)
    assert torch.allclose(u16, scaled)


def test_dataloader_output_is_identical_for_any_num_workers(
    recipe_path: Path, host: PluginHost
) -> None:
    ds = DefectDataset(None, recipe_path, host=host, transform=ToTensors(tv_tensors=False))
    per_workers = {}
    for workers in (0, 2):
        loader = DataLoader(ds, batch_size=2, shuffle=True, num_workers=workers,
                            collate_fn=collate)
        ds.set_epoch(0)
        e0 = _digests(loader)
        ds.set_epoch(1)
        e1 = _digests(loader)
        per_workers[workers] = (e0, e1)
        assert sorted(e0) == list(range(len(ds)))
        assert all(e0[i] != e1[i] for i in e0), "another epoch must give other defects"
    assert per_workers[0] == per_workers[2]


def test_epoch_sampler_with_persistent_workers(recipe_path: Path, host: PluginHost) -> None:
    ds = DefectDataset(None, recipe_path, host=host, transform=ToTensors(tv_tensors=False))
    reference = {}
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        reference[epoch] = _digests(DataLoader(ds, batch_size=3, collate_fn=collate))
    ds.set_epoch(0)  # the persistent workers keep this copy; the sampler carries the epoch
    sampler = EpochSampler(ds, shuffle=True, seed=5)
    loader = DataLoader(ds, batch_size=2, sampler=sampler, num_workers=2, collate_fn=collate,
                        persistent_workers=True)
    orders = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        orders.append([i for i, _ in sampler])
        assert _digests(loader) == reference[epoch]
    assert sorted(orders[0]) == sorted(orders[1]) == list(range(len(ds)))
    assert orders[0] != orders[1]
    again = EpochSampler(len(ds), shuffle=True, seed=5)
    assert [i for i, _ in again] == orders[0]


def test_collate_converts_numpy_items_and_stacks(recipe_path: Path, host: PluginHost) -> None:
    ds = DefectDataset(None, recipe_path, host=host)
    images, targets = collate([ds[0], ds[1]])
    assert all(isinstance(im, torch.Tensor) and im.dtype == torch.uint8 for im in images)
    assert all(t["labels"].dtype == torch.int64 for t in targets)
    stacked, _ = collate_stacked([ds[0], ds[1]])
    assert tuple(stacked.shape) == (2, 3, 96, 128)
    small = DefectDataset([np.zeros((32, 32, 3), np.uint8)], ds.synthesizer)
    with pytest.raises(ValueError, match="images of one size"):
        collate_stacked([ds[0], small[0]])


def test_tv_tensors_follow_torchvision_transforms(recipe_path: Path, host: PluginHost) -> None:
    if not has_torchvision():
        pytest.skip("torchvision is not installed")
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    transform = v2.Compose([ToTensors(), v2.RandomHorizontalFlip(p=1.0),
                            v2.RandomVerticalFlip(p=1.0), v2.ToDtype(torch.float32, scale=True)])
    ds = DefectDataset(None, recipe_path, host=host, transform=transform, defect_fraction=1.0)
    plain = DefectDataset(None, recipe_path, host=host, defect_fraction=1.0)
    checked = 0
    for i in range(len(ds)):
        image, target = ds[i]
        assert isinstance(image, tv_tensors.Image) and image.dtype == torch.float32
        boxes, masks = target["boxes"], target["masks"]
        assert isinstance(boxes, tv_tensors.BoundingBoxes) and isinstance(masks, tv_tensors.Mask)
        assert boxes.format == tv_tensors.BoundingBoxFormat.XYXY
        assert tuple(boxes.canvas_size) == tuple(image.shape[-2:])
        ref_image, _ = plain[i]
        assert torch.allclose(image * 255, torch.from_numpy(
            np.ascontiguousarray(ref_image[::-1, ::-1].transpose(2, 0, 1))).float())
        for box, mask in zip(boxes.tolist(), masks.numpy()):
            assert tight_box(mask > 0) == tuple(int(v) for v in box)
            checked += 1
    assert checked > 0
