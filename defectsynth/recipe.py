"""Recipe files: YAML in, a validated and typed :class:`Recipe` out.

Every error is a :class:`~defectsynth.errors.RecipeError` whose message names the file and
the key path, e.g. ``demo.yaml: defects[2].params.width: 0 is below the minimum 1``.
Paths in a recipe are relative to the recipe file. The schema, with defaults and
examples, is documented in ``docs/recipes.md``.
"""

from __future__ import annotations

import math
import os
import re
import string
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .errors import RecipeError, did_you_mean, shorten
from .imagefile import DEFAULT_MAX_PIXELS
from .inputs import (  # noqa: F401 - IMAGE_EXTENSIONS and DATASET_MARKER: for older imports
    DATASET_MARKER,
    GLOB_CHARS,
    IMAGE_EXTENSIONS,
    MASK_FIELDS,
    expand_input,
    mask_fields,
)
from .mix import Entry

if TYPE_CHECKING:
    from .plugins import PluginHost

SPLITS = ("train", "val", "test")
IMAGE_FORMATS = ("png", "jpg")
DEFAULT_FORMATS = ("coco", "yolo", "voc", "anomaly")
RESERVED_CATEGORIES = ("good", "combined")
DEFAULT_MAX_GENERATOR_FAILURES = 10
"""A run stops when one generator fails this many times in a row (recipe key
``max_generator_failures``, CLI ``--max-generator-failures``)."""

# -- typed config ---------------------------------------------------------------------------


DefectSpec = Entry
"""One entry of ``defects``: a generator (by name), its weight, its params and its label
(a name, or a mapping that renames the generator's own categories). The same type as a
Synthesizer's :class:`~defectsynth.mix.Entry`."""


@dataclass(frozen=True)
class InputSpec:
    """``inputs``: where the clean images are and how to find each one's product mask."""

    images: tuple[str, ...]
    product_mask: str = "full"
    min_side: int = 16
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class OutputSpec:
    formats: tuple[str, ...] = DEFAULT_FORMATS
    image_format: str = "png"
    jpg_quality: int = 95


@dataclass(frozen=True)
class PlacementSpec:
    margin: int = 4
    max_overlap: float = 0.25
    max_attempts: int = 6
    within_product: bool = False


@dataclass(frozen=True)
class GateSpec:
    min_contrast: float = 0.02
    min_area: int = 16
    min_relative: float = 0.4


@dataclass(frozen=True)
class SourceImage:
    """One input image: its absolute path and its path relative to the input root (POSIX),
    which names it in the manifest and seeds its random stream."""

    path: str
    rel: str


