"""Learning from real defects: how far synthetic defects are from real ones
(:func:`score`), and generator parameters fitted to real defects (:func:`fit`).

Needs the ``fit`` extra (scikit-learn, cma): ``pip install 'defectsynth[fit]'``.
"""

from __future__ import annotations

from .crops import Crop, DefectSet, RealismError, read_defects
from .score import CategoryScore, Score, score

__all__ = [
    "CategoryScore",
    "Crop",
    "DefectSet",
    "RealismError",
    "Score",
    "read_defects",
    "score",
]
