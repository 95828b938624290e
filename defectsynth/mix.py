"""The generator mix: what one entry of a recipe's ``defects`` (or of a Synthesizer's
``entries``) says, and the same entry prepared for drawing.

Preparing an entry validates it once: the generator class, the weight, the parameters
(a :class:`~defectsynth.generator.ParamSpace`) and the labels. The builder
(:mod:`defectsynth.build`) prepares a recipe's entries while it checks the recipe and
hands them to the Synthesizer, which prepares only what it is given raw.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import GeneratorFailure, did_you_mean
from .generator import DefectGenerator, ParamSpace, validate_generator_class


@dataclass(frozen=True)
class Entry:
    """One generator in a mix (a recipe's ``defects`` entry, a Synthesizer's entry).

    :param generator: a registered generator name, or a DefectGenerator subclass.
    :param weight: relative probability of drawing this entry (>= 0).
    :param params: per-field fixed values, ``[lo, hi]`` ranges or lists of choices.
    :param category: label name for every instance of this entry; or a mapping that
        renames some of the generator's own categories (the rest keep their names);
        default: the generator's categories (see :meth:`DefectGenerator.categories`).
    """

    generator: str | type[DefectGenerator]
    weight: float = 1.0
    params: Mapping[str, Any] = field(default_factory=dict)
    category: str | Mapping[str, str] | None = None


class GeneratorSource(Protocol):
    """What a Synthesizer needs of a plugin host: a generator class by name (a
    :class:`~defectsynth.plugins.PluginHost` is one; so is a test's stand-in)."""

    def generator(self, name: str) -> type[DefectGenerator]: ...


@dataclass
class PreparedEntry:
    """An entry with its generator made, its parameters validated and its labels known."""

    entry: Entry
    generator: DefectGenerator
    space: ParamSpace
    labels: dict[str, str]  # the generator's own categories -> label names, in its order

    def label(self, own: str | None) -> str:
        """The label of a layer whose ``category`` is ``own`` (None: the first one)."""
        if own is None:
            return next(iter(self.labels.values()))
        try:
            return self.labels[own]
        except KeyError:
            raise GeneratorFailure(
                f"generator {type(self.generator).name!r}: layer category {own!r} is not "
                f"one of its categories() {list(self.labels)}"
            ) from None


def entry_labels(
    generator: DefectGenerator, space: ParamSpace, category: str | Mapping[str, str] | None
) -> dict[str, str]:
    """A generator's own categories (for these params) mapped to the labels an entry
    writes: all to ``category`` when it is a name, renamed through it when it is a
    mapping, unchanged when None. Raises ValueError for a rename of a category the
    generator does not make."""
    name = type(generator).name
    own = list(dict.fromkeys(str(c) for c in generator.categories(space.describe())))
    if not own:
        raise ValueError(f"generator {name!r}: categories() returned no category")
    if isinstance(category, str):
        return {c: category for c in own}
    rename = dict(category or {})
    unknown = [k for k in rename if k not in own]
    if unknown:
        raise ValueError(
            f"generator {name!r} makes no category {unknown[0]!r} to rename"
            + did_you_mean(str(unknown[0]), own)
            + f"; its categories: {', '.join(own)}"
        )
    return {c: str(rename.get(c, c)) for c in own}


def check_weight(index: int, name: str, weight: Any) -> None:
    """Raise ValueError unless ``weight`` is a finite number >= 0."""
    w = float(weight)
    if not math.isfinite(w) or w < 0:
        raise ValueError(f"entries[{index}] ({name}): weight {weight!r} must be >= 0")


def prepare_entry(
    entry: Entry | Mapping[str, Any], host: GeneratorSource, index: int
) -> PreparedEntry:
    """Validate an entry (``index`` names it in errors) and make its generator."""
    e = entry if isinstance(entry, Entry) else Entry(**dict(entry))
    if isinstance(e.generator, type):
        cls = e.generator
        validate_generator_class(cls)
    else:
        cls = host.generator(e.generator)
    check_weight(index, cls.name, e.weight)
    space = ParamSpace(cls, e.params)
    gen = cls()
    return PreparedEntry(e, gen, space, entry_labels(gen, space, e.category))
