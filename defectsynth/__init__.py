"""defectsynth: labeled synthetic defect images for visual-inspection models.

Plugin authors import only from here (``from defectsynth import hookimpl, DefectGenerator,
Layer, Region, param``) or from :mod:`defectsynth.api`, which holds the same plugin names.

The face is lazy: each name is imported from its module on first use, so importing a
plugin (which imports this package first) loads the generator contract and not the
Synthesizer, the recipe loader or the dataset run.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# name -> the module (relative to this package) that defines it
_FACE: dict[str, str] = {
    "DefectsynthError": "errors",
    "GeneratorFailure": "errors",
    "InputImageError": "errors",
    "ParamError": "errors",
    "UnknownNameError": "errors",
    "DefectGenerator": "generator",
    "Layer": "generator",
    "Light": "generator",
    "ParamSpace": "generator",
    "Region": "generator",
    "param": "generator",
    "hookimpl": "hookspecs",
    "load_recipe": "build",
    "Annotation": "sample",
    "Sample": "sample",
    "Entry": "synthesizer",
    "Gate": "synthesizer",
    "Synthesizer": "synthesizer",
    "source_id": "synthesizer",
    "DatasetWriter": "writing",
    # learning from real defects needs the fit extra (scikit-learn)
    "score": "realism.score",
    "Score": "realism.score",
    "fit": "realism.fit",
    "FitResult": "realism.fit",
}

__all__ = [
    "Annotation",
    "DatasetWriter",
    "DefectGenerator",
    "DefectsynthError",
    "Entry",
    "FitResult",
    "Gate",
    "GeneratorFailure",
    "InputImageError",
    "Layer",
    "Light",
    "ParamError",
    "ParamSpace",
    "Region",
    "Sample",
    "Score",
    "Synthesizer",
    "UnknownNameError",
    "__version__",
    "fit",
    "hookimpl",
    "load_recipe",
    "param",
    "score",
    "source_id",
]


def __getattr__(name: str) -> object:
    module = _FACE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FACE))


if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from .build import load_recipe
    from .errors import (
        DefectsynthError,
        GeneratorFailure,
        InputImageError,
        ParamError,
        UnknownNameError,
    )
    from .generator import DefectGenerator, Layer, Light, ParamSpace, Region, param
    from .hookspecs import hookimpl
    from .realism.fit import FitResult, fit
    from .realism.score import Score, score
    from .sample import Annotation, Sample
    from .synthesizer import Entry, Gate, Synthesizer, source_id
    from .writing import DatasetWriter
