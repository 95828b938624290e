"""Transplant: real defects from a labeled folder, placed on clean products."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from defectsynth import DefectGenerator, Layer, ParamError, Region, hookimpl, param
from defectsynth.generator import BLEND_MODES
from defectsynth.textures import bgr_to_lab, lab_to_bgr
from defectsynth.transplant import FORMATS, Library, LibraryEntry, SourceError, load_library

F32 = np.float32
_LUMA = np.array([0.114, 0.587, 0.299], F32)  # BGR, Rec. 601


class TransplantGenerator(DefectGenerator):
    """A real defect, cut from a labeled source folder and placed on the product.

    The source folder holds defect images labeled in COCO, YOLO or Pascal VOC (boxes,
    masks when present) and optionally clean aligned references (``clean/``); each defect
    is extracted once into a cached library (:mod:`defectsynth.transplant`). An instance
    picks one entry (``pick``), scales, rotates and mirrors it, and moves it from its
    source surface onto the product: what darkens the source surface (stains, pits,
    cracks, shadows) keeps its ratio to it, per channel, and multiplies the product's own
    pixels, so their texture and level carry through; what brightens it (glints, dust)
    keeps its share of the headroom to white (see ``_map_level``). It is returned with an
    outward-feathered coverage.
    The host blends it by Poisson (gradients of the defect and a thin ring of its own
    surface, boundary of the product: any leftover level or shading mismatch melts away;
    ``poisson-mixed`` keeps the product's texture wherever it is stronger) or by alpha.
    The label is the defect's mask; its category is the source's (renamed by a recipe's
    ``category`` map).

    A pure function of (region, params, rng) given the library's content: the library is
    keyed by the source's content hash, and everything random is in the drawn params.
    """

    name = "transplant"
    version = "1"
    blend = "poisson"
    path_params = ("source",)

    @dataclass(frozen=True)
    class Params:
        source: str = param(
            "",
            doc="folder of real defects with COCO, YOLO or VOC labels "
            "(empty: the small demo library that ships with defectsynth)",
        )
        format: str = param(
            "auto", choices=FORMATS, doc="label format of the source (ignored for the demo)"
        )
        pick: float = param(
            0.0,
            lo=0.0,
            hi=1.0,
            vary=(0.0, 1.0),
            doc="which defect: its position in the library as a fraction (drawn uniformly)",
        )
        scale: float = param(1.0, lo=0.05, hi=8.0, vary=(0.8, 1.25), doc="size factor")
        rotation: float = param(
            0.0,
            lo=-180.0,
            hi=180.0,
            vary=(-15.0, 15.0),
            doc="degrees counter-clockwise (small by default: shading keeps its light)",
        )
        flip: bool = param(False, doc="mirror left-right before rotating")
        match: float = param(
            1.0,
            lo=0.0,
            hi=1.0,
            doc="how far the source surface level moves to the destination's (1 = all)",
        )
        feather: float = param(
            1.5, lo=0.0, hi=8.0, doc="px of soft edge outside the defect's mask"
        )
        blend: str = param(
            "poisson", choices=BLEND_MODES, doc="compositing: Poisson (normal, mixed) or alpha"
        )

    # -- the contract ------------------------------------------------------------------------

    def categories(self, params: Mapping[str, Any]) -> Sequence[str]:
        sources = _as_list(params.get("source", ""))
        formats = _as_list(params.get("format", "auto"))
        out: dict[str, None] = {}
        for src in sources:
            for fmt in formats:
                for c in _library(str(src), str(fmt)).categories:
                    out.setdefault(c, None)
        return list(out)

    def extent(self, params: Params, rng: np.random.Generator) -> tuple[int, int]:
        entry = _entry(_library(params.source, params.format), params.pick)
        h, w = entry.shape
        s = params.scale
        a = math.radians(params.rotation)
        ca, sa = abs(math.cos(a)), abs(math.sin(a))
        pad = 2 * _margin(params.feather)
        return (
            int(math.ceil(s * (w * sa + h * ca))) + pad,
            int(math.ceil(s * (w * ca + h * sa))) + pad,
        )

    def render(self, region: Region, params: Params, rng: np.random.Generator) -> Layer:
        entry = _entry(_library(params.source, params.format), params.pick)
        h, w = region.shape
        pixels, inside, valid = _place(entry, params, (h, w))
        src_level = np.asarray(entry.level, F32)
        pixels, src_level = _to_channels(pixels, src_level, region.channels)
        if not inside.any():  # scaled below a pixel: nothing to place
            return Layer(region.pixels.copy(), np.zeros((h, w), F32), entry.category)
        # the surface the defect lands on, pixel by pixel (its texture survives under a
        # translucent defect); with match < 1 shifted back towards the source's level
        base = region.pixels
        if params.match < 1.0:
            dst_level = _local_level(region.pixels, inside, region.product_mask)
            shift = F32(1.0 - params.match) * (src_level - dst_level)
            base = np.clip(base + shift, 0.0, 1.0).astype(F32)
        mapped = _map_level(pixels, src_level, base)
        cov = _feathered(inside, params.feather) * valid
        out = np.where(cov[:, :, None] > 0, mapped, region.pixels).astype(F32)
        return Layer(out, cov.astype(F32), entry.category)


# -- the library -----------------------------------------------------------------------------


def _library(source: str, fmt: str) -> Library:
    try:
        return load_library(source, fmt)
    except SourceError as exc:
        raise ParamError(f"transplant.source: {exc}") from None


def _entry(lib: Library, pick: float) -> LibraryEntry:
    n = len(lib.entries)
    return lib.entries[min(int(pick * n), n - 1)]


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _margin(feather: float) -> int:
    """Room around the placed crop: the feather's reach plus what Poisson blending needs
    between the coverage and the region's border."""
    return 4 + int(math.ceil(2.5 * feather))


# -- geometry --------------------------------------------------------------------------------


def _place(
    entry: LibraryEntry, params: TransplantGenerator.Params, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The entry scaled, mirrored and rotated about its centre onto the centre of an
    (h, w) canvas: (pixels, defect mask, where the crop's own pixels are valid)."""
    h, w = shape
    px: np.ndarray = entry.pixels
    mask: np.ndarray = entry.mask.astype(F32)
    if params.flip:
        px, mask = px[:, ::-1], mask[:, ::-1]
    s = params.scale
    if s < 1.0:  # shrink with area averaging first: a warp alone would alias
        eh, ew = entry.shape
        nw, nh = max(1, round(ew * s)), max(1, round(eh * s))
        px = cv2.resize(np.ascontiguousarray(px), (nw, nh), interpolation=cv2.INTER_AREA)
        mask = cv2.resize(np.ascontiguousarray(mask), (nw, nh), interpolation=cv2.INTER_AREA)
        if px.ndim == 2:
            px = px[:, :, None]
        s = 1.0  # the resize did the scaling (up to rounding, absorbed by the warp's centre)
    ch, cw = mask.shape
    c = ((cw - 1) / 2.0, (ch - 1) / 2.0)
    m = cv2.getRotationMatrix2D(c, params.rotation, s)
    m[0, 2] += (w - 1) / 2.0 - c[0]
    m[1, 2] += (h - 1) / 2.0 - c[1]
    flags = cv2.INTER_LINEAR
    out = cv2.warpAffine(
        np.ascontiguousarray(px), m, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE
    )
    if out.ndim == 2:
        out = out[:, :, None]
    warped = cv2.warpAffine(np.ascontiguousarray(mask), m, (w, h), flags=flags)
    ones = np.ones((ch, cw), F32)
    valid = cv2.warpAffine(ones, m, (w, h), flags=flags) > 0.999
    valid = cv2.erode(valid.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(F32)
    inside = (warped >= 0.5) & (valid > 0)
    return np.clip(out, 0.0, 1.0).astype(F32), inside, valid


def _feathered(inside: np.ndarray, feather: float) -> np.ndarray:
    """Coverage 1 on the defect and an outward fade below 0.5 (so the label stays the
    defect's mask): 0.45 next to it, falling as a Gaussian of the distance."""
    cov = inside.astype(F32)
    if feather <= 0:
        return cov
    dist = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_L2, 3)
    fade = F32(0.45) * np.exp(-(((dist - F32(1.0)) / F32(feather)) ** 2))
    fade[fade < 0.02] = 0.0
    return np.where(inside, F32(1.0), fade).astype(F32)


# -- surface level ---------------------------------------------------------------------------


def _to_channels(
    pixels: np.ndarray, level: np.ndarray, channels: int
) -> tuple[np.ndarray, np.ndarray]:
    if pixels.shape[2] == channels:
        return pixels, level
    if channels == 1:  # colour defect onto a grey image: its luma
        return (pixels @ _LUMA)[:, :, None].astype(F32), np.array([level @ _LUMA], F32)
    return (
        np.repeat(pixels, 3, axis=2),
        np.repeat(level, 3).astype(F32),
    )


def _local_level(pixels: np.ndarray, inside: np.ndarray, product: np.ndarray) -> np.ndarray:
    """Median colour of the product in a ring around the placed defect (its destination
    surface), per channel."""
    size = max(int(np.ptp(np.nonzero(inside)[0])), int(np.ptp(np.nonzero(inside)[1]))) + 1
    reach = int(np.clip(0.3 * size, 4, 24))
    m = inside.astype(np.uint8)
    near = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    far = cv2.dilate(
        m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
    )
    ring = (far > 0) & (near == 0) & (product > 0.5)
    if ring.sum() < 8:
        ring = (near == 0) & (product > 0.5)
    if ring.sum() < 8:
        ring = np.ones(inside.shape, bool)
    return np.median(pixels[ring], axis=0).astype(F32)


def _map_level(pixels: np.ndarray, src: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Move a defect from a surface of colour ``src`` onto the surface ``base`` (pixel by
    pixel, the destination under it).

    Where the defect darkens its surface it is taken as a filter: per channel, it keeps
    its ratio to the source surface (the transmittance of oil, rust or a shadow), which
    then multiplies the destination, so the destination's texture shows through and brown
    oil on blue paint turns dark and greyish, as it would. A source surface that is itself
    coloured tints what lies on it in ways that are not the defect's, so its hue changes
    count less the more coloured it is (grey: fully). Where the defect brightens its
    surface it is taken as light, in CIELAB: L* keeps its share of the headroom to white,
    and the chroma change splits into a part along the source surface's own colour (a
    highlight on blue paint is a paler blue), which scales the destination's colour and
    fades as L* nears white, and the defect's own colour (dust, scale, temper colours; on a
    grey source all of the change), added as it is. The two meet smoothly over the first
    10 L* units above the surface's lightness. Gray images use the ratio below the level
    and the headroom above it.
    """
    s = np.clip(np.asarray(src, F32), 0.02, 0.98)
    if pixels.shape[2] == 1:
        filt = np.clip(base * (pixels / s), 0.0, 1.0)
        light = base + (pixels - s) * ((F32(1.0) - base) / (F32(1.0) - s))
        return np.where(pixels < s, filt, np.clip(light, 0.0, 1.0)).astype(F32)
    lab = bgr_to_lab(pixels)
    s_lab = bgr_to_lab(s.reshape(1, 1, 3)).reshape(3)
    b_lab = bgr_to_lab(base)
    norm = float(np.hypot(s_lab[1], s_lab[2]))
    # how much of a hue change counts as the defect's own colour: all of it on a grey
    # source; on a coloured one it is mostly the source's light, so less and less
    keep = F32(np.clip(1.0 - (norm - 1.0) / 8.0, 0.0, 1.0))
    ratio = pixels / s
    grey = ((pixels @ _LUMA) / F32(float(s @ _LUMA)))[:, :, None]
    filt = np.clip(base * (grey + (ratio - grey) * keep), 0.0, 1.0)
    ls = float(np.clip(s_lab[0], 2.0, 98.0))
    lb = np.clip(b_lab[:, :, :1], 1.0, 99.0)
    out = np.empty_like(lab)
    light = lb + (lab[:, :, :1] - F32(ls)) * ((F32(100.0) - lb) / F32(100.0 - ls))
    light = np.clip(light, 0.0, 100.0)
    out[:, :, :1] = light
    fade = np.clip((F32(100.0) - light) / (F32(100.0) - lb), 0.0, 1.0)
    delta = lab[:, :, 1:] - s_lab[1:]
    if norm > 1.0:  # a coloured source surface: split off what only scales its colour
        u = (s_lab[1:] / norm).astype(F32)
        along = delta @ u
        radial = np.maximum(along, F32(-norm))  # more or less of it, at most to grey
        factor = (F32(1.0) + radial / F32(norm))[:, :, None]
        # beyond grey is the defect's own colour; a turn of hue counts as ``keep`` says
        side = delta - along[:, :, None] * u
        own = (along - radial)[:, :, None] * u + side * keep
    else:
        factor = np.ones_like(light)
        own = delta
    out[:, :, 1:] = b_lab[:, :, 1:] * factor * fade + own
    bright = lab_to_bgr(out)
    # light only where the pixel is clearly brighter than its surface (10 L* units: more
    # than a texture's ripple), a filter elsewhere
    w = np.clip((lab[:, :, :1] - F32(ls)) / F32(10.0), 0.0, 1.0)
    return (filt + (bright - filt) * w).astype(F32)


@hookimpl
def register_generators(register: Any) -> None:
    register(TransplantGenerator)
