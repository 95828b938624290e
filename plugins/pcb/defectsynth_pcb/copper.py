"""Finding the copper layer in a region, and drawing a change of it in the image's own look.

A printed board seen from above has two materials that matter here: copper (traces, pads,
pours) and the substrate between it. On a binarised scan (DeepPCB) they are the two grey
levels; on a colour photo of a green board the copper under the solder mask is the lighter,
saturated green and the bare laminate the darker one, while silkscreen, tinned pads and
drill holes are unsaturated and belong to neither (they are left alone).

Everything here works on one region (what a generator sees) and is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from defectsynth import Layer, Region

F32 = np.float32

#: a pixel counts as "two-phase" material when the two tones differ by at least this much
MIN_CONTRAST = 0.06
#: at most this share of the pixels may sit between the two tones (a histogram valley)
MAX_VALLEY = 0.12
#: each tone must hold at least this share of the region
MIN_PHASE = 0.02
#: the values of the generators' ``copper`` parameter
POLARITIES = ("auto", "dark", "light")
#: coverage of the unlabelled fringe around a change: just under the label threshold 0.5
FRINGE = 0.49
_RING = 4  # px around the change that a JPEG round trip may alter


@dataclass(frozen=True)
class CopperLayer:
    """The copper of one region, as found in its pixels.

    ``copper``: bool (h, w), True on copper. ``usable``: bool (h, w), where a defect may
    change the copper state (on the product, not silkscreen, pads or holes, not at the
    region's border). ``found``: False when the region shows no copper pattern at all (a
    plain surface): ``copper`` is then all False and the tones are guesses.
    ``cu`` and ``sub``: (h, w, c) float32 local tones of copper and substrate (normalised
    blurs of each class, so they follow lighting gradients). ``edge_sigma``: the blur, in
    px, of the copper's edges in this image (0 on a binarised scan).
    """

    copper: np.ndarray
    usable: np.ndarray
    found: bool
    cu: np.ndarray
    sub: np.ndarray
    edge_sigma: float
    #: a binarised scan (grey, hard edges, the two tones near black and white)
    scan: bool = False
    #: a colour photo of a board (a saturated solder mask): even where no copper shows,
    #: the surface is a board's, so no fallback shape belongs on it
    board: bool = False


def _otsu(v: np.ndarray) -> tuple[float, float, float, float]:
    """Otsu's threshold of values ``v``: (threshold, mean below, mean above, share below)."""
    lo, hi = float(v.min()), float(v.max())
    if hi - lo < 1e-6:
        return lo, lo, hi, 1.0
    hist, edges = np.histogram(v, bins=128, range=(lo, hi))
    p = hist.astype(np.float64) / max(hist.sum(), 1)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    mu = np.cumsum(p * centres)
    mt = mu[-1]
    w1 = 1.0 - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mt * w0 - mu) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = -1.0
    k = int(np.argmax(between))
    thr = float(edges[k + 1])
    # between two well-separated tones the criterion is flat across the empty gap: take
    # the midpoint of the two class means (one isodata step), not the gap's first bin
    for _ in range(2):
        below = v < thr
        share = float(below.mean())
        if share <= 0.0 or share >= 1.0:
            return thr, lo, hi, share
        m0, m1 = float(v[below].mean()), float(v[~below].mean())
        thr = (m0 + m1) / 2.0
    below = v < thr
    share = float(below.mean())
    if share <= 0.0 or share >= 1.0:
        return thr, lo, hi, share
    return thr, float(v[below].mean()), float(v[~below].mean()), share


