"""Write the clean product fixtures: ``fixtures/images/<name>.png`` + ``fixtures/masks/<name>.png``.

Every fixture is procedural and deterministic (fixed seeds), made to look like a
photograph: a lit surface with its own texture, an uneven illumination, lens vignetting,
slight optical blur and signal-dependent sensor noise. Masks are white on the product and
black elsewhere (all white when the product fills the frame).

    python scripts/make_fixtures.py [--out fixtures]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from defectsynth.textures import Shading, fbm, grain, normals_from_height, shade

F32 = np.float32
Fixture = tuple[np.ndarray, np.ndarray]


# ---------------------------------------------------------------------------------------
# the camera


def illumination(shape: tuple[int, int], rng: np.random.Generator, strength: float) -> np.ndarray:
    """A smooth, uneven light field around 1: a tilted gradient, a soft hot spot and
    cos^4-style vignetting."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(F32)
    u = (xs - w / 2) / max(h, w)
    v = (ys - h / 2) / max(h, w)
    ang = rng.uniform(0, 2 * math.pi)
    grad = F32(strength) * (u * F32(math.cos(ang)) + v * F32(math.sin(ang)))
    cx, cy = rng.uniform(-0.25, 0.25, size=2)
    hot = F32(0.5 * strength) * np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / F32(0.08))
    vign = F32(1.0) - F32(0.55 * strength) * (u * u + v * v) * F32(2.0)
    return ((F32(1.0) + grad + hot) * vign).astype(F32)


def photograph(
    radiance: np.ndarray,
    rng: np.random.Generator,
    *,
    light: float = 0.25,
    blur: float = 0.6,
    shot: float = 0.0007,
    read: float = 0.005,
) -> np.ndarray:
    """Radiance (h, w, c) float -> uint8 photo: uneven light, optics blur, sensor noise."""
    h, w = radiance.shape[:2]
    img = radiance * illumination((h, w), rng, light)[:, :, None]
    img = cv2.GaussianBlur(img, (0, 0), blur)
    if img.ndim == 2:
        img = img[:, :, None]
    lum = np.clip(img, 0, 1)
    sigma = np.sqrt(lum * F32(shot) + F32(read * read))
    noise = rng.standard_normal(img.shape).astype(F32)
    # demosaicing and in-camera processing correlate neighbouring pixels a little
    noise = cv2.GaussianBlur(noise, (0, 0), 0.55) * F32(1.8)
    if noise.ndim == 2:
        noise = noise[:, :, None]
    # chroma noise is weaker than luma noise after processing
    if img.shape[2] == 3:
        mean = noise.mean(axis=2, keepdims=True)
        noise = mean + (noise - mean) * F32(0.5)
    img = img + sigma * noise
    out = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    return out[:, :, 0] if out.shape[2] == 1 else out


def stretch(noise: np.ndarray, length: int, angle_deg: float) -> np.ndarray:
    """Motion-blur noise into streaks ``length`` px long at ``angle_deg``."""
    k = np.zeros((length, length), np.float32)
    c = length // 2
    a = math.radians(angle_deg)
    dx, dy = math.cos(a) * c, math.sin(a) * c
    cv2.line(k, (int(c - dx), int(c - dy)), (int(c + dx), int(c + dy)), 1.0, 1, cv2.LINE_AA)
    k /= k.sum()
    out = cv2.filter2D(noise, -1, k, borderType=cv2.BORDER_REFLECT)
    return out / F32(max(float(out.std()), 1e-6))