@dataclass(frozen=True)
class Recipe:
    """A validated recipe. Build it with :func:`load_recipe` or :func:`parse_recipe`."""

    inputs: InputSpec
    defects: tuple[Entry, ...]
    seed: int = 0
    variants: int = 1
    instances: tuple[int, int] = (1, 3)
    split: tuple[tuple[str, float], ...] = (("train", 0.8), ("val", 0.2), ("test", 0.0))
    negatives: float = 0.0
    output: OutputSpec = field(default_factory=OutputSpec)
    placement: PlacementSpec = field(default_factory=PlacementSpec)
    gate: GateSpec = field(default_factory=GateSpec)
    plugin_dirs: tuple[str, ...] = ()
    max_generator_failures: int = DEFAULT_MAX_GENERATOR_FAILURES
    #: a total number of samples spread evenly over the sources (instead of ``variants``)
    samples: int | None = None
    #: "auto" or a factor for the generators' size-like parameters; None: as declared
    scale: float | str | None = None
    #: (category, instances) the run must reach: it stops at the shortest prefix of the
    #: task order that meets them all (instead of ``variants`` / ``samples``)
    quotas: tuple[tuple[str, int], ...] = ()
    #: with quotas, the most samples a run may make before it gives up
    max_samples: int | None = None
    base_dir: str = "."
    file: str = "<recipe>"
    #: folders the recipe's paths may point into (see :func:`allowed_roots`); empty: the
    #: recipe's own folder and the working directory
    allowed: tuple[str, ...] = ()

    # -- derived ------------------------------------------------------------------------

    @property
    def splits(self) -> tuple[str, ...]:
        """Split names with a non-zero fraction, in the order train, val, test."""
        return tuple(name for name, frac in self.split if frac > 0)

    @property
    def categories(self) -> tuple[str, ...]:
        """Category names in ``defects`` order without repeats (needs no plugin host when
        every entry names its category; otherwise, and for generators with several
        categories such as ``transplant``, see ``synthesizer().categories``)."""
        seen: dict[str, None] = {}
        for d in self.defects:
            if isinstance(d.category, Mapping):
                for name in d.category.values():
                    seen.setdefault(name, None)
            else:
                seen.setdefault(d.category or str(d.generator), None)
        return tuple(seen)

    def resolve(self, path: str, key: str = "") -> Path:
        """A recipe path made absolute (relative paths are relative to the recipe file).

        A recipe is data: its paths must stay inside the folders it may read (the recipe's
        own folder, the working directory, and what the user allows; see
        :func:`allowed_roots`). The check is lexical (``..`` and absolute paths), so
        symbolic links that you created inside those folders are followed.

        :raises RecipeError: naming ``key`` when the path leads outside them.
        """
        p = Path(os.path.expanduser(path))
        full = Path(os.path.normpath(p if p.is_absolute() else Path(self.base_dir) / p))
        roots = self.allowed or (self.base_dir, os.getcwd())
        if not any(_within(full, Path(r)) for r in roots):
            raise self.error(
                key or "path",
                f"{path!r} leads to {str(full)!r}, outside the folders a recipe may read "
                f"({', '.join(repr(str(r)) for r in roots)}). A recipe is data and cannot "
                "point anywhere on the machine; allow a folder with --allow-path DIR "
                f"or {ALLOW_ENV}",
            )
        return full

    def plugin_paths(self) -> list[Path]:
        return [self.resolve(d, f"plugin_dirs[{i}]") for i, d in enumerate(self.plugin_dirs)]

    def with_seed(self, seed: int | None) -> Recipe:
        if seed is None:
            return self
        from dataclasses import replace

        return replace(self, seed=int(seed))

    def to_dict(self) -> dict[str, Any]:
        """The normalized recipe (every key, defaults filled in), as stored in dataset.json.
        ``samples`` and ``scale`` are there only when the recipe gives them."""
        extra: dict[str, Any] = {}
        if self.samples is not None:
            extra["samples"] = self.samples
        if self.scale is not None:
            extra["scale"] = self.scale
        if self.quotas:
            extra["quotas"] = dict(self.quotas)
            extra["max_samples"] = self.quota_cap
        return extra | {
            "seed": self.seed,
            "plugin_dirs": list(self.plugin_dirs),
            "inputs": {
                "images": list(self.inputs.images),
                "product_mask": self.inputs.product_mask,
                "min_side": self.inputs.min_side,
                "max_pixels": self.inputs.max_pixels,
            },
            "variants": self.variants,
            "instances": list(self.instances),
            "defects": [
                {
                    "generator": d.generator,
                    "weight": d.weight,
                    "params": dict(d.params),
                    "category": d.category,
                }
                for d in self.defects
            ],
            "split": dict(self.split),
            "negatives": self.negatives,
            "output": {
                "formats": list(self.output.formats),
                "image_format": self.output.image_format,
                "jpg_quality": self.output.jpg_quality,
            },
            "placement": {
                "margin": self.placement.margin,
                "max_overlap": self.placement.max_overlap,
                "max_attempts": self.placement.max_attempts,
                # (only when set: the recipes of runs made before it existed keep their
                # fingerprint)
                **({"within_product": True} if self.placement.within_product else {}),
            },
            "gate": {"min_contrast": self.gate.min_contrast, "min_area": self.gate.min_area,
                     "min_relative": self.gate.min_relative},
            "max_generator_failures": self.max_generator_failures,
        }

    @property
    def quota_cap(self) -> int:
        """The most samples a run with quotas makes (``max_samples``, default
        :data:`DEFAULT_MAX_SAMPLES`)."""
        return self.max_samples if self.max_samples is not None else DEFAULT_MAX_SAMPLES

    def error(self, key: str, message: str) -> RecipeError:
        return RecipeError(message, file=self.file, key=key)

    # -- plugins and the synthesizer ----------------------------------------------------

    def host(self, host: PluginHost | None = None) -> PluginHost:
        """The plugin host with this recipe's ``plugin_dirs`` loaded."""
        from .plugins import get_host

        if host is None:
            return get_host(self.plugin_paths())
        for d in self.plugin_paths():
            host.add_plugin_dir(d)
        return host

    def check_category(self, key: str, name: str) -> None:
        """Raise :class:`RecipeError` at ``key`` when ``name`` cannot be a label."""
        _check_category(self, key, name)

    def generator_params(self, spec: Entry, cls: type[Any]) -> dict[str, Any]:
        """``spec.params`` with the generator's ``path_params`` made absolute (relative
        paths in a recipe are relative to the recipe file)."""
        params = dict(spec.params)
        where = f"defects[{self.defects.index(spec)}].params" if spec in self.defects else "params"
        for key in getattr(cls, "path_params", ()):
            value = params.get(key)
            if isinstance(value, str):
                params[key] = str(self.resolve(value, f"{where}.{key}"))
            elif isinstance(value, list):
                params[key] = [
                    str(self.resolve(v, f"{where}.{key}[{i}]")) if isinstance(v, str) else v
                    for i, v in enumerate(value)
                ]
        return params

    def mask_pattern(self) -> _MaskPattern:
        """Each source's product mask file by ``inputs.product_mask`` (a pattern), as a
        picklable callable for workers."""
        return _MaskPattern(self)

    def input_root(self) -> Path:
        """The folder source paths are relative to (the common folder of the inputs),
        found without listing them."""
        roots = []
        for i, entry in enumerate(self.inputs.images):
            path = self.resolve(entry, f"inputs.images[{i}]")
            parts = path.parts
            k = next((j for j, part in enumerate(parts) if GLOB_CHARS.search(part)), None)
            if k is not None:
                roots.append(str(Path(*parts[:k])))
            else:
                roots.append(str(path.parent if path.is_file() else path))
        return Path(os.path.commonpath(roots)) if roots else Path(self.base_dir)

    # -- inputs -------------------------------------------------------------------------

    def sources(
        self,
        exclude: Iterable[str | os.PathLike[str]] = (),
        skipped: list[str] | None = None,
    ) -> list[SourceImage]:
        """The input images, sorted by their path relative to the input root.

        Folders are searched recursively for files with an image extension; globs use
        ``**`` for any depth. Hidden files and folders are skipped; symbolic links to
        folders are not followed (no loops). So are the folders in ``exclude`` (a run's
        output folder) and every folder holding a defectsynth dataset (a ``manifest.jsonl``):
        its images and 0/255 masks are outputs, not clean sources. The folders skipped for
        that are appended to ``skipped``. Raises RecipeError when nothing matches.
        """
        found: dict[str, str] = {}
        roots: list[str] = []
        per_entry: list[list[str]] = []
        outputs = {os.path.realpath(p) for p in exclude}
        seen_skips: list[str] = []
        for i, entry in enumerate(self.inputs.images):
            key = f"inputs.images[{i}]" if len(self.inputs.images) > 1 else "inputs.images"
            root, files = expand_input(self.resolve(entry, key), outputs, seen_skips)
            if not files:
                why = ""
                if seen_skips:
                    why = (
                        f"; skipped {', '.join(repr(d) for d in seen_skips)}: output of "
                        "defectsynth (a run's output folder or a folder with manifest.jsonl)"
                    )
                raise self.error(
                    f"inputs.images[{i}]" if len(self.inputs.images) > 1 else "inputs.images",
                    f"no image file matches {entry!r} (looked in {str(root)!r}){why}",
                )
            roots.append(str(root))
            per_entry.append(files)
        common = os.path.commonpath(roots) if roots else "."
        for files in per_entry:
            for f in files:
                rel = Path(os.path.relpath(f, common)).as_posix()
                found.setdefault(rel, f)
        if skipped is not None:
            skipped.extend(d for d in seen_skips if d not in skipped)
        return [SourceImage(path=found[r], rel=r) for r in sorted(found)]

    def mask_path(self, source: SourceImage) -> Path | None:
        """The product mask file of ``source`` when ``inputs.product_mask`` is a pattern."""
        spec = self.inputs.product_mask
        if spec in ("auto", "full"):
            return None
        values = mask_fields(source.rel)
        return self.resolve(spec.format(**values), "inputs.product_mask")


