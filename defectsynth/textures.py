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

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "PathField",
    "Shading",
    "add_light",
    "bgr_to_lab",
    "ellipse_extent",
    "elliptic_radius",
    "fbm",
    "fbm_fields",
    "fbm_pixels",
    "grain",
    "grain_orientation",
    "lab_to_bgr",
    "luminance",
    "median_rows",
    "normals_from_height",
    "normals_from_slopes",
    "path_field",
    "resample_polyline",
    "shade",
    "shade_slopes",
    "smoothstep",
    "specular_colour",
    "surface_colour",
    "surface_shading",
    "texture_contrast",
    "value_noise",
]

F32 = np.float32


# ---------------------------------------------------------------------------------------
# noise


# bicubic kernel of OpenCV (a = -0.75) as polynomials in the sub-knot position t (rows: t^3,
# t^2, t, 1; columns: the knots at -1, 0, +1, +2)
_CUBIC = np.array(
    [
        [-0.75, 1.25, -1.25, 0.75],
        [1.5, -2.25, 1.5, -0.75],
        [-0.75, 0.0, 0.75, 0.0],
        [0.0, 1.0, 0.0, 0.0],
    ]
)
_KNOTS = np.arange(-1, 3, dtype=np.int64)


def _cubic_weights_cat(
    n: int,
    cells: list[float],
    phases: list[float],
    sizes: list[int],
    widths: list[int] | None = None,
) -> np.ndarray:
    """(n, sum(widths)) matrix: for each grid k, a block of ``widths[k]`` columns (default
    ``sizes[k]``) that samples its knots, spaced ``cells[k]`` px, at ``n`` pixel centres
    shifted by ``phases[k]`` px, with OpenCV's bicubic kernel (a = -0.75). All grids in
    one pass; a block wider than its grid's ``sizes[k]`` knots leaves room for rows past
    the grid's own length (the caller uses the first ``sizes[k]`` columns).

    A pixel left of knot 0 takes its far-left weight from the grid's last knot (the
    index wraps), as the first implementation did; it is another random knot."""
    widths = list(sizes) if widths is None else list(widths)
    total = sum(widths)
    if n == 0:
        return np.zeros((0, total), dtype=F32)
    k = len(cells)
    cell = np.array(cells, dtype=np.float64)[:, None]
    x = np.arange(n, dtype=np.float64) + 0.5
    x = (x + np.array(phases, dtype=np.float64)[:, None]) / cell + 0.5  # (k, n)
    i = np.floor(x)
    p = np.empty((k, n, 4))
    t = np.subtract(x, i, out=p[:, :, 2])
    np.multiply(t, t, out=p[:, :, 1])
    np.multiply(p[:, :, 1], t, out=p[:, :, 0])
    p[:, :, 3] = 1.0
    # flat index of knot 0: the block's first column, row by row
    starts = [sum(widths[:j]) for j in range(k)]
    i += np.add.outer(np.array(starts, dtype=np.float64), np.arange(0, n * total, total))
    col = i.astype(np.int64)[:, :, None] + _KNOTS  # (k, n, 4)
    # knot -1 of the first rows (x < 1) wraps to the grid's last knot
    col[:, :, 0] += (x < 1.0) * np.array(sizes, dtype=np.int64)[:, None]
    out = np.zeros((n, total), dtype=F32)
    out.reshape(-1)[col] = p @ _CUBIC
    return out


@dataclass
class _Octave:
    """One value-noise field's random draws (see :func:`_draw_octave`)."""

    cell: float
    grid: np.ndarray
    a: float  # separable: phase in y; upsampled: crop row
    b: float  # separable: phase in x; upsampled: crop column
    separable: bool


