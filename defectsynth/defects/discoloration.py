"""Discoloration: an irregular patch where the surface changed colour, not texture."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from defectsynth.api import DefectGenerator, Layer, Region, hookimpl, param
from defectsynth.textures import (
    ellipse_extent,
    elliptic_radius,
    fbm_pixels,
    smoothstep,
)

F32 = np.float32

KINDS = ("oxidation", "heat_tint", "yellowing", "fade", "darkening")
_DIFFUSE = ("fade", "darkening")

# Temper colours of steel by oxide-film thickness (thin -> thick), as target a*, b* and a
# lightness factor: pale straw, gold, bronze, purple, blue, grey-blue.
_TEMPER = np.array(
    [
        [1.0, 12.0, 0.99],
        [5.0, 24.0, 0.94],
        [11.0, 20.0, 0.84],
        [15.0, 2.0, 0.76],
        [6.0, -16.0, 0.76],
        [-3.0, -10.0, 0.84],
    ],
    dtype=F32,
)


class DiscolorationGenerator(DefectGenerator):
    """An irregular patch of changed colour: oxidation, heat tint, yellowing, fading or
    darkening, with the surface texture left intact.

    The outline is an ellipse roughened by fractal noise (fBm built at low resolution),
    with a soft or sharp edge; a second noise field mottles the strength inside. The change
    is made in CIELAB: the chroma (a*, b*) moves towards the kind's colour and the
    lightness L* is *scaled*, never replaced, so the luminance texture underneath keeps
    its detail. ``fade`` (bleaching: chroma lost, L* raised as a scale) and ``darkening``
    (soot, oil soak) spread by diffusion: broad lobes, no fine raggedness, a wide soft
    edge. ``heat_tint`` lays the temper colours of steel (straw, gold, bronze,
    purple, blue) in bands from the rim to the hottest point. On gray images only the
    lightness changes.
    """

    name = "discoloration"
    version = "2"

    @dataclass(frozen=True)
    class Params:
        size: float = param(
            40.0, lo=6.0, hi=400.0, vary=(22.0, 70.0), size=True, doc="radius of the patch in px"
        )
        aspect: float = param(
            0.75, lo=0.2, hi=1.0, vary=(0.45, 1.0), doc="minor / major axis of the outline"
        )
        angle: float = param(
            0.0, lo=0.0, hi=180.0, vary=(0.0, 180.0), doc="direction of the major axis"
        )
        kind: str = param(
            "oxidation",
            choices=KINDS,
            vary=KINDS,
            doc="what changed the colour (sets the hue and lightness change)",
        )
        strength: float = param(
            0.6, lo=0.05, hi=1.0, vary=(0.4, 0.9), doc="how far the colour moves"
        )
        edge: float = param(
            0.4, lo=0.0, hi=1.0, vary=(0.1, 0.8), doc="edge softness: 0 sharp, 1 very soft"
        )
        roughness: float = param(
            0.5, lo=0.0, hi=1.0, vary=(0.3, 0.8), doc="how ragged the outline is"
        )
        mottle: float = param(
            0.35, lo=0.0, hi=1.0, vary=(0.15, 0.6), doc="patchiness of the strength inside"
        )

    def extent(self, params: Params, rng: np.random.Generator) -> tuple[int, int]:
        # The patch ends inside q = 1.45: there the border term pulls the field 3.9 below
        # the ellipse, far more than the outline's noise (0.32 roughness x a unit
        # deviation) can make up.
        ra = params.size * 1.45
        return ellipse_extent(ra, ra * params.aspect, params.angle, pad=2)

    def render(self, region: Region, params: Params, rng: np.random.Generator) -> Layer:
        h, w = region.shape
        pixels = region.pixels
        dx = np.arange(w, dtype=F32) - F32((w - 1) / 2)
        dy = np.arange(h, dtype=F32) - F32((h - 1) / 2)
        q = elliptic_radius(dx[None, :], dy[:, None], math.radians(params.angle),
                            params.size, params.size * params.aspect)
        # The outline's noise and the mottle are drawn on a grid f times coarser and
        # upsampled bicubically (see _coarseness). The ellipse and its border term stay
        # exact: interpolated, their curvature would roughen the outline.
        f = _coarseness(params.size)
        coarse = (-(-h // f), -(-w // f))
        # Soot, oil soak and bleaching spread by diffusion and wash out: their outline
        # has broad lobes and no fine raggedness (two octaves), and a wide soft edge;
        # oxide and heat tint follow the surface's flaws (four octaves).
        diffuse = params.kind in _DIFFUSE
        octaves = 2 if diffuse else 4
        noise = fbm_pixels(coarse, max(params.size * 0.8, 4.0) / f, rng, octaves=octaves, gain=0.55)
        mottle = fbm_pixels(coarse, max(params.size * 0.45, 3.0) / f, rng, octaves=3)
        noise *= F32(0.32 * params.roughness)  # the ragged outline
        noise += F32(1.0)  # (before upsampling: its weights sum to 1)
        field = _upsample(noise, f, (0, h, 0, w)) - q
        # nothing near the border: a gentle pull, about as steep as the ellipse itself,
        # so that where a lobe reaches out its edge is not cut into an arc
        # (and a steep one at the very end, which only a rare far lobe meets)
        field -= F32(0.9) * smoothstep(0.9, 1.45, q) + F32(3.0) * smoothstep(1.38, 1.45, q)
        soft = 0.2 + 0.3 * params.edge if diffuse else 0.015 + 0.35 * params.edge
        out = np.array(pixels, dtype=F32)
        cov = np.zeros((h, w), F32)
        # everything else happens in the coverage's box (about 2/3 of the region)
        bx, by, bw, bh = cv2.boundingRect((field > F32(-soft)).view(np.uint8))
        if bw == 0 or bh == 0:
            return Layer(out, cov)
        box = (slice(by, by + bh), slice(bx, bx + bw))
        field = field[box]
        cov[box] = smoothstep(-soft, soft, field)
        mottle = _upsample(mottle, f, (by, by + bh, bx, bx + bw))
        inner = _clamp(field.copy(), 1.0)  # 0 at the rim, 1 well inside
        # strength inside: mottled, and rising a little towards the middle
        depth = np.minimum(inner, F32(0.6))
        depth *= F32(0.25 / 0.6)
        depth += F32(0.75)
        amount = mottle * F32(0.6 * params.mottle * params.strength)
        amount += F32(params.strength)
        amount *= depth
        _clamp(amount, 1.5 * params.strength)
        hue_amount = amount
        if params.kind == "oxidation":
            # corrosion is spotty: a speckle of stronger colour on top of the mottling
            speck = fbm_pixels((bh, bw), 4.0, rng, octaves=2)
            speck *= F32(0.45)
            speck += F32(0.75)
            hue_amount = amount * np.clip(speck, 0.2, 1.3, out=speck)
        # heat tint: film thickness rises from the rim to the hottest point
        thick = inner
        thick *= F32(0.35 + 0.65 * params.strength)
        src, new = pixels[box], out[box]  # the new pixels go straight into the layer
        if region.is_color:
            _recolour(src, params.kind, amount, hue_amount, thick, mottle, new)
        else:
            np.multiply(src, _lightness(params.kind, amount, thick)[:, :, None], out=new)
            _clamp(new, 1.0)
        # the box's corners outside the coverage keep their pixels
        cv2.copyTo(src, (field <= F32(-soft)).view(np.uint8), new)
        return Layer(out, cov)


def _coarseness(size: float) -> int:
    """How many times coarser than the pixels the outline's noise and the mottle can be
    drawn: the cells of their finest octaves (0.1 x size px) keep at least 1 px of the
    grid, and the bicubic upsampling interpolates between those knots as their own
    octave would (outline and mottle statistics over hundreds of seeds match the
    full-resolution fields)."""
    return max(1, int(0.1 * size))


def _upsample(a: np.ndarray, f: int, window: tuple[int, int, int, int]) -> np.ndarray:
    """Rows y0:y1 and columns x0:x1 (``window``) of ``a`` upsampled f times bicubically,
    ``a`` being a field on cells f px wide (cell i centred on pixel f * i + (f - 1) / 2)."""
    y0, y1, x0, x1 = window
    if f == 1:
        return a[y0:y1, x0:x1]
    # only the cells under the window and the kernel's reach (2 each side): the same
    # values as upsampling all of ``a``
    hc, wc = a.shape
    cy0, cx0 = max(y0 // f - 2, 0), max(x0 // f - 2, 0)
    cy1, cx1 = min(-(-y1 // f) + 2, hc), min(-(-x1 // f) + 2, wc)
    up = cv2.resize(
        a[cy0:cy1, cx0:cx1], ((cx1 - cx0) * f, (cy1 - cy0) * f), interpolation=cv2.INTER_CUBIC
    )
    oy, ox = y0 - cy0 * f, x0 - cx0 * f
    return up[oy : oy + y1 - y0, ox : ox + x1 - x0]


def _clamp(a: np.ndarray, hi: float) -> np.ndarray:
    """``np.clip(a, 0, hi, out=a)`` by two cv2.threshold passes (~2.5x the speed)."""
    cv2.threshold(a, 0.0, 0.0, cv2.THRESH_TOZERO, dst=a)
    cv2.threshold(a, hi, 0.0, cv2.THRESH_TRUNC, dst=a)
    return a


# The temper colours at 256 film thicknesses, t = 0, 1/255, ..., 1 (linear between the
# rows of _TEMPER), for cv2.LUT on round(255 t): one gather per plane instead of
# interpolating per pixel; b*, the fastest to change, moves < 0.4 per step.
_TEMPER_LUT = [
    np.interp(np.linspace(0.0, len(_TEMPER) - 1, 256), np.arange(len(_TEMPER)), col).astype(F32)
    for col in _TEMPER.T
]


def _temper(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Temper colour (a*, b*, L factor) at oxide thickness t in 0..1 (piecewise linear
    between the equally spaced rows of ``_TEMPER``, in steps of 1/255)."""
    i = cv2.convertScaleAbs(t, alpha=255.0)  # round(255 t), saturated at 255
    a, b, lf = (cv2.LUT(i, lut) for lut in _TEMPER_LUT)
    return a, b, lf


