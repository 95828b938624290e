"""What the page needs to draw a generator's controls, read from its ``Params``.

Every control is generated from the generator's declarations (:func:`~defectsynth.param`:
type, ``lo``/``hi``, ``choices``, ``vary``, ``doc``, ``size``), so a plugin's generator
gets sliders and help text without writing any UI.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from ..generator import DefectGenerator, describe_range, param_fields, param_info

#: where a numeric slider ends when the field declares no bound: this many times the
#: largest of its default and its out-of-the-box variation (at least 1)
OPEN_END_FACTOR = 4.0


def _kind(f: dataclasses.Field[Any]) -> str:
    default = f.default
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    return "str"


def _slider_bounds(kind: str, default: float, info: Any) -> tuple[float, float, float]:
    """(min, max, step) of a numeric slider: the declared bounds, or a generous span
    around the default and the variation where a bound is open."""
    seen = [float(default), *(float(v) for v in (info.vary or ()))]
    lo = float(info.lo) if info.lo is not None else min(0.0, *seen)
    if info.hi is not None:
        hi = float(info.hi)
    else:
        hi = max(1.0, *(abs(v) for v in seen)) * OPEN_END_FACTOR
        if kind == "int":
            hi = float(int(hi))
    if kind == "int":
        return lo, hi, 1.0
    span = hi - lo
    step = 10 ** (len(str(int(span))) - 4) if span >= 1 else span / 1000
    return lo, hi, float(step)


def field_schema(f: dataclasses.Field[Any]) -> dict[str, Any]:
    """One parameter: its name, kind, default, allowed values, help and slider."""
    info = param_info(f)
    kind = _kind(f)
    out: dict[str, Any] = {
        "name": f.name,
        "kind": kind,
        "default": f.default,
        "allowed": describe_range(f),
        "doc": info.doc,
        "size": info.size,
        "vary": list(info.vary) if info.vary is not None else None,
    }
    if info.choices is not None:
        out["control"] = "choices"
        out["choices"] = list(info.choices)
    elif kind == "bool":
        out["control"] = "choices"
        out["choices"] = [False, True]
    elif kind == "str":
        out["control"] = "text"
    else:
        lo, hi, step = _slider_bounds(kind, float(f.default), info)  # type: ignore[arg-type]
        out.update(control="range", min=lo, max=hi, step=step)
    return out


def generator_schema(cls: type[DefectGenerator], source: str = "") -> dict[str, Any]:
    """A generator: name, label, first docstring paragraph, source plugin, parameters."""
    doc = inspect.getdoc(cls) or ""
    return {
        "name": cls.name,
        "category": cls.label(),
        "doc": doc.split("\n\n")[0].replace("\n", " "),
        "source": source,
        "path_params": list(getattr(cls, "path_params", ())),
        "params": [field_schema(f) for f in param_fields(cls.Params)],
    }


def host_schema(host: Any) -> list[dict[str, Any]]:
    """Every registered generator, plugins included, sorted by name."""
    out = []
    for name in sorted(host.generators):
        info = host.provider("generator", name)
        source = f"{info.name} ({info.source})" if info is not None else ""
        out.append(generator_schema(host.generator(name), source))
    return out