@dataclass(frozen=True)
class _MaskPattern:
    """A source's product mask file by the recipe's pattern (picklable, for workers)."""

    recipe: Recipe

    def __call__(self, source: str) -> Path:
        path = Path(os.path.abspath(source))
        root = self.recipe.input_root()
        rel = Path(os.path.relpath(path, root)).as_posix() if _within(path, root) else path.name
        mask = self.recipe.mask_path(SourceImage(path=str(path), rel=rel))
        assert mask is not None  # only made for a pattern
        return mask


def _check_category(recipe: Recipe, key: str, name: str) -> None:
    bad = (
        not name
        or name in (".", "..")
        or any(c in name for c in "/\\\0")
        or any(unicodedata.category(c) == "Cc" for c in name)
        or name.startswith(".")
        or name.strip() != name
        or len(name.encode("utf-8")) > 100
    )
    if bad:
        raise recipe.error(
            key,
            f"category {_short(repr(name))} cannot be used: names become folder names, so "
            "they may not be empty, start with '.', contain '/', '\\', NUL or control "
            "characters, or be longer than 100 bytes",
        )
    if name in RESERVED_CATEGORIES:
        raise recipe.error(
            key, f"category {name!r} is reserved by the anomaly layout (test/good, test/combined)"
        )


# -- parsing --------------------------------------------------------------------------------

_TOP_KEYS = (
    "seed",
    "plugin_dirs",
    "inputs",
    "variants",
    "instances",
    "defects",
    "split",
    "negatives",
    "output",
    "placement",
    "gate",
    "max_generator_failures",
    "samples",
    "scale",
    "quotas",
    "max_samples",
)


