"""An albumentations (2.x) transform that adds synthetic defects inside ``A.Compose``.

::

    import albumentations as A
    from defectsynth.integrations.albumentations import AddDefects

    aug = A.Compose(
        [AddDefects("recipe.yaml", p=0.5), A.HorizontalFlip(), A.RandomBrightnessContrast()],
        bbox_params=A.BboxParams(format="coco", label_fields=["labels"]),
        seed=137,
    )
    out = aug(image=image, bboxes=boxes, labels=labels, masks=masks)

The transform renders defects on the image it receives (so it composes with the
transforms before it), appends one box per kept defect to ``bboxes`` with its label in
every ``label_fields`` field, and one instance mask to ``masks``; the later transforms move
them with the image and the Compose converts the boxes back to its own ``format``.
Existing boxes, labels and masks are left untouched; ``mask`` (a single semantic mask) and
keypoints pass through. Randomness comes from the transform's own generator, which
``A.Compose(seed=...)`` sets: the same seed gives the same defects.

Labels: with ``label="auto"`` a label field that holds numbers gets the category's id
(its index in ``categories``), a field of names gets the category's name. An empty label
list tells albumentations nothing about its type, so the first defects added to an image
without boxes get names; pass ``label="id"`` (or ``"name"``) to decide once for all. Ids
into a field of names (or names into numbers) are refused: albumentations would decode
the labels already present differently.
A box given with extra values inline (``[x, y, w, h, class_id]``) gets the id in the first
extra column and 0 in any others.

Masks: pass ``masks`` (a list, possibly empty, or an (N, H, W) array) to receive instance
masks (an empty list gets the new ones). Masks hold ``mask_value`` (1) inside the
defect, in the dtype of the masks already present.

The product mask: pass it as ``product_mask=...`` in the Compose call and declare it with
``additional_targets={"product_mask": "mask"}`` so the transforms before ``AddDefects``
move it with the image; without it the synthesizer's default (the recipe's) is used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from albumentations.core.transforms_interface import DualTransform

from ..sample import Sample, category_ids
from ..synthesizer import Synthesizer

if TYPE_CHECKING:
    from ..plugins import PluginHost
    from ..recipe import Recipe

__all__ = ["AddDefects"]

LABEL_MODES = ("auto", "id", "name")
MAX_SEED = 2**63


class AddDefects(DualTransform):
    """Add synthetic defects (and their boxes, labels and masks) with probability ``p``.

    :param recipe: a recipe file, a loaded Recipe, or a Synthesizer.
    :param categories: category map for ids (names in id order, or name -> id); default
        the synthesizer's categories (the recipe's ``defects`` order).
    :param label: ``auto``, ``id`` or ``name``: what goes into the Compose's label fields.
    :param mask_value: the value of a new instance mask inside the defect.
    :param product_mask_key: the data key holding the product mask, when given.
    :param rgb: the images are RGB (albumentations' convention); the synthesizer works in
        BGR and the channels are swapped around it. Set False for BGR pipelines.
    :param instances: force this many defects per applied image (default: the recipe's).
    :param p: probability of adding defects to an image.
    :param host: plugin host for a recipe (default: the process-wide one).
    """

    def __init__(
        self,
        recipe: str | os.PathLike[str] | Recipe | Synthesizer,
        categories: Sequence[str] | Mapping[str, int] | None = None,
        *,
        label: str = "auto",
        mask_value: int = 1,
        product_mask_key: str = "product_mask",
        rgb: bool = True,
        instances: int | None = None,
        p: float = 0.5,
        host: PluginHost | None = None,
    ) -> None:
        super().__init__(p=p)
        if label not in LABEL_MODES:
            raise ValueError(f"label {label!r} is not one of {', '.join(LABEL_MODES)}")
        self._recipe: Recipe | None = None
        self._host = host
        if isinstance(recipe, Synthesizer):
            self._synth: Synthesizer | None = recipe
        else:
            from ..build import as_recipe

            self._recipe = as_recipe(recipe, host)
            self._synth = Synthesizer.from_recipe(self._recipe, host)
        synth = self._synth
        assert synth is not None
        self.categories = category_ids(categories if categories is not None else synth.categories)
        missing = [c for c in synth.categories if c not in self.categories]
        if missing:
            raise ValueError(f"categories does not map {', '.join(map(repr, missing))}")
        self.label = label
        self.mask_value = int(mask_value)
        self.product_mask_key = product_mask_key
        self.rgb = bool(rgb)
        self.instances = None if instances is None else int(instances)

    @property
    def synthesizer(self) -> Synthesizer:
        if self._synth is None:  # unpickled in a worker: rebuild from the recipe
            assert self._recipe is not None
            self._synth = Synthesizer.from_recipe(self._recipe, self._host)
        return self._synth

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("categories", "label", "mask_value", "product_mask_key", "rgb", "instances")

    @property
    def targets_as_params(self) -> list[str]:
        return ["image"]

    # -- drawing the defects ------------------------------------------------------------

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        if "image" not in data:
            raise ValueError("AddDefects works on one image per call (the 'image' key)")
        image = data["image"]
        seed = int(self.random_generator.integers(MAX_SEED))
        work, restore = _to_synth_image(image, self.rgb)
        product = data.get(self.product_mask_key)
        if product is not None:
            product = np.asarray(product)
            if product.ndim == 3:
                product = product[:, :, 0]
        sample = self.synthesizer.apply(work, product, seed=seed, instances=self.instances)
        h, w = image.shape[:2]
        boxes = sample.boxes / np.array([w, h, w, h], dtype=np.float32)
        masks = np.zeros((len(sample), h, w), dtype=np.uint8)
        for i, a in enumerate(sample.annotations):
            x1, y1, x2, y2 = a.box
            masks[i, y1:y2, x1:x2] = a.mask_crop
        return {
            "defect_sample": sample,
            "defect_image": restore(sample),
            "defect_boxes": boxes,
            "defect_masks": masks,
            "defect_categories": sample.categories,
        }

    def apply(self, img: np.ndarray, *args: Any, **params: Any) -> np.ndarray:
        out = params.get("defect_image")
        if out is None or out.shape != img.shape:
            return img
        return out

    def apply_to_images(self, images: np.ndarray, *args: Any, **params: Any) -> np.ndarray:
        raise NotImplementedError("AddDefects works on one image per call, not on 'images'")

    def apply_to_mask(self, mask: np.ndarray, *args: Any, **params: Any) -> np.ndarray:
        return mask

    def apply_to_keypoints(self, keypoints: np.ndarray, *args: Any, **params: Any) -> np.ndarray:
        return keypoints

    def apply_to_masks(self, masks: np.ndarray, *args: Any, **params: Any) -> np.ndarray:
        new = params.get("defect_masks")
        if new is None or len(new) == 0:
            return masks
        masks = np.asarray(masks)
        if masks.size == 0:
            return self._scaled(new)
        add = new.astype(masks.dtype) * masks.dtype.type(self.mask_value)
        if masks.ndim == 4:  # (N, H, W, C)
            add = np.repeat(add[..., None], masks.shape[3], axis=3)
        return np.concatenate([masks, add], axis=0)

    def apply_to_bboxes(self, bboxes: np.ndarray, *args: Any, **params: Any) -> np.ndarray:
        boxes = params.get("defect_boxes")
        if boxes is None or len(boxes) == 0:
            return bboxes
        names: list[str] = params["defect_categories"]
        ids = np.array([self.categories[n] for n in names], dtype=np.float32)
        processor = self.processors.get("bboxes")
        fields = list(processor.params.label_fields or []) if processor is not None else []
        bboxes = np.asarray(bboxes, dtype=np.float32)
        if bboxes.size == 0:
            n_extra = 0
        else:
            n_extra = bboxes.shape[1] - 4 - len(fields)
        cols = [boxes.astype(np.float32)]
        if n_extra > 0:
            extra = np.zeros((len(boxes), n_extra), dtype=np.float32)
            extra[:, 0] = ids
            cols.append(extra)
        for field in fields:
            assert processor is not None
            cols.append(self._encode_labels(processor, field, names, ids))
        rows = np.hstack(cols).astype(np.float32)
        if bboxes.size == 0:
            return rows
        return np.concatenate([bboxes, rows], axis=0)

    def _encode_labels(
        self, processor: Any, field: str, names: list[str], ids: np.ndarray
    ) -> np.ndarray:
        """The new labels of one label field, encoded as the Compose's label manager
        encodes that field (its decoder turns them back after the last transform).

        Never refits the field's encoder: refitting with values of another type would
        change how the labels already present decode.
        """
        manager = processor.label_manager
        meta = manager.metadata.get("bboxes", {}).get(field)
        encoder = meta.encoder if meta is not None else None
        numeric = meta is not None and (
            meta.is_numerical or (encoder is not None and encoder.is_numerical)
        )
        mode = self.label
        if mode == "auto":
            mode = "id" if numeric else "name"
        id_values = [int(v) for v in ids]
        if meta is None:  # no labels seen in this field yet: nothing to disturb
            values: list[Any] = id_values if mode == "id" else list(names)
            encoded = manager.process_field("bboxes", field, values)
        elif numeric:
            if mode == "name":
                raise ValueError(
                    f"label field {field!r} holds numbers; AddDefects(label='name') would put "
                    "names there: use label='id' or 'auto'"
                )
            encoded = np.array(id_values, dtype=np.float32)
        else:
            if mode == "id" or encoder is None:
                raise ValueError(
                    f"label field {field!r} holds names; AddDefects(label='id') would mix "
                    "numbers into it: use label='name' or 'auto'"
                )
            encoder.update(names)
            encoded = encoder.transform(names)
        return np.asarray(encoded, dtype=np.float32).reshape(-1, 1)

    def apply_with_params(
        self, params: dict[str, Any], *args: Any, **kwargs: Any
    ) -> dict[str, Any]:
        res = super().apply_with_params(params, *args, **kwargs)
        masks = kwargs.get("masks")
        new = params.get("defect_masks")
        if (
            isinstance(masks, list | tuple)
            and len(masks) == 0
            and new is not None
            and len(new) > 0
        ):
            res["masks"] = self._scaled(new)
        return res

    def _scaled(self, new: np.ndarray) -> np.ndarray:
        """The new 0/1 instance masks holding ``mask_value``: themselves for the default 1
        (they are this call's own arrays; a product over N x H x W costs more than the
        rest of the adapter)."""
        return new if self.mask_value == 1 else new * np.uint8(self.mask_value)

    # -- pickling (DataLoader workers started with spawn) -----------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if state.get("_recipe") is not None:
            state["_synth"] = None
            state["_host"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def _to_synth_image(image: np.ndarray, rgb: bool) -> tuple[np.ndarray, Any]:
    """The image as the synthesizer takes it (uint8/uint16, 2-D or BGR/BGRA) and a
    function that turns a Sample back into the caller's layout, dtype and channel order."""
    img = np.asarray(image)
    squeeze = img.ndim == 3 and img.shape[2] == 1
    work = img[:, :, 0] if squeeze else img
    as_float = work.dtype.kind == "f"
    if as_float:
        work = np.clip(np.rint(work * 65535.0), 0, 65535).astype(np.uint16)
    swap = rgb and work.ndim == 3 and work.shape[2] in (3, 4)
    if swap:
        work = _swap(work)

    def restore(sample: Sample) -> np.ndarray:
        out = sample.image
        if swap:
            out = _swap(out)
        if as_float:
            fp = sample.footprint
            changed = out.astype(img.dtype) / img.dtype.type(65535.0)
            base = img[:, :, 0] if squeeze else img
            if fp is None:
                out = changed
            else:
                sel = fp if changed.ndim == 2 else fp[:, :, None]
                out = np.where(sel, changed, base).astype(img.dtype)
        if squeeze:
            out = out[:, :, None]
        return np.ascontiguousarray(out)

    return np.ascontiguousarray(work), restore


def _swap(image: np.ndarray) -> np.ndarray:
    out = image.copy()
    out[:, :, [0, 2]] = image[:, :, [2, 0]]
    return out