def _lightness(
    kind: str, amount: np.ndarray, depth: np.ndarray, temper_lf: np.ndarray | None = None
) -> np.ndarray:
    """Lightness factor of each kind, used alone on gray images (``temper_lf``: the
    heat tint's L factor at ``depth`` when the caller has it)."""
    if kind == "oxidation":
        return F32(1.0) - F32(0.35) * amount
    if kind == "heat_tint":
        lf = _temper(depth)[2] if temper_lf is None else temper_lf
        return F32(1.0) + (lf - F32(1.0)) * np.minimum(amount * F32(1.6), 1.0)
    if kind == "yellowing":
        return F32(1.0) - F32(0.12) * amount
    if kind == "fade":
        return F32(1.0) + F32(0.1) * amount
    return F32(1.0) - F32(0.42) * amount  # darkening


def _recolour(
    pixels: np.ndarray,
    kind: str,
    amount: np.ndarray,
    hue_amount: np.ndarray,
    depth: np.ndarray,
    mottle: np.ndarray,
    out: np.ndarray,
) -> None:
    """New BGR pixels into ``out``: lightness scaled by ``amount``, chroma moved by
    ``hue_amount``."""
    # textures.bgr_to_lab and lab_to_bgr, without their copies: ``pixels`` may be a view
    # and the result goes straight into ``out``
    lab = cv2.cvtColor(pixels, cv2.COLOR_BGR2Lab)
    planes: list[np.ndarray] = [cv2.extractChannel(lab, c) for c in range(3)]  # ~3x split
    L, A, B = planes
    temper = _temper(depth) if kind == "heat_tint" else None
    lf = _lightness(kind, amount, depth, None if temper is None else temper[2])
    if kind == "oxidation":
        # rust bloom: between orange and a dull dark brown
        hue = np.clip(F32(0.5) + F32(0.5) * mottle, 0.0, 1.0)
        kh = np.minimum(hue_amount, F32(1.0))
        kh *= F32(0.85)
        A += (hue * F32(9.0) + F32(9.0) - A) * kh
        B += (hue * F32(18.0) + F32(16.0) - B) * kh
    elif temper is not None:  # heat tint
        ta, tb, _ = temper
        m = np.minimum(amount * F32(1.6), 1.0)
        A += (ta - A) * m
        B += (tb - B) * m
    elif kind == "yellowing":
        A += F32(3.0) * amount
        B += F32(26.0) * amount
    elif kind == "fade":
        # Bleaching destroys the pigment or dye, not the surface: chroma drops and the
        # hue drifts towards the yellowish grey of the aged binder, the lightness rises a
        # little *in proportion* (a scale, not a white veil added on top), so gloss,
        # print and texture keep their contrast.
        k = np.minimum(amount, F32(1.0))
        # (the drift scales with the colour there was: a neutral surface has no pigment)
        drift = np.sqrt(A * A + B * B)
        drift *= F32(0.12) * k
        keep = F32(1.0) - F32(0.6) * k
        A *= keep
        B *= keep
        B += drift
    else:  # darkening: soot, oil soak; colour dulls a little too
        keep = F32(1.0) - F32(0.25) * np.minimum(amount, F32(1.0))
        A *= keep
        B *= keep
    L *= lf
    _clamp(L, 100.0)
    cv2.merge([L, A, B], dst=lab)
    cv2.cvtColor(lab, cv2.COLOR_Lab2BGR, dst=out)
    _clamp(out, 1.0)


@hookimpl
def register_generators(register: Callable[[type[DefectGenerator]], None]) -> None:
    register(DiscolorationGenerator)
