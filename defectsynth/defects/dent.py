"""Dent: a local depression pressed into the surface."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from defectsynth import DefectGenerator, Layer, Region, hookimpl, param
from defectsynth.textures import (
    ellipse_extent,
    elliptic_radius,
    fbm_pixels,
    shade_slopes,
    smoothstep,
    specular_colour,
    surface_colour,
    surface_shading,
)

F32 = np.float32


class DentGenerator(DefectGenerator):
    """A smooth depression with a soft edge, shaded from its own surface normals.

    The height map is an elliptical bowl (a Gaussian for a blunt impact, a steeper
    spherical cap as ``sharpness`` rises) with an outline roughened by fractal noise and
    an optional low lip of displaced material. Its normals are lit by the scene light:
    the inner wall facing the light brightens, the opposite wall falls into shade, and
    the lip on the light's side catches a bright rim; walls tilted towards the half
    vector glint. The texture inside is slightly warped along the slope (``cv2.remap``),
    the way a pressed sheet stretches and reflections bend (the camera's noise is not
    moved), and ``crush`` flattens fine relief at the bottom. Shading multiplies the
    surface's own colour, so nothing is painted on, and the whole effect fades smoothly
    to zero at the edge.
    """

    name = "dent"
    version = "1"

    @dataclass(frozen=True)
    class Params:
        radius: float = param(
            22.0, lo=3.0, hi=300.0, vary=(10.0, 38.0), size=True, doc="semi-major axis in px"
        )
        aspect: float = param(
            0.8, lo=0.15, hi=1.0, vary=(0.45, 1.0), doc="semi-minor / semi-major axis"
        )
        angle: float = param(
            0.0, lo=0.0, hi=180.0, vary=(0.0, 180.0), doc="direction of the major axis, degrees"
        )
        depth: float = param(
            0.18, lo=0.01, hi=0.6, vary=(0.12, 0.28), doc="depth as a fraction of the radius"
        )
        sharpness: float = param(
            0.3, lo=0.0, hi=1.0, vary=(0.0, 0.8), doc="0 smooth bowl, 1 steep-walled cap"
        )
        lip: float = param(
            0.15, lo=0.0, hi=0.6, vary=(0.0, 0.3), doc="height of the raised lip / depth"
        )
        irregularity: float = param(
            0.2, lo=0.0, hi=0.6, vary=(0.05, 0.35), doc="roughness of the outline"
        )
        warp: float = param(
            1.0, lo=0.0, hi=3.0, vary=(0.5, 1.5), doc="how much the texture inside is warped"
        )
        gloss: float = param(
            0.4, lo=0.0, hi=1.0, vary=(0.2, 0.7), doc="strength of highlights on the walls"
        )
        crush: float = param(
            0.4, lo=0.0, hi=1.0, vary=(0.2, 0.8), doc="how much fine relief the impact flattened"
        )

    def extent(self, params: Params, rng: np.random.Generator) -> tuple[int, int]:
        ra = params.radius * (1.0 + params.irregularity * 0.6) * 1.45
        return ellipse_extent(ra, ra * params.aspect, params.angle)

    def render(self, region: Region, params: Params, rng: np.random.Generator) -> Layer:
        h, w = region.shape
        pixels = region.pixels
        dx = np.arange(w, dtype=F32) - F32((w - 1) / 2)
        dy = np.arange(h, dtype=F32) - F32((h - 1) / 2)
        q = elliptic_radius(dx[None, :], dy[:, None], math.radians(params.angle),
                            params.radius, params.radius * params.aspect)
        # a rough outline: perturb the radial coordinate with low-frequency noise
        noise = fbm_pixels((h, w), max(params.radius * 0.9, 4.0), rng, octaves=2)
        noise *= F32(params.irregularity * 0.35)
        noise += F32(1.0)
        q *= noise
        # The work happens in boxes around the coverage (q < 1.2): the light in box ``b``
        # itself, the relief in ``b`` grown by the height blur's and Sobel's reach, the
        # texture filters in ``b`` grown by the warp's and the blurs' reach.
        bx, by, bw, bh = cv2.boundingRect((q < F32(1.2)).view(np.uint8))
        out = np.array(pixels, dtype=F32)
        cov = np.zeros((h, w), F32)
        if bw == 0 or bh == 0:
            return Layer(out, cov)
        b = box = (by, by + bh, bx, bx + bw)
        b_sl = (slice(b[0], b[1]), slice(b[2], b[3]))
        hb = _grow(box, 4, (h, w))
        tb = _even(_grow(box, 8, (h, w)), hb)
        b_in_h = _within(b, hb)
        depth_px = params.depth * params.radius
        # height: a Gaussian bowl for a blunt impact, a steeper cap as sharpness rises, an
        # optional lip, all faded out by q = 1.4
        qh = q[hb[0] : hb[1], hb[2] : hb[3]]
        qq = qh * qh
        height = np.exp(F32(-2.2) * qq)
        height *= F32(-depth_px * (1.0 - params.sharpness))
        if params.sharpness > 0:
            cap = np.maximum(F32(1.0) - qq, F32(0.0))
            cap *= cap
            cap *= F32(-depth_px * params.sharpness)
            height += cap
        if params.lip > 0:
            rim = qh - F32(1.0)
            rim *= F32(1.0 / 0.22)
            np.square(rim, out=rim)
            np.negative(rim, out=rim)
            rim = np.exp(rim, out=rim)
            rim *= F32(depth_px * params.lip)
            height += rim
        height *= F32(1.0) - smoothstep(1.1, 1.4, qh)  # faded out by q = 1.4
        height = cv2.GaussianBlur(height, (0, 0), 0.8)
        gx: np.ndarray = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)[b_in_h]
        gy: np.ndarray = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)[b_in_h]
        shading = surface_shading(pixels, ambient=0.45, specular=0.35 * params.gloss, roughness=0.3)
        ratio, spec = shade_slopes(gx, gy, region.light.vector, shading)
        # the texture follows the pressed surface: sample it a little up-slope
        k = F32(params.warp * params.radius * 0.25)
        gx *= k
        gy *= k
        map_x = np.clip(gx, -2.5, 2.5, out=gx)
        map_x += np.arange(b[2] - hb[2], b[3] - hb[2], dtype=F32)[None, :]
        map_y = np.clip(gy, -2.5, 2.5, out=gy)
        map_y += np.arange(b[0] - hb[0], b[1] - hb[0], dtype=F32)[:, None]
        # only the surface's structure moves; the camera's noise stays where it was
        c = region.channels
        src = pixels[tb[0] : tb[1], tb[2] : tb[3]]
        low = _blur(src, 1.0)
        b_in_t = _within(b, tb)
        # the impact flattens fine relief (knurls, peel, grain): less texture contrast
        h_in_t = _within(hb, tb)
        low_h = low[h_in_t]
        if params.crush > 0:
            flat = np.clip(height * F32(-1.0 / max(depth_px, 1e-3)), 0.0, 1.0)
            flat *= F32(params.crush)
            pressed = _blur_wide(low, max(region.texture_scale * 0.5, 1.5))[h_in_t] - low_h
            pressed *= _channels(flat, c)
            pressed += low_h
        else:
            pressed = np.ascontiguousarray(low_h)
        warped = cv2.remap(pressed, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if warped.ndim == 2:
            warped = warped[:, :, None]
        warped += src[b_in_t]  # the grain: the pixels less their blur, in place
        warped -= low[b_in_t]
        # light: the ratio multiplies the colour, a negative specular difference removes
        # light in proportion, a positive one adds the highlight's colour
        gain = np.minimum(spec, F32(0.0))
        gain *= F32(1.6)
        gain += ratio
        warped *= _channels(gain, c)
        # the highlight's tint: the colour of the dent's surface (every 2nd pixel)
        highlight = specular_colour(src, colour=surface_colour(src[::2, ::2]))
        warped += _tinted(np.maximum(spec, F32(0.0)), highlight)
        lit = np.clip(warped, 0.0, 1.0, out=out[b_sl])
        cov_b = np.subtract(F32(1.0), smoothstep(0.75, 1.2, q[b_sl]), out=cov[b_sl])
        # the box's corners outside the coverage keep their pixels (cheaper than np.where)
        cv2.copyTo(pixels[b_sl], (cov_b <= 0).view(np.uint8), lit)
        return Layer(out, cov)


def _channels(a: np.ndarray, c: int) -> np.ndarray:
    """(h, w) -> (h, w, c), the same value in every channel (a real array: numpy's
    broadcasting of a length-1 last axis is several times slower than this copy)."""
    a = np.ascontiguousarray(a, dtype=F32)
    return cv2.cvtColor(a, cv2.COLOR_GRAY2BGR) if c == 3 else a[:, :, None]


def _tinted(a: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """(h, w) times a colour (c,) -> (h, w, c)."""
    if len(colour) == 3:
        # three scaled planes merged: cv2.multiply by a Scalar takes twice as long
        return cv2.merge([a * F32(colour[0]), a * F32(colour[1]), a * F32(colour[2])])
    return (a * F32(colour[0]))[:, :, None]


_Box = tuple[int, int, int, int]  # y0, y1, x0, x1


def _grow(box: _Box, by: int, shape: tuple[int, int]) -> _Box:
    return (
        max(box[0] - by, 0),
        min(box[1] + by, shape[0]),
        max(box[2] - by, 0),
        min(box[3] + by, shape[1]),
    )


def _even(box: _Box, inner: _Box) -> _Box:
    """``box`` less a row or column where its height or width is odd, on a side where
    it reaches beyond ``inner`` (cv2.resize halves even sizes several times faster)."""
    y0, y1, x0, x1 = box
    if (y1 - y0) % 2:
        y0, y1 = (y0, y1 - 1) if y1 > inner[1] else (y0 + 1, y1) if y0 < inner[0] else (y0, y1)
    if (x1 - x0) % 2:
        x0, x1 = (x0, x1 - 1) if x1 > inner[3] else (x0 + 1, x1) if x0 < inner[2] else (x0, x1)
    return y0, y1, x0, x1


def _within(inner: _Box, outer: _Box) -> tuple[slice, slice]:
    """Slices of box ``inner`` in an array that holds box ``outer``."""
    return (
        slice(inner[0] - outer[0], inner[1] - outer[0]),
        slice(inner[2] - outer[2], inner[3] - outer[2]),
    )


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    out = cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return out[:, :, None] if out.ndim == 2 else out


def _blur_wide(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of an already smooth image (blurred at sigma >= 1) with a wide
    ``sigma``: at half resolution, then linearly upsampled (the result differs from the
    full-resolution blur by ~0.5% of the fine detail, at a third of the cost)."""
    h, w = img.shape[:2]
    if sigma < 3.0 or min(h, w) < 8:
        return _blur(img, sigma)
    small = cv2.resize(img, ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / 2, borderType=cv2.BORDER_REFLECT)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return out[:, :, None] if out.ndim == 2 else out


@hookimpl
def register_generators(register: Callable[[type[DefectGenerator]], None]) -> None:
    register(DentGenerator)