def _draw_octave(
    h: int, w: int, cell: float, rng: np.random.Generator, separable: bool = False
) -> _Octave:
    """The random draws of one value-noise field, in :func:`value_noise`'s order (a
    separable one for cells of 10 px and more, or for any cell if ``separable``)."""
    cell = max(float(cell), 1.0)
    # (one call for the grid, one for both offsets: at these sizes the calls cost more
    # than the numbers)
    if cell >= 10.0 or separable:
        gh, gw = int(h / cell) + 5, int(w / cell) + 5
        grid = rng.standard_normal((gh, gw), dtype=F32)
        py, px = rng.random(2).tolist()
        return _Octave(cell, grid, py * cell, px * cell, True)
    gh = int(math.ceil(h / cell)) + 3
    gw = int(math.ceil(w / cell)) + 3
    grid = rng.standard_normal((gh, gw), dtype=F32)
    uh, uw = int(round(gh * cell)), int(round(gw * cell))
    uy, ux = rng.random(2).tolist()
    oy = int(uy * max(1, uh - h - int(cell))) + int(cell) // 2
    ox = int(ux * max(1, uw - w - int(cell))) + int(cell) // 2
    return _Octave(cell, grid, oy, ox, False)


# multiply-adds of one matrix product kept under OpenBLAS's threading threshold (65536 x
# 4): threads on a busy machine cost milliseconds where one thread takes microseconds
_PRODUCT_BUDGET = 250_000


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` (float32) in bands of rows small enough for one thread each."""
    m, k = a.shape
    n = b.shape[1]
    rows = max(1, _PRODUCT_BUDGET // max(k * n, 1))
    if rows >= m:
        return a @ b
    out = np.empty((m, n), dtype=F32)
    for r in range(0, m, rows):
        np.matmul(a[r : r + rows], b, out=out[r : r + rows])
    return out


def _sum_octaves(h: int, w: int, octaves: list[tuple[float, _Octave]]) -> np.ndarray:
    """Sum of ``gain * field`` over drawn octaves (see :func:`_sum_fields`)."""
    return _sum_fields(h, w, [octaves])[0]


def _sum_fields(
    h: int, w: int, fields: list[list[tuple[float, _Octave]]]
) -> list[np.ndarray]:
    """For each field, the sum of ``gain * octave`` over its drawn octaves: the separable
    octaves of all fields by one weight build (both axes) and one final matrix product
    per field, the fine ones by ``cv2.resize``."""
    sep = [(f, g, o) for f, octs in enumerate(fields) for g, o in octs if o.separable]
    totals: list[np.ndarray | None] = [None] * len(fields)
    if sep:
        # one weight build for both axes: y blocks then x blocks, each as wide as the
        # longer side needs (rows beyond h or w are not used)
        n = max(h, w)
        grids = [o.grid.shape for _, _, o in sep]
        cells = [o.cell for _, _, o in sep] * 2
        widths = [int(n / c) + 5 for c in cells]
        ww = _cubic_weights_cat(
            n,
            cells,
            [o.a for _, _, o in sep] + [o.b for _, _, o in sep],
            [g[0] for g in grids] + [g[1] for g in grids],
            widths,
        )
        ny = sum(widths[: len(sep)])
        wy, wx = ww[:h, :ny], ww[:w, ny:]
        # each octave's rows, interpolated, in its x block's first columns (the rest 0)
        mid = np.zeros((h, wx.shape[1]), dtype=F32)
        r0, c0 = 0, 0
        blocks: list[list[slice]] = [[] for _ in fields]
        for (f, g, o), wdy, wdx in zip(sep, widths, widths[len(sep) :]):
            gh, gw = o.grid.shape
            grid = o.grid * F32(g) if g != 1.0 else o.grid
            mid[:, c0 : c0 + gw] = _matmul(wy[:, r0 : r0 + gh], grid)
            blocks[f].append(slice(c0, c0 + wdx))
            r0 += wdy
            c0 += wdx
        for f, blk in enumerate(blocks):
            if blk:
                cols = slice(blk[0].start, blk[-1].stop)  # a field's blocks are adjacent
                totals[f] = _matmul(mid[:, cols], wx[:, cols].T)
    for f, octs in enumerate(fields):
        for g, o in octs:
            if o.separable:
                continue
            gh, gw = o.grid.shape
            cell = o.cell
            grid = o.grid * F32(g) if g != 1.0 else o.grid
            up = cv2.resize(
                grid, (int(round(gw * cell)), int(round(gh * cell))), interpolation=cv2.INTER_CUBIC
            )
            oy, ox = int(o.a), int(o.b)
            out = up[oy : oy + h, ox : ox + w]
            if out.shape != (h, w):  # tiny cells: fall back to a padded crop
                out = cv2.resize(up, (w, h), interpolation=cv2.INTER_LINEAR)
            if totals[f] is None:
                totals[f] = np.array(out, dtype=F32)
            else:
                totals[f] += out  # type: ignore[operator]
    return [
        np.zeros((h, w), dtype=F32) if t is None else np.ascontiguousarray(t, dtype=F32)
        for t in totals
    ]


def value_noise(shape: tuple[int, int], cell: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth value noise of roughly unit standard deviation, feature size ``cell`` px.

    A grid of random values one per ``cell`` px is drawn and interpolated bicubically
    (OpenCV's kernel) at a random sub-cell offset. Coarse grids are interpolated by two
    small matrix products (separable weights); fine ones by ``cv2.resize``, which is the
    same interpolation but slows down in proportion to the upscaling factor.
    """
    h, w = int(shape[0]), int(shape[1])
    # bicubic interpolation of unit-variance samples keeps ~0.75 of the deviation
    return _sum_octaves(h, w, [(1.33, _draw_octave(h, w, cell, rng))])


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
    full resolution. Octaves are interpolated as in :func:`value_noise`, except that
    cells from 2.5 px up may be interpolated by the matrix products too, when that is
    cheaper (the products stay small, and a coarse octave or a larger field pays for
    the weight build): the same bicubic interpolation, of another random grid. These
    octaves share one weight build and one final product.
    """
    h, w = int(shape[0]), int(shape[1])
    octs = _draw_fbm(h, w, scale, rng, octaves, gain, lacunarity)
    return _sum_fields(h, w, [octs])[0]


def fbm_fields(
    shape: tuple[int, int], specs: list[dict[str, float]], rng: np.random.Generator
) -> list[np.ndarray]:
    """Several :func:`fbm` fields of one shape at once: ``specs`` holds each call's
    keyword arguments (``scale`` and optionally ``octaves``, ``gain``, ``lacunarity``).

    The same fields, from the same draws, as calling :func:`fbm` once per spec in
    turn (up to float rounding), but the interpolation weights are built once for all.
    """
    h, w = int(shape[0]), int(shape[1])
    drawn = [
        _draw_fbm(
            h,
            w,
            float(sp["scale"]),
            rng,
            int(sp.get("octaves", 4)),
            float(sp.get("gain", 0.5)),
            float(sp.get("lacunarity", 2.0)),
        )
        for sp in specs
    ]
    return _sum_fields(h, w, drawn)


def _draw_fbm(
    h: int,
    w: int,
    scale: float,
    rng: np.random.Generator,
    octaves: int,
    gain: float,
    lacunarity: float,
) -> list[tuple[float, _Octave]]:
    """:func:`fbm`'s octaves, drawn, with their normalised amplitudes."""
    cells: list[float] = []
    cell = float(scale)
    for _ in range(max(1, int(octaves))):
        if cell < 1.0:
            break
        cells.append(cell)
        cell /= lacunarity
    # Fine cells go the separable way too while the products stay small: a few knots
    # more per axis cost less than an upsampling, once the weight build is paid for (a
    # coarse octave, or two fine ones on a field of 64 x 64 px or more); otherwise
    # cv2.resize, as in value_noise.
    sep, used = [], 0
    for c in cells:
        cost = h * w * (int(w / c) + 5)
        ok = c >= 10.0 or (c >= 2.5 and used + cost <= _PRODUCT_BUDGET)
        used += cost if ok else 0
        sep.append(ok)
    coarse = [c >= 10.0 for c in cells]
    if not any(coarse) and (sum(sep) < 2 or h * w < 4096):
        sep = coarse  # a weight build of its own costs more than a few small resizes
    drawn: list[tuple[float, _Octave]] = []
    amp, norm = 1.0, 0.0
    for c, s in zip(cells, sep):
        drawn.append((amp, _draw_octave(h, w, c, rng, s)))
        norm += amp * amp
        amp *= gain
    k = 1.33 / math.sqrt(max(norm, 1e-12))
    return [(a * k, o) for a, o in drawn]


def fbm_pixels(
    shape: tuple[int, int],
    scale: float,
    rng: np.random.Generator,
    *,
    octaves: int = 2,
    gain: float = 0.5,
) -> np.ndarray:
    """:func:`fbm` with every cell rounded to whole pixels (``scale``, ``scale / 2``, ...)
    and the random offsets on the pixel grid: the same value noise, normalised the same
    way, but the interpolation weights repeat from call to call and are cached, which
    makes it ~3x cheaper on small fields (building them is most of fbm's cost there).
    For noise whose exact feature size does not matter (a rough outline, say).
    """
    h, w = int(shape[0]), int(shape[1])
    cells: list[int] = []
    for k in range(max(1, int(octaves))):
        c = max(round(scale / 2**k), 1)
        if cells and c == cells[-1]:
            break  # (finer octaves than a pixel add nothing)
        cells.append(c)
    amps = [gain**k for k in range(len(cells))]
    norm = 1.33 / math.sqrt(sum(a * a for a in amps))
    # 4 knots more than the field spans: the window starts past the first 1.5 cells,
    # where the interpolation would reach beyond the grid
    shapes = [(-(-h // c) + 4, -(-w // c) + 4) for c in cells]
    # all knots and offsets in two calls (at these sizes a call costs more than numbers)
    knots = rng.standard_normal(sum(gh * gw for gh, gw in shapes), dtype=F32)
    offsets = rng.random(2 * len(cells)).tolist()
    out = np.zeros((h, w), dtype=F32)
    start = 0
    for k, (cell, (gh, gw)) in enumerate(zip(cells, shapes)):
        grid = knots[start : start + gh * gw].reshape(gh, gw)
        start += gh * gw
        grid *= F32(amps[k] * norm)
        oy, ox = (int(u * cell) + (3 * cell + 1) // 2 for u in offsets[2 * k : 2 * k + 2])
        wy = _pixel_cubic_weights(gh, cell)[oy : oy + h]
        mid = _matmul(grid, _pixel_cubic_weights(gw, cell)[ox : ox + w].T)
        out += _matmul(wy, mid)
    return out


@functools.lru_cache(maxsize=256)
def _pixel_cubic_weights(knots: int, cell: int) -> np.ndarray:
    """(knots * cell, knots) matrix: cv2.resize's bicubic interpolation of ``knots``
    values one per ``cell`` px (knot i centred on pixel cell * i + (cell - 1) / 2), as
    the resize of an identity matrix."""
    wts = cv2.resize(np.eye(knots, dtype=F32), (knots, knots * cell), interpolation=cv2.INTER_CUBIC)
    wts.flags.writeable = False
    return wts


def grain(shape: tuple[int, int], rng: np.random.Generator, sigma: float = 0.6) -> np.ndarray:
    """Fine, slightly blurred white noise of unit deviation (micro-roughness, speckle)."""
    n: np.ndarray = rng.standard_normal(shape, dtype=F32)
    if sigma > 0:
        n = cv2.GaussianBlur(n, (0, 0), sigma)
        n = n * F32(1.0 / max(float(n.std()), 1e-6))
    return n


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at ``edge0`` to 1 at ``edge1`` (float32)."""
    if not (isinstance(x, np.ndarray) and x.dtype == F32 and x.ndim > 0):
        u = np.clip((x - F32(edge0)) / F32(max(edge1 - edge0, 1e-6)), 0.0, 1.0)
        return (u * u * (F32(3.0) - F32(2.0) * u)).astype(F32)
    t = x - F32(edge0)  # float32 in place from here: the same values, fewer passes
    t /= F32(max(edge1 - edge0, 1e-6))
    np.maximum(t, F32(0.0), out=t)
    np.minimum(t, F32(1.0), out=t)
    s = t * F32(-2.0)
    s += F32(3.0)  # 3 - 2t
    t *= t
    t *= s
    return t


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
    ``ra`` along ``angle_rad`` and ``rb`` across it (float32).

    ``dx`` and ``dy`` broadcast; pass a row ``dx[None, :]`` and a column ``dy[:, None]``
    for a whole grid at the cost of one (h, w) array and a few passes over it.
    """
    ca, sa = math.cos(angle_rad), math.sin(angle_rad)
    dx = np.asarray(dx, dtype=F32)
    dy = np.asarray(dy, dtype=F32)
    u = np.add(dx * F32(ca / ra), dy * F32(sa / ra))
    v = np.subtract(dy * F32(ca / rb), dx * F32(sa / rb))
    u *= u
    v *= v
    u += v
    return np.sqrt(u, out=u)


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


def _lobe_terms(light: np.ndarray, s: Shading) -> tuple[float, ...]:
    """Constants of the specular lobe for a light: the half vector's slope (cx, cy), the
    coefficients of the lobe's two axes in slope space (with the Gaussian's 1/2 folded
    in), and the flat surface's lobe value."""
    lx, ly, lz = (float(v) for v in light)
    lz = max(lz, 0.02)
    hz = lz + 1.0  # half vector (lx, ly, lz + 1), unnormalised: only its slope matters
    cx, cy = lx / hz, ly / hz
    ca, sa = math.cos(s.grain_angle), math.sin(s.grain_angle)
    r = max(s.roughness, 1e-3)
    k_a = math.sqrt(0.5) / r
    k_c = math.sqrt(0.5) / (r * (1.0 + 3.0 * s.anisotropy))
    ua, va = ca * k_a, sa * k_a  # along = (tx ca + ty sa) / ra
    uc, vc = -sa * k_c, ca * k_c  # across = (-tx sa + ty ca) / rc
    e0 = (cx * ua + cy * va) ** 2 + (cx * uc + cy * vc) ** 2
    return cx, cy, ua, va, uc, vc, math.exp(-e0)


def _lobe_of_offsets(tx: np.ndarray, ty: np.ndarray, terms: tuple[float, ...]) -> np.ndarray:
    """exp(-(along / ra)^2 / 2 - (across / rc)^2 / 2) of slope-space offsets (tx, ty);
    ``tx`` and ``ty`` are overwritten."""
    _, _, ua, va, uc, vc, _ = terms
    along = tx * F32(ua)
    along += ty * F32(va)
    tx *= F32(uc)
    ty *= F32(vc)
    tx += ty  # across
    along *= along
    tx *= tx
    along += tx
    np.negative(along, out=along)
    return np.exp(along, out=along)


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
    nx, ny, nz = (np.asarray(v, dtype=F32) for v in (nx, ny, nz))
    lx, ly, lz = (float(v) for v in light)
    ndl = nx * F32(lx)
    ndl += ny * F32(ly)
    ndl += nz * F32(max(lz, 0.02))
    inv_nz = F32(1.0) / np.maximum(nz, F32(1e-3))
    return _shade(ndl, nx * inv_nz, ny * inv_nz, light, shading, occlusion)


def shade_slopes(
    gx: np.ndarray,
    gy: np.ndarray,
    light: np.ndarray,
    shading: Shading,
    occlusion: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`shade` of the normals of a height map's slopes ``dh/dx``, ``dh/dy`` (as
    :func:`normals_from_slopes` gives them), without building the normals: the same
    result up to float rounding, for slopes under 1000."""
    gx = np.asarray(gx, dtype=F32)
    gy = np.asarray(gy, dtype=F32)
    nz = gx * gx
    nz += gy * gy
    nz += F32(1.0)
    np.sqrt(nz, out=nz)
    np.divide(F32(1.0), nz, out=nz)
    lx, ly, lz = (float(v) for v in light)
    ndl = gx * F32(-lx)
    ndl -= gy * F32(ly)
    ndl += F32(max(lz, 0.02))
    ndl *= nz  # n . l
    return _shade(ndl, -gx, -gy, light, shading, occlusion)


def _shade(
    ndl: np.ndarray,
    sx: np.ndarray,
    sy: np.ndarray,
    light: np.ndarray,
    shading: Shading,
    occlusion: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`shade` from ``n . l`` and the normals' slopes ``nx / nz``, ``ny / nz`` (all
    three overwritten)."""
    lz = max(float(light[2]), 0.02)
    amb = shading.ambient
    flat = float(amb + (1.0 - amb) * lz)
    np.maximum(ndl, F32(0.0), out=ndl)
    if occlusion is not None:
        ndl *= occlusion
    # ratio = (amb + (1 - amb) n.l) / flat
    ratio = ndl
    ratio *= F32((1.0 - amb) / flat)
    ratio += F32(amb / flat)
    if occlusion is not None:
        # cavities also see less of the sky
        ratio *= F32(0.45) * occlusion + F32(0.55)
    if shading.specular <= 0:
        return ratio, np.zeros_like(ratio)
    terms = _lobe_terms(light, shading)
    # slope-space offset between the facet normal and the half vector
    np.subtract(F32(terms[0]), sx, out=sx)
    np.subtract(F32(terms[1]), sy, out=sy)
    lobe = _lobe_of_offsets(sx, sy, terms)
    if occlusion is not None:
        lobe *= occlusion
    lobe -= F32(terms[6])
    lobe *= F32(shading.specular)
    return ratio, lobe


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
    # the tensor's three means by OpenCV (one thread), not a BLAS product: A @ A.T wakes
    # OpenBLAS's thread pool, which then spins on the other cores
    inv = 1.0 / max(g.size, 1)
    jxx = cv2.norm(gx, cv2.NORM_L2SQR) * inv
    jyy = cv2.norm(gy, cv2.NORM_L2SQR) * inv
    jxy = float(cv2.sumElems(cv2.multiply(gx, gy))[0]) * inv
    tr = jxx + jyy
    if tr < 1e-10:
        return 0.0, 0.0
    coherence = math.sqrt((jxx - jyy) ** 2 + 4 * jxy * jxy) / tr
    grad_angle = 0.5 * math.atan2(2 * jxy, jxx - jyy)
    return grad_angle + math.pi / 2, float(min(1.0, coherence))


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
    c = pixels.shape[2]
    # channels first in one gather (a strided copy with 3 floats per pixel is ~4x slower)
    rows = pixels[::step, ::step].transpose(2, 0, 1).reshape(c, -1)
    return median_rows(rows.astype(F32, copy=False))


def median_rows(a: np.ndarray) -> np.ndarray:
    """``np.median(a, axis=1)`` as float32, by one partition (several times faster)."""
    n = a.shape[1]
    k = n // 2
    if n % 2:
        return np.partition(a, k, axis=1)[:, k].astype(F32)
    # one kth is ~5x faster than two; the element below the k-th is the largest left of it
    part = np.partition(a, k, axis=1)
    return ((part[:, :k].max(axis=1) + part[:, k]) * F32(0.5)).astype(F32)