class _Reader:
    """Typed access to a nested mapping that names the key path in every error."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, key: str, message: str) -> RecipeError:
        return RecipeError(message, file=self.file, key=key or None)

    def mapping(self, value: Any, key: str, allowed: Sequence[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a mapping of keys, got {_describe(value)}")
        for k in value:
            if not isinstance(k, str) or k not in allowed:
                where = f"{key}.{k}" if key else str(k)
                raise self.fail(
                    where,
                    f"unknown key {k!r}"
                    + did_you_mean(str(k), allowed)
                    + f"; valid keys: {', '.join(allowed)}",
                )
        return dict(value)

    def integer(self, value: Any, key: str, lo: int | None = None, hi: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"{_describe(value)} is not an integer")
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise self.fail(key, f"{value!r} is not an integer")
        v = int(value)
        _bounds(self, key, v, lo, hi)
        return v

    def number(
        self, value: Any, key: str, lo: float | None = None, hi: float | None = None
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"{_describe(value)} is not a number")
        v = float(value)
        if not math.isfinite(v):
            raise self.fail(key, f"{value!r} is not finite")
        _bounds(self, key, v, lo, hi)
        return v

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"{_describe(value)} is not a non-empty string")
        if "\0" in value:
            raise self.fail(key, "contains a NUL character")
        return value

    def strings(self, value: Any, key: str) -> tuple[str, ...]:
        if isinstance(value, str):
            return (self.text(value, key),)
        if not isinstance(value, list):
            raise self.fail(key, f"expected a string or a list of strings, got {_describe(value)}")
        return tuple(self.text(v, f"{key}[{i}]") for i, v in enumerate(value))


def _bounds(r: _Reader, key: str, v: float, lo: float | None, hi: float | None) -> None:
    if lo is not None and v < lo:
        raise r.fail(key, f"{_num(v)} is below the minimum {_num(lo)}")
    if hi is not None and v > hi:
        raise r.fail(key, f"{_num(v)} is above the maximum {_num(hi)}")


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _describe(value: Any) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{_short(repr(value))} ({type(value).__name__})"


_short = shorten


MAX_VARIANTS = 1_000_000
DEFAULT_MAX_SAMPLES = 10_000
MAX_PIXELS_LIMIT = 2**40  # above 2**30 OpenCV also needs OPENCV_IO_MAX_IMAGE_PIXELS
MAX_INSTANCES = 1_000


def parse_recipe(
    data: Any,
    *,
    file: str = "<recipe>",
    base_dir: str | os.PathLike[str] = ".",
    allow_paths: Iterable[str | os.PathLike[str]] = (),
) -> Recipe:
    """Validate a recipe already loaded from YAML (a mapping) and return it typed.

    Generator names and params are checked against the plugins by :meth:`Recipe.check`
    (``load_recipe`` does it for you). ``allow_paths``: more folders the recipe's paths may
    point into (see :func:`allowed_roots`). Keys are read in a fixed order, so the first
    problem reported is always the same one.
    """
    r = _Reader(file)
    if not isinstance(data, Mapping):
        raise r.fail(
            "", f"a recipe is a mapping of keys ({', '.join(_TOP_KEYS)}), got {_describe(data)}"
        )
    _check_plain_data(r, data)
    top = r.mapping(data, "", _TOP_KEYS)
    seed = r.integer(top.get("seed", 0), "seed", lo=0, hi=2**63 - 1)

    plugin_dirs = r.strings(top["plugin_dirs"], "plugin_dirs") if "plugin_dirs" in top else ()
    inputs = _parse_inputs(r, top)
    variants, samples, quotas, max_samples, scale = _parse_counts(r, top)
    instances = _parse_instances(r, top)
    defects = _parse_defects(r, top)
    fracs = _parse_split(r, top)
    negatives = r.number(top.get("negatives", 0.0), "negatives", lo=0.0, hi=1.0)
    max_failures = r.integer(
        top.get("max_generator_failures", DEFAULT_MAX_GENERATOR_FAILURES),
        "max_generator_failures",
        lo=1,
        hi=1_000_000_000,
    )
    output = _parse_output(r, top)
    placement, gate = _parse_placement_and_gate(r, top)
    recipe = Recipe(
        inputs=inputs,
        defects=defects,
        seed=seed,
        variants=variants,
        instances=instances,
        split=fracs,
        negatives=negatives,
        output=output,
        placement=placement,
        gate=gate,
        plugin_dirs=plugin_dirs,
        max_generator_failures=max_failures,
        samples=samples,
        scale=scale,
        quotas=quotas,
        max_samples=max_samples,
        base_dir=str(Path(base_dir).absolute()),
        file=file,
        allowed=allowed_roots(base_dir, allow_paths),
    )
    _check_paths_and_categories(recipe)
    return recipe


def _parse_inputs(r: _Reader, top: Mapping[str, Any]) -> InputSpec:
    if "inputs" not in top:
        raise r.fail("inputs", "missing: say where the clean images are (inputs.images)")
    inp = r.mapping(
        top["inputs"], "inputs", ("images", "product_mask", "min_side", "max_pixels")
    )
    if "images" not in inp:
        raise r.fail("inputs.images", "missing: a folder, a glob or a list of them")
    images = r.strings(inp["images"], "inputs.images")
    if not images:
        raise r.fail("inputs.images", "the list is empty")
    pm = r.text(inp.get("product_mask", "full"), "inputs.product_mask")
    if pm not in ("auto", "full"):
        try:
            names = [f for _, f, _, _ in string.Formatter().parse(pm) if f is not None]
        except ValueError as exc:
            raise r.fail("inputs.product_mask", f"bad pattern {pm!r}: {exc}") from None
        for n in names:
            if n not in MASK_FIELDS:
                raise r.fail(
                    "inputs.product_mask",
                    f"unknown placeholder {{{n}}} in {pm!r}"
                    + did_you_mean(n, MASK_FIELDS)
                    + "; use 'auto', 'full' or a path with "
                    + ", ".join("{" + f + "}" for f in MASK_FIELDS),
                )
    min_side = r.integer(inp.get("min_side", 16), "inputs.min_side", lo=16, hi=1_000_000)
    max_pixels = r.integer(
        inp.get("max_pixels", DEFAULT_MAX_PIXELS), "inputs.max_pixels", lo=256, hi=MAX_PIXELS_LIMIT
    )
    return InputSpec(images=images, product_mask=pm, min_side=min_side, max_pixels=max_pixels)


def _parse_counts(
    r: _Reader, top: Mapping[str, Any]
) -> tuple[int, int | None, tuple[tuple[str, int], ...], int | None, float | str | None]:
    """``variants``, ``samples``, ``quotas`` (with ``max_samples``) and ``scale``."""
    variants = r.integer(top.get("variants", 1), "variants", lo=1, hi=MAX_VARIANTS)
    samples = None
    if top.get("samples") is not None:
        if "variants" in top:
            raise r.fail(
                "samples",
                "give either samples (a total, spread over the sources) or variants (per "
                "source), not both",
            )
        samples = r.integer(top["samples"], "samples", lo=1, hi=MAX_VARIANTS * 1000)
    quotas, max_samples = _quotas(r, top)
    scale: float | str | None = None
    if top.get("scale") is not None:
        raw_scale = top["scale"]
        if isinstance(raw_scale, str) and raw_scale.strip().lower() == "auto":
            scale = "auto"
        elif isinstance(raw_scale, str):
            raise r.fail(
                "scale", f"{_short(repr(raw_scale))} is not 'auto' or a number (e.g. 2.5)"
            )
        else:
            scale = r.number(raw_scale, "scale", lo=0.01, hi=100.0)
    return variants, samples, quotas, max_samples, scale


def _parse_instances(r: _Reader, top: Mapping[str, Any]) -> tuple[int, int]:
    raw_inst = top.get("instances", [1, 3])
    if isinstance(raw_inst, list):
        if len(raw_inst) != 2:
            raise r.fail("instances", f"a range is [lo, hi], got a list of {len(raw_inst)}")
        lo = r.integer(raw_inst[0], "instances[0]", lo=0, hi=MAX_INSTANCES)
        hi = r.integer(raw_inst[1], "instances[1]", lo=0, hi=MAX_INSTANCES)
        if lo > hi:
            raise r.fail("instances", f"range [{lo}, {hi}] has lo > hi")
        instances = (lo, hi)
    else:
        count = r.integer(raw_inst, "instances", lo=0, hi=MAX_INSTANCES)
        instances = (count, count)
    if instances[1] == 0:
        raise r.fail(
            "instances",
            f"{raw_inst!r} gives every sample no defect; for defect-free samples use "
            "negatives (a fraction, 1.0 for all), and give instances at least 1, "
            "e.g. [1, 3]",
        )
    return instances


def _parse_defects(r: _Reader, top: Mapping[str, Any]) -> tuple[Entry, ...]:
    if "defects" not in top:
        raise r.fail("defects", "missing: list at least one generator (defectsynth plugins)")
    raw_defects = top["defects"]
    if not isinstance(raw_defects, list) or not raw_defects:
        raise r.fail(
            "defects", f"expected a non-empty list of generators, got {_describe(raw_defects)}"
        )
    defects: list[Entry] = []
    for i, raw in enumerate(raw_defects):
        key = f"defects[{i}]"
        if isinstance(raw, str):
            raw = {"generator": raw}
        d = r.mapping(raw, key, ("generator", "weight", "params", "category"))
        if "generator" not in d:
            raise r.fail(f"{key}.generator", "missing: the generator's name")
        gen = r.text(d["generator"], f"{key}.generator")
        weight = r.number(d.get("weight", 1.0), f"{key}.weight", lo=0.0)
        params = d.get("params") or {}
        if not isinstance(params, Mapping):
            raise r.fail(
                f"{key}.params", f"expected a mapping of parameters, got {_describe(params)}"
            )
        for pk in params:
            if not isinstance(pk, str):
                raise r.fail(f"{key}.params", f"parameter names are strings, got {pk!r}")
        category = d.get("category")
        if isinstance(category, Mapping):  # rename the generator's own categories
            category = {
                r.text(k, f"{key}.category"): r.text(v, f"{key}.category.{k}")
                for k, v in category.items()
            }
        elif category is not None:
            category = r.text(category, f"{key}.category")
        defects.append(Entry(gen, weight, dict(params), category))
    if sum(d.weight for d in defects) <= 0:
        raise r.fail("defects", "all weights are zero; at least one must be > 0")
    return tuple(defects)


def _parse_split(r: _Reader, top: Mapping[str, Any]) -> tuple[tuple[str, float], ...]:
    split_raw = r.mapping(top.get("split", {"train": 0.8, "val": 0.2}), "split", SPLITS)
    fracs = tuple(
        (s, r.number(split_raw.get(s, 0.0), f"split.{s}", lo=0.0, hi=1.0)) for s in SPLITS
    )
    total = sum(f for _, f in fracs)
    if abs(total - 1.0) > 1e-6:
        raise r.fail("split", f"fractions add up to {total:g}, they must add up to 1")
    return fracs


def _parse_output(r: _Reader, top: Mapping[str, Any]) -> OutputSpec:
    out = r.mapping(top.get("output"), "output", ("formats", "image_format", "jpg_quality"))
    formats = r.strings(out["formats"], "output.formats") if "formats" in out else DEFAULT_FORMATS
    if not formats:
        raise r.fail("output.formats", "the list is empty")
    if len(set(formats)) != len(formats):
        raise r.fail("output.formats", f"lists a format twice: {list(formats)}")
    image_format = r.text(out.get("image_format", "png"), "output.image_format").lower()
    if image_format == "jpeg":
        image_format = "jpg"
    if image_format not in IMAGE_FORMATS:
        raise r.fail(
            "output.image_format",
            f"{image_format!r} is not one of {', '.join(IMAGE_FORMATS)}"
            + did_you_mean(image_format, IMAGE_FORMATS),
        )
    quality = r.integer(out.get("jpg_quality", 95), "output.jpg_quality", lo=1, hi=100)
    return OutputSpec(formats=formats, image_format=image_format, jpg_quality=quality)


def _parse_placement_and_gate(
    r: _Reader, top: Mapping[str, Any]
) -> tuple[PlacementSpec, GateSpec]:
    pl = r.mapping(top.get("placement"), "placement",
                   ("margin", "max_overlap", "max_attempts", "within_product"))
    within = pl.get("within_product", False)
    if not isinstance(within, bool):
        raise r.fail("placement.within_product", f"{_describe(within)} is not true or false")
    placement = PlacementSpec(
        margin=r.integer(pl.get("margin", 4), "placement.margin", lo=0, hi=100_000),
        max_overlap=r.number(pl.get("max_overlap", 0.25), "placement.max_overlap", lo=0.0, hi=1.0),
        max_attempts=r.integer(pl.get("max_attempts", 6), "placement.max_attempts", lo=1, hi=1000),
        within_product=within,
    )
    g = r.mapping(top.get("gate"), "gate", ("min_contrast", "min_area", "min_relative"))
    gate = GateSpec(
        min_contrast=r.number(g.get("min_contrast", 0.02), "gate.min_contrast", lo=0.0, hi=1.0),
        min_area=r.integer(g.get("min_area", 16), "gate.min_area", lo=1),
        min_relative=r.number(g.get("min_relative", 0.4), "gate.min_relative", lo=0.0, hi=100.0),
    )
    return placement, gate


def _check_paths_and_categories(recipe: Recipe) -> None:
    images, pm = recipe.inputs.images, recipe.inputs.product_mask
    # every path the recipe names statically must be one it may read
    for i, entry in enumerate(recipe.inputs.images):
        recipe.resolve(entry, f"inputs.images[{i}]" if len(images) > 1 else "inputs.images")
    recipe.plugin_paths()  # raises for a folder outside
    if pm not in ("auto", "full"):
        recipe.resolve(pm.replace("{", "").replace("}", ""), "inputs.product_mask")
    for i, spec in enumerate(recipe.defects):
        if isinstance(spec.category, Mapping):
            for k, v in spec.category.items():
                _check_category(recipe, f"defects[{i}].category.{k}", v)
        elif spec.category is not None:
            _check_category(recipe, f"defects[{i}].category", spec.category)


MAX_RECIPE_BYTES = 1 << 20
MAX_RECIPE_VALUES = 100_000
MAX_RECIPE_DEPTH = 64


class _StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load`` (plain data only, no tag builds a Python object) that also refuses
    a key given twice in one mapping, where YAML would silently keep the last."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # "<<: *defaults" may be overridden by the keys beside it
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.setdefault(key, key_node.start_mark.line)
        except TypeError:
            continue  # unhashable: construct_mapping says so
        if first != key_node.start_mark.line:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first given on line {first + 1})",
                key_node.start_mark,
            )
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def _check_plain_data(r: _Reader, data: Any) -> None:
    """Refuse data no recipe needs but that could exhaust memory or loop forever later:
    an alias that contains itself, nesting deeper than MAX_RECIPE_DEPTH, or aliases that
    expand to more than MAX_RECIPE_VALUES values (a "billion laughs")."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    where = ""

    def size(value: Any, depth: int) -> int:
        if not isinstance(value, Mapping | list):
            return 1
        key = id(value)
        if key in active:
            raise r.fail(where, "a YAML alias contains itself (a recursive structure)")
        if key in sizes:
            return sizes[key]
        if depth > MAX_RECIPE_DEPTH:
            raise r.fail(where, f"values are nested more than {MAX_RECIPE_DEPTH} levels deep")
        active.add(key)
        children = [*value.keys(), *value.values()] if isinstance(value, Mapping) else value
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_RECIPE_VALUES:
                raise r.fail(
                    where,
                    f"the recipe expands to more than {MAX_RECIPE_VALUES} values "
                    "(YAML aliases repeating large lists?)",
                )
        active.discard(key)
        sizes[key] = total
        return total

    total = 0
    for k, v in data.items():
        where = str(k)
        total += size(v, 1)
        if total > MAX_RECIPE_VALUES:
            raise r.fail(where, f"the recipe expands to more than {MAX_RECIPE_VALUES} values")


