"""What a plugin imports: the generator and writer contracts, and nothing of the engine.

``from defectsynth.api import hookimpl, DefectGenerator, Layer, Region, param`` (or the
same names from ``defectsynth``, whose face is lazy) loads the hook markers, the generator
contract (generator.py), the writer contract and its file helpers (writing.py), the
errors and the shared procedural fields (``textures``). It never loads the Synthesizer,
the recipe loader or the dataset run: plugins are leaves of the import graph, and
``tests/test_architecture.py`` holds them to it.
"""

from __future__ import annotations

from . import textures
from .errors import GeneratorFailure, InputImageError, ParamError
from .generator import BLEND_MODES, DefectGenerator, Layer, Light, ParamSpace, Region, param
from .hookspecs import hookimpl
from .writing import DatasetWriter, WriteContext

__all__ = [
    # the hook marker
    "hookimpl",
    # generators: the contract, what they see and return, their parameters
    "DefectGenerator", "Region", "Light", "Layer", "param", "ParamSpace", "BLEND_MODES",
    # writers
    "DatasetWriter", "WriteContext",
    # what a plugin may raise
    "ParamError", "GeneratorFailure", "InputImageError",
    # shared procedural fields (noise, shading, colour)
    "textures",
]
