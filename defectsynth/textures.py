"""Shared procedural fields for defect generators: noise, height maps, shading, colour.

Everything here is a pure numpy/OpenCV function of its arguments (randomness comes from
the ``numpy.random.Generator`` passed in). Arrays are float32; images are (h, w, c) in
0..1 with c = 1 (gray) or 3 (BGR), as in :class:`defectsynth.Region`.

The shading model is Blinn's bump mapping: a height map ``h(x, y)`` in pixels gives
normals ``n = normalize(-dh/dx, -dh/dy, 1)``; the diffuse (Lambert) term becomes a *ratio*
against the flat surface, which multiplies the surface's own colour so its texture
survives, and the specular term is a *difference* against the flat surface, added as
light. A flat height map therefore leaves the pixels exactly as they were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "Shading",
    "add_light",
    "bgr_to_lab",
    "fbm",
    "grain",
    "lab_to_bgr",
    "luminance",
    "normals_from_height",
    "path_field",
    "polyline_length",
    "resample_polyline",
    "shade",
    "smoothstep",
    "value_noise",
]

F32 = np.float32


# ---------------------------------------------------------------------------------------
# noise


def _cubic_weights(n: int, cell: float, phase: float, size: int) -> np.ndarray:
    """(n, size) matrix that samples a grid of ``size`` knots, spaced ``cell`` px, at
    ``n`` pixel centres shifted by ``phase`` px, with OpenCV's bicubic kernel (a = -0.75)."""
    x = (np.arange(n, dtype=np.float64) + 0.5 + phase) / cell + 0.5
    i = np.floor(x).astype(np.int64)
    t = (x - i).astype(F32)
    a = F32(-0.75)
    d = np.stack([t + 1, t, 1 - t, 2 - t], axis=1)  # distances to the four knots
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    w = np.where(d <= 1, near, far).astype(F32)
    out = np.zeros((n, size), dtype=F32)
    out[np.arange(n)[:, None], i[:, None] + np.arange(-1, 3)[None, :]] = w
    return out


