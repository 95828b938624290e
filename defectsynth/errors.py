"""Exceptions raised by defectsynth. Every message names the thing that is wrong."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DefectsynthError(Exception):
    """Base class of every error defectsynth raises on purpose."""


class ParamError(DefectsynthError, ValueError):
    """A generator parameter is unknown, of the wrong type or out of its allowed range.

    :param field: the name of the parameter at fault, when there is one (a recipe names
        it in its key path: ``defects[0].params.depth``). The message starts with
        ``generator.field: `` then.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def __reduce__(self) -> tuple[object, ...]:  # keep ``field`` across processes
        return (_param_error, (str(self), self.field))


def _param_error(message: str, field: str | None) -> ParamError:
    return ParamError(message, field=field)


class InputImageError(DefectsynthError, ValueError):
    """An input image (or product mask) cannot be used."""


class UnknownNameError(DefectsynthError, KeyError):
    """A generator or writer name that no loaded plugin provides."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class GeneratorFailure(DefectsynthError):
    """A generator returned an invalid layer or raised while rendering."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def shorten(text: str, limit: int = 120) -> str:
    """Messages quote values, and a value may be huge (YAML aliases): keep them short."""
    return text if len(text) <= limit else text[: limit - 5] + " ...]"


class RecipeError(DefectsynthError, ValueError):
    """A recipe file is malformed; the message names the file and the key path."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.file = file
        self.key = key
        self.detail = message
        parts = [p for p in (file, key) if p]
        super().__init__(": ".join([*parts, message]))


class RunError(DefectsynthError):
    """A dataset run cannot start or go on (output folder in use, recipe changed, ...)."""


class RunStopped(RunError):
    """A run stopped part-way (disk full, a file that could not be written): every sample
    in the manifest is complete, and ``--resume`` finishes the dataset once the cause is
    fixed."""
