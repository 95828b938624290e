"""One clean image in, one labeled Sample out.

Every label is derived from the composite: coverage is clipped by the image border and
the product mask, the instance mask is ``coverage >= 0.5``, and an instance is kept only
when the pixels under its mask changed visibly (see :class:`Gate`). All randomness comes
from ``numpy.random.default_rng(SeedSequence([seed, source_id, variant]))``.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import cv2
import numpy as np

from .compose import alpha_blend, change_map, check_layer, check_pixels, poisson_blend
from .errors import GeneratorFailure, InputImageError
from .generator import BLEND_MODES, DefectGenerator, Layer, Light, Region, plans, scale_params
from .mix import (
    Entry,
    GeneratorSource,
    PreparedEntry,
    check_weight,
    entry_labels,
    prepare_entry,
)
from .placement import CentreSampler, EdgeSampler, ProductMaskSpec, resolve_product_mask
from .sample import Annotation, Sample, tight_box
from .visibility import Gate, texture_noise

# Entry, entry_labels (mix.py), Gate and texture_noise (visibility.py) are imported from
# here by older code
__all__ = ["Entry", "Gate", "Synthesizer", "entry_labels", "source_id", "texture_noise"]

if TYPE_CHECKING:
    from .plugins import PluginHost
    from .recipe import Recipe

MIN_SIDE = 16
MAX_INSTANCE_SEED = 2**63
MAX_EXTENT = 16384


def source_id(relative_path: str | os.PathLike[str]) -> int:
    """Stable id of a source image: sha256 of its POSIX path relative to the input root."""
    text = os.fspath(relative_path).replace(os.sep, "/")
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


class Drop(enum.Enum):
    """Why an attempt at an instance left nothing; the value is the ``Sample.stats`` key
    that counts it when the last attempt fails so."""

    NO_ROOM = "dropped_no_room"
    VISIBILITY = "dropped_visibility"
    OVERLAP = "dropped_overlap"


#: what remains of an earlier instance that a new one covers: its new mask crop, box
#: (x1, y1, x2, y2) and visibility
_Remains = tuple[np.ndarray, tuple[int, int, int, int], float]


@dataclass
class _Scene:
    """One image being synthesized: what each instance is drawn onto and measured
    against, and what the instances placed so far left."""

    src: np.ndarray  # the clean image (gray or BGR)
    out: np.ndarray  # the composite so far
    product: np.ndarray  # bool (h, w)
    light: Light
    tex_scale: Callable[[], float]
    maxval: int
    threshold: float
    footprint: np.ndarray  # bool (h, w): every pixel a placed instance changed
    sampler: CentreSampler | None
    stats: dict[str, int]
    edges: EdgeSampler | None = None  # for edge generators, built on first use
    annotations: list[Annotation] = field(default_factory=list)
    render_log: list[tuple[str, str | None]] = field(default_factory=list)

    def place(self, placed: _Placed) -> None:
        bx1, by1, bx2, by2 = placed.window
        self.out[by1:by2, bx1:bx2] = placed.new
        self.footprint[by1:by2, bx1:bx2] |= placed.changed
        for ki, (new_crop, box, new_vis) in placed.reduced.items():
            # what remains of an earlier instance: its new box, mask and visibility
            self.annotations[ki] = dataclasses.replace(
                self.annotations[ki], box=box, mask_crop=new_crop, visibility=new_vis
            )
        self.annotations.append(placed.annotation)


@dataclass
class _Rendered:
    """A checked layer and where its region lies."""

    layer: Layer
    label: str
    blend: str  # one of BLEND_MODES
    region_px: np.ndarray  # float32 (h, w, c): the region the generator saw
    prod: np.ndarray  # float32 (h, w): its product mask
    pads: tuple[int, int, int, int]  # rows/columns beyond the image: top, bottom, left, right
    window: tuple[int, int, int, int]  # x1, y1, x2, y2: the region inside the image


@dataclass
class _Blended:
    """The composite in the box of what the layer changed."""

    window: tuple[int, int, int, int]  # x1, y1, x2, y2 in the image
    new: np.ndarray  # the image's pixels there after the blend
    changed: np.ndarray  # bool: the pixels the blend changed
    coverage: np.ndarray  # float32: the layer's coverage there, clipped by the product


@dataclass
class _Seen:
    """An instance mask that passed the visibility gate."""

    mask: np.ndarray  # bool, in the blended window
    area: int
    visibility: float
    local_box: tuple[int, int, int, int]  # its tight box in the window
    box: tuple[int, int, int, int]  # and in the image


@dataclass
class _Placed:
    window: tuple[int, int, int, int]
    new: np.ndarray
    changed: np.ndarray
    annotation: Annotation
    reduced: dict[int, _Remains]


class Synthesizer:
    """Composite synthetic defects onto clean product images.

    :param entries: the generator mix (``Entry`` objects or dicts with the same keys; or
        entries the builder has prepared, :class:`~defectsynth.mix.PreparedEntry`).
    :param instances: how many defects to try per image: an int or an inclusive (lo, hi).
    :param product_mask: default product mask for :meth:`apply`: ``"full"``, ``"auto"``.
    :param margin: minimum distance in px of a defect's centre from the product's edge.
    :param max_overlap: largest fraction of a new instance's mask that may cover earlier ones.
    :param gate: visibility gate (:class:`Gate`).
    :param max_attempts: draws per instance before it is dropped.
    :param within_product: a defect must lie on the product: an attempt whose label would
        reach beyond the product mask (more than :data:`SPILL` of it) is drawn again
        elsewhere instead of being clipped. For masks that leave out parts of one
        continuous surface (marks already there, print, a real defect), where a clipped
        defect would end in the mask's straight edge; a product's real edge clips.
    :param light_elevation: (lo, hi) degrees for the per-image light elevation.
    :param host: plugin host to look generator names up in (default: the process-wide
        one, :func:`defectsynth.plugins.get_host`); anything with a
        ``generator(name) -> class`` method (:class:`~defectsynth.mix.GeneratorSource`).
    :param on_failure: what a generator that raises or returns an invalid layer does to
        :meth:`apply`: ``"raise"`` a :class:`GeneratorFailure` (default), or ``"reject"``
        that instance (the sample gets the others; ``Sample.render_log`` records the
        error and ``stats["generator_failures"]`` counts it). Dataset runs reject, and
        stop when one generator fails too often in a row.
    """

    def __init__(
        self,
        entries: Sequence[Entry | Mapping[str, Any] | PreparedEntry],
        *,
        instances: int | tuple[int, int] | Sequence[int] = (1, 3),
        product_mask: ProductMaskSpec = "full",
        margin: int = 4,
        max_overlap: float = 0.25,
        gate: Gate | None = None,
        max_attempts: int = 6,
        within_product: bool = False,
        light_elevation: tuple[float, float] = (25.0, 65.0),
        # (a GeneratorSource or None: Any until report/preview.py stops passing `object`)
        host: Any = None,
        on_failure: str = "raise",
        scale: float | str | None = None,
    ) -> None:
        if host is None:
            from .plugins import get_host

            host = get_host()
        self.host: GeneratorSource = host
        self._prepared: list[PreparedEntry] = []
        for i, e in enumerate(entries):
            if isinstance(e, PreparedEntry):  # checked by the builder: handed on as it is
                check_weight(i, type(e.generator).name, e.entry.weight)
                self._prepared.append(e)
            else:
                self._prepared.append(prepare_entry(e, host, i))
        if not self._prepared:
            raise ValueError("a Synthesizer needs at least one generator entry")
        weights = np.array([p.entry.weight for p in self._prepared], dtype=np.float64)
        if weights.sum() <= 0:
            raise ValueError("all generator weights are zero; at least one must be > 0")
        self._p = weights / weights.sum()
        self._cum_p = np.cumsum(self._p)
        # where rounding leaves the cumulative sum just below 1
        self._last_weighted = int(np.flatnonzero(self._p > 0)[-1])
        if isinstance(instances, int):
            lo = hi = instances
        else:
            lo, hi = (int(v) for v in instances)
        if lo < 0 or hi < lo:
            raise ValueError(f"instances must be >= 0 with lo <= hi, got {instances!r}")
        self.instances = (lo, hi)
        self.product_mask = product_mask
        self.margin = int(margin)
        if not 0.0 <= max_overlap <= 1.0:
            raise ValueError(f"max_overlap must be in [0, 1], got {max_overlap!r}")
        self.max_overlap = float(max_overlap)
        self.gate = gate or Gate()
        self.max_attempts = max(1, int(max_attempts))
        self.within_product = bool(within_product)
        self.light_elevation = light_elevation
        if on_failure not in ("raise", "reject"):
            raise ValueError(f"on_failure must be 'raise' or 'reject', got {on_failure!r}")
        self.on_failure = on_failure
        if scale is not None and scale != "auto":
            if isinstance(scale, bool) or not isinstance(scale, int | float) or not (
                math.isfinite(scale) and scale > 0
            ):
                raise ValueError(f"scale must be 'auto' or a number > 0, got {scale!r}")
            scale = float(scale)
        #: size-like parameters (``param(..., size=True)``) are multiplied by this, or by
        #: the image's shorter side / the generator's ``reference_size`` for "auto"
        self.scale = scale
        #: source path -> its product mask file, set by Recipe.synthesizer when the
        #: recipe's ``product_mask`` is a file pattern (applied by ``apply(source=...)``)
        self.mask_for_source: Callable[[str], Any] | None = None
        self._warned_no_mask = False

    @classmethod
    def from_recipe(
        cls,
        recipe: str | os.PathLike[str] | Recipe,
        host: PluginHost | None = None,
        *,
        on_failure: str = "raise",
    ) -> Synthesizer:
        """A Synthesizer configured by a recipe file (path) or a loaded ``Recipe``.

        ``on_failure`` as for the constructor (dataset runs use ``"reject"``). Raises
        ``RecipeError`` naming the file and key path of a problem.
        """
        from .build import build_synthesizer, load_recipe
        from .recipe import Recipe

        rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe, host=host)
        return build_synthesizer(rec, host, on_failure=on_failure, synthesizer=cls)

    @property
    def categories(self) -> list[str]:
        """Category names in entry order, without repeats (stable ids for writers)."""
        seen: dict[str, None] = {}
        for p in self._prepared:
            for label in p.labels.values():
                seen.setdefault(label, None)
        return list(seen)

    def __call__(self, image: np.ndarray, **kwargs: Any) -> Sample:
        return self.apply(image, **kwargs)

    # ------------------------------------------------------------------------------------

    # (long on purpose: most of it is the docstring of the public entry point; the body is
    # the per-image setup and the instance loop, whose steps live in _instance and below)
    def apply(
        self,
        image: np.ndarray,
        product_mask: ProductMaskSpec = None,
        *,
        seed: int = 0,
        source_id: int = 0,
        variant: int = 0,
        instances: int | None = None,
        source: str | os.PathLike[str] | None = None,
    ) -> Sample:
        """Synthesize defects onto ``image`` (not modified) and return the labeled Sample.

        :param image: uint8 or uint16; gray (h, w), BGR (h, w, 3) or BGRA (h, w, 4).
        :param product_mask: overrides the synthesizer's default for this image.
        :param seed, source_id, variant: the three parts of the random stream.
        :param instances: force this many defects (0 gives a clean negative sample).
        :param source: the image's file. A synthesizer made from a recipe whose
            ``product_mask`` is a file pattern reads that image's mask file through it;
            without ``source`` (or ``product_mask``) it warns once that no product mask
            was applied, and defects may land on the background.
        """
        _check_image(image)
        if product_mask is None and self.mask_for_source is not None:
            product_mask = self._mask_of_source(image, source)
        maxval = 255 if image.dtype == np.uint8 else 65535
        rng = np.random.default_rng(
            np.random.SeedSequence([int(seed), int(source_id), int(variant)])
        )
        light = Light(float(rng.uniform(0.0, 360.0)), float(rng.uniform(*self.light_elevation)))
        n_wanted = (
            int(rng.integers(self.instances[0], self.instances[1] + 1))
            if instances is None
            else int(instances)
        )
        src = image
        alpha = None
        if image.ndim == 3 and image.shape[2] == 4:
            src = np.ascontiguousarray(image[:, :, :3])
            alpha = image[:, :, 3]
        spec = self.product_mask if product_mask is None else product_mask
        product = _bool_mask(spec, src.shape[:2])
        if product is None:
            product = resolve_product_mask(spec, src)
        if alpha is not None:
            product = product & (alpha > 0)
        scene = _Scene(
            src=src,
            out=src.copy(),
            product=product,
            light=light,
            # measured once per image, and only if some generator reads Region.texture_scale
            tex_scale=functools.cache(functools.partial(_texture_scale, src, product)),
            maxval=maxval,
            threshold=self.gate.threshold(maxval),
            footprint=np.zeros(image.shape[:2], dtype=bool),
            sampler=CentreSampler(product, self.margin) if product.any() else None,
            stats={
                "requested": n_wanted,
                "placed": 0,
                "dropped_visibility": 0,
                "dropped_no_room": 0,
                "dropped_overlap": 0,
                "redraws": 0,
                "generator_failures": 0,
            },
        )
        if n_wanted and scene.sampler is None:
            scene.stats["dropped_no_room"] += n_wanted
            n_wanted = 0
        for tried in range(n_wanted):
            # weighted choice by one uniform draw (rng.choice(p=...) re-checks p each call)
            k = min(int(np.searchsorted(self._cum_p, rng.random(), side="right")),
                    self._last_weighted)
            if not self._instance(self._prepared[k], rng, scene):
                # no pixel of the product is far enough from its edge: nor for the rest
                scene.stats["dropped_no_room"] += n_wanted - tried
                break
        out = scene.out if alpha is None else np.dstack([scene.out, alpha])
        return Sample(
            image=out,
            annotations=scene.annotations,
            seed=int(seed),
            source_id=int(source_id),
            variant=int(variant),
            light=(light.azimuth, light.elevation),
            footprint=scene.footprint,
            stats=scene.stats,
            render_log=scene.render_log,
        )

    def _mask_of_source(
        self, image: np.ndarray, source: str | os.PathLike[str] | None
    ) -> np.ndarray | None:
        """The product mask file of ``source`` by the recipe's pattern; None (and a
        warning, once) without a source."""
        assert self.mask_for_source is not None
        if source is not None:
            from .imagefile import DEFAULT_MAX_PIXELS, read_mask_file

            path = str(self.mask_for_source(os.fspath(source)))
            return read_mask_file(path, image.shape[:2], path, DEFAULT_MAX_PIXELS)
        if not self._warned_no_mask:
            self._warned_no_mask = True
            warnings.warn(
                "this Synthesizer's recipe gives product_mask as a file pattern, which "
                "needs the image's path: call synth(image, source=PATH) (or pass "
                "product_mask=); this image and the next ones get the whole image as "
                "the product",
                UserWarning,
                stacklevel=4,
            )
        return None

    def _instance(self, prep: PreparedEntry, rng: np.random.Generator, scene: _Scene) -> bool:
        """One instance of ``prep``, drawn up to ``max_attempts`` times until it is placed
        (counted in ``scene.stats``). False when the product has no room for any centre."""
        reason = Drop.VISIBILITY
        for attempt in range(self.max_attempts):
            if attempt:
                scene.stats["redraws"] += 1
            inst_seed = int(rng.integers(MAX_INSTANCE_SEED))
            if prep.generator.placement == "edge":
                if scene.edges is None:  # built on first use
                    scene.edges = EdgeSampler(scene.product)
                centre = scene.edges.draw(rng)
                if centre is None:  # the product has no edge inside the image
                    scene.stats["dropped_no_room"] += 1
                    return True
            else:
                assert scene.sampler is not None
                centre = scene.sampler.draw(rng)
                if centre is None:
                    return False
            gen_name = type(prep.generator).name
            try:
                result = self._try_instance(prep, inst_seed, centre, scene)
            except GeneratorFailure as exc:
                if self.on_failure == "raise":
                    raise
                # the instance is rejected, not redrawn: a plugin that failed once
                # would most likely fail again, and the run counts failures in a row
                scene.render_log.append((gen_name, str(exc)))
                scene.stats["generator_failures"] += 1
                return True
            scene.render_log.append((gen_name, None))
            if isinstance(result, Drop):
                reason = result
                continue
            scene.place(result)
            scene.stats["placed"] += 1
            return True
        scene.stats[reason.value] += 1
        return True

    def _try_instance(
        self, prep: PreparedEntry, inst_seed: int, centre: tuple[int, int], scene: _Scene
    ) -> _Placed | Drop:
        """One attempt: render at ``centre``, blend, and keep it if it is visible and
        leaves the earlier instances visible."""
        grng = np.random.default_rng(inst_seed)
        params = self._draw_params(prep, grng, scene.out.shape[:2])
        rendered = self._render(prep, params, grng, centre, scene)
        if isinstance(rendered, Drop):
            return rendered
        if self.within_product and _spills(rendered):
            return Drop.NO_ROOM
        gen = prep.generator
        blended = _blend(type(gen).name, rendered, scene)
        if isinstance(blended, Drop):
            return blended
        seen = self._visibility(blended, scene)
        if isinstance(seen, Drop):
            return seen
        reduced = self._occlusion(blended, seen, scene)
        if isinstance(reduced, Drop):
            return reduced
        lb = seen.local_box
        ann = Annotation(
            category=rendered.label,
            generator=type(gen).name,
            box=seen.box,
            mask_crop=np.ascontiguousarray(seen.mask[lb[1] : lb[3], lb[0] : lb[2]]),
            image_shape=scene.out.shape[:2],
            params=_params_dict(params),
            seed=inst_seed,
            visibility=seen.visibility,
            center=centre,
            generator_version=str(type(gen).version),
        )
        return _Placed(blended.window, blended.new, blended.changed, ann, reduced)

    def _draw_params(
        self, prep: PreparedEntry, grng: np.random.Generator, shape: tuple[int, ...]
    ) -> Any:
        """Concrete params for one instance, scaled when the synthesizer has a ``scale``."""
        params = prep.space.draw(grng)
        if self.scale is not None:
            H0, W0 = shape[:2]
            cls = type(prep.generator)
            factor = (
                min(H0, W0) / float(getattr(cls, "reference_size", 512) or 512)
                if self.scale == "auto"
                else float(self.scale)
            )
            if factor != 1.0:
                params = scale_params(cls, params, factor)
        return params

    def _render(
        self,
        prep: PreparedEntry,
        params: Any,
        grng: np.random.Generator,
        centre: tuple[int, int],
        scene: _Scene,
    ) -> _Rendered | Drop:
        """The generator's plan, extent and layer for a region centred at ``centre``
        (mirrored beyond the image border), checked."""
        gen = prep.generator
        name = type(gen).name
        extent = _extent(gen, params, grng)
        eh, ew = extent.size
        H, W = scene.out.shape[:2]
        if eh > 2 * H + 64 or ew > 2 * W + 64:
            return Drop.NO_ROOM  # this instance is far larger than the image
        cx, cy = centre
        x0, y0 = cx - ew // 2, cy - eh // 2
        x1, y1 = x0 + ew, y0 + eh
        # the part of the region inside the image
        ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
        pads = (iy0 - y0, y1 - iy1, ix0 - x0, x1 - ix1)
        region_px = scene.out[iy0:iy1, ix0:ix1].astype(np.float32) * np.float32(
            1.0 / scene.maxval
        )
        if region_px.ndim == 2:
            region_px = region_px[:, :, None]
        if any(pads):
            region_px = _pad_reflect(region_px, pads)
        prod = np.zeros((eh, ew), dtype=np.float32)
        prod[pads[0] : eh - pads[1], pads[2] : ew - pads[3]] = scene.product[iy0:iy1, ix0:ix1]
        region_px.flags.writeable = False
        prod_ro = prod.copy()
        prod_ro.flags.writeable = False
        region = Region(
            pixels=region_px, product_mask=prod_ro, light=scene.light,
            texture_scale=scene.tex_scale,
        )
        # the arrays are read-only; a plugin that flips the flag back is caught below, and
        # the blend reads the image's own pixels, never region_px, so nothing it wrote
        # reaches the output
        try:
            layer = gen.render(region, params, grng, **extent.planned)
        except GeneratorFailure:
            raise
        except (Exception, SystemExit) as exc:
            if _writes_read_only(exc):
                raise GeneratorFailure(
                    f"generator {name!r}: render() tried to modify its input region "
                    f"({exc}); Region arrays are read-only, draw into a copy"
                ) from exc
            raise GeneratorFailure(f"generator {name!r}: render() failed: {exc!r}") from exc
        if region_px.flags.writeable or prod_ro.flags.writeable:
            raise GeneratorFailure(
                f"generator {name!r}: render() modified its input region (Region.pixels "
                "or product_mask); generators must draw into a copy"
            )
        # (the pixels are checked where blending reads them)
        layer = check_layer(name, layer, region_px.shape, pixels=False)
        label = prep.label(layer.category)
        # a generator may let the recipe choose its blend mode through a "blend" parameter
        blend = getattr(params, "blend", gen.blend)
        if blend not in BLEND_MODES:
            raise GeneratorFailure(f"generator {name!r}: blend {blend!r} is not one of "
                                   f"{', '.join(BLEND_MODES)}")
        return _Rendered(layer, label, blend, region_px, prod, pads, (ix0, iy0, ix1, iy1))

    def _visibility(self, blended: _Blended, scene: _Scene) -> _Seen | Drop:
        """The instance mask (coverage >= 0.5) and its visible change, through the gate."""
        mask_local = blended.coverage >= 0.5
        area = int(mask_local.sum())
        if area < self.gate.min_area:
            return Drop.VISIBILITY
        ix0, iy0, ix1, iy1 = blended.window
        diff = change_map(blended.new, scene.src[iy0:iy1, ix0:ix1])
        vis = cv2.mean(diff, mask_local.view(np.uint8))[0]  # ~4x diff[mask].mean()
        lb = tight_box(mask_local)
        assert lb is not None
        box = (lb[0] + ix0, lb[1] + iy0, lb[2] + ix0, lb[3] + iy0)
        if not self.gate.passes(vis, scene.threshold, scene.src, box, scene.product):
            return Drop.VISIBILITY
        return _Seen(mask_local, area, vis, lb, box)

    def _occlusion(
        self, blended: _Blended, seen: _Seen, scene: _Scene
    ) -> dict[int, _Remains] | Drop:
        """The overlap cap, and what remains of each earlier instance the new one changes
        (re-measured on the candidate output, in its own box): dropped when one would be
        left too small or no longer visible."""
        ix0, iy0, ix1, iy1 = blended.window
        mask_local, new, changed = seen.mask, blended.new, blended.changed
        reduced: dict[int, _Remains] = {}
        covered = 0
        for ki, old in enumerate(scene.annotations):
            ox1, oy1, ox2, oy2 = old.box
            jx1, jy1, jx2, jy2 = max(ox1, ix0), max(oy1, iy0), min(ox2, ix1), min(oy2, iy1)
            if jx1 >= jx2 or jy1 >= jy2:
                continue  # the boxes do not meet
            in_old = (slice(jy1 - oy1, jy2 - oy1), slice(jx1 - ox1, jx2 - ox1))
            in_new = (slice(jy1 - iy0, jy2 - iy0), slice(jx1 - ix0, jx2 - ix0))
            old_part = old.mask_crop[in_old]
            covered += int(np.count_nonzero(old_part & mask_local[in_new]))
            # earlier pixels the new layer changed (even softly) must be re-measured
            if not (old_part & changed[in_new]).any():
                continue
            rem = old.mask_crop.copy()
            rem[in_old] &= ~mask_local[in_new]
            if int(np.count_nonzero(rem)) < self.gate.min_area:
                return Drop.OVERLAP
            # visibility of what remains, measured on the candidate output
            rb = tight_box(rem)
            assert rb is not None
            rem = np.ascontiguousarray(rem[rb[1] : rb[3], rb[0] : rb[2]])
            qx1, qy1, qx2, qy2 = rb[0] + ox1, rb[1] + oy1, rb[2] + ox1, rb[3] + oy1
            cand = scene.out[qy1:qy2, qx1:qx2].copy()
            py1, py2 = max(qy1, iy0), min(qy2, iy1)
            px1, px2 = max(qx1, ix0), min(qx2, ix1)
            if py1 < py2 and px1 < px2:
                cand[py1 - qy1 : py2 - qy1, px1 - qx1 : px2 - qx1] = new[
                    py1 - iy0 : py2 - iy0, px1 - ix0 : px2 - ix0
                ]
            d = change_map(cand, scene.src[qy1:qy2, qx1:qx2])
            v = cv2.mean(d, rem.view(np.uint8))[0]
            if not self.gate.passes(v, scene.threshold, scene.src, (qx1, qy1, qx2, qy2),
                                    scene.product):
                return Drop.OVERLAP
            reduced[ki] = (rem, (qx1, qy1, qx2, qy2), v)
        if covered > self.max_overlap * seen.area:
            return Drop.OVERLAP
        return reduced

    def labels_by_generator(self) -> dict[str, list[str]]:
        """Generator name -> the categories its entries label, in entry order (a dataset
        run names them when that generator keeps failing)."""
        labels: dict[str, list[str]] = {}
        for p in self._prepared:
            names = labels.setdefault(type(p.generator).name, [])
            for label in p.labels.values():
                if label not in names:
                    names.append(label)
        return labels


class _Extent(NamedTuple):
    size: tuple[int, int]  # (h, w)
    planned: dict[str, Any]  # {"plan": ...} for a generator with a plan step, else empty


def _extent(gen: DefectGenerator, params: Any, grng: np.random.Generator) -> _Extent:
    """A generator's plan (when it has a plan step) and the region size it asks for."""
    name = type(gen).name
    # a generator with a plan step draws it first and gets it back in both calls
    planned: dict[str, Any] = {}
    step = "extent"
    try:
        if plans(type(gen)):
            step = "plan"
            planned["plan"] = gen.plan(params, grng)
            step = "extent"
        ext = gen.extent(params, grng, **planned)
        eh, ew = (int(v) for v in ext)
    except GeneratorFailure:
        raise
    except (Exception, SystemExit) as exc:
        raise GeneratorFailure(f"generator {name!r}: {step}() failed: {exc!r}") from exc
    if eh < 1 or ew < 1 or eh > MAX_EXTENT or ew > MAX_EXTENT:
        raise GeneratorFailure(
            f"generator {name!r}: extent() returned {(eh, ew)}, expected 1..{MAX_EXTENT} px"
        )
    return _Extent((eh, ew), planned)