def value_noise(shape: tuple[int, int], cell: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth value noise of roughly unit standard deviation, feature size ``cell`` px.

    A grid of random values one per ``cell`` px is drawn and interpolated bicubically
    (OpenCV's kernel) at a random sub-cell offset. Coarse grids are interpolated by two
    small matrix products (separable weights); fine ones by ``cv2.resize``, which is the
    same interpolation but slows down in proportion to the upscaling factor.
    """
    h, w = int(shape[0]), int(shape[1])
    cell = max(float(cell), 1.0)
    if cell >= 10.0:
        gh, gw = int(h / cell) + 5, int(w / cell) + 5
        grid = rng.standard_normal((gh, gw)).astype(F32)
        wy = _cubic_weights(h, cell, float(rng.uniform(0.0, cell)), gh)
        wx = _cubic_weights(w, cell, float(rng.uniform(0.0, cell)), gw)
        out = (wy @ grid) @ wx.T
    else:
        gh = int(math.ceil(h / cell)) + 3
        gw = int(math.ceil(w / cell)) + 3
        grid = rng.standard_normal((gh, gw)).astype(F32)
        up = cv2.resize(
            grid, (int(round(gw * cell)), int(round(gh * cell))), interpolation=cv2.INTER_CUBIC
        )
        oy = int(rng.integers(0, max(1, up.shape[0] - h - int(cell)))) + int(cell) // 2
        ox = int(rng.integers(0, max(1, up.shape[1] - w - int(cell)))) + int(cell) // 2
        out = up[oy : oy + h, ox : ox + w]
        if out.shape != (h, w):  # tiny cells: fall back to a padded crop
            out = cv2.resize(up, (w, h), interpolation=cv2.INTER_LINEAR)
    # bicubic interpolation of unit-variance samples keeps ~0.75 of the deviation
    return np.ascontiguousarray(out, dtype=F32) * F32(1.33)


def fbm(
    shape: tuple[int, int],
    scale: float,
    rng: np.random.Generator,
    *,
    octaves: int = 4,
    gain: float = 0.5,
    lacunarity: float = 2.0,
) -> np.ndarray:
    """Fractal Brownian motion: ``octaves`` of value noise, the coarsest of feature size
    ``scale`` px, each next one ``lacunarity`` times finer and ``gain`` times weaker.

    Normalised to roughly zero mean and unit standard deviation. Each octave is built at
    its own low resolution and upsampled, which is ~100x cheaper than filtering noise at
    full resolution.
    """
    h, w = int(shape[0]), int(shape[1])
    total = np.zeros((h, w), dtype=F32)
    amp, norm, cell = 1.0, 0.0, float(scale)
    for _ in range(max(1, int(octaves))):
        if cell < 1.0:
            break
        total += F32(amp) * value_noise((h, w), cell, rng)
        norm += amp * amp
        amp *= gain
        cell /= lacunarity
    return total / F32(math.sqrt(max(norm, 1e-12)))


def grain(shape: tuple[int, int], rng: np.random.Generator, sigma: float = 0.6) -> np.ndarray:
    """Fine, slightly blurred white noise of unit deviation (micro-roughness, speckle)."""
    n: np.ndarray = rng.standard_normal(shape).astype(F32)
    if sigma > 0:
        n = cv2.GaussianBlur(n, (0, 0), sigma)
        n = n * F32(1.0 / max(float(n.std()), 1e-6))
    return n


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at ``edge0`` to 1 at ``edge1`` (float32)."""
    t = np.clip((x - F32(edge0)) / F32(max(edge1 - edge0, 1e-6)), 0.0, 1.0)
    return (t * t * (F32(3.0) - F32(2.0) * t)).astype(F32)


# ---------------------------------------------------------------------------------------
# ellipses


def ellipse_extent(ra: float, rb: float, angle_deg: float, pad: int = 8) -> tuple[int, int]:
    """(h, w) of the axis-aligned box around an ellipse with semi-axes ``ra`` (along
    ``angle_deg``) and ``rb``, plus ``pad`` px."""
    a = math.radians(angle_deg)
    hx = math.hypot(ra * math.cos(a), rb * math.sin(a))
    hy = math.hypot(ra * math.sin(a), rb * math.cos(a))
    return int(math.ceil(2 * hy + pad)), int(math.ceil(2 * hx + pad))


def elliptic_radius(
    dx: np.ndarray, dy: np.ndarray, angle_rad: float, ra: float, rb: float
) -> np.ndarray:
    """Normalised elliptic radius of offsets (dx, dy): 1 on the ellipse with semi-axes
    ``ra`` along ``angle_rad`` and ``rb`` across it."""
    ca, sa = F32(math.cos(angle_rad)), F32(math.sin(angle_rad))
    u = (dx * ca + dy * sa) / F32(ra)
    v = (-dx * sa + dy * ca) / F32(rb)
    return np.sqrt(u * u + v * v)


# ---------------------------------------------------------------------------------------
# colour


def luminance(pixels: np.ndarray) -> np.ndarray:
    """(h, w) luma of an (h, w, 1) or (h, w, 3) BGR image (Rec. 601 weights)."""
    if pixels.ndim == 2:
        return pixels.astype(F32)
    if pixels.shape[2] == 1:
        return np.ascontiguousarray(pixels[:, :, 0], dtype=F32)
    return cv2.cvtColor(np.ascontiguousarray(pixels, dtype=F32), cv2.COLOR_BGR2GRAY)


def bgr_to_lab(pixels: np.ndarray) -> np.ndarray:
    """BGR float 0..1 -> CIELAB (L 0..100, a and b about -128..127), float32."""
    return cv2.cvtColor(np.ascontiguousarray(pixels, dtype=F32), cv2.COLOR_BGR2Lab)


def lab_to_bgr(lab: np.ndarray) -> np.ndarray:
    """CIELAB -> BGR float 0..1 (clipped), float32."""
    bgr = cv2.cvtColor(np.ascontiguousarray(lab, dtype=F32), cv2.COLOR_Lab2BGR)
    return np.clip(bgr, 0.0, 1.0)


# ---------------------------------------------------------------------------------------
# height maps and shading


def normals_from_height(height: np.ndarray, strength: float = 1.0) -> tuple[np.ndarray, ...]:
    """Unit normals ``(nx, ny, nz)`` of a height map given in pixels (central differences).

    ``strength`` scales the slopes (1 = the height map's own units).
    """
    h = np.ascontiguousarray(height, dtype=F32)
    gx = cv2.Sobel(h, cv2.CV_32F, 1, 0, ksize=3, scale=0.125 * strength)
    gy = cv2.Sobel(h, cv2.CV_32F, 0, 1, ksize=3, scale=0.125 * strength)
    return normals_from_slopes(gx, gy)


def normals_from_slopes(gx: np.ndarray, gy: np.ndarray) -> tuple[np.ndarray, ...]:
    """Unit normals from the height map's slopes ``dh/dx``, ``dh/dy``."""
    inv = F32(1.0) / np.sqrt(gx * gx + gy * gy + F32(1.0))
    return (-gx * inv).astype(F32), (-gy * inv).astype(F32), inv.astype(F32)


@dataclass(frozen=True)
class Shading:
    """How a patch of surface reflects, for :func:`shade`.

    ``ambient``: fraction of the flat surface's brightness that does not depend on the
    normal (sky, bounce light). ``specular``: strength of the specular lobe, in units of
    full scale. ``roughness``: lobe width (Blinn-Phong exponent ~ 2 / roughness^2).
    ``anisotropy`` (0..1) widens the lobe across ``grain_angle`` (radians, the direction
    of brushing marks): a brushed surface spreads its highlight across the grain, so a
    groove that tilts the normal *across* the grain stays inside the broad lobe and hides,
    while one that tilts it *along* the grain leaves the narrow lobe and shows.
    """

    ambient: float = 0.35
    specular: float = 0.25
    roughness: float = 0.3
    anisotropy: float = 0.0
    grain_angle: float = 0.0


def _lobe(
    nx: np.ndarray,
    ny: np.ndarray,
    nz: np.ndarray,
    half: np.ndarray,
    s: Shading,
) -> np.ndarray:
    """Normalised anisotropic Gaussian lobe around the half vector (Ward-style)."""
    hx, hy, hz = (float(v) for v in half)
    ca, sa = math.cos(s.grain_angle), math.sin(s.grain_angle)
    # slope-space offset between the facet normal and the half vector
    inv_nz = F32(1.0) / np.maximum(nz, F32(1e-3))
    tx = F32(hx / hz) - nx * inv_nz
    ty = F32(hy / hz) - ny * inv_nz
    along = tx * F32(ca) + ty * F32(sa)
    across = -tx * F32(sa) + ty * F32(ca)
    r = max(s.roughness, 1e-3)
    ra = F32(r)
    rc = F32(r * (1.0 + 3.0 * s.anisotropy))
    e = (along / ra) ** 2 + (across / rc) ** 2
    return np.exp(-F32(0.5) * e).astype(F32)


def shade(
    nx: np.ndarray,
    ny: np.ndarray,
    nz: np.ndarray,
    light: np.ndarray,
    shading: Shading,
    occlusion: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Diffuse ratio and specular difference of tilted normals against the flat surface.

    :param nx, ny, nz: unit normals (image coordinates, z out of the image).
    :param light: unit vector towards the light (``Region.light.vector``).
    :param occlusion: optional 0..1 factor (1 = fully lit) for cast shadows and cavities;
        it scales the direct light of both terms.
    :return: ``ratio`` (1 on a flat surface; multiplies the surface colour) and
        ``spec`` (0 on a flat surface; light to add, in units of full scale).
    """
    lx, ly, lz = (float(v) for v in light)
    lz = max(lz, 0.02)
    amb = F32(shading.ambient)
    ndl = np.maximum(nx * F32(lx) + ny * F32(ly) + nz * F32(lz), F32(0.0))
    if occlusion is not None:
        ndl = ndl * occlusion
    flat = float(shading.ambient + (1.0 - shading.ambient) * lz)
    ratio = (amb + (F32(1.0) - amb) * ndl) * F32(1.0 / flat)
    if occlusion is not None:
        # cavities also see less of the sky
        ratio = ratio * (F32(0.55) + F32(0.45) * occlusion)
    spec = np.zeros_like(ratio)
    if shading.specular > 0:
        half = np.array([lx, ly, lz + 1.0], dtype=np.float64)
        half /= np.linalg.norm(half)
        one = np.ones((1, 1), dtype=F32)
        zero = np.zeros((1, 1), dtype=F32)
        flat_lobe = float(_lobe(zero, zero, one, half, shading)[0, 0])
        lobe = _lobe(nx, ny, nz, half, shading)
        if occlusion is not None:
            lobe = lobe * occlusion
        spec = (lobe - F32(flat_lobe)) * F32(shading.specular)
    return ratio.astype(F32), spec.astype(F32)


def add_light(
    pixels: np.ndarray,
    ratio: np.ndarray,
    spec: np.ndarray,
    spec_color: np.ndarray | None = None,
) -> np.ndarray:
    """Apply :func:`shade`'s result: ``pixels * ratio + spec * spec_color``, clipped.

    Negative specular differences (a facet turned out of the highlight) remove light in
    proportion to the pixel, so they never push dark pixels below zero.
    """
    c = pixels.shape[2]
    col = np.ones(c, dtype=F32) if spec_color is None else np.asarray(spec_color, F32)
    r = ratio[:, :, None]
    s = spec[:, :, None]
    pos = np.maximum(s, F32(0.0))
    neg = np.minimum(s, F32(0.0))
    out = pixels * (r + neg * F32(1.6)) + pos * col
    return np.clip(out, 0.0, 1.0).astype(F32)


# ---------------------------------------------------------------------------------------
# paths


def polyline_length(points: np.ndarray) -> float:
    """Length in px of an (n, 2) polyline of (x, y) points."""
    if len(points) < 2:
        return 0.0
    return float(np.sqrt((np.diff(points, axis=0) ** 2).sum(axis=1)).sum())


def resample_polyline(points: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Points every ``step`` px along a polyline and their arc length from the start."""
    seg = np.sqrt((np.diff(points, axis=0) ** 2).sum(axis=1))
    s = np.concatenate([[0.0], np.cumsum(seg)])
    total = float(s[-1])
    n = max(2, int(math.ceil(total / max(step, 1e-3))) + 1)
    t = np.linspace(0.0, total, n)
    x = np.interp(t, s, points[:, 0])
    y = np.interp(t, s, points[:, 1])
    return np.stack([x, y], axis=1), t


@dataclass(frozen=True)
class PathField:
    """Geometry relative to a smooth open path, for the pixels near it (see :func:`path_field`).

    All arrays are 1-D over the pixels at ``(iy, ix)``. ``dist``: signed perpendicular
    distance in px (positive towards ``(nx, ny)``); ``arc``: arc length of the nearest path
    point; ``nx, ny``: unit normal of the path there; ``end``: distance in px beyond the
    path's ends (0 alongside the path).
    """

    iy: np.ndarray
    ix: np.ndarray
    dist: np.ndarray
    arc: np.ndarray
    nx: np.ndarray
    ny: np.ndarray
    end: np.ndarray
    length: float


def path_field(points: np.ndarray, shape: tuple[int, int], reach: float) -> PathField:
    """Signed distance, arc length and normal of the nearest point of a path, for every
    pixel within ``reach`` px of it.

    The path is resampled every half pixel; a labelled distance transform finds each
    pixel's nearest sample and the exact perpendicular offset from that sample's tangent
    line gives sub-pixel accuracy.
    """
    h, w = int(shape[0]), int(shape[1])
    pts, arc = resample_polyline(np.asarray(points, dtype=np.float64), 0.5)
    tang = np.gradient(pts, axis=0)
    tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-9)
    sx = np.clip(np.rint(pts[:, 0]).astype(np.int64), 0, w - 1)
    sy = np.clip(np.rint(pts[:, 1]).astype(np.int64), 0, h - 1)
    seeds = np.ones((h, w), dtype=np.uint8)
    seeds[sy, sx] = 0
    d, labels = cv2.distanceTransformWithLabels(
        seeds, cv2.DIST_L2, cv2.DIST_MASK_5, labelType=cv2.DIST_LABEL_PIXEL
    )
    iy, ix = np.nonzero(d <= F32(reach))
    # label of each seed pixel -> index of (one of) the path samples on it
    lut = np.zeros(int(labels.max()) + 1, dtype=np.int64)
    lut[labels[sy, sx]] = np.arange(len(pts))
    k = lut[labels[iy, ix]]
    tx = tang[k, 0].astype(F32)
    ty = tang[k, 1].astype(F32)
    dx = ix.astype(F32) - pts[k, 0].astype(F32)
    dy = iy.astype(F32) - pts[k, 1].astype(F32)
    along = dx * tx + dy * ty
    nxf, nyf = -ty, tx  # normal = tangent rotated +90 degrees
    arc_k = arc[k].astype(F32)
    total = float(arc[-1])
    s = arc_k + along
    end = np.maximum(-s, 0.0) + np.maximum(s - F32(total), 0.0)
    return PathField(
        iy=iy,
        ix=ix,
        dist=(dx * nxf + dy * nyf).astype(F32),
        arc=np.clip(s, 0.0, total).astype(F32),
        nx=nxf,
        ny=nyf,
        end=end.astype(F32),
        length=total,
    )


def bezier(control: np.ndarray, n: int) -> np.ndarray:
    """``n`` points on the Bezier curve with (k, 2) control points (de Casteljau)."""
    t = np.linspace(0.0, 1.0, max(2, n))[:, None, None]
    pts = np.broadcast_to(control[None], (len(t), *control.shape)).astype(np.float64)
    while pts.shape[1] > 1:
        pts = pts[:, :-1] * (1 - t) + pts[:, 1:] * t
    return pts[:, 0]


def grain_orientation(gray: np.ndarray) -> tuple[float, float]:
    """Direction (radians, image coordinates) of dominant streaks and their coherence 0..1.

    Structure tensor of a downsampled crop: brushed metal gives coherence ~0.3-0.9 along
    its brushing direction; isotropic textures give ~0.
    """
    g: np.ndarray = np.ascontiguousarray(gray, dtype=F32)
    h, w = g.shape
    f = max(1, int(max(h, w) // 96))
    if f > 1:
        g = cv2.resize(g, (max(4, w // f), max(4, h // f)), interpolation=cv2.INTER_AREA)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    jxx = float((gx * gx).mean())
    jyy = float((gy * gy).mean())
    jxy = float((gx * gy).mean())
    tr = jxx + jyy
    if tr < 1e-10:
        return 0.0, 0.0
    coherence = math.sqrt((jxx - jyy) ** 2 + 4 * jxy * jxy) / tr
    grad_angle = 0.5 * math.atan2(2 * jxy, jxx - jyy)
    return grad_angle + math.pi / 2, float(min(1.0, coherence))


def surface_stats(pixels: np.ndarray) -> tuple[float, float]:
    """(median luminance, mean chroma in Lab units) of a region, on a subsample."""
    step = max(1, int(max(pixels.shape[:2]) // 48))
    sub = np.ascontiguousarray(pixels[::step, ::step], dtype=F32)
    lum = float(np.median(luminance(sub)))
    if sub.shape[2] == 3:
        lab = bgr_to_lab(sub)
        chroma = float(np.sqrt(lab[:, :, 1] ** 2 + lab[:, :, 2] ** 2).mean())
    else:
        chroma = 0.0
    return lum, chroma


def surface_shading(
    pixels: np.ndarray, *, ambient: float, specular: float, roughness: float
) -> Shading:
    """A :class:`Shading` for a region, anisotropic along the grain when the surface is
    brushed (see :func:`grain_orientation`)."""
    angle, coherence = grain_orientation(luminance(pixels))
    return Shading(
        ambient=ambient,
        specular=specular,
        roughness=roughness,
        anisotropy=float(np.clip((coherence - 0.12) * 1.6, 0.0, 1.0)),
        grain_angle=angle,
    )


def specular_colour(pixels: np.ndarray, colour: np.ndarray | None = None) -> np.ndarray:
    """Colour of highlights on this surface: mostly white, tinted by a metal's own colour.

    :param colour: the region's :func:`surface_colour`, when the caller already has it.
    """
    col = surface_colour(pixels) if colour is None else np.asarray(colour, dtype=F32)
    return (F32(0.55) + F32(0.45) * col / max(float(col.max()), 1e-3)).astype(F32)


def texture_contrast(pixels: np.ndarray) -> float:
    """Standard deviation of the fine (high-pass, under ~6 px) luminance detail of a region:
    ~0.01-0.03 for paint, brushed or ground metal, ~0.1 for knurls or weave."""
    h, w = pixels.shape[:2]
    # a central crop of at most 96x96 px: fine detail is stationary enough on one part
    y0, x0 = max(0, (h - 96) // 2), max(0, (w - 96) // 2)
    lum = luminance(pixels[y0 : y0 + 96, x0 : x0 + 96])
    hp = lum - cv2.GaussianBlur(lum, (0, 0), 2.0)
    return float(cv2.meanStdDev(hp)[1][0, 0])


def surface_colour(pixels: np.ndarray) -> np.ndarray:
    """Median colour (c,) of a region, from a subsample: the colour a defect sits on."""
    step = max(1, int(max(pixels.shape[:2]) // 48))
    sub = np.ascontiguousarray(pixels[::step, ::step].reshape(-1, pixels.shape[2]).T)
    return _median_rows(sub)


def _median_rows(a: np.ndarray) -> np.ndarray:
    """``np.median(a, axis=1)`` as float32, by one partition (several times faster)."""
    n = a.shape[1]
    k = n // 2
    if n % 2:
        return np.partition(a, k, axis=1)[:, k].astype(F32)
    part = np.partition(a, (k - 1, k), axis=1)
    return ((part[:, k - 1] + part[:, k]) * F32(0.5)).astype(F32)


def ss_coords(shape: tuple[int, int], factor: int) -> tuple[np.ndarray, np.ndarray]:
    """x and y coordinates (in output pixels) of a ``factor``x supersampled grid."""
    h, w = shape
    xs = (np.arange(w * factor, dtype=F32) + F32(0.5)) / F32(factor) - F32(0.5)
    ys = (np.arange(h * factor, dtype=F32) + F32(0.5)) / F32(factor) - F32(0.5)
    return xs[None, :], ys[:, None]


def downsample(a: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Box-filter a ``factor``x supersampled array back to ``shape`` (h, w)."""
    if factor == 1:
        return np.ascontiguousarray(a, dtype=F32)
    h, w = shape
    return cv2.resize(np.ascontiguousarray(a, dtype=F32), (w, h), interpolation=cv2.INTER_AREA)
