"""A map-style dataset that synthesizes defects on the fly, for training loops.

Needs only numpy and OpenCV: PyTorch's ``DataLoader`` accepts any object with
``__len__`` and ``__getitem__``, so this module never imports torch.

Determinism: item ``i`` of epoch ``e`` draws everything from
``SeedSequence([seed, source_id, i, e])``: whether it gets defects, and the
``variant`` handed to :meth:`Synthesizer.apply <defectsynth.Synthesizer.apply>` (whose
own stream is ``SeedSequence([seed, source_id, variant])``). Nothing is kept between
items, so any worker can make any item, in any order, and get the same bytes: the
output is identical for every ``num_workers``. ``target["meta"]`` records seed,
source_id and variant, so one item can be remade alone with ``Synthesizer.apply``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from ..errors import GeneratorFailure, InputImageError
from ..imagefile import (
    DEFAULT_MAX_PIXELS,
    decode_image,
    read_file_bytes,
    unexpected_input_error,
)
from ..inputs import IMAGE_EXTENSIONS, expand_input, mask_fields
from ..placement import resolve_product_mask
from ..sample import BOX_FORMATS, Sample, category_ids
from ..synthesizer import Synthesizer, source_id

if TYPE_CHECKING:
    from ..plugins import PluginHost
    from ..recipe import Recipe

__all__ = ["DefectDataset", "IMAGE_EXTENSIONS", "read_image"]


PathLike: TypeAlias = str | os.PathLike[str]
SourceItem: TypeAlias = PathLike | np.ndarray
MaskItem: TypeAlias = PathLike | np.ndarray | None
Transform: TypeAlias = Callable[[Any, dict[str, Any]], tuple[Any, Any]]


@dataclass(frozen=True)
class _Source:
    """One clean image: where it is (a file, or an array given in memory), the name that
    seeds its random stream, and its product mask (a spec for ``Synthesizer.apply``)."""

    rel: str
    sid: int
    path: str | None = None
    array: np.ndarray | None = None
    mask: MaskItem | str = None


def read_image(path: PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as stored: 8 or 16 bit; gray, BGR or BGRA; EXIF orientation
    applied. The same untrusted-file reader as ``defectsynth generate``: only regular
    files, the header checked against ``max_pixels`` before anything is decoded.

    :raises InputImageError: naming the file when it cannot be read or decoded, also
        when the reader failed in a way no check foresaw (``unexpected error while
        reading: ...; please report it``, with the original exception as its cause).
    """
    try:
        return decode_image(read_file_bytes(path, max_pixels), max_pixels)
    except InputImageError as exc:
        raise InputImageError(f"{os.fspath(path)}: {exc}") from None
    except Exception as exc:  # one bad file: a clear error that names it
        err = unexpected_input_error(exc, "reading")
        raise InputImageError(f"{os.fspath(path)}: {err}") from exc


def _swap_rb(image: np.ndarray) -> np.ndarray:
    """BGR <-> RGB (and BGRA <-> RGBA); gray images pass through."""
    if image.ndim == 3 and image.shape[2] in (3, 4):
        out = image.copy()
        out[:, :, [0, 2]] = image[:, :, [2, 0]]
        return out
    return image


