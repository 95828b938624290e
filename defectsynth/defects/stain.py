"""Stain / contamination: foreign matter lying on the surface."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from defectsynth.api import DefectGenerator, Layer, Region, hookimpl, param
from defectsynth.textures import elliptic_radius, fbm_pixels, luminance, median_rows, smoothstep

F32 = np.float32

KINDS = ("spot", "drip", "splash", "particles")
SUBSTANCES = ("water", "oil", "rust", "coffee", "grease", "dust")


@dataclass(frozen=True)
class _Substance:
    density: tuple[float, float, float]  # optical density per unit thickness, B, G, R
    scatter: tuple[float, float, float]  # colour of the light the deposit scatters back
    scattering: float  # how strongly it scatters per unit thickness
    ring: float  # how much of it a drying drop carries to its rim
    rim_floor: float = 0.0  # the least it carries there (dilute solutions always ring)
    amount: float = 1.0  # solids left per unit of liquid (thickness of the dried film)
    grains: bool = False  # dry matter: fine particles, not a film


_SUBSTANCES: dict[str, _Substance] = {
    # dried mineral residue of (hard) water: a dilute solution, so nearly all of it dries
    # at the pinned rim (coffee-ring effect) as a thin whitish film, barely any inside
    "water": _Substance((0.05, 0.05, 0.05), (0.86, 0.86, 0.85), 0.22, 1.0, 0.75, 0.55),
    # amber oil: absorbs blue most, no body colour of its own
    "oil": _Substance((1.1, 0.6, 0.25), (0.0, 0.0, 0.0), 0.0, 0.2),
    # rust-coloured deposit: absorbs and scatters orange-brown
    "rust": _Substance((1.3, 0.85, 0.45), (0.10, 0.25, 0.50), 0.8, 0.5),
    # coffee/tea-like dye: transparent brown, the classic dark ring
    "coffee": _Substance((1.5, 1.0, 0.55), (0.0, 0.0, 0.0), 0.0, 1.0, 0.45),
    # grease or soot: neutral dark film
    "grease": _Substance((0.9, 0.9, 0.85), (0.05, 0.05, 0.05), 0.1, 0.3),
    # dust, fibres, swarf fines: light, mostly scattering, dry grains
    "dust": _Substance((0.15, 0.17, 0.2), (0.62, 0.67, 0.71), 0.7, 0.2, grains=True),
}


class StainGenerator(DefectGenerator):
    """Foreign matter on the surface: a dried spot, a drip run, a splash or loose particles.

    The deposit is a thickness field; each substance has its own optical density per
    colour channel (what it absorbs: oil and coffee absorb blue and look amber/brown) and
    its own scattered colour (mineral residue and dust look whitish). The surface seen
    through it is ``surface * exp(-density * thickness)``, plus the light the deposit
    scatters back, so thin deposits are partly transparent and the texture shows through.
    A drying drop carries matter to its rim (the coffee-ring effect; mineral residue of
    water, a dilute solution, nearly all of it); a drip is a narrow run in the ``angle``
    direction, ridged along its edges, ending in a bead; dry dust settles as fine grains
    whose number follows the shape, not as a film; particles cast a small shadow away
    from the scene light. On gray images the same physics acts on luminance.
    """

    name = "stain"
    version = "2"

    @dataclass(frozen=True)
    class Params:
        kind: str = param("spot", choices=KINDS, vary=KINDS, doc="shape of the deposit")
        substance: str = param(
            "water", choices=SUBSTANCES, vary=SUBSTANCES, doc="what it is (sets its colour)"
        )
        size: float = param(
            18.0, lo=3.0, hi=250.0, vary=(9.0, 32.0), size=True,
            doc="radius of the spot / drop in px"
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
            run = s * 6.5  # the longest run _drip draws
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
        ring = max(params.ring * sub.ring, sub.rim_floor)
        shadow: np.ndarray | None = None
        area: np.ndarray | None = None
        if params.kind == "drip":
            thick = _drip(params, rng, (h, w), ring)
        elif params.kind == "splash":
            thick = _splash(params, rng, (h, w), ring)
        elif params.kind == "particles":
            thick, shadow = _particles(params, rng, (h, w), region.light.vector)
        else:
            thick = np.zeros((h, w), F32)
            _spot(rng, thick, ring, params.size, (0.0, 0.0))
        if sub.grains and params.kind != "particles":
            # dry dust does not dry into a film: where the shape says "much", many fine
            # grains settle, fewer towards its soft edge
            thick, area = _grains(thick, params.size, rng)
        elif sub.amount != 1.0:
            thick *= F32(sub.amount)
        cov = smoothstep(0.015, 0.09, thick)
        if shadow is not None:
            cov = np.maximum(cov, smoothstep(0.1, 0.5, shadow))
        if area is not None:
            # the dusted area as one region: the label an inspector would draw around it
            cov = np.maximum(cov, area)
        out = np.array(pixels, dtype=F32)
        bx, by, bw, bh = cv2.boundingRect((cov > 0).view(np.uint8))
        if bw == 0 or bh == 0:
            return Layer(out, cov)
        box = (slice(by, by + bh), slice(bx, bx + bw))
        # The deposit over the surface, per channel c, in the coverage's box:
        #   new = base * exp(-density_c t) * (1 - haze) + back * scatter_c + haze * L
        # with back = 1 - exp(-scattering t) the light it scatters and haze = 1 -
        # exp(-0.12 t) the faint haze every dried deposit has, whatever it is.
        t = thick[box] * F32(params.opacity * 1.3)
        dens = np.array(sub.density, F32)
        scat = np.array(sub.scatter, F32)
        if not region.is_color:
            wts = np.array([0.114, 0.587, 0.299], F32)
            dens = np.array([float((dens * wts).sum())], F32)
            scat = np.array([float((scat * wts).sum())], F32)
        level = max(0.45, _median_luminance(pixels))
        haze = np.exp(t * F32(-0.12))
        haze -= F32(1.0)
        haze *= F32(-level)  # haze * L
        back = np.exp(t * F32(-sub.scattering))
        back -= F32(1.0)
        np.negative(back, out=back)
        dim = None
        if shadow is not None:  # the particles' shadows dim the surface under them
            dim = shadow[box] * F32(-0.35)
            dim += F32(1.0)
        gains, adds = [], []
        for d, s in zip(dens.tolist(), scat.tolist()):
            g = np.exp(t * F32(-(d + 0.12)))  # exp(-density t) * (1 - haze)
            if dim is not None:
                g *= dim
            gains.append(g)
            adds.append(back * F32(s) + haze)
        new = pixels[box] * _stack(gains)
        new += _stack(adds)
        np.clip(new, 0.0, 1.0, out=new)
        # the box's corners outside the coverage keep their pixels
        cv2.copyTo(pixels[box], (cov[box] <= 0).view(np.uint8), new)
        out[box] = new
        return Layer(out, cov)


def _stack(planes: list[np.ndarray]) -> np.ndarray:
    """(h, w) planes -> (h, w, c) (cv2.merge: numpy's broadcasting over a short last
    axis is several times slower)."""
    if len(planes) == 1:
        return planes[0][:, :, None]
    return cv2.merge(planes)


def _median_luminance(pixels: np.ndarray) -> float:
    """Median luminance of a region, from a subsample of at most ~32x32 pixels."""
    step = max(1, int(max(pixels.shape[:2]) // 32))
    lum = luminance(pixels[::step, ::step])
    return float(median_rows(lum.reshape(1, -1))[0])


def _coords(n: int, start: int, centre: float) -> np.ndarray:
    """Pixel coordinates ``start .. start + n - 1`` relative to ``centre``."""
    return np.arange(start, start + n, dtype=F32) - F32(centre)


def _drop_profile(q: np.ndarray, ring: float, edge: float) -> np.ndarray:
    """Thickness of a dried drop at normalised radius q (1 = rim)."""
    q2 = q * q
    body = np.sqrt(np.maximum(F32(1.0) - q2, F32(0.0), out=q2), out=q2)
    body *= F32(1.0 - 0.75 * ring)
    if ring > 0:
        rim = q - F32(0.94)
        rim *= F32(1.0 / 0.07)
        np.square(rim, out=rim)
        np.negative(rim, out=rim)
        rim = np.exp(rim, out=rim)
        rim *= F32(1.6 * ring)
        body += rim
    body *= F32(1.0) - smoothstep(1.0 - edge, 1.0, q)
    return body


def _spot(
    rng: np.random.Generator,
    canvas: np.ndarray,
    ring: float,
    size: float,
    centre: tuple[float, float],
) -> None:
    """Draw a dried drop of radius ``size`` at ``centre`` (px from the canvas's middle)
    into ``canvas`` (the thicker of the two wins).

    It is computed in a window of 2 x (1.3 size + 4) px around it, the region a lone spot
    gets: the fractal rim never reaches that far (q * (1 + 0.09 wav) < 1 needs q < 1.3
    unless wav < -2.6).
    """
    h, w = canvas.shape
    px0, py0 = (w - 1) / 2 + centre[0], (h - 1) / 2 + centre[1]
    half = size * 1.3 + 4.0
    x0, x1 = max(0, int(math.floor(px0 - half))), min(w, int(math.ceil(px0 + half)) + 1)
    y0, y1 = max(0, int(math.floor(py0 - half))), min(h, int(math.ceil(py0 + half)) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    shape = (y1 - y0, x1 - x0)
    aspect = float(rng.uniform(0.7, 1.0))
    a = float(rng.uniform(0, math.pi))
    q = elliptic_radius(_coords(shape[1], x0, px0)[None, :], _coords(shape[0], y0, py0)[:, None],
                        a, size, size * aspect)
    # a drying front pins on surface flaws: a wavy, fractal rim, and a patchy thickness
    # inside (on whole-pixel cells: the exact feature size of either does not matter)
    wav = fbm_pixels(shape, max(size * 0.7, 3.0), rng, octaves=3, gain=0.4)
    inner = fbm_pixels(shape, max(size * 0.5, 2.0), rng, octaves=3)
    wav *= F32(0.09)
    wav += F32(1.0)
    q *= wav
    np.maximum(q, F32(0.0), out=q)
    inner *= F32(0.25)
    inner += F32(1.0)
    np.clip(inner, 0.4, 1.5, out=inner)
    prof = _drop_profile(q, ring, 0.1)
    prof *= inner
    win = canvas[y0:y1, x0:x1]
    np.maximum(win, prof, out=win)


def _drip(
    params: StainGenerator.Params, rng: np.random.Generator, shape: tuple[int, int], ring: float
) -> np.ndarray:
    """A run: liquid that ran down the surface from where it landed (``angle``: the way
    gravity pulls along the surface), a narrow film that widens a little as the front
    gathers liquid and ends in a bead, the thickest part. The film dries with ridges
    along its edges (the coffee-ring effect along the run) and meanders a little where
    the front pinned on surface flaws; where it landed is a small spot, rarely much wider
    than the run."""
    h, w = shape
    x = _coords(w, 0, (w - 1) / 2)[None, :]
    y = _coords(h, 0, (h - 1) / 2)[:, None]
    s = params.size
    a = math.radians(params.angle)
    ca, sa = math.cos(a), math.sin(a)
    u = rng.random(9).tolist()
    run = s * (4.0 + 2.5 * u[0])
    w0 = s * (0.26 + 0.12 * u[1])  # half-width of the run at its top
    # the front swells into a teardrop bead as the liquid gathers there
    swell = 0.5 + 0.3 * u[2]
    bead_r = w0 * 0.8 * (1.0 + swell)  # half-width of the bead: the run's, where it ends
    src_r = w0 * (0.9 + 0.4 * u[3])
    start = -run / 2
    along = x * F32(ca) + (y * F32(sa) - F32(start))
    across = y * F32(ca) - x * F32(sa)
    frac = np.clip(along * F32(1.0 / max(run, 1e-3)), 0.0, 1.0)
    # meander and width change along the run: slow sinusoids of random phase
    wob = np.sin(frac * F32(math.pi * (1.0 + u[4])) + F32(2 * math.pi * u[5]))
    wob -= F32(math.sin(2 * math.pi * u[5]))  # zero where it landed
    wob *= F32(w0 * 0.3)
    across -= wob
    end = run - bead_r * 1.5  # where the bead's middle is; its tip is at the run's end
    width = frac * F32(-0.2)
    width += F32(1.0)
    width *= F32(1.0) + F32(0.12) * np.sin(frac * F32(5.0 + 4.0 * u[6]) + F32(6.3 * u[7]))
    width *= F32(1.0) + F32(swell) * smoothstep(0.55 * end / run, end / run, frac)
    width *= F32(w0)
    qt = np.abs(across, out=across)
    qt /= width
    # the film across the run: a thin body, ridges of deposit along its edges
    body = np.sqrt(np.maximum(F32(1.0) - qt * qt, F32(0.0)))
    body *= F32(1.0 - 0.6 * ring)
    ridge = qt - F32(0.86)
    ridge *= F32(1.0 / 0.1)
    np.square(ridge, out=ridge)
    np.negative(ridge, out=ridge)
    ridge = np.exp(ridge, out=ridge)
    ridge *= F32(0.5 * ring)
    body += ridge
    body *= F32(1.0) - smoothstep(0.9, 1.0, qt)
    # thin where the liquid ran on, more towards the front
    body *= frac * F32(0.35) + F32(0.45)
    body *= (along >= 0) & (along <= F32(end))
    _spot(rng, body, ring, src_r, (start * ca, start * sa))
    # the bead, on the run's meander where it ends
    bend, side = start + end, _wob_at(u, end / run, w0)
    _bead(body, (bend * ca - side * sa, bend * sa + side * ca), bead_r, ring * 0.25, a)
    return body


def _wob_at(u: list[float], frac: float, w0: float) -> float:
    """The run's sideways meander at ``frac`` of its length (as :func:`_drip` draws it)."""
    return w0 * 0.3 * (
        math.sin(frac * math.pi * (1.0 + u[4]) + 2 * math.pi * u[5]) - math.sin(2 * math.pi * u[5])
    )


def _bead(
    canvas: np.ndarray, centre: tuple[float, float], r: float, ring: float, angle: float
) -> None:
    """The bead where a run's liquid gathered, half-width ``r``, half as long again along
    the run (it sags), drawn into ``canvas`` (max)."""
    h, w = canvas.shape
    px0, py0 = (w - 1) / 2 + centre[0], (h - 1) / 2 + centre[1]
    ra = r * 1.5
    x0, x1 = max(0, int(math.floor(px0 - ra - 1))), min(w, int(math.ceil(px0 + ra + 1)) + 1)
    y0, y1 = max(0, int(math.floor(py0 - ra - 1))), min(h, int(math.ceil(py0 + ra + 1)) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    dx = _coords(x1 - x0, x0, px0)
    dy = _coords(y1 - y0, y0, py0)
    q = elliptic_radius(dx[None, :], dy[:, None], angle, ra, r)
    bead = _drop_profile(q, ring, 0.15)
    bead *= F32(1.1)
    win = canvas[y0:y1, x0:x1]
    np.maximum(win, bead, out=win)


def _grains(
    thick: np.ndarray, size: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Dry dust in the place of a film: fine grains whose number follows ``thick``
    (softened, so the dusting thins out gradually), mostly below a pixel, a few larger;
    and the dusted area, 0..1. Drawn at 2x and averaged back."""
    h, w = thick.shape
    peak = float(thick.max())
    if peak <= 0:
        return thick, np.zeros_like(thick)
    soft: np.ndarray = cv2.GaussianBlur(thick, (0, 0), max(1.5, 0.25 * size))
    density = soft * F32(1.0 / max(float(soft.max()), 1e-6))
    d2 = cv2.resize(density, (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR)
    u = rng.random((2 * h, 2 * w), dtype=F32)
    fine = (u < d2 * F32(0.1)).astype(np.uint8)
    seeds = (u > F32(1.0) - d2 * F32(0.012)).astype(np.uint8)
    coarse = cv2.dilate(seeds, np.ones((3, 3), np.uint8))
    grains = np.maximum(fine, coarse).astype(F32)
    g: np.ndarray = cv2.resize(grains, (w, h), interpolation=cv2.INTER_AREA)
    g *= F32(1.3)
    # grains below the camera's resolution: a faint veil where the dusting is dense
    g += density * F32(0.08)
    return g, smoothstep(0.08, 0.3, density)


def _splash(
    params: StainGenerator.Params, rng: np.random.Generator, shape: tuple[int, int], ring: float
) -> np.ndarray:
    h, w = shape
    s = params.size
    out = np.zeros(shape, F32)
    _spot(rng, out, ring, s * 0.7, (0.0, 0.0))
    n = params.count
    lim = min(h, w) / 2 - 4
    # each droplet flies from the centre, roughly along ``angle``
    a = math.radians(params.angle) + rng.normal(0.0, 0.7, n)
    dist = s * rng.uniform(0.9, 2.6, n)
    r = s * np.clip(rng.lognormal(-2.0, 0.5, n), 0.04, 0.3)
    stretch = rng.uniform(1.0, 2.2, n)
    cx = np.minimum(np.maximum(dist * np.cos(a), -lim + r * 2), lim - r * 2)
    cy = np.minimum(np.maximum(dist * np.sin(a), -lim + r * 2), lim - r * 2)
    # Droplets as equal-size stamps, evaluated a batch at a time (each batch a few numpy
    # passes, however many droplets); each touches a small window.
    side = int(math.ceil(2 * (float((r * stretch).max()) + 2.0))) + 3
    batch = max(1, _STAMP_BUDGET // (side * side))
    for k in range(0, n, batch):
        part = slice(k, k + batch)
        _droplets(out, a[part], r[part], stretch[part], cx[part], cy[part], ring * 0.5)
    return out


# float32 elements per batch of stamps: bounds the memory of huge splashes
_STAMP_BUDGET = 1 << 18


def _droplets(
    out: np.ndarray,
    a: np.ndarray,
    r: np.ndarray,
    stretch: np.ndarray,
    cx: np.ndarray,
    cy: np.ndarray,
    ring: float,
) -> None:
    """Draw droplets of radius ``r`` stretched ``stretch`` times along ``a`` (radians) at
    (``cx``, ``cy``) px from the middle of ``out`` into it (the thicker wins)."""
    h, w = out.shape
    ra = r * stretch
    reach = float(ra.max()) + 2.0
    side = int(math.ceil(2 * reach)) + 3
    px0, py0 = cx + (w - 1) / 2, cy + (h - 1) / 2
    x0 = np.floor(px0 - reach).astype(np.int64)
    y0 = np.floor(py0 - reach).astype(np.int64)
    step = np.arange(side, dtype=F32)
    dx = (x0.astype(F32)[:, None] + step) - px0.astype(F32)[:, None]  # (n, side)
    dy = (y0.astype(F32)[:, None] + step) - py0.astype(F32)[:, None]
    ca, sa = np.cos(a), np.sin(a)
    u = (dx * (ca / ra).astype(F32)[:, None])[:, None, :]
    u = u + (dy * (sa / ra).astype(F32)[:, None])[:, :, None]
    v = (dy * (ca / r).astype(F32)[:, None])[:, :, None]
    v = v - (dx * (sa / r).astype(F32)[:, None])[:, None, :]
    u *= u
    v *= v
    u += v
    q = np.sqrt(u, out=u)
    drops = _drop_profile(q, ring, 0.3)
    for k in range(len(a)):
        ya, xa = int(y0[k]), int(x0[k])
        yb, xb = max(ya, 0), max(xa, 0)
        ye, xe = min(ya + side, h), min(xa + side, w)
        if yb >= ye or xb >= xe:
            continue
        win = out[yb:ye, xb:xe]
        np.maximum(win, drops[k, yb - ya : ye - ya, xb - xa : xe - xa], out=win)


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
    n = params.count
    lim = min(h, w) / 2 - 6
    rr = s * np.sqrt(rng.random(n))
    th = rng.uniform(0, 2 * math.pi, n)
    cxs = ((w - 1) / 2 + np.clip(rr * np.cos(th), -lim, lim)).tolist()
    cys = ((h - 1) / 2 + np.clip(rr * np.sin(th), -lim, lim)).tolist()
    fibre = (rng.random(n) < 0.12).tolist()
    # a fibre: a thin curved thread of 6 points
    lengths = rng.uniform(4.0, 12.0, n).tolist()
    headings = rng.uniform(0, 2 * math.pi, n).tolist()
    turns = rng.normal(0, 0.4, (n, 6)).tolist()
    # a speck: a small ellipse
    radii = np.clip(rng.lognormal(-0.2, 0.5, n), 0.35, 2.6).tolist()
    squash = rng.uniform(0.5, 1.0, n).tolist()
    tilt = rng.uniform(0, 180, n).tolist()
    for i in range(n):
        cx, cy = cxs[i], cys[i]
        if fibre[i]:
            pts = []
            px_, py_ = cx, cy
            ang, step = headings[i], lengths[i] / 6
            for turn in turns[i]:
                pts.append((int((px_ + 0.5) * f), int((py_ + 0.5) * f)))
                ang += turn
                px_ = min(max(px_ + step * math.cos(ang), 3), w - 4)
                py_ = min(max(py_ + step * math.sin(ang), 3), h - 4)
            arr = np.array(pts, np.int32).reshape(-1, 1, 2)
            cv2.polylines(canvas, [arr], False, 200, 1, cv2.LINE_AA)
        else:
            r = radii[i]
            ax = (max(1, int(r * f)), max(1, int(r * f * squash[i])))
            centre = (int((cx + 0.5) * f), int((cy + 0.5) * f))
            cv2.ellipse(canvas, centre, ax, tilt[i], 0, 360, 255, -1, cv2.LINE_AA)
    dens = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(F32)
    dens *= F32(1.0 / 255.0)
    thick = np.minimum(dens * F32(2.2), F32(2.2))
    # a small shadow, offset away from the light, where the particle is not itself
    lx, ly, lz = (float(v) for v in light)
    off = 1.2 * math.hypot(lx, ly) / max(lz, 0.2)
    m = np.array([[1.0, 0.0, -lx * off], [0.0, 1.0, -ly * off]], dtype=F32)
    cast: np.ndarray = cv2.warpAffine(dens, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)
    cast -= dens
    shadow = np.clip(cast, 0.0, 1.0, out=cast)
    return thick, shadow


@hookimpl
def register_generators(register: Callable[[type[DefectGenerator]], None]) -> None:
    register(StainGenerator)
