"""The conformance suite every generator plugin should pass.

Use it in a plugin's own tests::

    from defectsynth.testing import check_generator
    from my_plugin import RustGenerator

    def test_conformance():
        check_generator(RustGenerator)

Each check raises ``AssertionError`` with a message that names the generator, the check
and the parameters that broke it. The checks:

- the class is a valid generator (name, frozen ``Params`` with in-range defaults);
- every ``Params`` field is resolvable from its declared range (lo, hi, every choice);
- rendering is deterministic for a seed, never mutates its region, returns float32
  pixels and coverage of the right shapes, finite, coverage within [0, 1], and a layer
  category (if any) that ``categories()`` declared;
- through the Synthesizer on gray, BGR, BGRA and 16-bit images: dtype, channels and
  size kept; pixels outside the changed footprint byte-identical; every mask non-empty,
  inside the product and with its box equal to the mask's tight box.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from .compose import check_layer
from .errors import GeneratorFailure
from .generator import (
    DefectGenerator,
    Light,
    ParamSpace,
    Region,
    param_fields,
    param_info,
    validate_generator_class,
)
from .sample import tight_box

__all__ = ["check_generator", "test_surface", "param_corners"]


def test_surface(
    shape: tuple[int, int] = (160, 160), channels: int = 3, dtype: Any = np.uint8, seed: int = 0
) -> np.ndarray:
    """A plausible product surface: a lighting gradient, fine texture and sensor noise."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.45 + 0.15 * (xx / w) + 0.05 * np.sin(yy / 3.0)
    base = base + rng.normal(0, 0.015, size=(h, w)).astype(np.float32)
    if channels == 1:
        img = base
    else:
        tint = np.array([0.95, 1.0, 1.05], dtype=np.float32)[: min(channels, 3)]
        img = base[:, :, None] * tint
        if channels == 4:
            img = np.dstack([img, np.ones((h, w), np.float32)])
    maxval = np.iinfo(dtype).max
    return np.clip(np.rint(img * maxval), 0, maxval).astype(dtype)


test_surface.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def param_corners(cls: type[DefectGenerator]) -> Iterator[dict[str, Any]]:
    """Parameter dicts that put each field, one at a time, at each end of its range."""
    yield {}
    for f in param_fields(cls.Params):
        info = param_info(f)
        if info.choices is not None:
            for c in info.choices:
                yield {f.name: c}
        elif isinstance(f.default, bool):
            yield {f.name: True}
            yield {f.name: False}
        elif isinstance(f.default, int | float):
            for v in (info.lo, info.hi):
                if v is not None:
                    yield {f.name: int(v) if isinstance(f.default, int) else float(v)}


def _region(img: np.ndarray, light: Light) -> Region:
    px = img.astype(np.float32) / np.float32(np.iinfo(img.dtype).max)
    if px.ndim == 2:
        px = px[:, :, None]
    px.flags.writeable = False
    pm = np.ones(img.shape[:2], np.float32)
    pm.flags.writeable = False
    return Region(pixels=px, product_mask=pm, light=light, texture_scale=6.0)


