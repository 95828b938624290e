"""Recipe + plugin host -> Synthesizer: the one place that knows both.

A :class:`~defectsynth.recipe.Recipe` is plain, validated data and builds nothing; the
:class:`~defectsynth.synthesizer.Synthesizer` knows nothing of recipe files. This module
checks a recipe against the plugins (generator names, their parameters, labels, output
formats), preparing each ``defects`` entry once (:func:`~defectsynth.mix.prepare_entry`'s
work, with errors that name the recipe's key path), and hands the prepared entries to
the Synthesizer. ``Synthesizer.from_recipe`` is the public door; it passes its own class
here, so this module imports neither the recipe module nor the synthesizer module.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import DefectsynthError, ParamError, UnknownNameError, did_you_mean, shorten
from .generator import ParamSpace, param_fields
from .mix import PreparedEntry, entry_labels
from .recipe import Recipe, read_recipe
from .visibility import Gate

if TYPE_CHECKING:
    from .plugins import PluginHost
    from .synthesizer import Synthesizer

S = TypeVar("S", bound="Synthesizer")


def load_recipe(
    path: str | os.PathLike[str],
    host: PluginHost | None = None,
    *,
    allow_paths: Iterable[str | os.PathLike[str]] = (),
) -> Recipe:
    """Read a recipe file and validate it completely, plugins included.

    :param path: the YAML file; relative paths inside it are relative to its folder.
    :param host: plugin host to look generators and formats up in (default: the
        process-wide host, with the recipe's ``plugin_dirs`` added).
    :param allow_paths: folders, besides the recipe's own and the working directory,
        that the recipe's paths may point into (see
        :func:`~defectsynth.recipe.allowed_roots`).
    :raises RecipeError: naming the file and the key path of the first problem.
    """
    recipe = read_recipe(path, allow_paths=allow_paths)
    check_recipe(recipe, host)
    return recipe


def as_recipe(recipe: Any, host: Any = None) -> Recipe:
    """A Recipe from a recipe file path or a Recipe (the training integrations take both)."""
    if isinstance(recipe, str | os.PathLike):
        return load_recipe(recipe, host)
    if isinstance(recipe, Recipe):
        return recipe
    raise TypeError(
        "recipe must be a recipe file path, a Recipe or a Synthesizer, "
        f"got {type(recipe).__name__}"
    )


def check_recipe(
    recipe: Recipe, host: PluginHost | None = None
) -> tuple[PluginHost, list[PreparedEntry]]:
    """Validate a recipe's generator names, their params and output formats against the
    plugins; return the host used and the ``defects`` entries, prepared.

    :raises RecipeError: naming the key path of the first problem.
    """
    h = recipe.host(host)
    prepared = [_prepare(recipe, h, i) for i in range(len(recipe.defects))]
    for i, fmt in enumerate(recipe.output.formats):
        try:
            h.writer(fmt)
        except UnknownNameError as exc:
            raise recipe.error(f"output.formats[{i}]", str(exc)) from None
    return h, prepared


def _prepare(recipe: Recipe, host: PluginHost, i: int) -> PreparedEntry:
    d = recipe.defects[i]
    assert isinstance(d.generator, str)  # a recipe names its generators
    try:
        cls = host.generator(d.generator)
    except UnknownNameError as exc:
        raise recipe.error(f"defects[{i}].generator", str(exc) + _plugin_error_hint(host)) from None
    fields = [f.name for f in param_fields(cls.Params)]
    for key in d.params:
        if key not in fields:
            raise recipe.error(
                f"defects[{i}].params.{key}",
                f"unknown parameter of generator {d.generator!r}"
                + did_you_mean(str(key), fields)
                + f"; known: {', '.join(fields) or '(none)'}",
            )
    entry = replace(d, params=recipe.generator_params(d, cls))
    try:
        space = ParamSpace(cls, entry.params)
        generator = cls()
        labels = entry_labels(generator, space, d.category)
    except ParamError as exc:
        msg = shorten(str(exc), 600)
        prefix = f"{cls.name}.{exc.field}: "
        if exc.field and msg.startswith(prefix):
            raise recipe.error(f"defects[{i}].params.{exc.field}", msg[len(prefix):]) from None
        raise recipe.error(f"defects[{i}].params", msg) from None
    except ValueError as exc:  # a rename of a category the generator does not make
        raise recipe.error(f"defects[{i}].category", str(exc)) from None
    for cat in dict.fromkeys(labels.values()):
        recipe.check_category(f"defects[{i}].category", cat)
    return PreparedEntry(entry, generator, space, labels)


def build_synthesizer(
    recipe: Recipe,
    host: PluginHost | None = None,
    *,
    on_failure: str = "raise",
    synthesizer: type[S],
) -> S:
    """A ``synthesizer`` (the class) configured by ``recipe``, from its checked entries.

    Product masks given as a file pattern are resolved per image by the run; this
    synthesizer reads them when called with the image's path
    (``synth(image, source=path)``) and otherwise warns once and uses ``full``.
    """
    h, prepared = check_recipe(recipe, host)
    spec = recipe.inputs.product_mask
    default_mask = spec if spec in ("auto", "full") else "full"
    try:
        synth = synthesizer(
            prepared,
            instances=recipe.instances,
            product_mask=default_mask,
            margin=recipe.placement.margin,
            max_overlap=recipe.placement.max_overlap,
            gate=Gate(
                min_contrast=recipe.gate.min_contrast,
                min_area=recipe.gate.min_area,
                min_relative=recipe.gate.min_relative,
            ),
            max_attempts=recipe.placement.max_attempts,
            within_product=recipe.placement.within_product,
            host=h,
            on_failure=on_failure,
            scale=recipe.scale,
        )
    except (ValueError, DefectsynthError) as exc:
        raise recipe.error("defects", str(exc)) from None
    if spec not in ("auto", "full"):
        synth.mask_for_source = recipe.mask_pattern()
    return synth


def _plugin_error_hint(host: PluginHost) -> str:
    errs = host.errors
    if not errs:
        return ""
    return "; note: some plugins failed to load: " + "; ".join(errs[:3])

