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
    source surface onto the product: what darkens the source surface under it (stains,
    pits, cracks, shadows) keeps its ratio to it, per channel, and multiplies the
    product's own pixels, so their texture and level carry through; what brightens it
    (glints, dust) keeps its share of the headroom to white (see ``_map_level``). It is
    returned with an outward-feathered coverage.
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
        pixels, surface, inside, valid = _place(entry, params, (h, w))
        pixels = _to_channels(pixels, region.channels)
        surface = _to_channels(surface, region.channels)
        src_level = _to_channels(np.asarray(entry.level, F32)[None, None, :], region.channels)
        src_level = src_level.reshape(-1)
        if not inside.any():  # scaled below a pixel: nothing to place
            return Layer(region.pixels.copy(), np.zeros((h, w), F32), entry.category)
        # the surface the defect lands on, pixel by pixel (its texture survives under a
        # translucent defect); with match < 1 shifted back towards the source's level
        base = region.pixels
        if params.match < 1.0:
            dst_level = _local_level(region.pixels, inside, region.product_mask)
            shift = F32(1.0 - params.match) * (src_level - dst_level)
            base = np.clip(base + shift, 0.0, 1.0).astype(F32)
        mapped = _map_level(pixels, surface, base)
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
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The entry scaled, mirrored and rotated about its centre onto the centre of an
    (h, w) canvas: (pixels, source surface, defect mask, where the crop is valid)."""
    h, w = shape
    px: np.ndarray = entry.pixels
    surface: np.ndarray = entry.surface
    mask: np.ndarray = entry.mask.astype(F32)
    if params.flip:
        px, surface, mask = px[:, ::-1], surface[:, ::-1], mask[:, ::-1]
    s = params.scale
    if s < 1.0:  # shrink with area averaging first: a warp alone would alias
        eh, ew = entry.shape
        size = (max(1, round(ew * s)), max(1, round(eh * s)))
        px, surface, mask = (
            cv2.resize(np.ascontiguousarray(a), size, interpolation=cv2.INTER_AREA)
            for a in (px, surface, mask)
        )
        s = 1.0  # the resize did the scaling (up to rounding, absorbed by the warp's centre)
    ch, cw = mask.shape[:2]
    c = ((cw - 1) / 2.0, (ch - 1) / 2.0)
    m = cv2.getRotationMatrix2D(c, params.rotation, s)
    m[0, 2] += (w - 1) / 2.0 - c[0]
    m[1, 2] += (h - 1) / 2.0 - c[1]

    def warp(a: np.ndarray, border: int) -> np.ndarray:
        return cv2.warpAffine(
            np.ascontiguousarray(a), m, (w, h), flags=cv2.INTER_LINEAR, borderMode=border
        )

    px_w = np.clip(_image(warp(px, cv2.BORDER_REPLICATE)), 0.0, 1.0).astype(F32)
    surf_w = np.clip(_image(warp(surface, cv2.BORDER_REPLICATE)), 0.0, 1.0).astype(F32)
    warped = warp(mask, cv2.BORDER_CONSTANT)
    valid = warp(np.ones((ch, cw), F32), cv2.BORDER_CONSTANT) > 0.999
    valid_f = cv2.erode(valid.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(F32)
    inside = (warped >= 0.5) & (valid_f > 0)
    return px_w, surf_w, inside, valid_f


def _image(a: np.ndarray) -> np.ndarray:
    """(h, w) -> (h, w, 1): OpenCV drops a single channel."""
    return a[:, :, None] if a.ndim == 2 else a


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


def _to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """(h, w, c) in the destination's channel count: a colour defect on a grey image is its
    luma, a grey one on a colour image is grey in every channel."""
    if pixels.shape[2] == channels:
        return pixels
    if channels == 1:
        return (pixels @ _LUMA)[:, :, None].astype(F32)
    return np.repeat(pixels, 3, axis=2)


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


def _map_level(pixels: np.ndarray, surface: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Move a defect from its source ``surface`` (what was under it, per pixel) onto
    ``base`` (what will be under it, per pixel).

    Where the defect darkens its surface it is taken as a filter: per channel, it keeps
    its ratio to the source surface (the transmittance of oil, rust or a shadow), which
    then multiplies the destination, so the destination's texture shows through and brown
    oil on blue paint turns dark and greyish, as it would. A source surface that is itself
    coloured tints what lies on it in ways that are not the defect's, so its hue changes
    count less the more coloured it is (grey: fully). Where the defect brightens its
    surface it is taken as light, in CIELAB: L* keeps its share of the headroom to white,
    and the chroma change splits into a part along the source surface's own colour (a
    highlight on blue paint is a paler or deeper blue: up to twice or down to none of it),
    which scales the destination's colour and fades as L* nears white, and the defect's
    own colour (dust, scale, temper colours; on a grey source all of the change), added as
    it is. The two meet smoothly over the first 10 L* units above the surface's
    lightness. Gray images use the ratio below the surface and the headroom above it.
    """
    s = np.clip(surface, 0.02, 0.98).astype(F32)
    if pixels.shape[2] == 1:
        filt = np.clip(base * (pixels / s), 0.0, 1.0)
        light = base + (pixels - s) * ((F32(1.0) - base) / (F32(1.0) - s))
        return np.where(pixels < s, filt, np.clip(light, 0.0, 1.0)).astype(F32)
    lab = bgr_to_lab(pixels)
    s_lab = bgr_to_lab(s)
    b_lab = bgr_to_lab(base)
    s_ab = s_lab[:, :, 1:]
    norm = np.sqrt((s_ab * s_ab).sum(axis=2, keepdims=True))
    # how much the source surface's colour counts: none on grey, fully from chroma 9 on
    rel = np.clip((norm - F32(1.0)) / F32(8.0), 0.0, 1.0)
    keep = F32(1.0) - rel  # how much of a turn of hue is the defect's own colour
    grey = ((pixels @ _LUMA) / (s @ _LUMA))[:, :, None]
    filt = np.clip(base * (grey + (pixels / s - grey) * keep), 0.0, 1.0)
    ls = np.clip(s_lab[:, :, :1], 2.0, 98.0)
    lb = np.clip(b_lab[:, :, :1], 1.0, 99.0)
    light = np.clip(lb + (lab[:, :, :1] - ls) * ((F32(100.0) - lb) / (F32(100.0) - ls)), 0, 100)
    fade = np.clip((F32(100.0) - light) / (F32(100.0) - lb), 0.0, 1.0)
    delta = lab[:, :, 1:] - s_ab
    safe = np.maximum(norm, F32(1.0))
    u = s_ab / safe
    along = (delta * u).sum(axis=2, keepdims=True)
    radial = np.clip(along, -norm, norm)  # relative: from none to twice the source colour
    factor = F32(1.0) + rel * radial / safe
    own = delta - rel * (radial * u + (delta - along * u) * (F32(1.0) - keep))
    out = np.concatenate([light, b_lab[:, :, 1:] * factor * fade + own], axis=2)
    bright = lab_to_bgr(out)
    # light only where the pixel is clearly brighter than its surface (10 L* units: more
    # than a texture's ripple), a filter elsewhere
    w = np.clip((lab[:, :, :1] - ls) / F32(10.0), 0.0, 1.0)
    return (filt + (bright - filt) * w).astype(F32)


@hookimpl
def register_generators(register: Any) -> None:
    register(TransplantGenerator)