def ss_draw(
    shape: tuple[int, int], factor: int, draw: Callable[[np.ndarray, int], object]
) -> np.ndarray:
    """Anti-aliased coverage 0..1: ``draw(canvas, factor)`` at ``factor``x, box-filtered."""
    h, w = shape
    canvas = np.zeros((h * factor, w * factor), np.uint8)
    draw(canvas, factor)
    return cv2.resize(canvas.astype(F32) / 255.0, (w, h), interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------------------------------
# the products


def brushed_metal(rng: np.random.Generator) -> Fixture:
    """Brushed stainless sheet, grain nearly horizontal, with the broad anisotropic
    highlight that brushed metal throws across its grain."""
    h, w = 512, 640
    angle = -3.0
    fine = stretch(rng.standard_normal((h, w)).astype(F32), 81, angle)
    medium = stretch(rng.standard_normal((h, w)).astype(F32), 241, angle)
    coarse = fbm((h, w), 160, rng, octaves=3)
    ys, xs = np.mgrid[0:h, 0:w].astype(F32)
    band = np.exp(-(((xs - 0.62 * w) / (0.2 * w)) ** 2)).astype(F32)
    tone = 0.50 + 0.22 * band + 0.018 * coarse + 0.028 * fine + 0.02 * medium
    # the highlight makes the grain more contrasty where it is brightest
    tone += 0.02 * band * fine
    img = np.dstack([tone * 1.03, tone * 1.0, tone * 0.965]).astype(F32)
    photo = photograph(img, rng, light=0.22)
    return photo, np.full((h, w), 255, np.uint8)


def painted_casing(rng: np.random.Generator) -> Fixture:
    """Blue powder-coated steel casing: orange-peel texture, a soft reflection of a
    softbox, a panel seam and two screws."""
    h, w = 512, 640
    peel = fbm((h, w), 6, rng, octaves=3, gain=0.55)
    light = np.array([-0.45, -0.55, 0.70], np.float32)
    light /= np.linalg.norm(light)
    nx, ny, nz = normals_from_height(peel * F32(0.2))
    ratio, spec = shade(nx, ny, nz, light, Shading(ambient=0.5, specular=0.0))
    base = np.array([0.60, 0.36, 0.15], F32)
    img = base[None, None, :] * ratio[:, :, None]
    # reflection of a rectangular softbox, distorted by the orange peel
    ys, xs = np.mgrid[0:h, 0:w].astype(F32)
    dxs = xs + nx * F32(60.0)
    dys = ys + ny * F32(60.0)
    box = (
        np.clip((dxs - 0.15 * w) / 40, 0, 1)
        * np.clip((0.55 * w - dxs) / 40, 0, 1)
        * np.clip((dys - 0.08 * h) / 40, 0, 1)
        * np.clip((0.45 * h - dys) / 60, 0, 1)
    )
    img += (F32(0.22) * box)[:, :, None]
    img *= (F32(1.0) + F32(0.015) * fbm((h, w), 90, rng, octaves=2))[:, :, None]
    # panel seam: a shadowed gap with a lit lower lip
    seam_y = int(0.74 * h)
    gap = ss_draw(
        (h, w), 4, lambda c, f: cv2.line(c, (0, seam_y * f), (w * f, seam_y * f), 255, 2 * f)
    )
    lip = ss_draw(
        (h, w),
        4,
        lambda c, f: cv2.line(c, (0, (seam_y + 2) * f), (w * f, (seam_y + 2) * f), 255, f),
    )
    img = img * (1 - 0.85 * gap)[:, :, None] + (0.12 * lip)[:, :, None]
    for sx in (int(0.12 * w), int(0.88 * w)):
        sy = int(0.87 * h)
        r = 13
        d = np.hypot(xs - sx, ys - sy)
        head = np.clip(r + 0.5 - d, 0, 1)
        # a domed head: shade by the direction from its centre
        dome = (((xs - sx) * light[0] + (ys - sy) * light[1]) / r).astype(F32)
        metal = (0.55 + 0.25 * np.clip(dome, -1, 1))[:, :, None] * np.array([0.95, 0.95, 0.97], F32)

        def slot(c: np.ndarray, f: int, sx: int = sx, sy: int = sy) -> None:
            cv2.line(c, ((sx - 7) * f, sy * f), ((sx + 7) * f, sy * f), 255, 2 * f)
            cv2.line(c, (sx * f, (sy - 7) * f), (sx * f, (sy + 7) * f), 255, 2 * f)

        cross = ss_draw((h, w), 4, slot)
        metal = metal * (1 - 0.7 * cross)[:, :, None]
        ring = np.clip(1.5 - np.abs(d - r - 1), 0, 1) * 0.5
        img = img * (1 - head)[:, :, None] + metal * head[:, :, None]
        img *= (1 - ring)[:, :, None]
    photo = photograph(img, rng, light=0.2)
    return photo, np.full((h, w), 255, np.uint8)


def machined_flange(rng: np.random.Generator) -> Fixture:
    """A face-turned aluminium flange (bore, six bolt holes, chamfers) on a dark mat.

    The only fixture whose product does not fill the frame."""
    h = w = 640
    ys, xs = np.mgrid[0:h, 0:w].astype(F32)
    cx, cy = 318.0, 326.0
    dx, dy = xs - cx, ys - cy
    r = np.hypot(dx, dy)
    theta = np.arctan2(dy, dx)
    light_az = math.radians(-130.0)
    # mat: dark rubber with a fine grain, and the part's soft shadow
    mat = 0.17 + 0.012 * fbm((h, w), 40, rng, octaves=3) + 0.01 * grain((h, w), rng, 0.9)
    shadow_r = np.hypot(xs - cx - 14, ys - cy - 16)
    shadow = 1.0 - 0.55 * np.clip((292 - shadow_r) / 30, 0, 1)
    bg = (mat * shadow).astype(F32)
    # turned face: concentric tool marks, each ring a little different, and the bow-tie
    # highlight of circular grooves along the light's azimuth
    R_out, R_face, R_bore = 282.0, 270.0, 70.0
    ring_id = np.clip((r / 1.6).astype(np.int32), 0, 400)
    ring_tone = rng.standard_normal(401).astype(F32)
    ring_tone = cv2.GaussianBlur(ring_tone[None, :], (0, 0), 1.2)[0]
    marks = 0.025 * ring_tone[ring_id] + 0.01 * np.sin(r * F32(2 * math.pi / 1.6))
    bow = np.exp(-(np.sin(theta - F32(light_az)) ** 2) / F32(0.06))
    face = 0.48 + 0.30 * bow + marks + 0.012 * fbm((h, w), 60, rng, octaves=2)
    # outer chamfer: tilted radially outwards, lit on the light's side
    lit = np.cos(theta - F32(light_az))
    chamfer = 0.45 + 0.3 * lit
    metal = np.where(r < R_face, face, chamfer)
    # six bolt holes with chamfered rims; a bore whose inner wall falls into darkness
    holes = np.zeros((h, w), F32)
    rims = np.zeros((h, w), F32)
    rim_tone = np.zeros((h, w), F32)
    for k in range(6):
        a = k * math.pi / 3 + math.pi / 6
        hx, hy = cx + 190 * math.cos(a), cy + 190 * math.sin(a)
        hr = np.hypot(xs - hx, ys - hy)
        holes = np.maximum(holes, np.clip(18.5 - hr, 0, 1))
        rim = np.clip(23.5 - hr, 0, 1) * np.clip(hr - 17.5, 0, 1)
        ang = np.arctan2(ys - hy, xs - hx)
        rims = np.maximum(rims, rim)
        # a chamfer into a hole tilts inwards: lit on the side away from the light
        rim_tone = np.where(rim > 0, 0.45 - 0.3 * np.cos(ang - F32(light_az)), rim_tone)
    bore_rim = np.clip(R_bore + 6.5 - r, 0, 1) * np.clip(r - R_bore + 0.5, 0, 1)
    rims = np.maximum(rims, bore_rim)
    rim_tone = np.where(bore_rim > 0, 0.45 - 0.3 * np.cos(theta - F32(light_az)), rim_tone)
    metal = metal * (1 - rims) + rim_tone * rims
    bore_wall = np.clip((r - (R_bore - 14)) / 14, 0, 1) * 0.22 + 0.03
    bore = np.clip(R_bore + 0.5 - r, 0, 1)
    part = np.clip(R_out + 0.5 - r, 0, 1)
    inside = holes + bore
    tone = bg * (1 - part) + part * (metal * (1 - inside) + inside * bore_wall * 0.7)
    img = np.dstack([tone * 1.02, tone * 1.0, tone * 0.98]).astype(F32)
    photo = photograph(img, rng, light=0.2)
    mask = ((part > 0.5) & (inside < 0.5) & (rims < 0.5)).astype(np.uint8) * 255
    return photo, mask


def pcb(rng: np.random.Generator) -> Fixture:
    """A green solder-masked board: traces under the mask, tinned pads, vias, silkscreen."""
    h, w = 512, 640
    f = 3

    def traces(c: np.ndarray, s: int) -> None:
        for _ in range(26):
            x, y = int(rng.integers(20, w - 20)), int(rng.integers(20, h - 20))
            pts = [(x, y)]
            for _ in range(int(rng.integers(2, 5))):
                d = int(rng.integers(0, 8))
                ang = d * math.pi / 4
                n = int(rng.integers(30, 160))
                x = int(np.clip(x + n * math.cos(ang), 5, w - 5))
                y = int(np.clip(y + n * math.sin(ang), 5, h - 5))
                pts.append((x, y))
            width = int(rng.choice([4, 5, 7, 10]))
            arr = (np.array(pts) * s).reshape(-1, 1, 2).astype(np.int32)
            cv2.polylines(c, [arr], False, 255, width * s, cv2.LINE_8)

    copper = ss_draw((h, w), f, traces)
    pads_list: list[tuple[int, int, int, int]] = []
    vias_list: list[tuple[int, int]] = []
    texts: list[tuple[str, int, int]] = []
    outlines: list[tuple[int, int, int, int]] = []
    # an SOIC footprint, a QFP-ish square, rows of two-pad passives
    for ox, oy in ((90, 90), (400, 300)):
        for i in range(8):
            pads_list.append((ox + i * 16, oy, 9, 24))
            pads_list.append((ox + i * 16, oy + 70, 9, 24))
        outlines.append((ox - 10, oy + 30, 8 * 16 + 4, 34))
        texts.append((f"U{len(texts) + 1}", ox, oy - 10))
    for k in range(10):
        px_, py_ = 80 + (k % 5) * 110, 260 + (k // 5) * 150
        if 380 < px_ < 560 and py_ > 250:
            py_ -= 140
        pads_list.append((px_, py_, 14, 12))
        pads_list.append((px_ + 30, py_, 14, 12))
        outlines.append((px_ - 5, py_ - 5, 53, 22))
        texts.append((("R" if k % 2 else "C") + str(k + 3), px_, py_ - 10))
    for _ in range(30):
        vias_list.append((int(rng.integers(15, w - 15)), int(rng.integers(15, h - 15))))

    def pads(c: np.ndarray, s: int) -> None:
        for x, y, pw, ph in pads_list:
            cv2.rectangle(c, (x * s, y * s), ((x + pw) * s, (y + ph) * s), 255, -1)
        for x, y in vias_list:
            cv2.circle(c, (x * s, y * s), 6 * s, 255, -1)

    def holes(c: np.ndarray, s: int) -> None:
        for x, y in vias_list:
            cv2.circle(c, (x * s, y * s), int(2.5 * s), 255, -1)
        cv2.circle(c, ((w - 30) * s, 30 * s), 12 * s, 255, -1)

    def silk(c: np.ndarray, s: int) -> None:
        for x, y, ow, oh in outlines:
            cv2.rectangle(c, (x * s, y * s), ((x + ow) * s, (y + oh) * s), 255, 2 * s)
        for t, x, y in texts:
            cv2.putText(
                c, t, (x * s, y * s), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * s, 255, 1 * s, cv2.LINE_AA
            )
        cv2.putText(
            c,
            "DS-PCB-04 REV B",
            (40 * s, (h - 24) * s),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.6 * s,
            255,
            2 * s,
            cv2.LINE_AA,
        )

    pad = ss_draw((h, w), f, pads)
    hole = ss_draw((h, w), f, holes)
    text = ss_draw((h, w), f, silk)
    ys, xs = np.mgrid[0:h, 0:w].astype(F32)
    weave = 0.012 * np.sin(xs * F32(2 * math.pi / 6)) * np.sin(ys * F32(2 * math.pi / 6))
    mask_green = np.array([0.22, 0.42, 0.10], F32)
    over_cu = np.array([0.30, 0.58, 0.26], F32)
    tone = (1.0 + weave + 0.03 * fbm((h, w), 50, rng, octaves=2))[:, :, None]
    # the solder mask is slightly raised over copper: a thin lit top edge
    edge = cv2.Sobel(cv2.GaussianBlur(copper, (0, 0), 0.8), cv2.CV_32F, 0, 1, ksize=3)
    img = (mask_green * (1 - copper[:, :, None]) + over_cu * copper[:, :, None]) * tone
    img *= (1 - 0.25 * np.clip(edge, -1, 1))[:, :, None]
    tin = (0.74 + 0.05 * grain((h, w), rng, 1.2))[:, :, None] * np.array([0.92, 0.93, 0.95], F32)
    img = img * (1 - pad[:, :, None]) + tin * pad[:, :, None]
    img = img * (1 - hole[:, :, None]) + 0.05 * hole[:, :, None]
    ink = np.array([0.88, 0.90, 0.90], F32)
    img = img * (1 - 0.92 * text[:, :, None]) + ink * (0.92 * text[:, :, None])
    # glossy solder mask: a soft reflection of the lamp
    hot = np.exp(-(((xs - 0.3 * w) / 180) ** 2 + ((ys - 0.25 * h) / 110) ** 2))
    img += (0.08 * hot * (1 - pad))[:, :, None]
    photo = photograph(img.astype(F32), rng, light=0.18)
    return photo, np.full((h, w), 255, np.uint8)


def knurled_steel(rng: np.random.Generator) -> Fixture:
    """Diamond-knurled steel grip: pyramids shaded by the light, worn flat on the tips,
    on a cylinder whose brightness falls off towards its edges."""
    h, w = 512, 576
    ys, xs = np.mgrid[0:h, 0:w].astype(F32)
    wob = fbm((h, w), 120, rng, octaves=2) * F32(1.5)
    p = F32(13.0)
    u = (xs + ys + wob) / p
    v = (xs - ys + wob) / p
    tri_u = np.abs(u - np.floor(u) - F32(0.5))
    tri_v = np.abs(v - np.floor(v) - F32(0.5))
    height = np.minimum(tri_u, tri_v) * F32(9.0)
    wear = np.clip(0.5 + 0.6 * fbm((h, w), 70, rng, octaves=3), 0, 1)
    height = np.minimum(height, F32(3.2) + F32(1.2) * wear)  # flattened, worn tips
    height = cv2.GaussianBlur(height.astype(F32), (0, 0), 0.7)
    light = np.array([-0.5, -0.45, 0.74], F32)
    light /= np.linalg.norm(light)
    nx, ny, nz = normals_from_height(height)
    ratio, spec = shade(nx, ny, nz, light, Shading(ambient=0.3, specular=0.35, roughness=0.35))
    cyl = np.cos((ys - h * 0.45) / F32(h * 0.9) * F32(math.pi) * F32(0.8)) ** 2
    tone = (0.5 * ratio + spec) * (0.55 + 0.45 * cyl) + 0.015 * grain((h, w), rng, 0.8)
    img = np.dstack([tone * 1.0, tone * 0.99, tone * 0.97]).astype(F32)
    photo = photograph(img, rng, light=0.15)
    return photo, np.full((h, w), 255, np.uint8)


def steel_strip_gray(rng: np.random.Generator) -> Fixture:
    """Hot-rolled steel strip under a line-scan camera: gray, mottled mill scale, faint
    rolling streaks. A single-channel image."""
    h = w = 512
    mott = fbm((h, w), 70, rng, octaves=4)
    scale_patch = np.clip((fbm((h, w), 45, rng, octaves=3) - 0.6) * 3, 0, 1)
    streak = stretch(rng.standard_normal((h, w)).astype(F32), 151, 0.0)
    speck = grain((h, w), rng, 0.7)
    tone = 0.46 + 0.045 * mott - 0.06 * scale_patch + 0.012 * streak + 0.025 * speck
    photo = photograph(tone[:, :, None].astype(F32), rng, light=0.2, blur=0.5)
    return photo, np.full((h, w), 255, np.uint8)


FIXTURES: dict[str, Callable[[np.random.Generator], Fixture]] = {
    "brushed_metal": brushed_metal,
    "painted_casing": painted_casing,
    "machined_flange": machined_flange,
    "pcb": pcb,
    "knurled_steel": knurled_steel,
    "steel_strip_gray": steel_strip_gray,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "fixtures"))
    args = ap.parse_args()
    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    for i, (name, make) in enumerate(FIXTURES.items()):
        rng = np.random.default_rng(np.random.SeedSequence([2026, i]))
        image, mask = make(rng)
        cv2.imwrite(str(out / "images" / f"{name}.png"), image)
        cv2.imwrite(str(out / "masks" / f"{name}.png"), mask)
        size = (out / "images" / f"{name}.png").stat().st_size
        chans = 1 if image.ndim == 2 else 3
        print(f"{name:18s} {image.shape[1]}x{image.shape[0]}x{chans}  {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