def _render_checked(
    gen: DefectGenerator, params_spec: Mapping[str, Any], seed: int, channels: int
) -> None:
    name = type(gen).name
    space = ParamSpace(type(gen), params_spec)
    rng = np.random.default_rng(seed)
    params = space.draw(rng)
    h, w = (int(v) for v in gen.extent(params, rng))
    assert h >= 1 and w >= 1, f"{name}: extent() returned {(h, w)} for {params}"
    img = test_surface((h, w), channels=channels, seed=seed)
    light = Light(30.0 + 97.0 * seed, 45.0)
    region = _region(img, light)
    before = region.pixels.copy()
    try:
        layer = gen.render(region, params, rng)
        layer = check_layer(name, layer, region.pixels.shape)
    except GeneratorFailure as exc:
        raise AssertionError(f"{exc} (params {params})") from None
    except Exception as exc:
        if isinstance(exc, ValueError) and "read-only" in str(exc):
            raise AssertionError(f"{name}: render() writes into region.pixels ({exc})") from None
        raise AssertionError(f"{name}: render() raised {exc!r} for params {params}") from exc
    assert np.array_equal(before, region.pixels), f"{name}: render() modified its region"
    declared = list(gen.categories(space.describe()))
    assert layer.category is None or layer.category in declared, (
        f"{name}: layer category {layer.category!r} is not one of categories() {declared}"
    )
    # determinism: the same (region, params, seed) gives the same layer
    rng2 = np.random.default_rng(seed)
    params2 = space.draw(rng2)
    assert params2 == params, f"{name}: parameter draws are not reproducible"
    gen.extent(params2, rng2)
    layer2 = gen.render(_region(img, light), params2, rng2)
    assert np.array_equal(layer.pixels, layer2.pixels) and np.array_equal(
        layer.coverage, layer2.coverage
    ), f"{name}: render() is not deterministic for seed {seed} and params {params}"


def _synth_checked(cls: type[DefectGenerator], channels: int, dtype: Any, seed: int) -> int:
    from .synthesizer import Synthesizer

    img = test_surface((192, 224), channels=channels, dtype=dtype, seed=seed)
    product = np.zeros(img.shape[:2], bool)
    product[8:184, 12:212] = True
    synth = Synthesizer([{"generator": cls}], instances=(1, 2), host=_NoHost(),
                        max_attempts=8)
    sample = synth.apply(img, product, seed=seed, source_id=7, variant=seed)
    out = sample.image
    name = cls.name
    assert out.dtype == img.dtype and out.shape == img.shape, (
        f"{name}: output {out.dtype}{out.shape} != input {img.dtype}{img.shape}"
    )
    assert sample.footprint is not None
    outside = ~sample.footprint
    assert np.array_equal(out[outside], img[outside]), (
        f"{name}: pixels outside the defect footprint changed (seed {seed}, {channels} ch)"
    )
    if channels == 4:
        assert np.array_equal(out[:, :, 3], img[:, :, 3]), f"{name}: alpha channel changed"
    for a in sample.annotations:
        m = a.mask
        assert m.any(), f"{name}: empty instance mask"
        assert tight_box(m) == a.box, f"{name}: box {a.box} is not the tight box of its mask"
        assert not (m & ~product).any(), f"{name}: mask leaves the product"
    again = synth.apply(img, product, seed=seed, source_id=7, variant=seed)
    assert np.array_equal(again.image, out), f"{name}: Synthesizer output is not deterministic"
    return len(sample.annotations)


class _NoHost:
    def generator(self, name: str) -> Any:  # pragma: no cover - entries pass classes
        raise KeyError(name)


def check_generator(cls: type[DefectGenerator], *, seeds: tuple[int, ...] = (0, 1, 2)) -> None:
    """Run the whole conformance suite over one generator class.

    :param cls: the DefectGenerator subclass.
    :param seeds: seeds for the randomized checks.
    :raises AssertionError: naming the generator and what broke.
    """
    try:
        validate_generator_class(cls)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"not a valid generator: {exc}") from None
    gen = cls()
    for spec in param_corners(cls):
        for channels in (1, 3):
            _render_checked(gen, spec, seeds[0], channels)
    for seed in seeds:
        for channels in (1, 3):
            _render_checked(gen, {}, seed, channels)
    made = 0
    for seed in seeds:
        for channels, dtype in ((3, np.uint8), (1, np.uint8), (4, np.uint8), (3, np.uint16)):
            made += _synth_checked(cls, channels, dtype, seed)
    assert made > 0, (
        f"{cls.name}: no instance passed the visibility gate on the test surface in "
        f"{len(seeds) * 4} tries with default parameters; defaults should be visible"
    )


