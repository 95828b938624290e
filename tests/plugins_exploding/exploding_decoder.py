"""A test plugin that breaks the image decoder for one file (tests/test_bad_inputs.py).

Loaded by path like any plugin folder, so the workers of a process pool or a dask
cluster load it too. On import it wraps ``defectsynth.imagefile.decode_image`` so that
a file whose bytes end with :data:`MARK` raises ``RuntimeError``: an exception that no
check of the reader foresaw, as a bug in a decoder would raise. Every other file
decodes as usual. It registers no generator.
"""

from __future__ import annotations

from typing import Any

from defectsynth import imagefile

MARK = b"EXPLODE"

if not getattr(imagefile.decode_image, "exploding", False):
    _real = imagefile.decode_image

    def _exploding(data: bytes, *args: Any, **kwargs: Any) -> Any:
        if data.endswith(MARK):
            raise RuntimeError("the decoder exploded on this file")
        return _real(data, *args, **kwargs)

    _exploding.exploding = True  # type: ignore[attr-defined]
    imagefile.decode_image = _exploding  # type: ignore[assignment]
