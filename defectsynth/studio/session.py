"""The studio's work, with no web framework in it: the recipe being tuned, the folders it
may read, previews, saving and the realism score. The web app (:mod:`.app`) only moves
JSON in and out of a :class:`Studio`, so everything here is testable without a server.

Trust: the page sends the whole recipe on every change, and a page is not trusted more
than a recipe file: each one is validated by the recipe loader, and its paths must lead
into the folders the studio was started with (see :func:`Studio.roots`), never the
working directory by default. ``plugin_dirs`` cannot change (that would run code).
"""

from __future__ import annotations

import copy
import functools
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml

from ..build import check_recipe
from ..errors import DefectsynthError, InputImageError, RecipeError
from ..recipe import Recipe, SourceImage, parse_recipe, parse_recipe_text
from ..sample import Sample, to_display
from ..synthesizer import Synthesizer, source_id
from . import pictures
from .schema import host_schema

#: generators a studio started on a bare image folder proposes (those the host has)
STARTER_GENERATORS = ("scratch", "dent", "discoloration")
#: the longest side of the before / after pictures sent to the page (boxes and the instance
#: table keep the image's own pixels): a 12-megapixel photo would take a second to send
DISPLAY_SIDE = 1600
#: samples in the "10 more" grid, and the longest side of its thumbnails
GRID_COUNT = 10
GRID_SIDE = 260
#: how many recipes (with their synthesizers) stay built, and how many images decoded
CACHE_RECIPES = 8
CACHE_IMAGES = 6
#: images listed in the picker (the first ones in the run's order)
MAX_LISTED = 500
#: real and synthetic crops shown side by side
CROPS_SHOWN = 12
#: synthetic defects rendered for the realism score
SCORE_SAMPLES = 120


