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
    "hookimpl",
    "load_recipe",
    "param",
    "source_id",
]