def _local_tone(pixels: np.ndarray, mask: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """(h, w, c) tone of the pixels under ``mask``, averaged over ~10 px around each pixel
    (a normalised blur), the class's global mean where too few of its pixels are near."""
    m = mask.astype(F32)
    den = cv2.GaussianBlur(m, (0, 0), 10.0)
    out = np.empty_like(pixels)
    for c in range(pixels.shape[2]):
        num = cv2.GaussianBlur(np.ascontiguousarray(pixels[:, :, c]) * m, (0, 0), 10.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = num / den
        weak = den < 0.05
        t[weak] = fallback[c]
        # blend towards the global mean where the local estimate rests on few pixels
        a = np.clip(den / 0.2, 0.0, 1.0)
        out[:, :, c] = a * t + (1 - a) * fallback[c]
    return out


def _edge_sigma(t_img: np.ndarray, copper: np.ndarray, weight: np.ndarray) -> float:
    """The blur of the copper's edges: the sigma whose blurred copper mask best explains
    the image's fractional copper ``t_img`` near the edges."""
    cu = copper.astype(F32)
    near = cv2.dilate(copper.astype(np.uint8), np.ones((5, 5), np.uint8)) != cv2.erode(
        copper.astype(np.uint8), np.ones((5, 5), np.uint8)
    )
    sel = near & (weight > 0)
    if sel.sum() < 20:
        return 0.0
    best, best_err = 0.0, float("inf")
    for s in (0.0, 0.5, 0.8, 1.2, 1.7, 2.4, 3.2):
        b = cv2.GaussianBlur(cu, (0, 0), s) if s > 0 else cu
        err = float(np.abs(b[sel] - t_img[sel]).mean())
        if err < best_err - 1e-4:
            best, best_err = s, err
    return best


def find_copper(region: Region, polarity: str = "auto", margin: int = 2) -> CopperLayer:
    """The copper layer of ``region``.

    :param polarity: which tone is copper: ``"dark"``, ``"light"``, or ``"auto"`` (dark on
        grey images, the binarised-scan convention of DeepPCB; light on colour photos,
        where copper under a green solder mask is the lighter green).
    :param margin: px at the region's border that a defect may not change.
    """
    if polarity not in POLARITIES:
        raise ValueError(f"copper: {polarity!r} is not one of {', '.join(POLARITIES)}")
    px = region.pixels
    h, w = region.shape
    lum = (
        cv2.cvtColor(np.ascontiguousarray(px), cv2.COLOR_BGR2GRAY)
        if region.is_color
        else np.ascontiguousarray(px[:, :, 0])
    ).astype(F32)
    product = region.product_mask > 0.5
    other = np.zeros((h, w), bool)
    colourful = False
    if region.is_color:
        chroma = px.max(axis=2) - px.min(axis=2)
        med = float(np.median(chroma[product])) if product.any() else 0.0
        if med > 0.08:
            colourful = True
            # silkscreen, tinned pads, drill holes: grey on a colourful board
            other = chroma < 0.45 * med
            other = cv2.dilate(other.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    dark = polarity == "dark" or (polarity == "auto" and not colourful)
    cand = product & ~other
    border = np.zeros((h, w), bool)
    if h > 2 * margin and w > 2 * margin:
        border[margin : h - margin, margin : w - margin] = True
    usable = cand & border
    c = px.shape[2]
    v = lum[cand]
    found = False
    copper = np.zeros((h, w), bool)
    if v.size >= 50:
        thr, m0, m1, share = _otsu(v)
        contrast = m1 - m0
        valley = float((np.abs(v - thr) < 0.2 * contrast).mean()) if contrast > 0 else 1.0
        if (
            contrast >= MIN_CONTRAST
            and valley <= MAX_VALLEY
            and MIN_PHASE <= share <= 1 - MIN_PHASE
        ):
            found = True
            copper = ((lum < thr) if dark else (lum >= thr)) & cand
            cu_mean = px[copper].mean(axis=0)
            sub_mean = px[cand & ~copper].mean(axis=0)
            t_img = np.clip((lum - m0) / contrast, 0.0, 1.0)
            if dark:
                t_img = 1.0 - t_img
            sigma = _edge_sigma(t_img, copper, cand.astype(F32))
            if sigma > 0:
                # soft edges leave thin light rims (around silkscreen, pads and vias) above
                # the threshold: copper is never that thin
                k = np.ones((3, 3), np.uint8)
                copper = cv2.morphologyEx(copper.astype(np.uint8), cv2.MORPH_OPEN, k) > 0
            return CopperLayer(
                copper=copper,
                usable=usable,
                found=True,
                cu=_local_tone(px, copper, cu_mean),
                sub=_local_tone(px, cand & ~copper, sub_mean),
                edge_sigma=sigma,
                scan=not colourful and sigma == 0.0 and m0 < 0.2 and m1 > 0.8,
            )
        # a uniform area of a binarised scan: all copper or all substrate, and the other
        # tone is the opposite end of the grey scale
        if not colourful and float(((v < 0.12) | (v > 0.88)).mean()) > 0.97:
            found = True
            mean = px[cand].mean(axis=0)
            is_low = float(v.mean()) < 0.5
            opposite = np.full(c, 0.985 if is_low else 0.015, F32)
            all_copper = is_low == dark
            copper = cand.copy() if all_copper else np.zeros((h, w), bool)
            cu_mean, sub_mean = (mean, opposite) if all_copper else (opposite, mean)
            full = np.ones((h, w, 1), F32)
            return CopperLayer(
                copper=copper,
                usable=usable,
                found=True,
                cu=full * cu_mean.astype(F32),
                sub=full * sub_mean.astype(F32),
                edge_sigma=0.0,
                scan=True,
            )
    # no copper pattern: tones that contrast the surface, for the fallback shapes
    mean = px[cand].mean(axis=0) if cand.any() else px.reshape(-1, c).mean(axis=0)
    level = float(mean.mean())
    shift = -0.35 if level > 0.4 else 0.35
    full = np.ones((h, w, 1), F32)
    return CopperLayer(
        copper=copper,
        usable=usable,
        found=found,
        cu=full * np.clip(mean + shift, 0.0, 1.0).astype(F32),
        sub=full * mean.astype(F32),
        edge_sigma=0.0,
        board=colourful,
    )


def render_change(
    region: Region, layer: CopperLayer, new_copper: np.ndarray, compression: float = 0.0
) -> Layer:
    """The Layer that turns the region's copper into ``new_copper``.

    Each pixel moves from one tone to the other by how much its (edge-blurred) copper share
    changes, so new copper keeps the noise of what was there and its edges are as soft as
    the image's own. On a binarised scan, ``compression`` (0..1) adds the ringing a JPEG
    scan shows around a defect's edges: the changed area and a few px around it go
    through a JPEG round trip (quality 95 down to 25), never flipping a pixel's copper
    state outside the change. Coverage is 1 where the copper state changed (the label)
    and 0.49 on the fringe around it (soft edges, ringing), whose pixels are driven so
    that the composite shows exactly the wanted change there too.
    """
    old = layer.copper
    changed = new_copper != old
    h, w = region.shape
    if not changed.any():
        return Layer(region.pixels.copy(), np.zeros((h, w), F32))
    s = layer.edge_sigma
    dt = new_copper.astype(F32) - old.astype(F32)
    if s > 0:
        dt = cv2.GaussianBlur(dt, (0, 0), s).astype(F32)
    base = region.pixels
    target = np.clip(base + (layer.cu - layer.sub) * dt[:, :, None], 0.0, 1.0)
    if layer.scan and compression > 0:
        target = _jpeg_ring(base, target, changed, compression)
    delta = target - base
    moved = np.abs(delta).max(axis=2) >= F32(0.5 / 65535)
    fringe = moved & ~changed
    coverage = changed.astype(F32)
    coverage[fringe] = F32(FRINGE)
    pixels = target.astype(F32)
    if fringe.any():
        pixels[fringe] = np.clip(base[fringe] + delta[fringe] / F32(FRINGE), 0.0, 1.0)
    return Layer(pixels, coverage)


def _jpeg_ring(
    base: np.ndarray, target: np.ndarray, changed: np.ndarray, compression: float
) -> np.ndarray:
    gray = target.mean(axis=2)
    u8 = np.clip(np.rint(gray * 255.0), 0, 255).astype(np.uint8)
    quality = int(round(95 - 70 * float(np.clip(compression, 0.0, 1.0))))
    ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return target
    raw = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    if raw is None:
        return target
    dec = raw.astype(F32) / F32(255.0)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * _RING + 1, 2 * _RING + 1))
    ring = cv2.dilate(changed.astype(np.uint8), k) > 0
    noisy = target + ((dec - u8.astype(F32) / F32(255.0)) * ring)[:, :, None]
    # outside the change a pixel keeps its side of the copper threshold
    was_dark = base.mean(axis=2) < 0.5
    keep = ring & ~changed
    lo = np.where(was_dark, F32(0.0), F32(0.51))[:, :, None]
    hi = np.where(was_dark, F32(0.49), F32(1.0))[:, :, None]
    bounded = np.clip(noisy, lo, hi)
    out = np.where(keep[:, :, None], bounded, noisy)
    return np.clip(out, 0.0, 1.0).astype(F32)