class StudioError(DefectsynthError):
    """A request the studio refuses; ``key`` is the recipe key path it is about (the page
    shows the message beside that control), ``status`` the HTTP status."""

    def __init__(self, message: str, key: str | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.key = key
        self.status = status

    def to_dict(self) -> dict[str, Any]:
        return {"error": str(self), "key": self.key}


def _folder_of(path: Path) -> Path:
    """The folder a path names or lies in (a glob's fixed part, a file's folder)."""
    parts = path.parts
    k = next((i for i, p in enumerate(parts) if any(c in p for c in "*?[{")), None)
    if k is not None:
        return Path(*parts[:k])
    return path if path.is_dir() or not path.suffix else path.parent


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


_F = TypeVar("_F", bound=Any)


def _locked(method: _F) -> _F:
    """Run a method under the studio's lock: the web server calls from several threads,
    and the caches are shared (rendering itself runs outside the lock)."""

    @functools.wraps(method)
    def run(self: Studio, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return run  # type: ignore[return-value]


class _LRU(OrderedDict[str, Any]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: str, value: Any) -> Any:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)
        return value

    def hit(self, key: str) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        return None


class Studio:
    """One tuning session.

    :param recipe: the recipe file to start from (validated with the usual trust model:
        its folder, the working directory and ``allow_paths``); None to start from
        ``images``.
    :param images: a folder of clean images (replaces the recipe's ``inputs.images``).
    :param real: a folder of labeled real defects, shown beside synthetic ones and used
        for the realism score.
    :param allow_paths: more folders the recipe may read (``--allow-path``).
    :param save_to: where Save writes; default beside the recipe as ``STEM.studio.yaml``
        (the original is never overwritten), or ``studio.yaml`` in the working directory.
    """

    def __init__(
        self,
        recipe: str | os.PathLike[str] | None = None,
        *,
        images: str | os.PathLike[str] | None = None,
        real: str | os.PathLike[str] | None = None,
        allow_paths: Iterable[str | os.PathLike[str]] = (),
        save_to: str | os.PathLike[str] | None = None,
        host: Any = None,
    ) -> None:
        if recipe is None and images is None:
            raise StudioError("give a recipe, or a folder of clean images (--images)", None, 400)
        self.allow_paths = [Path(os.path.abspath(p)) for p in allow_paths]
        self.recipe_file = Path(os.path.abspath(recipe)) if recipe is not None else None
        self.real = Path(os.path.abspath(real)) if real is not None else None
        if self.real is not None and not self.real.is_dir():
            raise StudioError(f"--real {str(real)!r} is not a folder", None, 400)
        if save_to is not None:
            self.save_path = Path(os.path.abspath(save_to))
        elif self.recipe_file is not None:
            self.save_path = self.recipe_file.with_name(self.recipe_file.stem + ".studio.yaml")
        else:
            self.save_path = Path(os.getcwd()) / "studio.yaml"
        if self.recipe_file is not None and self.save_path == self.recipe_file:
            raise StudioError(
                f"--save {str(save_to)!r} is the recipe the studio starts from; it writes "
                "beside it, never over it: choose another file name", None, 400)
        self.base_dir = self.save_path.parent
        self.data, first = self._start_data(images, host)
        self.host = check_recipe(first, host)[0]
        self.roots = self._roots(first, images)
        self._recipes = _LRU(CACHE_RECIPES)
        self._images = _LRU(CACHE_IMAGES)
        self._sources: dict[str, list[SourceImage]] = {}
        self._real_set: Any = None
        self._lock = threading.RLock()
        self.recipe(self.data)  # the starting point must pass the studio's own rules too

    # -- starting point -----------------------------------------------------------------

    def _start_data(self, images: Any, host: Any) -> tuple[dict[str, Any], Recipe]:
        allow = [*self.allow_paths, *([os.path.abspath(images)] if images else [])]
        if self.recipe_file is not None:
            if self.recipe_file.parent != self.base_dir:
                raise StudioError(
                    "save the studio's recipe in the folder of the recipe it starts from "
                    f"({str(self.recipe_file.parent)!r}): its paths are relative to it", None, 400
                )
            text = self.recipe_file.read_text(encoding="utf-8")
            first = parse_recipe_text(text, file=str(self.recipe_file), base_dir=self.base_dir,
                                      allow_paths=allow)
            data = yaml.safe_load(text)  # the loader above refused anything but plain data
        else:
            from ..plugins import get_host

            names = (host or get_host()).generators
            data = {"defects": [{"generator": g} for g in STARTER_GENERATORS if g in names]
                    or [{"generator": sorted(names)[0]}]}
        if images is not None:
            full = Path(os.path.abspath(images))
            try:
                rel = Path(os.path.relpath(full, self.base_dir)).as_posix()
            except ValueError:  # another drive
                rel = str(full)
            data.setdefault("inputs", {})["images"] = rel
        first = parse_recipe(data, file=self.save_path.name, base_dir=self.base_dir,
                             allow_paths=allow)
        return data, first

    def _roots(self, first: Recipe, images: Any) -> tuple[str, ...]:
        """The folders the studio may read: the recipe's own, the folders the starting
        recipe reads (its inputs, masks and generators' path parameters), ``--images``,
        ``--real`` and ``--allow-path``. Nothing else, the working directory included."""
        roots: list[Path] = [*self.allow_paths]
        if self.recipe_file is not None:
            roots.append(self.recipe_file.parent)
        if images is not None:
            roots.append(Path(os.path.abspath(images)))
        if self.real is not None:
            roots.append(self.real)
        base = Path(first.base_dir)
        for entry in first.inputs.images:
            roots.append(_folder_of(Path(os.path.normpath(base / entry))))
        if first.inputs.product_mask not in ("auto", "full"):
            roots.append(_folder_of(Path(os.path.normpath(base / first.inputs.product_mask))))
        for d in first.defects:
            cls = self.host.generator(str(d.generator))  # a recipe names its generators
            for key in getattr(cls, "path_params", ()):
                value = d.params.get(key)
                for v in value if isinstance(value, list) else [value]:
                    if isinstance(v, str) and v:
                        roots.append(_folder_of(Path(os.path.normpath(base / v))))
        unique: dict[str, None] = {}
        for r in roots:
            unique.setdefault(os.path.normpath(str(r)), None)
        return tuple(unique)

    # -- the recipe the page sends --------------------------------------------------------

    @_locked
    def recipe(self, data: Any) -> tuple[Recipe, Synthesizer]:
        """Validate recipe data from the page and build its synthesizer (cached).

        :raises StudioError: naming the key path of the first problem.
        """
        key = json.dumps(data, sort_keys=True, default=str)
        cached = self._recipes.hit(key)
        if cached is not None:
            return cached
        if not isinstance(data, Mapping):
            raise StudioError("the recipe must be a mapping of keys")
        if data.get("plugin_dirs") != self.data.get("plugin_dirs"):
            raise StudioError("plugin_dirs cannot change in the studio (it loads code); edit "
                              "the recipe file and start again", "plugin_dirs")
        try:
            # (the studio's own folders are what a path may point into, wherever the
            # working directory is; narrowed to exactly them just below)
            rec = parse_recipe(copy.deepcopy(dict(data)), file=self.save_path.name,
                               base_dir=self.base_dir, allow_paths=self.roots)
            rec = replace(rec, allowed=self.roots)
            for i, entry in enumerate(rec.inputs.images):
                rec.resolve(entry, f"inputs.images[{i}]" if len(rec.inputs.images) > 1
                            else "inputs.images")
            if rec.inputs.product_mask not in ("auto", "full"):
                pm = rec.inputs.product_mask.replace("{", "").replace("}", "")
                rec.resolve(pm, "inputs.product_mask")
            synth = Synthesizer.from_recipe(rec, self.host, on_failure="reject")
        except RecipeError as exc:
            raise StudioError(self._outside(exc.detail), exc.key) from None
        except (ValueError, DefectsynthError) as exc:
            raise StudioError(str(exc), "defects") from None
        return self._recipes.put(key, (rec, synth))

    def _outside(self, message: str) -> str:
        """The loader's message for a path outside the folders it may read, naming the
        studio's folders (the loader names the recipe's own and the working directory)."""
        if "outside the folders a recipe may read" not in message:
            return message
        return (message.split(", outside the folders")[0] + ", outside the folders the studio "
                "was started with (" + ", ".join(repr(r) for r in self.roots) + "); restart it "
                "with --allow-path DIR to read another")

    @_locked
    def sources(self, rec: Recipe) -> list[SourceImage]:
        key = json.dumps([rec.inputs.images, rec.base_dir])
        if key not in self._sources:
            try:
                self._sources[key] = rec.sources()[:MAX_LISTED]
            except RecipeError as exc:
                raise StudioError(exc.detail, exc.key) from None
        return self._sources[key]

    def _source(self, rec: Recipe, rel: str | None) -> SourceImage:
        listed = self.sources(rec)
        if rel is None:
            return listed[0]
        for s in listed:
            if s.rel == rel:
                return s
        raise StudioError(f"{rel!r} is not one of the recipe's images", "image", 404)

    @_locked
    def _load(self, rec: Recipe, src: SourceImage) -> tuple[np.ndarray, Any]:
        """The decoded image and its product mask (an array, or "auto" / "full")."""
        mask_path = rec.mask_path(src)
        key = json.dumps([src.path, str(mask_path), rec.inputs.product_mask])
        cached = self._images.hit(key)
        if cached is not None:
            return cached
        from ..imagefile import read_image_file, read_mask_file

        try:
            image, _ = read_image_file(src.path, rec.inputs.max_pixels)
            mask: Any = rec.inputs.product_mask
            if mask_path is not None:
                mask = read_mask_file(mask_path, image.shape[:2], str(mask_path),
                                      rec.inputs.max_pixels)
        except InputImageError as exc:
            raise StudioError(f"{src.rel}: {exc}", "image") from None
        except RecipeError as exc:
            raise StudioError(exc.detail, exc.key) from None
        return self._images.put(key, (image, mask))

    # -- what the page asks for -----------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything the page needs to start: generators, the recipe, its images."""
        rec, _ = self.recipe(self.data)
        return {
            "generators": host_schema(self.host),
            "recipe": self.data,
            "images": [s.rel for s in self.sources(rec)],
            "seed": rec.seed,
            "started_from": str(self.recipe_file) if self.recipe_file else None,
            "save_path": str(self.save_path),
            "real": str(self.real) if self.real else None,
            "roots": list(self.roots),
        }

    def render(self, data: Any, image: str | None, seed: int, variant: int) -> tuple[
            Recipe, SourceImage, np.ndarray, Sample]:
        rec, synth = self.recipe(data)
        src = self._source(rec, image)
        pixels, mask = self._load(rec, src)
        sample = synth.apply(pixels, product_mask=mask, seed=seed,
                             source_id=source_id(src.rel), variant=variant)
        return rec, src, pixels, sample

    def preview(self, data: Any, image: str | None = None, seed: int = 0, variant: int = 0,
                before: bool = False) -> dict[str, Any]:
        """One sample: the picture after, its label overlay, boxes, per-instance contrast,
        the light, what was dropped; ``before`` adds the clean picture."""
        t0 = time.perf_counter()
        _, src, pixels, sample = self.render(data, image, seed, variant)
        t_render = time.perf_counter() - t0
        h, w = sample.image.shape[:2]
        out: dict[str, Any] = {
            "image": src.rel,
            "size": [w, h],
            "after": pictures.data_url(pictures.thumbnail(to_display(sample.image), DISPLAY_SIDE)),
            "overlay": pictures.data_url(pictures.thumbnail(
                pictures.overlay(sample.annotations, (h, w)), DISPLAY_SIDE)),
            "instances": pictures.instance_rows(sample),
            "light": {"azimuth": round(sample.light[0], 1), "elevation": round(sample.light[1], 1)},
            "stats": dict(sample.stats),
            "failures": [f"{g}: {e}" for g, e in sample.render_log if e],
            "seed": seed,
            "variant": variant,
        }
        if before:
            out["before"] = pictures.data_url(pictures.thumbnail(to_display(pixels), DISPLAY_SIDE))
        out["render_ms"] = round(t_render * 1000, 1)
        out["total_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return out

    def grid(self, data: Any, image: str | None = None, seed: int = 0, variant: int = 0,
             count: int = GRID_COUNT) -> dict[str, Any]:
        """``count`` more samples of the same image (the next variants), labels drawn,
        and crops of their defects (for the comparison with real ones)."""
        tiles: list[dict[str, Any]] = []
        crops: list[dict[str, Any]] = []
        for v in range(variant + 1, variant + 1 + count):
            _, _, _, sample = self.render(data, image, seed, v)
            picture = pictures.thumbnail(sample.draw(labels=False), GRID_SIDE)
            tiles.append({"variant": v, "picture": pictures.data_url(picture, "jpg"),
                          "instances": len(sample.annotations)})
            crops.extend(_synthetic_crops(sample))
        return {"tiles": tiles, "crops": crops[:CROPS_SHOWN]}

    def real_crops(self) -> dict[str, Any]:
        """Crops of the real defects (``--real``), spread over the folder."""
        if self.real is None:
            raise StudioError("no real defects: start the studio with --real DIR", "real", 404)
        real = self._real()
        step = max(1, len(real.crops) // CROPS_SHOWN)
        shown = real.crops[::step][:CROPS_SHOWN]
        return {"count": len(real.crops), "categories": real.categories,
                "crops": [{"category": c.category, "picture": pictures.crop_picture(c.pixels)}
                          for c in shown]}

    @_locked
    def _real(self) -> Any:
        if self._real_set is None:
            from ..realism.crops import RealismError, read_defects

            try:
                self._real_set = read_defects(str(self.real))
            except RealismError as exc:
                raise StudioError(str(exc), "real") from None
        return self._real_set

    def score(self, data: Any, samples: int = SCORE_SAMPLES) -> dict[str, Any]:
        """The realism score of the current settings against ``--real`` (on demand: it
        renders ``samples`` defects and trains a classifier, seconds to a minute)."""
        if self.real is None:
            raise StudioError("no real defects: start the studio with --real DIR", "real", 404)
        rec, _ = self.recipe(data)
        try:
            from ..realism.crops import RealismError
            from ..realism.score import score
        except ImportError as exc:  # pragma: no cover - the fit extra is missing
            raise StudioError(f"the realism score needs the fit extra: {exc}", "real") from None
        t0 = time.perf_counter()
        try:
            result = score(self._real(), rec, samples=samples, seed=rec.seed, host=self.host)
        except ImportError as exc:
            raise StudioError(f"the realism score needs scikit-learn (pip install "
                              f"'defectsynth[fit]'): {exc}", "real") from None
        except RealismError as exc:
            raise StudioError(str(exc), "real") from None
        except RecipeError as exc:
            raise StudioError(exc.detail, exc.key) from None
        return {**result.to_dict(), "text": str(result),
                "seconds": round(time.perf_counter() - t0, 1)}

    def save(self, data: Any) -> dict[str, Any]:
        """Write the recipe as YAML beside the one it started from (never over it), after
        the recipe loader that ``generate`` uses accepted exactly that text."""
        from ..writing import atomic_write_text

        self.recipe(data)  # the studio's own rules first (paths, plugin_dirs)
        text = recipe_text(data, self.recipe_file)
        try:
            rec = parse_recipe_text(text, file=str(self.save_path), base_dir=self.base_dir,
                                    allow_paths=self.roots)
            check_recipe(rec, self.host)
        except RecipeError as exc:
            raise StudioError(exc.detail, exc.key) from None
        atomic_write_text(self.save_path, text)
        return {"path": str(self.save_path), "text": text}


def recipe_text(data: Any, started_from: Path | None) -> str:
    """The YAML Save writes: a header saying where it came from, then the keys in the
    order the page holds them (the original's order, new keys last)."""
    head = ["# written by defectsynth studio"]
    if started_from is not None:
        head.append(f"# from {started_from.name} (left as it was; its comments are there)")
    head.append("# paths are relative to this file; every key: docs/recipes.md")
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=None,
                          width=100)
    return "\n".join(head) + "\n\n" + body


def _synthetic_crops(sample: Sample) -> Sequence[dict[str, Any]]:
    from ..realism.crops import window

    img = to_display(sample.image)
    out = []
    for a in sample.annotations:
        x1, y1, x2, y2 = window(a.box, img.shape[:2])
        out.append({"category": a.category,
                    "picture": pictures.crop_picture(img[y1:y2, x1:x2])})
    return out