#: share of a defect's label that ``within_product`` lets reach beyond the product mask
SPILL = 0.02


def _spills(rendered: _Rendered) -> bool:
    """Whether more than :data:`SPILL` of the layer's label (coverage >= 0.5) lies
    beyond the product mask or the image."""
    label = rendered.layer.coverage >= 0.5
    n = int(np.count_nonzero(label))
    return n > 0 and int(np.count_nonzero(label & (rendered.prod < 0.5))) > SPILL * n


def _blend(name: str, rendered: _Rendered, scene: _Scene) -> _Blended | Drop:
    """Composite a layer onto the image's own pixels (alpha, or Poisson; compose.py),
    in the box of what it changes, rounded to the image's dtype."""
    layer, prod, pads = rendered.layer, rendered.prod, rendered.pads
    eh, ew = prod.shape
    ix0, iy0, ix1, iy1 = rendered.window
    out = scene.out
    # the part of the region inside the image
    sl = (slice(pads[0], eh - pads[1]), slice(pads[2], ew - pads[3]))
    pb = None
    if rendered.blend != "alpha":
        check_pixels(name, layer.pixels)  # Poisson blending reads beyond the coverage
        cov_r = np.clip(layer.coverage, 0.0, 1.0) * prod
        pb = poisson_blend(rendered.region_px, np.clip(layer.pixels, 0.0, 1.0), cov_r,
                           mixed=rendered.blend == "poisson-mixed")
    if pb is not None:
        blended_r, changed_r = pb
        changed_r &= prod > 0
        box = _nonzero_box(changed_r[sl])
        if box is None:
            return Drop.VISIBILITY
        b = (slice(box[0], box[1]), slice(box[2], box[3]))
        cov = cov_r[sl][b]
        blended = blended_r[sl][b]
        changed = changed_r[sl][b]
    else:
        # everything after the render happens in the box the layer covers (regions are
        # ~4x the defect's box): the pixels outside it stay as they are
        box = _nonzero_box(layer.coverage[sl] > 0)
        if box is None:
            return Drop.VISIBILITY
        b = (slice(box[0], box[1]), slice(box[2], box[3]))
        # (no clip: check_layer allows coverage 1e-6 beyond 0..1, which moves a blended
        # value by under 0.07 of a 16-bit step, and rounding takes that back)
        cov = layer.coverage[sl][b] * prod[sl][b]
        lay_px = layer.pixels[sl][b]
        lo, hi = check_pixels(name, lay_px)  # alpha blending reads only these
        if lo < 0.0 or hi > 1.0:
            lay_px = np.clip(lay_px, 0.0, 1.0)
        base = out[iy0:iy1, ix0:ix1][b].astype(np.float32) * np.float32(1.0 / scene.maxval)
        blended = alpha_blend(base if base.ndim == 3 else base[:, :, None], lay_px, cov)
        changed = cov > 0
    # from here on, image coordinates of that box
    ix0, iy0, ix1, iy1 = ix0 + box[2], iy0 + box[0], ix0 + box[3], iy0 + box[1]
    cur = out[iy0:iy1, ix0:ix1]
    # blended is in 0..1 (both inputs are, and coverage is), so rounding cannot leave
    # the dtype's range
    scaled = blended * np.float32(scene.maxval)
    np.rint(scaled, out=scaled)
    # the unchanged pixels keep their exact values (cv2.copyTo: ~5x np.where's speed)
    new = np.array(cur if cur.ndim == 3 else cur[:, :, None], copy=True)  # never a view
    cv2.copyTo(scaled.astype(out.dtype), np.ascontiguousarray(changed).view(np.uint8), new)
    if out.ndim == 2:
        new = new[:, :, 0]
    return _Blended((ix0, iy0, ix1, iy1), new, changed, cov)


