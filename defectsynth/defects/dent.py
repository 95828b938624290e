"""Dent: a local depression pressed into the surface."""

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
    shade_slopes,
    smoothstep,
    specular_colour,
    surface_colour,
    surface_shading,
    texture_contrast,
)

F32 = np.float32


class DentGenerator(DefectGenerator):
    """A pressed depression, shaded from its own surface normals.

    The height map is an elliptical dish (a Gaussian for a blunt impact, blending into a
    cap whose wall is steepest at its crisp rim as ``sharpness`` rises) with an outline
    roughened by fractal noise and an optional low lip of displaced material. Its normals
    are lit by the scene light: the wall on the light's side of the centre faces away
    from it and falls into shade, the far wall brightens, and under a low light the near
    rim casts its shadow onto the floor (traced towards the light over the height map);
    walls tilted towards the half vector glint. The texture inside is slightly warped
    along the slope (``cv2.remap``), the way a pressed sheet stretches and reflections
    bend (the camera's noise is not moved), and ``crush`` flattens proud relief (knurls,
    weave) at the bottom. Shading multiplies the surface's own colour, so nothing is
    painted on, and the whole effect fades smoothly to zero at the edge.
    """

    name = "dent"
    version = "2"

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
            0.55, lo=0.0, hi=1.0, vary=(0.3, 0.9), doc="0 smooth dish, 1 cap with a crisp rim"
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
    # (over 80 lines on purpose: one numeric pass whose arrays feed each other; split, it
    # would hand a dozen arrays from function to function)
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
        # height: a pressed bowl. A blunt impact leaves a Gaussian-like dish; a sharper one
        # a paraboloid cap whose wall is steepest at the rim, where the sheet bends over a
        # short radius: the rim is a crisp line, lit on the far side and shaded on the near
        # one, which is what tells a depression from a bump (a bump's base is soft and its
        # steepest slope is inside its outline). An optional lip of displaced material.
        qh = q[hb[0] : hb[1], hb[2] : hb[3]]
        qq = qh * qh
        height = np.exp(F32(-2.2) * qq)
        height *= F32(-depth_px * (1.0 - params.sharpness))
        if params.sharpness > 0:
            # 1 - q^2 inside, rounded over the bend (the last ~12% of the radius)
            cap = F32(1.0) - qq
            cap = np.maximum(cap, F32(0.0), out=cap)
            bend = smoothstep(0.0, 0.24, cap)
            cap *= F32(0.5) + F32(0.5) * bend
            cap *= F32(-depth_px * params.sharpness)
            height += cap
        if params.lip > 0:
            rim = qh - F32(1.0)
            rim *= F32(1.0 / 0.16)
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
        light = region.light.vector
        occ = _cast_shadow(height, light, depth_px)
        if occ is not None:
            occ = np.ascontiguousarray(occ[b_in_h])
        ratio, spec = shade_slopes(gx, gy, light, shading, occlusion=occ)
        if occ is not None:
            # shade() also takes away a cavity's sky in proportion to its shadow; an open
            # dish keeps most of it: the sky lost at the floor of a bowl of this depth
            # (its rim ~atan(depth / radius) above the horizon), not a pit's
            keep = (F32(1.0) - occ) * F32(-0.45 * min(1.0, 1.5 * params.depth))
            keep += F32(1.0)
            keep /= F32(0.45) * occ + F32(0.55)
            ratio *= keep
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
            # A hard impactor flattens relief that stands proud of the surface (knurl
            # tips, weave, coarse grain) into flat lands, and leaves micron-scale relief
            # (orange peel, brushing) mostly as it was: smoothed paint inside a dent would
            # read as a smooth object lying on the surface.
            tc = (texture_contrast(src) - 0.025) / 0.055
            relief = min(max(tc, 0.0), 1.0)
            flat = np.clip(height * F32(-1.0 / max(depth_px, 1e-3)), 0.0, 1.0)
            flat = smoothstep(0.0, 0.6, flat)
            flat *= F32(params.crush * (0.2 + 0.8 * relief))
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


def _cast_shadow(height: np.ndarray, light: np.ndarray, depth_px: float) -> np.ndarray | None:
    """Where the rim nearer the light shades the floor: 1 lit, 0 in shadow (soft over
    ~0.4 px of height), or None when the light is higher than any wall could hide.

    A point is in shadow when the surface some distance ``t`` towards the light stands
    higher than the ray to the light there, ``h(p + t d) > h(p) + t tan(elevation)``;
    only ``t`` up to the dent's depth / tan(elevation) can matter. A bump casts its
    shadow outside its outline on the far side; a depression's stays inside, on the
    near wall: one of the few cues that tell the two apart under a single light."""
    lx, ly, lz = (float(v) for v in light)
    horiz = math.hypot(lx, ly)
    if horiz < 1e-3:
        return None
    tan_e = max(lz, 0.02) / horiz
    reach = (depth_px * 1.3) / tan_e
    if reach < 1.0:
        return None
    dx, dy = lx / horiz, ly / horiz
    h, w = height.shape
    excess = np.full((h, w), -1e9, F32)
    steps = min(int(math.ceil(reach / 0.75)), 160)
    for i in range(1, steps + 1):
        t = i * reach / steps
        m = np.array([[1.0, 0.0, dx * t], [0.0, 1.0, dy * t]], dtype=np.float32)
        ahead: np.ndarray = cv2.warpAffine(
            height, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT, borderValue=0.0,
        )
        ahead -= F32(t * tan_e)
        np.maximum(excess, ahead, out=excess)
    excess -= height
    if float(excess.max()) <= 0.0:
        return None
    return F32(1.0) - smoothstep(0.0, 0.4, excess)


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
