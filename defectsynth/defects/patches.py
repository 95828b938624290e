"""Patches: irregular darker (or lighter) regions with soft, ragged edges."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from defectsynth.api import DefectGenerator, Layer, Region, hookimpl, param
from defectsynth.defects._steel import along_across, rotated_extent
from defectsynth.textures import fbm_fields, smoothstep

F32 = np.float32


class PatchesGenerator(DefectGenerator):
    """An irregular region whose surface reflects less (or more) than the steel around it.

    Patches are where the oxide layer is thicker, thinner or of another kind (a local
    difference in descaling, cooling or pickling): a change of reflectance, not of
    shape. The outline is a few overlapping elliptical lobes strung along the rolling
    direction, roughened by fractal noise so the edge is ragged at every scale but
    smooth (no pixel-level jaggies), and faded over ``softness`` of the radius, with a
    cloudy fringe. Inside, the change is mottled (``mottling``), and the matte layer hides
    part of the steel's fine roughness (``dulling``). The result multiplies the surface's own
    luminance, so its texture survives; a negative ``darkness`` makes a lighter patch.
    """

    name = "patches"
    version = "1"
    # the defaults were chosen on 200 x 200 photos of steel strip (NEU-DET)
    reference_size = 200

    @dataclass(frozen=True)
    class Params:
        size: float = param(
            70.0, lo=8.0, hi=1200.0, vary=(40.0, 130.0), size=True, doc="length of the patch in px"
        )
        aspect: float = param(
            0.65, lo=0.15, hi=1.0, vary=(0.45, 1.0), doc="width / length of the patch"
        )
        rolling_angle: float = param(
            90.0, lo=0.0, hi=180.0, vary=(60.0, 120.0), doc="direction of its length, degrees"
        )
        lobes: int = param(2, lo=1, hi=6, vary=(1, 4), doc="overlapping lobes of the outline")
        darkness: float = param(
            0.5, lo=-0.8, hi=0.9, vary=(0.35, 0.7), doc="share of light lost (< 0: lighter)"
        )
        irregularity: float = param(
            0.5, lo=0.0, hi=1.0, vary=(0.3, 0.75), doc="how ragged the outline is"
        )
        softness: float = param(
            0.4, lo=0.03, hi=1.0, vary=(0.25, 0.6), doc="width of the fading edge / radius"
        )
        dulling: float = param(
            0.3, lo=0.0, hi=1.0, vary=(0.1, 0.5), doc="how much fine texture the layer hides"
        )
        mottling: float = param(
            0.15, lo=0.0, hi=1.0, vary=(0.0, 0.3), doc="how much the change varies inside"
        )

    def extent(self, params: Params, rng: np.random.Generator) -> tuple[int, int]:
        grow = 1.0 + 0.45 * params.irregularity + 0.5 * params.softness
        return rotated_extent(
            params.size * grow, params.size * params.aspect * grow + 4.0, params.rolling_angle
        )

    def render(self, region: Region, params: Params, rng: np.random.Generator) -> Layer:
        h, w = region.shape
        u, v = along_across((h, w), params.rolling_angle)
        half_len = params.size / 2
        half_wid = params.size * params.aspect / 2
        n = params.lobes
        # lobes along the length: together they span the patch
        if n == 1:
            centres = np.zeros((1, 2))
            radii = np.array([[half_len, half_wid]])
        else:
            along = np.linspace(-1.0, 1.0, n) * half_len * 0.55
            along += rng.normal(0.0, half_len * 0.08, n)
            across = rng.normal(0.0, half_wid * 0.25, n)
            centres = np.stack([along, across], axis=1)
            # each lobe reaches well past the next one's centre: one connected region
            gap = float(np.diff(np.sort(along)).max())
            ra = np.maximum(half_len * rng.uniform(0.45, 0.75, n), 0.8 * gap)
            rb = half_wid * rng.uniform(0.65, 1.0, n)
            radii = np.stack([ra, rb], axis=1)
        q = np.full((h, w), np.inf, F32)
        for (cu, cv), (ra, rb) in zip(centres.tolist(), radii.tolist()):
            qk = np.hypot((u - F32(cu)) / F32(ra), (v - F32(cv)) / F32(rb))
            np.minimum(q, qk, out=q)
        edge, fringe, tone = fbm_fields(
            (h, w),
            [
                {"scale": max(params.size * 0.35, 4.0), "octaves": 3, "gain": 0.55},
                {"scale": 6.0, "octaves": 3, "gain": 0.6},
                {"scale": max(params.size * 0.2, 3.0), "octaves": 3},
            ],
            rng,
        )
        q *= F32(1.0) + F32(0.22 * params.irregularity) * edge
        # a cloudy fringe: fine noise decides where the fading edge still holds
        soft = params.softness
        q += F32(0.12 * soft) * fringe
        body = F32(1.0) - smoothstep(1.0 - soft, 1.0 + 0.35 * soft, q)
        body = np.asarray(cv2.GaussianBlur(body, (0, 0), max(1.0, 0.04 * params.size)), dtype=F32)
        change = body * F32(params.darkness)
        change *= np.clip(F32(1.0) + F32(0.5 * params.mottling) * tone, 0.2, 1.8)
        gain = np.clip(F32(1.0) - change, 0.05, 2.5)
        # a thick, matte layer hides the fine roughness of the steel under it
        pixels = region.pixels
        smooth = cv2.GaussianBlur(pixels, (0, 0), 1.0)
        if smooth.ndim == 2:
            smooth = smooth[:, :, None]
        hide = (body * F32(params.dulling))[:, :, None]
        base = pixels + (smooth - pixels) * hide
        out = np.clip(base * gain[:, :, None], 0.0, 1.0).astype(F32)
        coverage = np.clip((body - F32(0.05)) * F32(2.2), 0.0, 1.0).astype(F32)
        return Layer(out, coverage)




@hookimpl
def register_generators(register: Callable[[type[DefectGenerator]], None]) -> None:
    register(PatchesGenerator)
