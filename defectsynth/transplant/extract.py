"""Cutting one real defect out of its image: the three ways to get its mask.

1. :func:`mask_from_label` — the label gives the mask (COCO polygons or RLE, YOLO-seg
   polygons, a VOC ``SegmentationObject`` instance): rasterize it.
2. :func:`mask_from_reference` — an aligned clean image of the same part is given: the
   defect is what differs, measured against the noise of the difference outside the box.
3. :func:`mask_from_box` — only the box: a local background model. A smooth surface
   (quadratic per channel, fitted robustly on a ring around the box) predicts the
   defect-free pixels; the defect is what departs from it by more than the ring's own
   texture and noise does. Candidates are kept when they belong to the main body of the
   defect (a labeled box is tight around it, so the body spans most of the box).

Images here are float32 (h, w, c) in 0..1, c = 1 or 3; boxes are pixel xyxy, 0-based,
end exclusive (the house format). Every function is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

F32 = np.float32
Box = tuple[int, int, int, int]

__all__ = [
    "mask_from_box",
    "mask_from_label",
    "mask_from_reference",
    "polygon_mask",
]


def polygon_mask(shape: tuple[int, int], polygons: Sequence[Sequence[float]]) -> np.ndarray:
    """Boolean mask of flat ``[x0, y0, x1, y1, ...]`` polygons (pixel-centre coordinates,
    as defectsynth and OpenCV contours write them), filled with 1/16 px precision."""
    canvas = np.zeros(shape, np.uint8)
    pts = []
    for poly in polygons:
        a = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        if len(a) >= 3:
            pts.append(np.rint(a * 16).astype(np.int32))
        elif len(a):  # a point or a segment: draw it so a thin label is not lost
            q = np.rint(a * 16).astype(np.int32)
            cv2.polylines(canvas, [q], False, 1, 1, cv2.LINE_8, shift=4)
    if pts:
        cv2.fillPoly(canvas, pts, 1, cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def mask_from_label(label: np.ndarray, box: Box) -> np.ndarray:
    """The label's own mask, limited to its box grown by 1 px (a box and a mask drawn by
    different tools may disagree by a pixel)."""
    h, w = label.shape
    x1, y1, x2, y2 = _grow(box, 1, (h, w))
    out = np.zeros((h, w), bool)
    out[y1:y2, x1:x2] = label[y1:y2, x1:x2]
    return out


def mask_from_reference(image: np.ndarray, reference: np.ndarray, box: Box) -> np.ndarray:
    """Where ``image`` differs from the aligned clean ``reference`` inside ``box``.

    The difference is compared with its own spread outside the box (sensor noise, JPEG,
    slight misalignment), so a change counts only where it clearly exceeds that; inside the
    box a pixel belongs to the defect when its change is also at least a fifth of the
    defect's strongest (98th percentile) change: the faint fringe of a soft edge is not
    the defect, as a person labelling it would also leave it out.
    """
    h, w = image.shape[:2]
    diff = np.abs(image.astype(F32) - reference.astype(F32)).max(axis=2)
    x1, y1, x2, y2 = _grow(box, 2, (h, w))
    inbox = np.zeros((h, w), bool)
    inbox[y1:y2, x1:x2] = True
    outside = diff[~inbox]
    noise = _robust_sigma(outside) if outside.size >= 16 else 1.0 / 255
    noise = max(noise, 0.5 / 255)
    inside = diff[y1:y2, x1:x2]
    strong = float(np.percentile(inside, 98)) if inside.size else 0.0
    thr = max(4.0 * noise, 0.2 * strong, 2.0 / 255)
    cand = np.zeros((h, w), bool)
    cand[y1:y2, x1:x2] = inside > thr
    return _tidy(cand, box)


def mask_from_box(image: np.ndarray, box: Box) -> np.ndarray:
    """Estimate the defect's mask from its box alone (local background model).

    The box is grown by a ring of about 40 % of its size (6..40 px); a quadratic surface
    per channel, fitted to the ring with outliers trimmed, is the background. Each pixel's
    departure from it is measured against the ring's own residual colour covariance
    (Mahalanobis distance: a chroma change stands out on a grey texture). Seeds above
    Otsu's threshold of the box's pixels (and well above the ring's texture) grow into
    neighbours above a lower threshold (hysteresis); on colour images GrabCut then settles
    the edge with colour models of the defect and of the ring (the ring is certain
    background, the seeds certain defect).

    Works well on the surfaces box-only defect sets usually show (sheet metal, paint,
    castings, fabric); thin, faint defects on strong structure (a scratch along brushed
    grain, a stain over printed text) are better given with a mask or a clean reference.
    """
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    pad = int(np.clip(round(0.4 * max(bw, bh)), 6, 40))
    cx1, cy1, cx2, cy2 = _grow(box, pad, (h, w))
    crop = image[cy1:cy2, cx1:cx2].astype(F32)
    ch, cw, nc = crop.shape
    inbox = np.zeros((ch, cw), bool)
    inbox[y1 - cy1 : y2 - cy1, x1 - cx1 : x2 - cx1] = True
    ring = ~inbox
    if ring.sum() < 24:  # the box fills the image: no surface to learn from
        return _tidy(_box_mask((h, w), box), box)
    res = np.empty_like(crop)
    for c in range(nc):
        surface, _ = _fit_surface(crop[:, :, c], ring)
        res[:, :, c] = crop[:, :, c] - surface
    dist = _mahalanobis(res, ring)
    base = float(np.median(dist[ring]))  # what the surface's own texture reaches
    high = max(_otsu(dist[inbox]), 2.5 * base)
    low = max(0.6 * high, 1.5 * base)
    seeds = (dist > high) & inbox
    cand_local = _hysteresis(seeds, (dist > low) & inbox)
    if nc == 3 and cand_local.any():
        cand_local = _grabcut(crop, inbox, cand_local, seeds)
    cand = np.zeros((h, w), bool)
    cand[cy1:cy2, cx1:cx2] = cand_local
    return _tidy(cand, box)


def _hysteresis(seeds: np.ndarray, grow: np.ndarray) -> np.ndarray:
    n, lab = cv2.connectedComponents(grow.astype(np.uint8), connectivity=8)
    hit = np.zeros(n, bool)
    hit[np.unique(lab[seeds])] = True
    hit[0] = False
    return hit[lab]


def _mahalanobis(res: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """Per-pixel Mahalanobis distance of residuals from the ring's robust covariance,
    divided by sqrt(channels) (about 1 on the ring whatever the channel count)."""
    nc = res.shape[2]
    r = res[ring].astype(np.float64)
    keep = np.ones(len(r), bool)
    cov = np.eye(nc)
    for _ in range(3):
        sub = r[keep]
        mu = np.median(sub, axis=0)
        cov = np.cov((sub - mu).T).reshape(nc, nc) + np.eye(nc) * (0.6 / 255) ** 2
        inv = np.linalg.inv(cov)
        d2 = np.einsum("ij,jk,ik->i", r - mu, inv, r - mu)
        keep = d2 <= 9.0 * nc
        if keep.sum() < 12:
            break
    inv = np.linalg.inv(cov)
    flat = res.reshape(-1, nc).astype(np.float64)
    d2 = np.einsum("ij,jk,ik->i", flat, inv, flat)
    return np.sqrt(d2 / nc).reshape(res.shape[:2]).astype(F32)


def _grabcut(
    crop: np.ndarray, inbox: np.ndarray, cand: np.ndarray, seeds: np.ndarray
) -> np.ndarray:
    img = np.clip(np.rint(crop * 255), 0, 255).astype(np.uint8)
    gm = np.full(inbox.shape, cv2.GC_BGD, np.uint8)
    gm[inbox] = cv2.GC_PR_BGD
    gm[cand] = cv2.GC_PR_FGD
    gm[seeds & inbox] = cv2.GC_FGD
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    # GrabCut seeds its colour models with k-means on OpenCV's global random state: fix
    # it, or the same defect would extract differently depending on what ran before
    cv2.setRNGSeed(0x5EED)
    try:
        mode = cv2.GC_INIT_WITH_MASK
        cv2.grabCut(img, gm, None, bgd, fgd, 4, mode)  # type: ignore[call-overload]
    except cv2.error:  # degenerate colour models (a flat crop): keep the candidate
        return cand
    return ((gm == cv2.GC_FGD) | (gm == cv2.GC_PR_FGD)) & inbox


# -- helpers --------------------------------------------------------------------------------


def _grow(box: Box, pad: int, shape: tuple[int, int]) -> Box:
    h, w = shape
    x1, y1, x2, y2 = box
    return max(0, x1 - pad), max(0, y1 - pad), min(w, x2 + pad), min(h, y2 + pad)


def _box_mask(shape: tuple[int, int], box: Box) -> np.ndarray:
    m = np.zeros(shape, bool)
    x1, y1, x2, y2 = box
    m[y1:y2, x1:x2] = True
    return m


def _robust_sigma(values: np.ndarray) -> float:
    v = values.astype(np.float64).ravel()
    med = float(np.median(v))
    return 1.4826 * float(np.median(np.abs(v - med))) + 1e-9


def _fit_surface(channel: np.ndarray, ring: np.ndarray) -> tuple[np.ndarray, float]:
    """A quadratic surface fitted to ``channel`` on ``ring`` (twice, trimming residuals
    beyond 2.5 sigma: the defect's own fringe may reach into the ring) and the robust
    spread of the ring around it."""
    h, w = channel.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    s = float(max(h, w))
    u, v = (xs - w / 2) / s, (ys - h / 2) / s
    basis = np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1)
    a = basis[ring]
    b = channel[ring].astype(np.float64)
    keep = np.ones(b.shape, bool)
    coef = np.zeros(6)
    sigma = 1.0
    for _ in range(3):
        coef, *_ = np.linalg.lstsq(a[keep], b[keep], rcond=None)
        res = b - a @ coef
        sigma = _robust_sigma(res[keep])
        keep = np.abs(res) <= 2.5 * sigma + 1e-6
        if keep.sum() < 12:
            break
    surface = (basis @ coef).astype(F32)
    return surface, float(sigma)


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of float values (256 bins between their 1st and 99.5th
    percentile)."""
    if values.size < 4:
        return float(values.max(initial=0.0))
    lo, hi = np.percentile(values, [1.0, 99.5])
    if hi - lo < 1e-6:
        return float(hi)
    q = np.clip((values - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)
    t, _ = cv2.threshold(q.reshape(1, -1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(lo + (t + 0.5) / 255.0 * (hi - lo))


def _tidy(cand: np.ndarray, box: Box) -> np.ndarray:
    """Small holes filled, specks removed, only components with a real share of the
    candidate kept (a labeled box encloses one defect: stray texture does not count)."""
    h, w = cand.shape
    gx1, gy1, gx2, gy2 = _grow(box, 3, (h, w))
    sub: np.ndarray = cand[gy1:gy2, gx1:gx2].astype(np.uint8)
    k3 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    sub = cv2.morphologyEx(sub, cv2.MORPH_CLOSE, k3)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(sub, connectivity=8)
    if n <= 1:
        return np.zeros((h, w), bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    biggest = int(areas.max())
    min_area = max(3, int(0.04 * biggest))
    keep = np.zeros(n, bool)
    keep[1:] = areas >= min_area
    sub = keep[lab].astype(np.uint8)
    # fill holes smaller than 1/8 of the defect: specks of surface inside a stain
    inv = (1 - sub).astype(np.uint8)
    n2, lab2, st2, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    total = int(sub.sum())
    for i in range(1, n2):
        x, y, ww, hh, area = st2[i]
        touches = x == 0 or y == 0 or x + ww == sub.shape[1] or y + hh == sub.shape[0]
        if not touches and area <= max(4, total // 8):
            sub[lab2 == i] = 1
    out = np.zeros((h, w), bool)
    out[gy1:gy2, gx1:gx2] = sub.astype(bool)
    return out
