"""The generator contract: what a defect plugin receives, declares and returns.

A generator is a pure function of ``(Region, Params, rng)``. It never touches files,
labels or global state; the host places it, composites it and derives labels from the
pixels it changed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .errors import ParamError, did_you_mean

_META_KEY = "defectsynth"


@dataclass(frozen=True)
class ParamInfo:
    """What a ``Params`` field declares: its allowed range and its out-of-the-box variation."""

    lo: float | None = None
    hi: float | None = None
    choices: tuple[Any, ...] | None = None
    vary: tuple[Any, Any] | tuple[Any, ...] | None = None
    doc: str = ""
    #: a length in pixels, tuned for images of the generator's ``reference_size``:
    #: a recipe's ``scale`` multiplies it
    size: bool = False


def param(
    default: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: Sequence[Any] | None = None,
    vary: Sequence[Any] | None = None,
    doc: str = "",
    size: bool = False,
) -> Any:
    """Declare one field of a generator's ``Params`` dataclass.

    :param default: the value used when nothing else is said; its type is the field's type.
    :param lo: smallest allowed value (numeric fields).
    :param hi: largest allowed value (numeric fields).
    :param choices: the allowed values of an enumeration (string fields).
    :param vary: what a recipe that does not mention the field draws from: a ``(lo, hi)``
        range for numeric fields or a list of choices. ``None`` means the default is fixed.
    :param doc: one line for ``defectsynth describe``.
    :param size: the field is a length in pixels (a radius, a width), tuned for images
        whose shorter side is the generator's ``reference_size``; a recipe's ``scale``
        (``auto``: the image's shorter side / ``reference_size``) multiplies it.
    """
    info = ParamInfo(
        lo=lo,
        hi=hi,
        choices=tuple(choices) if choices is not None else None,
        vary=tuple(vary) if vary is not None else None,
        doc=doc,
        size=size,
    )
    return dataclasses.field(default=default, metadata={_META_KEY: info})


@dataclass(frozen=True)
class Light:
    """The scene light, one per image: azimuth in degrees (0 = from +x, 90 = from +y, image
    coordinates, y down) and elevation above the surface in degrees."""

    azimuth: float
    elevation: float

    @property
    def vector(self) -> np.ndarray:
        """Unit vector from the surface towards the light, (x, y, z), z out of the image."""
        az = math.radians(self.azimuth)
        el = math.radians(self.elevation)
        return np.array(
            [math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)],
            dtype=np.float32,
        )


class Region:
    """What a generator sees: a crop of the product centred on the placed defect.

    ``pixels`` is float32 in 0..1 with shape (h, w, c), c = 1 (gray) or 3 (BGR); it may be
    read but must not be modified. ``product_mask`` is float32 (h, w), 1 on the product.
    ``light`` is shared by every defect of the image; ``texture_scale`` is the
    characteristic wavelength of the surface texture in pixels.

    ``texture_scale`` may be given as a function of no arguments: it is then called the
    first time a generator reads the attribute (the synthesizer measures the image's
    texture only when some generator asks). Attributes cannot be reassigned.
    """

    __slots__ = ("pixels", "product_mask", "light", "_texture_scale")

    pixels: np.ndarray
    product_mask: np.ndarray
    light: Light
    _texture_scale: float | Callable[[], float]

    def __init__(
        self,
        pixels: np.ndarray,
        product_mask: np.ndarray,
        light: Light,
        texture_scale: float | Callable[[], float],
    ) -> None:
        for name, value in (
            ("pixels", pixels),
            ("product_mask", product_mask),
            ("light", light),
            ("_texture_scale", texture_scale),
        ):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Region is read-only: cannot set {name!r}")

    @property
    def texture_scale(self) -> float:
        value = self._texture_scale
        if callable(value):
            value = float(value())
            object.__setattr__(self, "_texture_scale", value)
        return float(value)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[2])

    @property
    def is_color(self) -> bool:
        return self.channels == 3


@dataclass(frozen=True, eq=False)
class Layer:
    """What a generator returns: the region after the defect and where the defect is.

    ``pixels``: float32, same shape as ``Region.pixels``, values in 0..1.
    ``coverage``: float32 (h, w) in 0..1; 0 means the defect does not touch the pixel.
    Where coverage is 0 the synthesizer keeps the region's own pixels, so a generator
    need not restore them in ``pixels`` (they must still be finite and in 0..1, which
    :func:`~defectsynth.testing.check_generator` checks; the synthesizer checks only the
    pixels it reads); only Poisson blending reads ``pixels`` a few px beyond the
    coverage, as its boundary.
    ``category``: which of the generator's :meth:`~DefectGenerator.categories` this
    defect is (None: the first one); a recipe's ``category`` still renames it.
    """

    pixels: np.ndarray
    coverage: np.ndarray
    category: str | None = None


class DefectGenerator:
    """Base class of every defect generator, built-in or third-party.

    Subclasses set ``name`` (unique), optionally ``category`` (label name, defaults to
    ``name``), ``version``, ``blend`` (``"alpha"``, ``"poisson"`` or ``"poisson-mixed"``;
    a ``Params`` field named ``blend`` overrides it per instance), ``path_params``;
    declare ``Params`` as a frozen dataclass whose fields use :func:`param`, and implement
    :meth:`extent` and :meth:`render`.
    """

    name: ClassVar[str] = ""
    category: ClassVar[str | None] = None
    version: ClassVar[str] = "1"
    blend: ClassVar[str] = "alpha"
    #: names of string ``Params`` fields that hold file or folder paths; a recipe resolves
    #: them relative to the recipe file
    path_params: ClassVar[tuple[str, ...]] = ()
    #: the shorter image side, in pixels, that the defaults of the size-like parameters
    #: (``param(..., size=True)``) were tuned for; ``scale: auto`` scales by
    #: ``min(height, width) / reference_size``
    reference_size: ClassVar[int] = 512
    #: where centres are drawn: ``"inside"`` the product (at least the synthesizer's
    #: ``margin`` from its edge), or on its ``"edge"`` (product pixels next to the
    #: background: chips and other damage that only happens where the material ends;
    #: a product filling the whole image has no edge, and such instances count as
    #: dropped for want of room)
    placement: ClassVar[str] = "inside"

    @dataclass(frozen=True)
    class Params:
        pass

    def plan(self, params: Any, rng: np.random.Generator) -> Any:
        """Optional: draw once what :meth:`extent` and :meth:`render` both need (a
        stroke's course, say), so that neither has to draw it again or hide it anywhere.

        A generator that overrides it is called ``plan(params, rng)``, then
        ``extent(params, rng, plan=...)`` and ``render(region, params, rng, plan=...)``
        with its result, all with the same ``rng`` (in the spirit of albumentations'
        ``get_params`` then ``apply``). Called without a plan (by a test, say), its
        ``extent`` and ``render`` make their own, with the same result. A generator that
        does not override it is called ``extent(params, rng)`` and
        ``render(region, params, rng)``, as before the plan step existed.
        """
        return None

    def extent(self, params: Any, rng: np.random.Generator) -> tuple[int, int]:
        """Height and width, in pixels, of the region this defect needs."""
        raise NotImplementedError

    def render(self, region: Region, params: Any, rng: np.random.Generator) -> Layer:
        """Draw the defect into a copy of ``region.pixels``."""
        raise NotImplementedError

    def categories(self, params: Mapping[str, Any]) -> Sequence[str]:
        """Every category a layer of this generator may carry (``Layer.category``), so the
        host can give each a stable id before anything is drawn. Override it only when
        one generator makes defects of several categories (``transplant`` keeps its
        source's); the default is the one category :meth:`label`.

        :param params: the entry's parameters as the recipe gave them
            (:meth:`ParamSpace.describe`): per field a fixed value, or a list (a
            ``[lo, hi]`` range or the choices).
        :raises ParamError: when the parameters cannot work (e.g. a missing source); the
            recipe reports it under ``defects[i].params``.
        """
        return [self.label()]

    @classmethod
    def label(cls) -> str:
        return cls.category or cls.name


BLEND_MODES = ("alpha", "poisson", "poisson-mixed")


def plans(generator: type[DefectGenerator]) -> bool:
    """Whether a generator has a plan step (overrides :meth:`DefectGenerator.plan`): the
    host then passes its plan to ``extent`` and ``render``."""
    return getattr(generator, "plan", None) is not DefectGenerator.plan


def _field_kind(f: dataclasses.Field[Any]) -> type:
    default = f.default
    if isinstance(default, bool):
        return bool
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return float
    if isinstance(default, str):
        return str
    raise TypeError(f"field {f.name!r}: default {default!r} is not a bool, int, float or str")


def param_fields(params_cls: type) -> list[dataclasses.Field[Any]]:
    return list(dataclasses.fields(params_cls))


def param_info(f: dataclasses.Field[Any]) -> ParamInfo:
    info = f.metadata.get(_META_KEY)
    return info if isinstance(info, ParamInfo) else ParamInfo()


def describe_range(f: dataclasses.Field[Any]) -> str:
    info = param_info(f)
    if info.choices is not None:
        return "one of " + ", ".join(repr(c) for c in info.choices)
    kind = _field_kind(f)
    if kind is bool:
        return "true or false"
    if kind is str:
        return "any string"
    lo = "-inf" if info.lo is None else _fmt(info.lo)
    hi = "inf" if info.hi is None else _fmt(info.hi)
    return f"[{lo}, {hi}]"


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def validate_generator_class(cls: Any) -> None:
    """Raise TypeError/ValueError explaining why ``cls`` is not a usable generator."""
    if not (isinstance(cls, type) and issubclass(cls, DefectGenerator)):
        raise TypeError(f"{cls!r} is not a DefectGenerator subclass")
    if (
        not isinstance(cls.name, str)
        or not cls.name
        or not cls.name.replace("_", "").replace("-", "").isalnum()
    ):
        raise ValueError(f"{cls.__name__}.name must be a non-empty identifier, got {cls.name!r}")
    if cls.blend not in BLEND_MODES:
        raise ValueError(f"{cls.__name__}.blend must be one of {BLEND_MODES}, got {cls.blend!r}")
    params_cls = cls.Params
    if not dataclasses.is_dataclass(params_cls) or not params_cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise ValueError(f"{cls.__name__}.Params must be a frozen dataclass")
    for f in dataclasses.fields(params_cls):
        if f.default is dataclasses.MISSING:
            raise ValueError(f"{cls.__name__}.Params.{f.name} has no default")
        kind = _field_kind(f)
        info = param_info(f)
        try:
            _check_value(cls.name, f, f.default, kind, info)
            if info.vary is not None:
                if info.choices is not None or kind in (bool, str):
                    for v in info.vary:
                        _check_value(cls.name, f, v, kind, info)
                else:
                    if len(info.vary) != 2:
                        raise ParamError(f"vary must be (lo, hi), got {info.vary!r}")
                    for v in info.vary:
                        _check_value(cls.name, f, v, kind, info)
                    if info.vary[0] > info.vary[1]:
                        raise ParamError(f"vary {info.vary!r} has lo > hi")
        except ParamError as exc:
            raise ValueError(f"{cls.__name__}.Params.{f.name}: {exc}") from None
    for method in ("extent", "render"):
        if getattr(cls, method) is getattr(DefectGenerator, method):
            raise ValueError(f"{cls.__name__} does not implement {method}()")


def _check_value(
    gen: str, f: dataclasses.Field[Any], value: Any, kind: type, info: ParamInfo
) -> Any:
    def fail(text: str) -> ParamError:
        return ParamError(f"{gen}.{f.name}: {text}", field=f.name)

    if kind is bool:
        if not isinstance(value, bool):
            raise fail(f"{value!r} is not true or false")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise fail(f"{value!r} is not a string")
        if info.choices is not None and value not in info.choices:
            raise fail(
                f"{value!r} is not one of {', '.join(map(repr, info.choices))}"
                + did_you_mean(value, [str(c) for c in info.choices])
            )
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(f"{value!r} is not a number (expected {describe_range(f)})")
    if kind is int and not float(value).is_integer():
        raise fail(f"{value!r} is not an integer (expected {describe_range(f)})")
    if not math.isfinite(value):
        raise fail(f"{value!r} is not finite")
    if info.lo is not None and value < info.lo:
        raise fail(f"{value!r} is below the minimum {_fmt(info.lo)}")
    if info.hi is not None and value > info.hi:
        raise fail(f"{value!r} is above the maximum {_fmt(info.hi)}")
    return int(value) if kind is int else float(value)


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    kind: type
    mode: str  # "fixed" | "range" | "choice"
    values: tuple[Any, ...]


class ParamSpace:
    """A generator's parameters as a recipe gave them: fixed values, ranges and choices.

    Built (and fully validated) once; :meth:`draw` turns it into a concrete ``Params``.
    """

    def __init__(self, generator: type[DefectGenerator], spec: Mapping[str, Any] | None = None):
        spec = dict(spec or {})
        self.generator = generator
        gname = generator.name
        fields = {f.name: f for f in dataclasses.fields(generator.Params)}
        for key in spec:
            if key not in fields:
                raise ParamError(
                    f"{gname}: unknown parameter {key!r}"
                    + did_you_mean(str(key), fields)
                    + f"; known: {', '.join(fields) or '(none)'}"
                )
        self._fields: list[_FieldSpec] = []
        for name, f in fields.items():
            kind = _field_kind(f)
            info = param_info(f)
            if name in spec:
                self._fields.append(self._parse(gname, f, kind, info, spec[name]))
            elif info.vary is not None:
                enum = info.choices is not None or kind in (bool, str)
                self._fields.append(
                    _FieldSpec(name, kind, "choice" if enum else "range", tuple(info.vary))
                )
            else:
                self._fields.append(_FieldSpec(name, kind, "fixed", (f.default,)))
        self._varying = sum(fs.mode != "fixed" for fs in self._fields)

    @staticmethod
    def _parse(
        gname: str, f: dataclasses.Field[Any], kind: type, info: ParamInfo, raw: Any
    ) -> _FieldSpec:
        if isinstance(raw, list | tuple):
            if kind in (bool, str) or info.choices is not None:
                if not raw:
                    raise ParamError(f"{gname}.{f.name}: empty list of choices", field=f.name)
                vals = tuple(_check_value(gname, f, v, kind, info) for v in raw)
                return _FieldSpec(f.name, kind, "choice", vals)
            if len(raw) != 2:
                raise ParamError(
                    f"{gname}.{f.name}: a range is [lo, hi], got {list(raw)!r} "
                    f"(allowed {describe_range(f)})",
                    field=f.name,
                )
            lo = _check_value(gname, f, raw[0], kind, info)
            hi = _check_value(gname, f, raw[1], kind, info)
            if lo > hi:
                raise ParamError(
                    f"{gname}.{f.name}: range [{lo}, {hi}] has lo > hi", field=f.name
                )
            return _FieldSpec(f.name, kind, "range", (lo, hi))
        return _FieldSpec(f.name, kind, "fixed", (_check_value(gname, f, raw, kind, info),))

    def draw(self, rng: np.random.Generator) -> Any:
        """Concrete Params: one uniform draw per varying field, in field order, all taken
        by one call (a call per field cost more than the rest of the draw)."""
        values: dict[str, Any] = {}
        u = iter(rng.random(self._varying).tolist()) if self._varying else iter(())
        for fs in self._fields:
            if fs.mode == "fixed":
                values[fs.name] = fs.values[0]
            elif fs.mode == "choice":
                n = len(fs.values)
                values[fs.name] = fs.values[min(int(next(u) * n), n - 1)]
            elif fs.kind is int:
                lo, hi = int(fs.values[0]), int(fs.values[1])
                values[fs.name] = lo + min(int(next(u) * (hi - lo + 1)), hi - lo)
            else:
                lo_f, hi_f = float(fs.values[0]), float(fs.values[1])
                values[fs.name] = lo_f + (hi_f - lo_f) * next(u)
        return self.generator.Params(**values)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for fs in self._fields:
            out[fs.name] = fs.values[0] if fs.mode == "fixed" else list(fs.values)
        return out


def size_fields(generator: type[DefectGenerator]) -> list[str]:
    """Names of the size-like fields of a generator's Params (``param(..., size=True)``)."""
    return [f.name for f in dataclasses.fields(generator.Params) if param_info(f).size]


def scale_params(generator: type[DefectGenerator], params: Any, factor: float) -> Any:
    """``params`` with every size-like field multiplied by ``factor`` and kept inside its
    allowed range (integers rounded)."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(generator.Params):
        info = param_info(f)
        if not info.size:
            continue
        value = getattr(params, f.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        scaled: float = value * factor
        if info.lo is not None:
            scaled = max(scaled, info.lo)
        if info.hi is not None:
            scaled = min(scaled, info.hi)
        changes[f.name] = round(scaled) if isinstance(value, int) else float(scaled)
    return dataclasses.replace(params, **changes) if changes else params

