"""``defectsynth studio``: tune a recipe on your own images in a browser, then save it.

:class:`~defectsynth.studio.session.Studio` does the work (no web framework in it);
:mod:`defectsynth.studio.app` serves it on 127.0.0.1 behind a random token (the
``studio`` extra: FastAPI and uvicorn). See docs/studio.md.
"""

from __future__ import annotations

from .session import Studio, StudioError

__all__ = ["Studio", "StudioError"]
