"""Stain / contamination: foreign matter lying on the surface."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from defectsynth import DefectGenerator, Layer, Region, hookimpl, param
from defectsynth.textures import elliptic_radius, fbm, luminance, smoothstep

F32 = np.float32

KINDS = ("spot", "drip", "splash", "particles")
SUBSTANCES = ("water", "oil", "rust", "coffee", "grease", "dust")


@dataclass(frozen=True)
class _Substance:
    density: tuple[float, float, float]  # optical density per unit thickness, B, G, R
    scatter: tuple[float, float, float]  # colour of the light the deposit scatters back
    scattering: float  # how strongly it scatters per unit thickness
    ring: float  # how much of it a drying drop carries to its rim


_SUBSTANCES: dict[str, _Substance] = {
    # dried mineral residue: a whitish, mostly scattering film, strongest at the rim
    "water": _Substance((0.04, 0.04, 0.04), (0.86, 0.86, 0.85), 0.3, 1.0),
    # amber oil: absorbs blue most, no body colour of its own
    "oil": _Substance((1.1, 0.6, 0.25), (0.0, 0.0, 0.0), 0.0, 0.2),
    # rust-coloured deposit: absorbs and scatters orange-brown
    "rust": _Substance((1.3, 0.85, 0.45), (0.10, 0.25, 0.50), 0.8, 0.5),
    # coffee/tea-like dye: transparent brown, the classic dark ring
    "coffee": _Substance((1.5, 1.0, 0.55), (0.0, 0.0, 0.0), 0.0, 1.0),
    # grease or soot: neutral dark film
    "grease": _Substance((0.9, 0.9, 0.85), (0.05, 0.05, 0.05), 0.1, 0.3),
    # dust, fibres, swarf fines: light, mostly scattering
    "dust": _Substance((0.15, 0.17, 0.2), (0.62, 0.67, 0.71), 0.7, 0.2),
}


class StainGenerator(DefectGenerator):
    """Foreign matter on the surface: a dried spot, a drip run, a splash or loose particles.

    The deposit is a thickness field; each substance has its own optical density per
    colour channel (what it absorbs: oil and coffee absorb blue and look amber/brown) and
    its own scattered colour (mineral residue and dust look whitish). The surface seen
    through it is ``surface * exp(-density * thickness)``, plus the light the deposit
    scatters back, so thin deposits are partly transparent and the texture shows through.
    A drying drop carries matter to its rim (the coffee-ring effect); a drip runs in the
    ``angle`` direction and gathers in a bead; particles cast a small shadow away from the
    scene light. On gray images the same physics acts on luminance.
    """

    name = "stain"
    version = "1"

    @dataclass(frozen=True)
    class Params:
        kind: str = param("spot", choices=KINDS, vary=KINDS, doc="shape of the deposit")
        substance: str = param(
            "water", choices=SUBSTANCES, vary=SUBSTANCES, doc="what it is (sets its colour)"
        )
        size: float = param(
            18.0, lo=3.0, hi=250.0, vary=(9.0, 32.0), doc="radius of the spot / drop in px"
        )
        opacity: float = param(
            0.6, lo=0.05, hi=1.0, vary=(0.35, 0.85), doc="thickness of the deposit"
        )
        ring: float = param(
            0.5, lo=0.0, hi=1.0, vary=(0.1, 0.9), doc="how much matter dried at the rim"
        )
        count: int = param(14, lo=1, hi=200, vary=(5, 30), doc="particles or splash droplets")
        angle: float = param(
            90.0,
            lo=0.0,
            hi=360.0,
            vary=(60.0, 120.0),
            doc="direction a drip runs or a splash flies, degrees (90 = down the image)",
        )

    def extent(self, params: Params, rng: np.random.Generator) -> tuple[int, int]:
        s = params.size
        if params.kind == "drip":
            a = math.radians(params.angle)
            run = s * 4.6
            hx = abs(math.cos(a)) * run / 2 + s * 1.3
            hy = abs(math.sin(a)) * run / 2 + s * 1.3
            return int(math.ceil(2 * hy + 8)), int(math.ceil(2 * hx + 8))
        if params.kind == "splash":
            side = int(math.ceil(2 * s * 2.9 + 8))
        elif params.kind == "particles":
            side = int(math.ceil(2 * s * 1.35 + 14))
        else:
            side = int(math.ceil(2 * s * 1.3 + 8))
        return side, side

    def render(self, region: Region, params: Params, rng: np.random.Generator) -> Layer:
        h, w = region.shape
        pixels = region.pixels
        sub = _SUBSTANCES[params.substance]
        ring = params.ring * sub.ring
        shadow: np.ndarray | None = None
        if params.kind == "drip":
            thick = _drip(params, rng, (h, w), ring)
        elif params.kind == "splash":
            thick = _splash(params, rng, (h, w), ring)
        elif params.kind == "particles":
            thick, shadow = _particles(params, rng, (h, w), region.light.vector)
        else:
            thick = _spot(params, rng, (h, w), ring, params.size, (0.0, 0.0))
        t = thick * F32(params.opacity * 1.3)
        dens = np.array(sub.density, F32)
        scat = np.array(sub.scatter, F32)
        if not region.is_color:
            wts = np.array([0.114, 0.587, 0.299], F32)
            dens = np.array([float((dens * wts).sum())], F32)
            scat = np.array([float((scat * wts).sum())], F32)
        t3 = t[:, :, None]
        trans = np.exp(-dens[None, None, :] * t3)
        back = F32(1.0) - np.exp(-F32(sub.scattering) * t3)
        # every dried deposit scatters a little, whatever it is: a faint haze
        haze = F32(1.0) - np.exp(-F32(0.12) * t3)
        base = pixels
        if shadow is not None:
            base = pixels * (F32(1.0) - F32(0.35) * shadow)[:, :, None]
        lum = float(np.median(luminance(pixels)))
        new = base * trans * (F32(1.0) - haze) + back * scat + haze * F32(max(0.45, lum))
        cov = smoothstep(0.015, 0.09, thick)
        if shadow is not None:
            cov = np.maximum(cov, smoothstep(0.1, 0.5, shadow))
        out = np.where((cov > 0)[:, :, None], np.clip(new, 0.0, 1.0), pixels)
        return Layer(out.astype(F32), cov.astype(F32))


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(F32)
    return xs - F32((w - 1) / 2), ys - F32((h - 1) / 2)


def _drop_profile(q: np.ndarray, ring: float, edge: float) -> np.ndarray:
    """Thickness of a dried drop at normalised radius q (1 = rim)."""
    body = np.sqrt(np.clip(F32(1.0) - q * q, 0.0, 1.0)) * F32(1.0 - 0.75 * ring)
    rim = F32(1.6 * ring) * np.exp(-(((q - F32(0.94)) / F32(0.07)) ** 2))
    fade = F32(1.0) - smoothstep(1.0 - edge, 1.0, q)
    return ((body + rim) * fade).astype(F32)


def _spot(
    params: StainGenerator.Params,
    rng: np.random.Generator,
    shape: tuple[int, int],
    ring: float,
    size: float,
    centre: tuple[float, float],
) -> np.ndarray:
    x, y = _grid(shape)
    x = x - F32(centre[0])
    y = y - F32(centre[1])
    aspect = float(rng.uniform(0.7, 1.0))
    a = float(rng.uniform(0, math.pi))
    q = elliptic_radius(x, y, a, size, size * aspect)
    # a drying front pins on surface flaws: a wavy, fractal rim
    wav = fbm(shape, max(size * 0.7, 3.0), rng, octaves=3, gain=0.4)
    q = q * (F32(1.0) + F32(0.09) * wav)
    q = np.maximum(q, F32(0.0))
    inner = fbm(shape, max(size * 0.5, 2.0), rng, octaves=3)
    prof = _drop_profile(q, ring, 0.1)
    return (prof * np.clip(F32(1.0) + F32(0.25) * inner, 0.4, 1.5)).astype(F32)


def _drip(
    params: StainGenerator.Params, rng: np.random.Generator, shape: tuple[int, int], ring: float
) -> np.ndarray:
    x, y = _grid(shape)
    s = params.size
    a = math.radians(params.angle)
    ca, sa = F32(math.cos(a)), F32(math.sin(a))
    run = s * float(rng.uniform(2.0, 4.2))
    head_r = s * 0.85
    # coordinates along (from the head) and across the run
    start = -run / 2
    along = x * ca + y * sa - F32(start)
    across = -x * sa + y * ca
    # a run meanders gently: a smooth sideways drift, zero at the head
    frac = np.clip(along / F32(max(run, 1e-3)), 0.0, 1.0)
    c1, c2 = (float(v) for v in rng.normal(0.0, 0.1, size=2))
    wobble = F32(s) * (
        F32(c1) * np.sin(F32(math.pi) * frac) + F32(c2) * np.sin(F32(2 * math.pi) * frac)
    )
    across = across - wobble
    # a neck that narrows smoothly from the drop into the trail (a teardrop), then a
    # trail that thickens a little where the liquid gathers
    neck = F32(1.0) - smoothstep(0.0, 0.45, frac)
    trail = F32(s * 0.2) * (F32(0.85) + F32(0.3) * frac)
    width = trail + (F32(head_r * 0.8) - trail) * neck
    inside = (along >= 0) & (along <= run)
    qt = np.abs(across) / np.maximum(width, F32(1e-3))
    tail = np.where(inside, np.sqrt(np.clip(F32(1.0) - qt * qt, 0.0, 1.0)), 0.0)
    tail = tail * (F32(0.5) + F32(0.3) * frac) * (F32(1.0) - smoothstep(0.8, 1.0, qt))
    head = _spot(params, rng, shape, ring, head_r, (start * float(ca), start * float(sa)))
    bead_r = s * float(rng.uniform(0.3, 0.4))
    end = start + run - bead_r * 0.3
    bx, by = end * float(ca), end * float(sa)
    qb = np.sqrt((x - F32(bx)) ** 2 + (y - F32(by)) ** 2) / F32(bead_r)
    bead = _drop_profile(qb, ring * 0.3, 0.15) * F32(1.15)
    return np.maximum(np.maximum(head, tail.astype(F32)), bead).astype(F32)


def _splash(
    params: StainGenerator.Params, rng: np.random.Generator, shape: tuple[int, int], ring: float
) -> np.ndarray:
    x, y = _grid(shape)
    s = params.size
    out = _spot(params, rng, shape, ring, s * 0.7, (0.0, 0.0))
    a0 = math.radians(params.angle)
    h, w = shape
    lim = min(h, w) / 2 - 4
    for _ in range(params.count):
        a = a0 + float(rng.normal(0.0, 0.7))
        dist = s * float(rng.uniform(0.9, 2.6))
        r = s * float(np.clip(rng.lognormal(-2.0, 0.5), 0.04, 0.3))
        stretch = float(rng.uniform(1.0, 2.2))
        cx = float(np.clip(dist * math.cos(a), -lim + r * 2, lim - r * 2))
        cy = float(np.clip(dist * math.sin(a), -lim + r * 2, lim - r * 2))
        # each droplet only touches a small window around it
        reach = r * stretch + 2.0
        px0, py0 = cx + (w - 1) / 2, cy + (h - 1) / 2
        x0, x1 = max(0, int(px0 - reach)), min(w, int(px0 + reach) + 2)
        y0, y1 = max(0, int(py0 - reach)), min(h, int(py0 + reach) + 2)
        if x0 >= x1 or y0 >= y1:
            continue
        # droplets stretch along their flight
        dx, dy = x[y0:y1, x0:x1] - F32(cx), y[y0:y1, x0:x1] - F32(cy)
        q = elliptic_radius(dx, dy, a, r * stretch, r)
        out[y0:y1, x0:x1] = np.maximum(out[y0:y1, x0:x1], _drop_profile(q, ring * 0.5, 0.3))
    return out.astype(F32)


def _particles(
    params: StainGenerator.Params,
    rng: np.random.Generator,
    shape: tuple[int, int],
    light: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Specks and a few fibres (thickness), and the shadow they cast (0..1)."""
    h, w = shape
    f = 3
    canvas = np.zeros((h * f, w * f), np.uint8)
    s = params.size
    lim = min(h, w) / 2 - 6
    for _ in range(params.count):
        rr = s * math.sqrt(float(rng.random()))
        th = float(rng.uniform(0, 2 * math.pi))
        cx = (w - 1) / 2 + float(np.clip(rr * math.cos(th), -lim, lim))
        cy = (h - 1) / 2 + float(np.clip(rr * math.sin(th), -lim, lim))
        if rng.random() < 0.12:
            # a fibre: a thin curved thread
            n = 6
            ln = float(rng.uniform(4.0, 12.0))
            ang = float(rng.uniform(0, 2 * math.pi))
            pts = []
            px_, py_ = cx, cy
            for _ in range(n):
                pts.append((int((px_ + 0.5) * f), int((py_ + 0.5) * f)))
                ang += float(rng.normal(0, 0.4))
                px_ = float(np.clip(px_ + ln / n * math.cos(ang), 3, w - 4))
                py_ = float(np.clip(py_ + ln / n * math.sin(ang), 3, h - 4))
            arr = np.array(pts, np.int32).reshape(-1, 1, 2)
            cv2.polylines(canvas, [arr], False, 200, 1, cv2.LINE_AA)
        else:
            r = float(np.clip(rng.lognormal(-0.2, 0.5), 0.35, 2.6))
            ax = (max(1, int(r * f)), max(1, int(r * f * float(rng.uniform(0.5, 1.0)))))
            cv2.ellipse(
                canvas,
                (int((cx + 0.5) * f), int((cy + 0.5) * f)),
                ax,
                float(rng.uniform(0, 180)),
                0,
                360,
                255,
                -1,
                cv2.LINE_AA,
            )
    dens = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(F32) / F32(255.0)
    thick = np.clip(dens * F32(2.2), 0.0, 2.2)
    # a small shadow, offset away from the light, where the particle is not itself
    lx, ly, lz = (float(v) for v in light)
    off = 1.2 * math.hypot(lx, ly) / max(lz, 0.2)
    m = np.array([[1.0, 0.0, -lx * off], [0.0, 1.0, -ly * off]], dtype=F32)
    cast = cv2.warpAffine(dens, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)
    shadow = np.clip(cast - dens, 0.0, 1.0)
    return thick.astype(F32), shadow.astype(F32)


@hookimpl
def register_generators(register: Callable[[type[DefectGenerator]], None]) -> None:
    register(StainGenerator)