def read_recipe(
    path: str | os.PathLike[str],
    *,
    allow_paths: Iterable[str | os.PathLike[str]] = (),
    overrides: Sequence[tuple[str, Any]] = (),
) -> Recipe:
    """Parse and validate a recipe file's structure (no plugin look-ups). ``overrides``:
    (key path, value) pairs set before validation (:func:`apply_overrides`)."""
    p = Path(path)
    name = str(path)
    try:
        if p.exists() and not p.is_file():
            raise RecipeError("is not a regular file", file=name)
        with open(p, "rb") as fh:
            raw = fh.read(MAX_RECIPE_BYTES + 1)
        if len(raw) > MAX_RECIPE_BYTES:
            raise RecipeError(f"is larger than {MAX_RECIPE_BYTES} bytes; not a recipe?", file=name)
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise RecipeError("no such recipe file", file=name) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read the recipe: {exc}", file=name) from None
    return parse_recipe_text(
        text, file=name, base_dir=p.absolute().parent, allow_paths=allow_paths,
        overrides=overrides,
    )


def parse_recipe_text(
    text: str,
    *,
    file: str = "<recipe>",
    base_dir: str | os.PathLike[str] = ".",
    allow_paths: Iterable[str | os.PathLike[str]] = (),
    overrides: Sequence[tuple[str, Any]] = (),
) -> Recipe:
    """Parse and validate recipe YAML already read (what :func:`read_recipe` does after
    reading the file). Raises RecipeError for anything that is not a valid recipe."""
    name = file
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.constructor.ConstructorError as exc:
        where = _mark(exc)
        problem = getattr(exc, "problem", "") or str(exc)
        if "could not determine a constructor" in problem:
            raise RecipeError(
                f"{where}{problem}: recipes are plain data, "
                "YAML tags that build Python objects are refused",
                file=name,
            ) from None
        raise RecipeError(f"{where}{problem}", file=name) from None
    except RecursionError:
        raise RecipeError("values are nested too deeply", file=name) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits, 2001-02-30
        raise RecipeError(f"invalid value: {_short(str(exc))}", file=name) from None
    except yaml.YAMLError as exc:
        where = _mark(exc)
        problem = getattr(exc, "problem", None) or str(exc)
        hint = _flow_hint(text, exc)
        raise RecipeError(f"{where}invalid YAML: {problem}{hint}", file=name) from None
    if overrides:
        data = apply_overrides(data, overrides, file=name)
    return parse_recipe(data, file=name, base_dir=base_dir, allow_paths=allow_paths)


