"""PyTorch adapters: tensors (torchvision ``tv_tensors`` when available), a detection
collate function, and a sampler that carries the epoch with every index.

Importing this module imports torch; ``import defectsynth`` never does.

Typical use::

    from torch.utils.data import DataLoader
    from defectsynth.integrations import DefectDataset
    from defectsynth.integrations.torch import EpochSampler, ToTensors, collate

    ds = DefectDataset("images/", "recipe.yaml", transform=ToTensors(scale=True),
                       label_offset=1)
    sampler = EpochSampler(ds, shuffle=True, seed=0)
    loader = DataLoader(ds, batch_size=4, sampler=sampler, num_workers=2,
                        collate_fn=collate, persistent_workers=True)
    for epoch in range(10):
        sampler.set_epoch(epoch)
        for images, targets in loader:
            ...
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence, Sized
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = [
    "EpochSampler",
    "ToTensors",
    "collate",
    "collate_stacked",
    "has_torchvision",
    "image_to_tensor",
    "to_tensors",
]

_TV_FORMATS = {"xyxy": "XYXY", "xywh": "XYWH", "cxcywh": "CXCYWH"}


def has_torchvision() -> bool:
    """True when torchvision (with ``tv_tensors``, 0.16+) can be imported."""
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        from torchvision import tv_tensors  # noqa: F401
    except Exception:  # noqa: BLE001  # a broken or too old install: plain tensors then
        return False
    return True


def image_to_tensor(image: np.ndarray, *, scale: bool = False) -> torch.Tensor:
    """An HWC (or HW) numpy image as a CHW tensor.

    :param scale: float32 in [0, 1] (divided by 255 or 65535); otherwise the dtype is kept
        (uint16 becomes ``torch.uint16``, which few operations support: use ``scale``).
    """
    arr = image if image.ndim == 3 else image[:, :, None]
    chw = np.ascontiguousarray(arr.transpose(2, 0, 1))
    if scale:
        maxval = 65535.0 if image.dtype == np.uint16 else 255.0
        if image.dtype not in (np.uint8, np.uint16):
            maxval = 1.0
        return torch.from_numpy(chw.astype(np.float32) / np.float32(maxval))
    return torch.from_numpy(chw)


def to_tensors(
    image: Any, target: dict[str, Any], *, scale: bool = False, tv_tensors: bool | None = None
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Convert one ``(image, target)`` item of :class:`~defectsynth.integrations.DefectDataset`
    (or of :meth:`Sample.to_target <defectsynth.Sample.to_target>`) to tensors.

    :param scale: image as float32 in [0, 1] (what torchvision's detection models take).
    :param tv_tensors: wrap as torchvision ``tv_tensors`` (``Image``, ``BoundingBoxes``
        with format and canvas size, ``Mask``) so torchvision v2 transforms move the boxes
        and masks with the image. Default: when torchvision is installed. Normalized boxes
        stay plain tensors (``BoundingBoxes`` are in pixels).
    :returns: the CHW image tensor and a new target dict: ``boxes`` float32 (N, 4),
        ``labels`` int64 (N,), ``masks`` uint8 (N, H, W), ``area`` float32 (N,); other keys
        are passed through unchanged.
    """
    use_tv = has_torchvision() if tv_tensors is None else bool(tv_tensors)
    img_t = image_to_tensor(image, scale=scale) if isinstance(image, np.ndarray) else image
    out = dict(target)
    h, w = (int(v) for v in target.get("image_size", img_t.shape[-2:]))
    boxes = target.get("boxes")
    if boxes is not None and not isinstance(boxes, torch.Tensor):
        boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
    masks = target.get("masks")
    if masks is not None and not isinstance(masks, torch.Tensor):
        masks = torch.from_numpy(np.ascontiguousarray(masks, dtype=np.uint8))
    if "labels" in target and not isinstance(target["labels"], torch.Tensor):
        out["labels"] = torch.as_tensor(np.asarray(target["labels"], dtype=np.int64))
    if "area" in target and not isinstance(target["area"], torch.Tensor):
        out["area"] = torch.as_tensor(np.asarray(target["area"], dtype=np.float32))
    if use_tv:
        from torchvision import tv_tensors as tvt

        img_t = tvt.Image(img_t)
        fmt = _TV_FORMATS.get(str(target.get("box_format", "xyxy")))
        if boxes is not None and fmt is not None and not target.get("normalized", False):
            boxes = tvt.BoundingBoxes(boxes, format=fmt, canvas_size=(h, w))
        if masks is not None:
            masks = tvt.Mask(masks)
    if boxes is not None:
        out["boxes"] = boxes
    if masks is not None:
        out["masks"] = masks
    return img_t, out


class ToTensors:
    """:func:`to_tensors` as a dataset transform: ``DefectDataset(..., transform=ToTensors())``.

    It takes and returns ``(image, target)``, so it can open a torchvision v2 pipeline:
    ``v2.Compose([ToTensors(scale=True), v2.RandomHorizontalFlip()])``.
    """

    def __init__(self, *, scale: bool = False, tv_tensors: bool | None = None) -> None:
        self.scale = scale
        self.tv_tensors = tv_tensors

    def __call__(self, image: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return to_tensors(image, target, scale=self.scale, tv_tensors=self.tv_tensors)

    def __repr__(self) -> str:
        return f"ToTensors(scale={self.scale}, tv_tensors={self.tv_tensors})"


def collate(batch: Sequence[tuple[Any, dict[str, Any]]]) -> tuple[list[Any], list[dict[str, Any]]]:
    """Detection-style collate: ``(list of images, list of targets)``, as torchvision's
    detection models take them (images may differ in size; targets differ in length).
    Items still in numpy are converted with :func:`to_tensors` (dtype kept)."""
    images: list[Any] = []
    targets: list[dict[str, Any]] = []
    for image, target in batch:
        if isinstance(image, np.ndarray):
            image, target = to_tensors(image, target)
        images.append(image)
        targets.append(target)
    return images, targets


def collate_stacked(
    batch: Sequence[tuple[Any, dict[str, Any]]],
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Like :func:`collate` but stacks the images into one (B, C, H, W) tensor; they must
    share a size (resize in the dataset's transform)."""
    images, targets = collate(batch)
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) > 1:
        raise ValueError(
            f"collate_stacked needs images of one size, got {sorted(shapes)}; resize them in "
            "the dataset's transform or use collate"
        )
    return torch.stack([torch.as_tensor(im) for im in images]), targets


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, epoch)`` pairs, so every item names its epoch itself.

    :class:`~defectsynth.integrations.DefectDataset` accepts such pairs. Unlike
    ``dataset.set_epoch``, this works with ``persistent_workers=True`` (whose worker
    copies of the dataset never see a later ``set_epoch``).

    :param data_source: the dataset (or its length).
    :param shuffle: a permutation per epoch, a pure function of (seed, epoch).
    :param seed: seed of the permutation.
    """

    def __init__(self, data_source: Sized | int, *, shuffle: bool = False, seed: int = 0) -> None:
        self.length = data_source if isinstance(data_source, int) else len(data_source)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch]))
            order = rng.permutation(self.length)
        else:
            order = np.arange(self.length)
        epoch = self.epoch
        for i in order:
            yield int(i), epoch

    def __len__(self) -> int:
        return self.length