class DefectDataset:
    """Clean images in, freshly defected ``(image, target)`` pairs out, reproducibly.

    :param sources: the clean images: a folder (searched recursively), a glob, a file, or
        a list of files and/or numpy arrays (BGR, or RGB with ``rgb=True``). ``None`` takes
        the recipe's ``inputs.images`` (and its product-mask pattern).
    :param recipe: a recipe file, a loaded :class:`~defectsynth.recipe.Recipe`, or a
        ready :class:`~defectsynth.Synthesizer`.
    :param length: number of items; default the recipe's ``samples``, else
        ``len(sources) * recipe.variants``. Item ``i`` uses source ``i % len(sources)``.
    :param transform: ``transform(image, target) -> (image, target)``, applied last
        (torchvision v2 transforms take exactly this).
    :param defect_fraction: the fraction of items that get defects; the others are clean
        negatives with empty targets. Default: ``1 - recipe.negatives`` (1.0 for a
        Synthesizer).
    :param seed: overrides the recipe's seed (default 0 for a Synthesizer).
    :param epoch: the starting epoch (see :meth:`set_epoch`).
    :param product_mask: ``"auto"``, ``"full"``, a path pattern with ``{stem}``, ``{name}``,
        ``{ext}``, ``{parent}``, ``{relstem}`` (relative to each source's root), or a list
        parallel to ``sources`` of arrays, paths or None. Default: the recipe's.
    :param categories: the category map for label ids; default the synthesizer's (the
        recipe's ``defects`` order).
    :param box_format, normalized, masks, label_offset: passed to
        :meth:`Sample.to_target <defectsynth.Sample.to_target>`.
    :param rgb: images in memory are RGB and items come out RGB (files are read BGR and
        converted); the synthesizer itself always works in BGR.
    :param cache: keep decoded source images, and their product masks when those come
        from files or ``auto``, in memory (per worker process).
    :param host: plugin host for a recipe (default: the process-wide one).
    """

    # (long on purpose: the docstring documents each argument of the public constructor)
    def __init__(
        self,
        sources: PathLike | Sequence[SourceItem] | None,
        recipe: PathLike | Recipe | Synthesizer,
        length: int | None = None,
        transform: Transform | None = None,
        defect_fraction: float | None = None,
        *,
        seed: int | None = None,
        epoch: int = 0,
        product_mask: str | Sequence[MaskItem] | None = None,
        categories: Sequence[str] | Mapping[str, int] | None = None,
        box_format: str = "xyxy",
        normalized: bool = False,
        masks: bool = True,
        label_offset: int = 0,
        rgb: bool = False,
        cache: bool = False,
        host: PluginHost | None = None,
    ) -> None:
        self._recipe: Recipe | None = None
        self._recipe_path: str | None = None
        self._host = host
        synth: Synthesizer | None = None
        if isinstance(recipe, Synthesizer):
            synth = recipe
        else:
            from ..build import as_recipe

            if isinstance(recipe, str | os.PathLike):
                self._recipe_path = os.fspath(recipe)
            self._recipe = as_recipe(recipe, host)
        if synth is None:
            assert self._recipe is not None
            synth = Synthesizer.from_recipe(self._recipe, host)
        self._synth: Synthesizer | None = synth

        if seed is not None:
            self.seed = int(seed)
        else:
            self.seed = int(self._recipe.seed) if self._recipe is not None else 0
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

        self._sources = self._resolve_sources(sources, product_mask, rgb)
        if not self._sources:
            raise ValueError(f"no source images found in {sources!r}")
        variants = int(self._recipe.variants) if self._recipe is not None else 1
        total = getattr(self._recipe, "samples", None)  # a recipe's samples: N total
        default = int(total) if total is not None else len(self._sources) * variants
        self.length = default if length is None else int(length)
        if self.length < 0:
            raise ValueError(f"length must be >= 0, got {length!r}")

        if defect_fraction is None:
            negatives = float(self._recipe.negatives) if self._recipe is not None else 0.0
            defect_fraction = 1.0 - negatives
        if not 0.0 <= float(defect_fraction) <= 1.0:
            raise ValueError(f"defect_fraction must be in [0, 1], got {defect_fraction!r}")
        self.defect_fraction = float(defect_fraction)

        if box_format not in BOX_FORMATS:
            raise ValueError(f"box_format {box_format!r} is not one of {', '.join(BOX_FORMATS)}")
        self.category_map = category_ids(
            categories if categories is not None else synth.categories
        )
        missing = [c for c in synth.categories if c not in self.category_map]
        if missing:
            raise ValueError(
                f"categories does not map {', '.join(map(repr, missing))}, which the recipe "
                "can produce"
            )
        self.transform = transform
        self.epoch = int(epoch)
        self.box_format = box_format
        self.normalized = bool(normalized)
        self.masks = bool(masks)
        self.label_offset = int(label_offset)
        self.rgb = bool(rgb)
        self.cache = bool(cache)
        self._cached: dict[int, np.ndarray] = {}
        self._cached_masks: dict[int, np.ndarray] = {}

    # -- sources --------------------------------------------------------------------------

    def _resolve_sources(
        self,
        sources: PathLike | Sequence[SourceItem] | None,
        product_mask: str | Sequence[MaskItem] | None,
        rgb: bool,
    ) -> list[_Source]:
        items: list[tuple[str, str | None, np.ndarray | None]] = []  # (rel, path, array)
        recipe_masks: list[str | None] | None = None
        root = Path(".")
        if sources is None:
            if self._recipe is None:
                raise ValueError("sources=None takes the recipe's inputs; give a recipe, "
                                 "not a Synthesizer, or list the sources")
            found = self._recipe.sources()
            items = [(s.rel, s.path, None) for s in found]
            if product_mask is None:
                recipe_masks = [
                    None if (m := self._recipe.mask_path(s)) is None else os.fspath(m)
                    for s in found
                ]
        elif isinstance(sources, str | os.PathLike):
            # the same discovery as a recipe's inputs (inputs.py), in the same order
            root, files = expand_input(Path(os.fspath(sources)))
            items = sorted((Path(os.path.relpath(f, root)).as_posix(), f, None) for f in files)
        elif isinstance(sources, np.ndarray):
            raise TypeError("sources is one array; pass a list of images: [image]")
        else:
            paths = [os.fspath(s) for s in sources if not isinstance(s, np.ndarray)]
            dirs = [os.path.dirname(os.path.abspath(p)) for p in paths]
            common = os.path.commonpath(dirs) if dirs else "."
            root = Path(common)
            for i, s in enumerate(sources):
                if isinstance(s, np.ndarray):
                    arr = _swap_rb(s) if rgb else s
                    items.append((f"<array {i}>", None, arr))
                else:
                    rel = Path(os.path.relpath(os.path.abspath(os.fspath(s)), common)).as_posix()
                    items.append((rel, os.fspath(s), None))

        masks: list[MaskItem | str]
        if recipe_masks is not None:
            masks = list(recipe_masks)
        elif product_mask is None:
            masks = [None] * len(items)
        elif isinstance(product_mask, str):
            if product_mask in ("auto", "full"):
                masks = [product_mask] * len(items)
            else:
                masks = [
                    str(root / product_mask.format(**mask_fields(rel))) for rel, _, _ in items
                ]
        else:
            masks = list(product_mask)
            if len(masks) != len(items):
                raise ValueError(
                    f"product_mask lists {len(masks)} masks for {len(items)} sources"
                )
        return [
            _Source(rel=rel, sid=source_id(rel), path=path, array=arr, mask=m)
            for (rel, path, arr), m in zip(items, masks)
        ]

    # -- the dataset protocol -------------------------------------------------------------

    def __len__(self) -> int:
        return self.length

    @property
    def synthesizer(self) -> Synthesizer:
        if self._synth is None:  # after unpickling in a worker process
            if self._recipe is None:
                raise RuntimeError("this dataset lost its synthesizer and has no recipe")
            self._synth = Synthesizer.from_recipe(self._recipe, self._host)
        return self._synth

    @property
    def categories(self) -> list[str]:
        """Category names by id (``label_offset`` not included)."""
        return [name for name, _ in sorted(self.category_map.items(), key=lambda kv: kv[1])]

    @property
    def sources(self) -> list[str]:
        """Each source's name (its path relative to its root, or ``<array i>``)."""
        return [s.rel for s in self._sources]

    def set_epoch(self, epoch: int) -> None:
        """Make the next items those of ``epoch``: same index, other defects.

        With a multi-worker ``DataLoader`` call it before iterating (the workers copy the
        dataset when an epoch's iteration starts), and don't use ``persistent_workers``, or
        index with ``(index, epoch)`` pairs, e.g. through
        :class:`defectsynth.integrations.torch.EpochSampler`.
        """
        self.epoch = int(epoch)

    def streams(self, index: int, epoch: int | None = None) -> tuple[int, int, bool]:
        """``(source position, variant, has defects)`` of an item: a pure function of
        (seed, source, index, epoch)."""
        index, epoch = self._check_index(index, epoch)
        pos = index % len(self._sources)
        src = self._sources[pos]
        words = np.random.SeedSequence([self.seed, src.sid, index, epoch]).generate_state(
            2, dtype=np.uint64
        )
        variant = int(words[0]) >> 1
        defective = float(words[1]) / 2.0**64 < self.defect_fraction
        return pos, variant, defective

    def _check_index(self, index: int, epoch: int | None) -> tuple[int, int]:
        i = int(index)
        if i < 0:
            i += self.length
        if not 0 <= i < self.length:
            raise IndexError(f"index {index} is out of range for a dataset of {self.length}")
        e = self.epoch if epoch is None else int(epoch)
        if e < 0:
            raise ValueError(f"epoch must be >= 0, got {e}")
        return i, e

    def source_image(self, position: int) -> np.ndarray:
        """The clean image of source ``position``, BGR (as the synthesizer takes it)."""
        cached = self._cached.get(position)
        if cached is not None:
            return cached
        src = self._sources[position]
        limit = self._recipe.inputs.max_pixels if self._recipe is not None else DEFAULT_MAX_PIXELS
        image = src.array if src.array is not None else read_image(src.path or "", limit)
        if self.cache:
            self._cached[position] = image
        return image

    def _source_mask(self, position: int, image: np.ndarray) -> Any:
        """The product-mask spec of a source; with ``cache``, a mask from a file or from
        ``auto`` is resolved once (decoding or estimating it costs more than a sample)."""
        spec = self._sources[position].mask
        if not self.cache or spec is None or isinstance(spec, np.ndarray) or spec == "full":
            return spec
        cached = self._cached_masks.get(position)
        if cached is None:
            src = self._sources[position]
            try:
                colour = image[:, :, :3] if image.ndim == 3 else image  # as apply() sees it
                cached = resolve_product_mask(spec, np.ascontiguousarray(colour))
            except InputImageError as exc:
                raise InputImageError(f"{src.path or src.rel}: {exc}") from None
            except Exception as exc:
                err = unexpected_input_error(exc, "reading or estimating the product mask")
                raise InputImageError(f"{src.path or src.rel}: {err}") from exc
            self._cached_masks[position] = cached
        return cached

    def sample(self, index: int, epoch: int | None = None) -> Sample:
        """The synthesized :class:`~defectsynth.Sample` of an item (BGR, before transform).

        :raises InputImageError: naming the source file, when it cannot be read, its
            product mask cannot be read or estimated, or anything else fails on it
            (``unexpected error while ...; please report it``, the original exception
            as its cause). Items are never skipped silently: a map-style dataset has a
            fixed length, so a bad source stops the epoch with its name.
        :raises GeneratorFailure: a generator failed (unless the synthesizer rejects).
        """
        index, epoch = self._check_index(index, epoch)
        pos, variant, defective = self.streams(index, epoch)
        src = self._sources[pos]
        image = self.source_image(pos)
        mask = self._source_mask(pos, image)
        try:
            return self.synthesizer.apply(
                image,
                mask,
                seed=self.seed,
                source_id=src.sid,
                variant=variant,
                instances=None if defective else 0,
            )
        except GeneratorFailure:
            raise
        except InputImageError as exc:
            raise InputImageError(f"{src.path or src.rel}: {exc}") from None
        except Exception as exc:
            err = unexpected_input_error(exc, "making its sample")
            raise InputImageError(f"{src.path or src.rel}: {err}") from exc

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Any, Any]:
        """Item ``key``: an index (of the current epoch) or an ``(index, epoch)`` pair.

        :returns: ``(image, target)``: the image (uint8/uint16, HWC, BGR unless ``rgb``)
            and the dict of :meth:`Sample.to_target <defectsynth.Sample.to_target>` plus
            ``image_id`` (the index) and ``meta`` (source, index, epoch, seed, source_id,
            variant), both passed through ``transform`` when given.
        """
        if isinstance(key, tuple):
            index, epoch = key
        else:
            index, epoch = key, None
        index, epoch = self._check_index(index, epoch)
        sample = self.sample(index, epoch)
        target = sample.to_target(
            self.category_map,
            box_format=self.box_format,
            normalized=self.normalized,
            masks=self.masks,
            label_offset=self.label_offset,
        )
        src = self._sources[index % len(self._sources)]
        target["image_id"] = index
        target["meta"] = {
            "source": src.rel,
            "index": index,
            "epoch": epoch,
            "seed": sample.seed,
            "source_id": sample.source_id,
            "variant": sample.variant,
        }
        image = _swap_rb(sample.image) if self.rgb else sample.image
        if self.transform is not None:
            return self.transform(image, target)
        return image, target

    # -- pickling (spawned DataLoader workers) ----------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cached"] = {}
        state["_cached_masks"] = {}
        if state["_recipe"] is not None:
            # rebuilt from the recipe in the worker: plugin hosts and file-plugin classes
            # do not pickle
            state["_synth"] = None
            state["_host"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return (
            f"DefectDataset({len(self._sources)} sources, length={self.length}, "
            f"seed={self.seed}, epoch={self.epoch}, defect_fraction={self.defect_fraction})"
        )