def _bool_mask(spec: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """A copy of a boolean product mask array that fits the image (what
    ``resolve_product_mask`` returns for it, ``mask > 0``, which on a bool array costs
    ~20x a copy: numpy compares it as int64); None for any other spec."""
    if (isinstance(spec, np.ndarray) and spec.dtype == np.bool_ and spec.ndim in (2, 3)
            and spec.shape[:2] == shape):
        return np.array(spec if spec.ndim == 2 else spec[:, :, 0], copy=True, order="K")
    return None


def _nonzero_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of a boolean mask's true pixels, end exclusive; None if none."""
    box = tight_box(mask)
    return None if box is None else (box[1], box[3], box[0], box[2])


def _writes_read_only(exc: BaseException) -> bool:
    """numpy's "assignment destination is read-only" / "output array is read-only", or
    OpenCV's "... marked as readonly"."""
    text = str(exc).lower()
    return isinstance(exc, ValueError | cv2.error) and ("read-only" in text or "readonly" in text)


def _params_dict(params: Any) -> dict[str, Any]:
    return {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}


def _pad_reflect(px: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    """Extend a region beyond the image border by mirroring (the part outside is never
    written back; it only gives generators a plausible surrounding)."""
    top, bottom, left, right = pads
    out = cv2.copyMakeBorder(
        np.ascontiguousarray(px), top, bottom, left, right, cv2.BORDER_REFLECT_101
    )
    if out.ndim == 2:
        out = out[:, :, None]
    return np.ascontiguousarray(out, dtype=np.float32)


def _texture_scale(src: np.ndarray, product: np.ndarray) -> float:
    """Characteristic texture wavelength in px: 2*pi * std(I) / std(grad I) on a
    high-passed grey crop of the product (exact for a sinusoid)."""
    h, w = src.shape[:2]
    step_y, step_x = max(1, h // 64), max(1, w // 64)
    ys, xs = np.nonzero(product[::step_y, ::step_x])
    if ys.size == 0:
        return 8.0
    # the product's median row and column (np.nonzero gives the rows sorted)
    k = ys.size // 2
    cy, cx = int(ys[k]) * step_y, int(np.partition(xs, k)[k]) * step_x
    s = 48  # a 96x96 crop: 9k pixels are plenty for two standard deviations
    y0, x0 = max(0, min(cy - s, h - 2 * s)), max(0, min(cx - s, w - 2 * s))
    crop = src[y0:y0 + 2 * s, x0:x0 + 2 * s]
    if crop.ndim == 3:
        crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    g = crop.astype(np.float32)
    hp = g - cv2.blur(g, (31, 31))
    gx = cv2.Sobel(hp, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(hp, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    # squared norms, not cv2.magnitude: its result depends on the arrays' memory alignment
    # in the last bits, and this figure must be the same in every process
    sg = math.sqrt((cv2.norm(gx, cv2.NORM_L2SQR) + cv2.norm(gy, cv2.NORM_L2SQR)) / gx.size)
    si = float(cv2.meanStdDev(hp)[1][0, 0])
    if sg < 1e-6 or si < 1e-6:
        return 64.0
    return min(max(2 * math.pi * si / sg, 2.0), 256.0)


def _check_image(image: Any) -> None:
    accepted = (
        "accepted: uint8 or uint16 arrays shaped (h, w), (h, w, 3) BGR or "
        f"(h, w, 4) BGRA, at least {MIN_SIDE} px a side"
    )
    if not isinstance(image, np.ndarray):
        raise InputImageError(
            f"image must be a numpy array, got {type(image).__name__}; " + accepted
        )
    if image.dtype not in (np.uint8, np.uint16):
        raise InputImageError(f"image dtype {image.dtype} is not supported; " + accepted)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise InputImageError(f"image shape {image.shape} is not supported; " + accepted)
    if min(image.shape[:2]) < MIN_SIDE:
        raise InputImageError(
            f"image of {image.shape[1]}x{image.shape[0]} px is too small; " + accepted
        )
