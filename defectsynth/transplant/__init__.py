"""Real defects as a library: read a labeled folder, cut each defect out, cache it.

The ``transplant`` generator (:mod:`defectsynth.defects.transplant`) draws from these
libraries; this package never renders or places anything. See ``docs/transplant.md``.
"""

from __future__ import annotations

from .extract import mask_from_box, mask_from_label, mask_from_reference, polygon_mask
from .library import (
    CACHE_ENV,
    DEMO_SOURCE,
    Library,
    LibraryEntry,
    build_library,
    cache_dir,
    forget_libraries,
    load_library,
)
from .sources import FORMATS, SourceDefect, SourceError, SourceListing, read_source

__all__ = [
    "CACHE_ENV",
    "DEMO_SOURCE",
    "FORMATS",
    "Library",
    "LibraryEntry",
    "SourceDefect",
    "SourceError",
    "SourceListing",
    "build_library",
    "cache_dir",
    "forget_libraries",
    "load_library",
    "mask_from_box",
    "mask_from_label",
    "mask_from_reference",
    "polygon_mask",
    "read_source",
]
