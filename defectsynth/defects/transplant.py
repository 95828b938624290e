"""Transplant: real defects from a labeled folder, placed on clean products."""

from __future__ import annotations

import math
import weakref
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from defectsynth.api import (
    BLEND_MODES,
    DefectGenerator,
    Layer,
    ParamError,
    Region,
    hookimpl,
    param,
)
from defectsynth.textures import bgr_to_lab, lab_to_bgr
from defectsynth.transplant import FORMATS, Library, LibraryEntry, SourceError, load_library

F32 = np.float32
SEVERITY_FLOOR = 0.05  # mean largest-channel change a fainter ``severity`` keeps (2.5x the gate's)
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

    Each instance also varies the defect itself (neutral values give the plain transplant):
    a stretch along and across the main axis of its mask, a smooth elastic bend (``warp``),
    its contrast (``severity``) and how far its colour moves to the product's
    (``recolor``).

    A pure function of (region, params, rng) given the library's content: the library is
    keyed by the source's content hash, and everything random is in the drawn params and
    the rng (the warp's displacement field).
    """

    name = "transplant"
    version = "1"
    blend = "poisson"
    path_params = ("source",)

    @dataclass(frozen=True)
    class Params:
        source: str = param(
            "",
            doc="folder of real defects: COCO, YOLO or VOC labels, or images with masks "
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
        warp: float = param(
            0.0,
            lo=0.0,
            hi=0.3,
            vary=(0.0, 0.08),
            doc="smooth elastic bend: largest displacement as a fraction of the defect's size",
        )
        stretch_along: float = param(
            1.0,
            lo=0.25,
            hi=4.0,
            vary=(0.8, 1.25),
            doc="length factor along the defect's main axis (principal axis of its mask)",
        )
        stretch_across: float = param(
            1.0, lo=0.25, hi=4.0, vary=(0.8, 1.25), doc="width factor across its main axis"
        )
        severity: float = param(
            1.0,
            lo=0.25,
            hi=3.0,
            vary=(0.6, 1.5),
            doc="contrast against the surface, as a factor (a fainter defect keeps a mean "
            f"change of {SEVERITY_FLOOR:g}, or all of its own if it has less)",
        )
        recolor: float = param(
            0.0,
            lo=0.0,
            hi=1.0,
            vary=(0.0, 0.5),
            doc="how far the defect's colour moves to the product's own a*, b* "
            "(0: its own colour shift, 1: the product's hue at the defect's lightness)",
        )
        match: float = param(
            1.0,
            lo=0.0,
            hi=1.0,
            doc="how far the source surface level moves to the destination's (1 = all)",
        )
        feather: float = param(
            1.5, lo=0.0, hi=8.0, doc="px of soft edge outside the defect's mask"
        )
        denoise: float = param(
            1.0, lo=0.0, hi=4.0,
            doc="px over which the source photo's own noise is smoothed out of the defect "
            "(detail well above that noise is kept; 0: none)",
        )
        cut_fade: float = param(
            0.3, lo=0.0, hi=1.0,
            doc="where the label's box (or the photo's frame) cut the defect off, it fades "
            "out over this share of the box's depth instead of ending in a straight line "
            "(0: kept as cut)",
        )
        context: float = param(
            0.7, lo=0.0, hi=1.0,
            doc="where the defect was cut from a surface with a layout (a board's traces, a "
            "part's edge), it slides up to 40 px (or half its size) to the nearest place "
            "where the product's surface correlates with that layout this well, and is "
            "redrawn elsewhere when there is none (0: placed anywhere, as drawn)",
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
        seek = _seek(entry, params)
        pad = 2 * _margin(params.feather)
        if not _reshaped(params):
            a = math.radians(params.rotation)
            ca, sa = abs(math.cos(a)), abs(math.sin(a))
            eh = int(math.ceil(s * (w * sa + h * ca))) + pad
            ew = int(math.ceil(s * (w * ca + h * sa))) + pad
        else:
            # the crop's corners under scale, rotation and stretch, then the warp's reach
            # on every side (+1: the shrink's rounding)
            lin = s * _rotation(params.rotation) @ _stretch(entry, params)
            reach = 2 * int(math.ceil(_warp_amplitude(entry, params))) + 1
            eh = int(math.ceil(abs(lin[1, 0]) * w + abs(lin[1, 1]) * h)) + pad + reach
            ew = int(math.ceil(abs(lin[0, 0]) * w + abs(lin[0, 1]) * h)) + pad + reach
        if seek:
            # any quarter turn may be placed (a turn swaps the two sides), anywhere within
            # ``seek`` px of the centre
            side = max(eh, ew) + 2 * seek
            return side, side
        return eh, ew

    def render(self, region: Region, params: Params, rng: np.random.Generator) -> Layer:
        entry = _entry(_library(params.source, params.format), params.pick)
        h, w = region.shape
        seek = _seek(entry, params)
        if not seek or min(h, w) <= 2 * seek:  # (a region smaller than its extent asks)
            return _compose(entry, region, params, _place(entry, params, (h, w), rng))
        # a defect cut from a surface with a layout goes where the product's surface has
        # that layout: the placed crop slides over the region (``seek`` px each way) to
        # the nearest place where its source surface correlates with the product's
        # (a layout has no up: boards are routed, parts are shot, in every quarter turn;
        # each is tried, with the same warp)
        ih, iw = h - 2 * seek, w - 2 * seek
        host = _luma(region.pixels)
        product = np.ascontiguousarray(region.product_mask, F32)
        state = rng.bit_generator.state
        found: tuple[tuple[int, float], tuple[int, int], Any] | None = None
        for quarter in range(4):
            rng.bit_generator.state = state
            turned = replace(params, rotation=params.rotation + 90.0 * quarter)
            placed = _place(entry, turned, (ih, iw), rng)
            fit = _fit_map(host, placed[1], placed[3])
            if fit is None:
                continue
            # only where the defect lies on the product (not beyond the image's border,
            # where the region is mirrored, nor off a product mask)
            inside = placed[2].astype(F32)
            on = cv2.matchTemplate(product, inside, cv2.TM_CCORR)
            fit[on < ON_PRODUCT * float(inside.sum())] = -1.0
            at = _nearest_fit(fit, params.context)
            if at is not None:
                # the quarter turn that fits nearest the drawn centre, then best
                rank = ((at[0] - seek) ** 2 + (at[1] - seek) ** 2, -float(fit[at]))
                if found is None or rank < found[0]:
                    found = (rank, at, placed)
        if found is None:
            # nowhere near here: no defect (the synthesizer draws elsewhere)
            return Layer(region.pixels.copy(), np.zeros((h, w), F32), entry.category)
        _, (y, x), placed = found
        sub = Region(
            region.pixels[y : y + ih, x : x + iw],
            region.product_mask[y : y + ih, x : x + iw],
            region.light,
            lambda: region.texture_scale,
        )
        layer = _compose(entry, sub, params, placed, scan=region.pixels)
        out = region.pixels.copy()
        out[y : y + ih, x : x + iw] = layer.pixels
        cov = np.zeros((h, w), F32)
        cov[y : y + ih, x : x + iw] = layer.coverage
        return Layer(out, cov, layer.category)


def _compose(
    entry: LibraryEntry,
    region: Region,
    params: TransplantGenerator.Params,
    placed: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None],
    scan: np.ndarray | None = None,
) -> Layer:
    """The placed entry moved onto the region's surface: the transplant's layer. Whether
    the image is a binarised scan is told from ``scan`` (default: the region's pixels)."""
    h, w = region.shape
    pixels, surface, inside, valid, taper = placed
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
    if params.denoise > 0:
        pixels = _denoised(pixels, surface, ~inside & (valid > 0), params.denoise)
    mapped = _map_level(pixels, surface, base)
    if params.severity != 1.0:
        mapped = _severe(mapped, base, inside, params.severity)
    if params.recolor > 0.0 and region.channels == 3:
        mapped = _recolored(mapped, base, params.recolor)
    faded = None
    if taper is not None:
        # the change fades out towards where the label's box cut the defect off; the
        # label keeps what has half its change or more, the rest is blended unlabeled
        t = np.clip(taper, 0.0, 1.0)
        mapped = (base + t[:, :, None] * (mapped - base)).astype(F32)
        faded = inside & (t < 0.5)
        inside = inside & (t >= 0.5)
        if not inside.any():
            return Layer(region.pixels.copy(), np.zeros((h, w), F32), entry.category)
    tones = _two_tones(region.pixels if scan is None else scan)
    if tones is not None:
        # a binarised scan (a PCB inspection image, a thresholded backlit part): what
        # the camera's threshold makes of the defect is one of the scan's two tones,
        # never the gray of a resampled, blended cut-out; the label is what flipped
        mapped = _snapped(mapped, tones)
        inside &= np.abs(mapped - region.pixels).max(axis=2) > 0.5 * tones[2]
        if not inside.any():
            return Layer(region.pixels.copy(), np.zeros((h, w), F32), entry.category)
        faded = None  # a faded part flips or stays: no half tones
    cov = _feathered(inside, 0.0 if tones is not None else params.feather)
    if faded is not None:
        cov = np.maximum(cov, np.where(faded, F32(0.45) * np.clip(2 * t, 0, 1), 0))
    cov = cov * valid
    out = np.where(cov[:, :, None] > 0, mapped, region.pixels).astype(F32)
    return Layer(out, cov.astype(F32), entry.category)


# -- the library -----------------------------------------------------------------------------


def _library(source: str, fmt: str) -> Library:
    try:
        return load_library(source, fmt)
    except SourceError as exc:
        raise ParamError(f"transplant.source: {exc}", field="source") from None


def _entry(lib: Library, pick: float) -> LibraryEntry:
    n = len(lib.entries)
    return lib.entries[min(int(pick * n), n - 1)]


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _margin(feather: float) -> int:
    """Room around the placed crop: the feather's reach plus what Poisson blending needs
    between the coverage and the region's border."""
    return 4 + int(math.ceil(2.5 * feather))


# -- where it may go ---------------------------------------------------------------------------

LAYOUT_SPREAD = 0.25  # luma spread of a source surface that has a layout (traces, edges)
SEEK_MAX = 64  # px the placed crop may slide each way to find its layout
SEEK_MIN = 40  # px: a trace or an edge nearby is found from a random centre
ON_PRODUCT = 0.98  # share of a layout defect's mask that must land on the product
_LAYOUTS: weakref.WeakKeyDictionary[LibraryEntry, bool] = weakref.WeakKeyDictionary()


def _luma(pixels: np.ndarray) -> np.ndarray:
    lum = pixels[:, :, 0] if pixels.shape[2] == 1 else pixels @ _LUMA
    return cv2.GaussianBlur(np.ascontiguousarray(lum, F32), (0, 0), 1.0)


def _has_layout(entry: LibraryEntry) -> bool:
    """Whether the surface around the entry has a layout, not only a texture: its luma
    spreads as widely as a board's copper and substrate do (a steel or painted surface's
    texture, shading and grain spread less than 0.2; a PCB scan's trace edges, 0.3-0.5)."""
    known = _LAYOUTS.get(entry)
    if known is None:
        # the crop's own surface, 2 px or more from the defect
        ring = cv2.dilate(entry.mask.astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
        values = _luma(entry.pixels)[ring]
        known = bool(values.size >= 16 and float(values.std()) >= LAYOUT_SPREAD)
        _LAYOUTS[entry] = known
    return known


def _seek(entry: LibraryEntry, params: TransplantGenerator.Params) -> int:
    """How far (px, each way) the placed crop may slide to find its layout: half its
    placed size, at least 40 and at most 64; 0 when it needs none (no layout, or
    ``context`` 0)."""
    if params.context <= 0.0 or not _has_layout(entry):
        return 0
    grow = max(params.stretch_along, params.stretch_across, 1.0)
    return int(min(SEEK_MAX, max(SEEK_MIN, round(0.5 * params.scale * grow * max(entry.shape)))))


def _fit_map(host: np.ndarray, surface: np.ndarray, valid: np.ndarray) -> np.ndarray | None:
    """The normalised, mean-removed correlation of the placed crop's source surface with
    the product's (``host``: its :func:`_luma`), at each top-left corner the crop may
    slide to; None when the crop is too small to tell."""
    weight = valid > 0
    if int(weight.sum()) < 16:
        return None
    fit = cv2.matchTemplate(host, _luma(surface), cv2.TM_CCOEFF_NORMED, mask=weight.astype(F32))
    return np.nan_to_num(fit, nan=-1.0, posinf=-1.0, neginf=-1.0)  # flat windows: -1


def _nearest_fit(fit: np.ndarray, least: float) -> tuple[int, int] | None:
    """The fit nearest the drawn centre (the map's centre) that reaches ``least``, moved
    to the best fit within 3 px of it: where the product has the layout nearest to where
    the defect was drawn, not where it has it best (a pad's long straight edges fit many
    crops well and would draw every defect to them). None when no fit reaches ``least``."""
    ys, xs = np.nonzero(fit >= least)
    if ys.size == 0:
        return None
    cy, cx = (fit.shape[0] - 1) // 2, (fit.shape[1] - 1) // 2
    k = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    y0, y1 = max(int(ys[k]) - 3, 0), int(ys[k]) + 4
    x0, x1 = max(int(xs[k]) - 3, 0), int(xs[k]) + 4
    near = fit[y0:y1, x0:x1]
    dy, dx = divmod(int(np.argmax(near)), near.shape[1])
    return y0 + dy, x0 + dx


# -- geometry --------------------------------------------------------------------------------


def _reshaped(params: TransplantGenerator.Params) -> bool:
    """Whether the defect's shape varies beyond scale, rotation and mirroring."""
    return params.warp > 0.0 or params.stretch_along != 1.0 or params.stretch_across != 1.0


def _rotation(degrees: float) -> np.ndarray:
    """The 2x2 linear part of ``cv2.getRotationMatrix2D`` (counter-clockwise on screen)."""
    a = math.radians(degrees)
    return np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])


def _main_axis(entry: LibraryEntry, flip: bool) -> np.ndarray:
    """Unit vector (x, y) along the principal axis of the entry's mask (mirrored with it)."""
    m = cv2.moments(entry.mask.astype(np.uint8), binaryImage=True)
    theta = 0.5 * math.atan2(2.0 * m["mu11"], m["mu20"] - m["mu02"]) if m["m00"] else 0.0
    v = np.array([math.cos(theta), math.sin(theta)])
    return v * [-1.0, 1.0] if flip else v


def _stretch(entry: LibraryEntry, params: TransplantGenerator.Params) -> np.ndarray:
    """2x2: ``stretch_along`` on the main axis, ``stretch_across`` perpendicular to it."""
    u = _main_axis(entry, params.flip)
    v = np.array([-u[1], u[0]])
    return (
        params.stretch_along * np.outer(u, u) + params.stretch_across * np.outer(v, v)
    )


def _warp_amplitude(entry: LibraryEntry, params: TransplantGenerator.Params) -> float:
    """Largest displacement of the elastic warp, px: ``warp`` times the placed defect's
    size (the longer side of its mask's box, scaled and stretched)."""
    if params.warp <= 0.0:
        return 0.0
    ys, xs = np.nonzero(entry.mask)
    side = float(max(np.ptp(ys), np.ptp(xs)) + 1) if len(xs) else 1.0
    grow = max(params.stretch_along, params.stretch_across, 1.0)
    return params.warp * params.scale * grow * side


def _displacement(
    shape: tuple[int, int], amplitude: float, size: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth, divergence-free displacement field on an (h, w) canvas, about its centre:
    three shear waves of 0.25..0.75 cycles per ``size`` px in random directions, each
    moving pixels across its own direction (so it bends and ripples a defect without
    growing or shrinking it), weighted to add up to at most ``amplitude`` px."""
    h, w = shape
    draws = rng.random((3, 4))
    weights = 0.5 + 0.5 * draws[:, 3]
    weights = amplitude * weights / weights.sum()
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    xx -= (w - 1) / 2.0
    yy -= (h - 1) / 2.0
    dx = np.zeros((h, w))
    dy = np.zeros((h, w))
    for (angle, freq, phase, _), weight in zip(draws, weights):
        a = 2.0 * math.pi * angle
        k = 2.0 * math.pi * (0.25 + 0.5 * freq) / max(size, 1.0)
        wave = weight * np.sin(k * (math.cos(a) * xx + math.sin(a) * yy) + 2 * math.pi * phase)
        dx -= wave * math.sin(a)
        dy += wave * math.cos(a)
    return dx, dy


def _place(
    entry: LibraryEntry,
    params: TransplantGenerator.Params,
    shape: tuple[int, int],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """The entry scaled, mirrored, stretched, rotated and warped about its centre onto the
    centre of an (h, w) canvas: (pixels, source surface, defect mask, where the crop is
    valid, the fade towards the sides where the defect was cut off, or None)."""
    h, w = shape
    px: np.ndarray = entry.pixels
    surface: np.ndarray = entry.surface
    mask: np.ndarray = entry.mask.astype(F32)
    taper = _cut_taper(entry, params.cut_fade)
    if params.flip:
        px, surface, mask = px[:, ::-1], surface[:, ::-1], mask[:, ::-1]
        taper = None if taper is None else taper[:, ::-1]
    s = params.scale
    if s < 1.0:  # shrink with area averaging first: a warp alone would alias
        eh, ew = entry.shape
        size = (max(1, round(ew * s)), max(1, round(eh * s)))
        px, surface, mask = (
            cv2.resize(np.ascontiguousarray(a), size, interpolation=cv2.INTER_AREA)
            for a in (px, surface, mask)
        )
        if taper is not None:
            taper = cv2.resize(np.ascontiguousarray(taper), size, interpolation=cv2.INTER_AREA)
        s = 1.0  # the resize did the scaling (up to rounding, absorbed by the warp's centre)
    ch, cw = mask.shape[:2]
    c = ((cw - 1) / 2.0, (ch - 1) / 2.0)
    m = cv2.getRotationMatrix2D(c, params.rotation, s)
    if params.stretch_along != 1.0 or params.stretch_across != 1.0:
        # stretch about the crop's centre first: m @ (c + S (p - c))
        st = _stretch(entry, params)
        centre = np.asarray(c)
        m = np.hstack([m[:, :2] @ st, (m[:, :2] @ (centre - st @ centre) + m[:, 2])[:, None]])
    m[0, 2] += (w - 1) / 2.0 - c[0]
    m[1, 2] += (h - 1) / 2.0 - c[1]

    if params.warp > 0.0:
        amplitude = _warp_amplitude(entry, params)
        dx, dy = _displacement((h, w), amplitude, amplitude / params.warp, rng)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        inv = cv2.invertAffineTransform(m)
        qx, qy = xx + dx, yy + dy  # each output pixel shows the placed defect from here
        map_x = (inv[0, 0] * qx + inv[0, 1] * qy + inv[0, 2]).astype(F32)
        map_y = (inv[1, 0] * qx + inv[1, 1] * qy + inv[1, 2]).astype(F32)

        def warp(a: np.ndarray, border: int) -> np.ndarray:
            return cv2.remap(
                np.ascontiguousarray(a), map_x, map_y, cv2.INTER_LINEAR, borderMode=border
            )
    else:

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
    taper_w = None if taper is None else warp(taper, cv2.BORDER_REPLICATE)
    return px_w, surf_w, inside, valid_f, taper_w


# -- binarised scans -------------------------------------------------------------------------

TWO_TONE_SHARE = 0.97  # share of a region's pixels near one of its two tones: a binary scan
TWO_TONE_NEAR = 0.1  # how near, as a fraction of the full scale
TWO_TONE_GAP = 0.5  # the two tones at least this far apart


def _two_tones(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(dark colour, light colour, their luma gap) when ``pixels`` (h, w, c) are a
    two-tone image (a thresholded scan: nearly every pixel near its 2nd or 98th luma
    percentile, the two far apart), else None."""
    luma = pixels[:, :, 0] if pixels.shape[2] == 1 else pixels @ _LUMA
    lo, hi = (float(v) for v in np.percentile(luma, (2, 98)))
    if hi - lo < TWO_TONE_GAP:
        return None
    dark = np.abs(luma - lo) <= TWO_TONE_NEAR
    light = np.abs(luma - hi) <= TWO_TONE_NEAR
    if not dark.any() or not light.any():
        return None
    if np.count_nonzero(dark | light) < TWO_TONE_SHARE * luma.size:
        return None
    return pixels[dark].mean(axis=0).astype(F32), pixels[light].mean(axis=0).astype(F32), hi - lo


def _snapped(mapped: np.ndarray, tones: tuple[np.ndarray, np.ndarray, float]) -> np.ndarray:
    """Each pixel of ``mapped`` as the nearer (by luma) of the two tones."""
    dark, light, _ = tones
    luma = mapped[:, :, 0] if mapped.shape[2] == 1 else mapped @ _LUMA
    mid = (float(dark.mean() if dark.size == 1 else dark @ _LUMA)
           + float(light.mean() if light.size == 1 else light @ _LUMA)) / 2
    return np.where((luma < mid)[:, :, None], dark, light).astype(F32)


# -- where a label's box cut the defect off --------------------------------------------------

CUT_OUTSIDE = 0.5  # cut: just outside the box, the defect departs from the surface this much
_TAPERS: weakref.WeakKeyDictionary[LibraryEntry, dict[float, np.ndarray | None]] = (
    weakref.WeakKeyDictionary()
)


def _cut_sides(entry: LibraryEntry) -> list[str]:
    """The sides of the label's box (``left``, ``top``, ``right``, ``bottom``) across which
    the defect went on: its mask runs along the side in one piece (a third of the side or
    more: a straight edge, where a few scattered flakes or pits touching it are none) and
    either the photo ends there (the frame cut it) or, just outside the box, the photo
    departs from the surface level at least half as much as just inside it, both beyond
    what the surface's own texture reaches around the box (the person who drew the box
    cut it). A defect that ends inside its box has none."""
    mask = entry.mask
    ch, cw = mask.shape
    ox, oy = entry.origin
    x1, y1, x2, y2 = entry.box
    bx1, by1 = max(0, x1 - ox), max(0, y1 - oy)
    bx2, by2 = min(cw, x2 - ox), min(ch, y2 - oy)
    if bx2 - bx1 < 2 or by2 - by1 < 2:
        return []
    level = np.asarray(entry.level, F32)
    dev = np.abs(entry.pixels.astype(F32) - level).max(axis=2)
    # what the surface's own texture and shading reach: the crop outside the box
    around = np.ones((ch, cw), bool)
    around[by1:by2, bx1:bx2] = False
    base = float(np.median(dev[around])) if np.count_nonzero(around) >= 16 else 0.0
    out = []
    strip = 3
    for side in ("left", "top", "right", "bottom"):
        if side in ("left", "right"):
            col = bx1 if side == "left" else bx2 - 1
            along = mask[by1:by2, col]
            span = by2 - by1
        else:
            row = by1 if side == "top" else by2 - 1
            along = mask[row, bx1:bx2]
            span = bx2 - bx1
        if _longest_run(along) < max(3, span / 3):
            continue
        # strips of `strip` px just inside and just outside the side, one row per pixel
        # along it (the rows where the mask touches the side are compared)
        if side == "left":
            ins, outs = dev[by1:by2, bx1 : bx1 + strip], dev[by1:by2, max(0, bx1 - strip) : bx1]
        elif side == "right":
            ins, outs = dev[by1:by2, bx2 - strip : bx2], dev[by1:by2, bx2 : bx2 + strip]
        elif side == "top":
            ins, outs = dev[by1 : by1 + strip, bx1:bx2].T, dev[max(0, by1 - strip) : by1, bx1:bx2].T
        else:
            ins, outs = dev[by2 - strip : by2, bx1:bx2].T, dev[by2 : by2 + strip, bx1:bx2].T
        if outs.shape[1] == 0:  # the box ends where the photo does
            out.append(side)
            continue
        inside_dev = float(ins[along].mean()) - base
        if inside_dev > 0 and float(outs[along].mean()) - base >= CUT_OUTSIDE * inside_dev:
            out.append(side)
    return out


def _longest_run(flags: np.ndarray) -> int:
    """The longest run of consecutive True values."""
    padded = np.concatenate([[0], flags.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[0::2]).max()) if len(edges) else 0


def _cut_taper(entry: LibraryEntry, fade: float) -> np.ndarray | None:
    """How much of the defect's change to keep, per pixel of the entry's crop (float32,
    1 away from any cut side), or None when nothing was cut off.

    A defect that went on beyond its box (or the photo's frame) would otherwise end in a
    straight line where the box cut it, a line no real defect has. From each cut side the
    change fades in over ``fade`` of the box's depth (3..40 px; a smoothstep, its
    reach varying by up to a third along the side so that the fade's edge is not a
    straight line either). A function of the entry alone (its box and image name seed
    the variation), computed once per entry."""
    if fade <= 0.0:
        return None
    known = _TAPERS.setdefault(entry, {})
    if fade in known:
        return known[fade]
    sides = _cut_sides(entry)
    taper: np.ndarray | None = None
    if sides:
        ch, cw = entry.mask.shape
        ox, oy = entry.origin
        x1, y1, x2, y2 = entry.box
        rng = np.random.default_rng(zlib.crc32(f"{entry.image}{entry.box}".encode()))
        yy, xx = np.mgrid[0:ch, 0:cw].astype(F32)
        taper = np.ones((ch, cw), F32)
        for side in sides:
            if side in ("left", "right"):
                depth, along, n = x2 - x1, yy[:, 0], ch
                d = xx - (x1 - ox) if side == "left" else (x2 - ox) - 1 - xx
            else:
                depth, along, n = y2 - y1, xx[0], cw
                d = yy - (y1 - oy) if side == "top" else (y2 - oy) - 1 - yy
            reach = float(np.clip(fade * depth, 3.0, 40.0))
            # the reach along the side: a smooth wave of a few bumps, +-1/3
            k = rng.uniform(1.0, 3.0) * 2 * math.pi / max(n, 1)
            wave = np.sin(k * along + rng.uniform(0, 2 * math.pi)).astype(F32)
            r = reach * (1.0 + wave / 3.0)
            r = r[:, None] if side in ("left", "right") else r[None, :]
            u = np.clip((d + 0.5) / r, 0.0, 1.0)
            taper *= u * u * (3.0 - 2.0 * u)
    known[fade] = taper
    return taper


def _image(a: np.ndarray) -> np.ndarray:
    """(h, w) -> (h, w, 1): OpenCV drops a single channel."""
    return a[:, :, None] if a.ndim == 2 else a


def _denoised(
    pixels: np.ndarray, surface: np.ndarray, outside: np.ndarray, sigma: float
) -> np.ndarray:
    """The defect's change of its source surface with the source photo's noise taken out.

    The host image has noise of its own; a transplant should carry what the defect does
    to the surface, not the grain of the camera that photographed it (doubled, that grain
    makes a transplant finer-grained and sharper-edged than the defects around it). The
    change is smoothed (a Gaussian of ``sigma`` px), and what the smoothing removed is put
    back where it stands out of the noise: none of it up to 3x the noise's spread, all
    of it from 6x (a crack one pixel wide keeps its contrast). The spread is measured
    on ``outside``, the source crop around the defect (1.48 x the median absolute
    residual)."""
    if np.count_nonzero(outside) < 16:
        return pixels
    # (the surface equals the photo outside the defect: the noise is the photo's own)
    grain = pixels - _image(cv2.GaussianBlur(pixels, (0, 0), sigma))
    noise = max(1.4826 * float(np.median(np.abs(grain).max(axis=2)[outside])), 1e-4)
    d = pixels - surface
    smooth = _image(cv2.GaussianBlur(d, (0, 0), sigma))
    rest = d - smooth
    mag = np.abs(rest).max(axis=2)
    keep = np.clip((mag - F32(3.0 * noise)) / F32(3.0 * noise), 0.0, 1.0)[:, :, None]
    out = surface + smooth + rest * keep
    return np.clip(out, 0.0, 1.0).astype(F32)


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


# -- variation -------------------------------------------------------------------------------


def _severe(
    mapped: np.ndarray, base: np.ndarray, inside: np.ndarray, severity: float
) -> np.ndarray:
    """The placed defect's change of the surface under it times ``severity`` (a darkening
    filter keeps its kind: its ratio to the surface moves to ``1 + severity (r - 1)``,
    as if the source had been that much darker). A fainter defect keeps a mean
    largest-channel change of :data:`SEVERITY_FLOOR` under its mask (or all of its own,
    when it is fainter than that to begin with): it must stay visible."""
    diff = mapped - base
    strength = float(np.abs(diff[inside]).max(axis=1).mean())
    if severity < 1.0 and strength > 0.0:
        severity = max(severity, min(1.0, SEVERITY_FLOOR / strength))
    return np.clip(base + F32(severity) * diff, 0.0, 1.0).astype(F32)


def _recolored(mapped: np.ndarray, base: np.ndarray, recolor: float) -> np.ndarray:
    """``mapped`` (BGR) with its a*, b* moved ``recolor`` of the way to the product's own
    under it: the defect keeps its lightness and takes the host's hue and chroma, as a
    shadow or a film on that paint would (where it is lighter than the product the chroma
    fades towards white as a highlight's does)."""
    lab = bgr_to_lab(mapped)
    b_lab = bgr_to_lab(base)
    lm, lb = lab[:, :, :1], np.clip(b_lab[:, :, :1], 1.0, 99.0)
    scale = np.clip((F32(100.0) - lm) / (F32(100.0) - lb), 0.0, 1.0)
    target = b_lab[:, :, 1:] * scale
    ab = lab[:, :, 1:] + F32(recolor) * (target - lab[:, :, 1:])
    return np.clip(lab_to_bgr(np.concatenate([lm, ab], axis=2)), 0.0, 1.0).astype(F32)


@hookimpl
def register_generators(register: Any) -> None:
    register(TransplantGenerator)
