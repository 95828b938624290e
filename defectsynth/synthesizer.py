"""One clean image in, one labeled Sample out.

Every label is derived from the composite: coverage is clipped by the image border and
the product mask, the instance mask is ``coverage >= 0.5``, and an instance is kept only
when the pixels under its mask changed visibly (see :class:`Gate`). All randomness comes
from ``numpy.random.default_rng(SeedSequence([seed, source_id, variant]))``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from .compose import alpha_blend, change_map, check_layer, check_pixels, poisson_blend
from .errors import GeneratorFailure, InputImageError
from .generator import BLEND_MODES, Light, Region, plans, scale_params
from .mix import Entry, PreparedEntry, check_weight, entry_labels, prepare_entry
from .placement import CentreSampler, EdgeSampler, ProductMaskSpec, resolve_product_mask
from .sample import Annotation, Sample, tight_box
from .visibility import Gate, texture_noise

# Entry, entry_labels (mix.py), Gate and texture_noise (visibility.py) are imported from
# here by older code
__all__ = ["Entry", "Gate", "Synthesizer", "entry_labels", "source_id", "texture_noise"]

MIN_SIDE = 16
MAX_INSTANCE_SEED = 2**63
MAX_EXTENT = 16384


def source_id(relative_path: str | os.PathLike[str]) -> int:
    """Stable id of a source image: sha256 of its POSIX path relative to the input root."""
    text = os.fspath(relative_path).replace(os.sep, "/")
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


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
    :param light_elevation: (lo, hi) degrees for the per-image light elevation.
    :param host: plugin host to look generator names up in (default: the process-wide one).
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
        light_elevation: tuple[float, float] = (25.0, 65.0),
        host: Any = None,
        on_failure: str = "raise",
        scale: float | str | None = None,
    ) -> None:
        if host is None:
            from .plugins import get_host

            host = get_host()
        self.host = host
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
        cls, recipe: Any, host: Any = None, *, on_failure: str = "raise"
    ) -> Synthesizer:
        """A Synthesizer configured by a recipe file (path) or a loaded ``Recipe``.

        ``on_failure`` as for the constructor (dataset runs use ``"reject"``). Raises
        ``RecipeError`` naming the file and key path of a problem.
        """
        from .build import build_synthesizer
        from .recipe import Recipe, load_recipe

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
        h, w = image.shape[:2]
        if product_mask is None and self.mask_for_source is not None:
            if source is not None:
                from .imagefile import DEFAULT_MAX_PIXELS, read_mask_file

                path = str(self.mask_for_source(os.fspath(source)))
                product_mask = read_mask_file(path, (h, w), path, DEFAULT_MAX_PIXELS)
            elif not self._warned_no_mask:
                self._warned_no_mask = True
                warnings.warn(
                    "this Synthesizer's recipe gives product_mask as a file pattern, which "
                    "needs the image's path: call synth(image, source=PATH) (or pass "
                    "product_mask=); this image and the next ones get the whole image as "
                    "the product",
                    UserWarning,
                    stacklevel=3,
                )
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
        product = resolve_product_mask(spec, src)
        if alpha is not None:
            product = product & (alpha > 0)
        out = src.copy()
        footprint = np.zeros((h, w), dtype=bool)
        stats = {
            "requested": n_wanted,
            "placed": 0,
            "dropped_visibility": 0,
            "dropped_no_room": 0,
            "dropped_overlap": 0,
            "redraws": 0,
            "generator_failures": 0,
        }
        annotations: list[Annotation] = []
        sampler = CentreSampler(product, self.margin) if product.any() else None
        edges: EdgeSampler | None = None  # for edge generators, built on first use
        exhausted = False
        if n_wanted and sampler is None:
            stats["dropped_no_room"] += n_wanted
            n_wanted = 0
        # measured once per image, and only if some generator reads Region.texture_scale
        tex_scale = functools.cache(functools.partial(_texture_scale, src, product))
        threshold = self.gate.threshold(maxval)
        render_log: list[tuple[str, str | None]] = []
        for tried in range(n_wanted):
            assert sampler is not None
            # weighted choice by one uniform draw (rng.choice(p=...) re-checks p each call)
            k = min(int(np.searchsorted(self._cum_p, rng.random(), side="right")),
                    self._last_weighted)
            prep = self._prepared[k]
            reason = "dropped_visibility"
            for attempt in range(self.max_attempts):
                if attempt:
                    stats["redraws"] += 1
                inst_seed = int(rng.integers(MAX_INSTANCE_SEED))
                if prep.generator.placement == "edge":
                    if edges is None:
                        edges = EdgeSampler(product)
                    centre = edges.draw(rng)
                    if centre is None:  # the product has no edge inside the image
                        stats["dropped_no_room"] += 1
                        break
                else:
                    centre = sampler.draw(rng)
                if centre is None:  # no pixel of the product is far enough from its edge
                    stats["dropped_no_room"] += n_wanted - tried
                    exhausted = True
                    break
                cx, cy = centre
                gen_name = type(prep.generator).name
                try:
                    result = self._try_instance(
                        prep,
                        inst_seed,
                        (cx, cy),
                        out,
                        src,
                        product,
                        light,
                        tex_scale,
                        maxval,
                        threshold,
                        annotations,
                    )
                except GeneratorFailure as exc:
                    if self.on_failure == "raise":
                        raise
                    # the instance is rejected, not redrawn: a plugin that failed once
                    # would most likely fail again, and the run counts failures in a row
                    render_log.append((gen_name, str(exc)))
                    stats["generator_failures"] += 1
                    break
                render_log.append((gen_name, None))
                if isinstance(result, str):
                    reason = result
                    continue
                new_out_box, new_patch, changed, ann, reduced = result
                bx1, by1, bx2, by2 = new_out_box
                out[by1:by2, bx1:bx2] = new_patch
                footprint[by1:by2, bx1:bx2] |= changed
                for ki, (new_crop, box, new_vis) in reduced.items():
                    # what remains of an earlier instance: its new box, mask and visibility
                    annotations[ki] = dataclasses.replace(
                        annotations[ki], box=box, mask_crop=new_crop, visibility=new_vis
                    )
                annotations.append(ann)
                stats["placed"] += 1
                break
            else:
                stats[reason] += 1
            if exhausted:
                break
        if alpha is not None:
            out = np.dstack([out, alpha])
        return Sample(
            image=out,
            annotations=annotations,
            seed=int(seed),
            source_id=int(source_id),
            variant=int(variant),
            light=(light.azimuth, light.elevation),
            footprint=footprint,
            stats=stats,
            render_log=render_log,
        )

    def _try_instance(
        self,
        prep: PreparedEntry,
        inst_seed: int,
        centre: tuple[int, int],
        out: np.ndarray,
        src: np.ndarray,
        product: np.ndarray,
        light: Light,
        tex_scale: Callable[[], float],
        maxval: int,
        threshold: float,
        annotations: list[Annotation],
    ) -> Any:
        gen = prep.generator
        name = type(gen).name
        grng = np.random.default_rng(inst_seed)
        params = prep.space.draw(grng)
        if self.scale is not None:
            H0, W0 = out.shape[:2]
            cls = type(gen)
            factor = (
                min(H0, W0) / float(getattr(cls, "reference_size", 512) or 512)
                if self.scale == "auto"
                else float(self.scale)
            )
            if factor != 1.0:
                params = scale_params(cls, params, factor)
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
        H, W = out.shape[:2]
        if eh < 1 or ew < 1 or eh > MAX_EXTENT or ew > MAX_EXTENT:
            raise GeneratorFailure(
                f"generator {name!r}: extent() returned {(eh, ew)}, expected 1..{MAX_EXTENT} px"
            )
        if eh > 2 * H + 64 or ew > 2 * W + 64:
            return "dropped_no_room"  # this instance is far larger than the image
        cx, cy = centre
        x0, y0 = cx - ew // 2, cy - eh // 2
        x1, y1 = x0 + ew, y0 + eh
        # the part of the region inside the image
        ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
        cur = out[iy0:iy1, ix0:ix1]
        pads = (iy0 - y0, y1 - iy1, ix0 - x0, x1 - ix1)
        scale = 1.0 / maxval
        region_px = cur.astype(np.float32) * np.float32(scale)
        if region_px.ndim == 2:
            region_px = region_px[:, :, None]
        if any(pads):
            region_px = _pad_reflect(region_px, pads)
        prod = np.zeros((eh, ew), dtype=np.float32)
        prod[pads[0] : eh - pads[1], pads[2] : ew - pads[3]] = product[iy0:iy1, ix0:ix1]
        region_px.flags.writeable = False
        prod_ro = prod.copy()
        prod_ro.flags.writeable = False
        region = Region(
            pixels=region_px, product_mask=prod_ro, light=light, texture_scale=tex_scale
        )
        # the arrays are read-only; a plugin that flips the flag back is caught below, and
        # the blend reads the image's own pixels, never region_px, so nothing it wrote
        # reaches the output
        try:
            layer = gen.render(region, params, grng, **planned)
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
        # (the pixels are checked below, where blending reads them)
        layer = check_layer(name, layer, region_px.shape, pixels=False)
        label = prep.label(layer.category)
        # a generator may let the recipe choose its blend mode through a "blend" parameter
        blend = getattr(params, "blend", gen.blend)
        if blend not in BLEND_MODES:
            raise GeneratorFailure(f"generator {name!r}: blend {blend!r} is not one of "
                                   f"{', '.join(BLEND_MODES)}")
        # the part of the region inside the image
        sl = (slice(pads[0], eh - pads[1]), slice(pads[2], ew - pads[3]))
        pb = None
        if blend != "alpha":
            check_pixels(name, layer.pixels)  # Poisson blending reads beyond the coverage
            cov_r = np.clip(layer.coverage, 0.0, 1.0) * prod
            pb = poisson_blend(region_px, np.clip(layer.pixels, 0.0, 1.0), cov_r,
                               mixed=blend == "poisson-mixed")
        if pb is not None:
            blended_r, changed_r = pb
            changed_r &= prod > 0
            box = _nonzero_box(changed_r[sl])
            if box is None:
                return "dropped_visibility"
            b = (slice(box[0], box[1]), slice(box[2], box[3]))
            cov = cov_r[sl][b]
            blended = blended_r[sl][b]
            changed = changed_r[sl][b]
        else:
            # everything after the render happens in the box the layer covers (regions are
            # ~4x the defect's box): the pixels outside it stay as they are
            box = _nonzero_box(layer.coverage[sl] > 0)
            if box is None:
                return "dropped_visibility"
            b = (slice(box[0], box[1]), slice(box[2], box[3]))
            # (no clip: check_layer allows coverage 1e-6 beyond 0..1, which moves a blended
            # value by under 0.07 of a 16-bit step, and rounding takes that back)
            cov = layer.coverage[sl][b] * prod[sl][b]
            lay_px = layer.pixels[sl][b]
            lo, hi = check_pixels(name, lay_px)  # alpha blending reads only these
            if lo < 0.0 or hi > 1.0:
                lay_px = np.clip(lay_px, 0.0, 1.0)
            base = cur[b].astype(np.float32) * np.float32(scale)
            blended = alpha_blend(base if base.ndim == 3 else base[:, :, None], lay_px, cov)
            changed = cov > 0
        # from here on, image coordinates of that box
        ix0, iy0, ix1, iy1 = ix0 + box[2], iy0 + box[0], ix0 + box[3], iy0 + box[1]
        cur = out[iy0:iy1, ix0:ix1]
        # blended is in 0..1 (both inputs are, and coverage is), so rounding cannot leave
        # the dtype's range
        scaled = blended * np.float32(maxval)
        np.rint(scaled, out=scaled)
        # the unchanged pixels keep their exact values (cv2.copyTo: ~5x np.where's speed)
        new = np.array(cur if cur.ndim == 3 else cur[:, :, None], copy=True)  # never a view
        cv2.copyTo(scaled.astype(out.dtype), np.ascontiguousarray(changed).view(np.uint8), new)
        if out.ndim == 2:
            new = new[:, :, 0]
        mask_local = cov >= 0.5
        area = int(mask_local.sum())
        if area < self.gate.min_area:
            return "dropped_visibility"
        src_patch = src[iy0:iy1, ix0:ix1]
        diff = change_map(new, src_patch)
        vis = cv2.mean(diff, mask_local.view(np.uint8))[0]  # ~4x diff[mask].mean()
        lb = tight_box(mask_local)
        assert lb is not None
        box = (lb[0] + ix0, lb[1] + iy0, lb[2] + ix0, lb[3] + iy0)
        if not self.gate.passes(vis, threshold, src, box):
            return "dropped_visibility"
        # overlap cap and occlusion of earlier instances, in their own boxes
        reduced: dict[int, tuple[np.ndarray, tuple[int, int, int, int], float]] = {}
        covered = 0
        for ki, old in enumerate(annotations):
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
                return "dropped_overlap"
            # visibility of what remains, measured on the candidate output
            rb = tight_box(rem)
            assert rb is not None
            rem = np.ascontiguousarray(rem[rb[1] : rb[3], rb[0] : rb[2]])
            qx1, qy1, qx2, qy2 = rb[0] + ox1, rb[1] + oy1, rb[2] + ox1, rb[3] + oy1
            cand = out[qy1:qy2, qx1:qx2].copy()
            py1, py2 = max(qy1, iy0), min(qy2, iy1)
            px1, px2 = max(qx1, ix0), min(qx2, ix1)
            if py1 < py2 and px1 < px2:
                cand[py1 - qy1 : py2 - qy1, px1 - qx1 : px2 - qx1] = new[
                    py1 - iy0 : py2 - iy0, px1 - ix0 : px2 - ix0
                ]
            d = change_map(cand, src[qy1:qy2, qx1:qx2])
            v = cv2.mean(d, rem.view(np.uint8))[0]
            if not self.gate.passes(v, threshold, src, (qx1, qy1, qx2, qy2)):
                return "dropped_overlap"
            reduced[ki] = (rem, (qx1, qy1, qx2, qy2), v)
        if covered > self.max_overlap * area:
            return "dropped_overlap"
        ann = Annotation(
            category=label,
            generator=name,
            box=box,
            mask_crop=np.ascontiguousarray(mask_local[lb[1] : lb[3], lb[0] : lb[2]]),
            image_shape=(H, W),
            params=_params_dict(params),
            seed=inst_seed,
            visibility=vis,
            center=(cx, cy),
            generator_version=str(type(gen).version),
        )
        return (ix0, iy0, ix1, iy1), new, changed, ann, reduced


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