# -- overrides: key=value on the command line -----------------------------------------------

_KEY_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)((?:\[\d+\])*)")


def parse_override(text: str, file: str = "command line") -> tuple[str, Any]:
    """``KEY=VALUE`` -> (key path, value); the value is read as YAML (``10``, ``[1, 3]``,
    ``scratch``, ``{train: 0.9, val: 0.1}``), the key as ``a.b[0].c``."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RecipeError(
            f"{text!r} is not KEY=VALUE (for example variants=10 or "
            "defects[0].params.width=[1,3])",
            file=file,
        )
    try:
        value = yaml.load(raw, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, ValueError) as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(
            f"the value {raw!r} is not valid YAML ({problem}); quote it, and write a list "
            "as [1,3]",
            file=file,
            key=key,
        ) from None
    _key_parts(key, file)
    return key, value


def _key_parts(key: str, file: str) -> list[str | int]:
    parts: list[str | int] = []
    for piece in key.split("."):
        m = _KEY_PART.fullmatch(piece)
        if m is None:
            raise RecipeError(
                f"{piece!r} is not a key: write keys as a.b[0].c (for example "
                "defects[0].params.width)",
                file=file,
                key=key,
            )
        parts.append(m.group(1))
        parts.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return parts


def _quotas(r: _Reader, top: Mapping[str, Any]) -> tuple[tuple[tuple[str, int], ...], int | None]:
    """``quotas: {CATEGORY: N}`` and its cap ``max_samples``; quotas decide the number of
    samples, so they exclude ``variants`` and ``samples``."""
    raw = top.get("quotas")
    if raw is None:
        if top.get("max_samples") is not None:
            raise r.fail(
                "max_samples",
                "caps a run with quotas; without quotas give samples (a total) or variants",
            )
        return (), None
    if not isinstance(raw, Mapping) or not raw:
        raise r.fail(
            "quotas",
            f"expected a mapping of category: instances (scratch: 100), got {_describe(raw)}",
        )
    for other in ("variants", "samples"):
        if top.get(other) is not None:
            raise r.fail(
                "quotas",
                f"quotas decide how many samples are made; remove {other} (cap the run "
                "with max_samples)",
            )
    quotas = tuple(
        (r.text(k, "quotas"), r.integer(v, f"quotas.{k}", lo=1, hi=1_000_000_000))
        for k, v in raw.items()
    )
    cap = None
    if top.get("max_samples") is not None:
        cap = r.integer(top["max_samples"], "max_samples", lo=1, hi=MAX_VARIANTS * 1000)
    return quotas, cap


def apply_overrides(
    data: Any, overrides: Sequence[tuple[str, Any]], *, file: str = "command line"
) -> Any:
    """The recipe data with each (key path, value) set, in order (a copy; ``data`` is not
    changed). Mappings on the way are created; a list index must exist or be the next one
    (append). ``samples`` replaces ``variants`` and the other way round. The result is then
    validated like any recipe, so errors name the same key paths."""
    import copy

    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        return data  # parse_recipe says what is wrong with it
    out: Any = copy.deepcopy(dict(data))
    for key, value in overrides:
        parts = _key_parts(key, file)
        cur: Any = out
        for i, part in enumerate(parts):
            where = _key_text(parts[: i + 1])
            if isinstance(part, int):
                if not isinstance(cur, list):
                    raise RecipeError(
                        f"{_key_text(parts[:i])} is not a list", file=file, key=where
                    )
                if part > len(cur):
                    raise RecipeError(
                        f"the list has {len(cur)} entries: use an index from 0 to {len(cur)} "
                        f"({len(cur)} appends one)",
                        file=file,
                        key=where,
                    )
                if part == len(cur):
                    cur.append(None)
            elif not isinstance(cur, dict):
                raise RecipeError(
                    f"{_key_text(parts[:i])} is not a mapping", file=file, key=where
                )
            if i == len(parts) - 1:
                cur[part] = value
                break
            nxt = parts[i + 1]
            child = cur[part] if isinstance(part, int) or part in cur else None
            if isinstance(child, str) and not isinstance(nxt, int):
                child = {"generator": child}  # defects: [scratch] -> a full entry
            if child is None:
                child = [] if isinstance(nxt, int) else {}
            cur[part] = child
            cur = child
        if parts == ["samples"]:
            out.pop("variants", None)
        elif parts == ["variants"]:
            out.pop("samples", None)
    return out


def _key_text(parts: Sequence[str | int]) -> str:
    text = ""
    for p in parts:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else p)
    return text


def recipe_from_flags(
    *,
    images: str | None,
    defects: Sequence[str] = (),
    overrides: Sequence[tuple[str, Any]] = (),
    allow_paths: Iterable[str | os.PathLike[str]] = (),
) -> Recipe:
    """A recipe made on the command line (``generate --images DIR --defects a,b``), with
    the working directory as its folder; the images folder the user named is allowed."""
    data: dict[str, Any] = {}
    if images is not None:
        data["inputs"] = {"images": images}
    if defects:
        data["defects"] = list(defects)
    data = apply_overrides(data, overrides, file="command line")
    extra = [*allow_paths, *([os.path.abspath(os.path.expanduser(images))] if images else [])]
    return parse_recipe(data, file="command line", base_dir=os.getcwd(), allow_paths=extra)


_PLACEHOLDER = re.compile(r"\{(" + "|".join(MASK_FIELDS) + r")\}")


def _flow_hint(text: str, exc: yaml.YAMLError) -> str:
    """A hint for the commonest YAML error in a recipe: a ``{stem}`` pattern left unquoted
    inside a ``{...}`` flow mapping, where YAML reads its braces as the mapping's."""
    mark = getattr(exc, "problem_mark", None)
    lines = text.splitlines()
    near = lines[max(0, mark.line - 1) : mark.line + 1] if mark is not None else lines
    m = next((m for line in near for m in [_PLACEHOLDER.search(line)] if m), None)
    if m is None:
        return ""
    return (
        f". Hint: a pattern such as {m.group(0)} inside a {{ ... }} mapping must be quoted, "
        f"e.g. product_mask: 'masks/{m.group(0)}.png' (or write the mapping as indented "
        "lines)"
    )


def _mark(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    if mark is None:
        return ""
    return f"line {mark.line + 1}, column {mark.column + 1}: "


ALLOW_ENV = "DEFECTSYNTH_ALLOW_PATHS"


def allowed_roots(
    base_dir: str | os.PathLike[str], extra: Iterable[str | os.PathLike[str]] = ()
) -> tuple[str, ...]:
    """The folders a recipe's paths may point into: the recipe's own folder, the working
    directory when it is loaded, the folders in ``$DEFECTSYNTH_ALLOW_PATHS``
    (``os.pathsep``-separated) and ``extra`` (``--allow-path``). ``/`` allows anything."""
    env = [p for p in os.environ.get(ALLOW_ENV, "").split(os.pathsep) if p.strip()]
    roots: dict[str, None] = {}
    for r in (base_dir, os.getcwd(), *env, *extra):
        roots.setdefault(os.path.normpath(os.path.abspath(os.path.expanduser(str(r)))), None)
    return tuple(roots)


def _within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True
