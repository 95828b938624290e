"""defectsynth: labeled synthetic defect images for visual-inspection models.

Plugin authors import only from here: ``from defectsynth import hookimpl, DefectGenerator,
Layer, Region, param``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (
    DefectsynthError,
    GeneratorFailure,
    InputImageError,
    ParamError,
    PluginError,
    UnknownNameError,
)
from .generator import DefectGenerator, Layer, Light, ParamSpace, Region, param
from .hookspecs import hookimpl
from .recipe import load_recipe
from .sample import Annotation, Sample
from .synthesizer import Entry, Gate, Synthesizer, source_id
from .writing import DatasetWriter

__all__ = [
    "Annotation",
    "FitResult",
    "Score",
    "DatasetWriter",
    "DefectGenerator",
    "DefectsynthError",
    "Entry",
    "Gate",
    "GeneratorFailure",
    "InputImageError",
    "Layer",
    "Light",
    "ParamError",
    "ParamSpace",
    "PluginError",
    "Region",
    "Sample",
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

# learning from real defects needs the fit extra (scikit-learn): imported on first use
_REALISM = {"score": "score", "Score": "score", "fit": "fit", "FitResult": "fit"}


def __getattr__(name: str) -> object:
    if name in _REALISM:
        import importlib

        module = importlib.import_module(f".realism.{_REALISM[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
