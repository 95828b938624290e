"""What the realism score looks at: a few dozen named measurements of one defect crop.

They describe the defect, never a shortcut: nothing here reads the surface's own level,
the image's size in pixels or its file's encoding. Geometry is measured on the mask at
the image's resolution and in units of the image's shorter side (a defect twice as wide
on an image twice as large is the same defect); appearance is measured on the window
resized so that its longer side is :data:`SIZE` px, in units of the surrounding
surface's own variation (so a defect that stands out of a rough surface as much as a real
one does scores alike, whatever the surface).

Each :class:`Feature` carries the words :func:`describe_difference` needs to say how two
sets differ ("synthetic scratches are 2.3x wider than real ones").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .crops import Crop

F32 = np.float32
SIZE = 96

__all__ = ["FEATURES", "Feature", "describe_difference", "feature_matrix", "features"]


@dataclass(frozen=True)
class Feature:
    """A measurement: its ``name``, a ``noun`` for sentences, and how it compares.

    ``kind``: ``ratio`` (positive: compared by the ratio of medians, with ``more``/``less``
    as the comparative adjectives), ``signed`` (compared by its median on each side, with
    ``pos``/``neg`` saying what a positive/negative value means), or ``count``.
    """

    name: str
    noun: str
    kind: str = "ratio"
    more: str = ""
    less: str = ""
    pos: str = ""
    neg: str = ""


FEATURES: tuple[Feature, ...] = (
    Feature("length", "length", more="longer", less="shorter"),
    Feature("width", "width", more="wider", less="narrower"),
    Feature("elongation", "elongation", more="more elongated", less="less elongated"),
    Feature("horizontal", "orientation", "signed", pos="run horizontally", neg="run vertically"),
    Feature("diagonal", "diagonal orientation", "signed", pos="run along /", neg="run along \\"),
    Feature("fill", "fill of the box", more="more solid", less="sparser"),
    Feature("solidity", "convexity", more="more convex", less="more ragged"),
    Feature("outline", "outline roughness", more="rougher-edged", less="smoother-edged"),
    Feature("pieces", "number of pieces", "count", more="in more pieces", less="in fewer pieces"),
    Feature("branches", "branch points", "count", more="branch more", less="branch less"),
    Feature("contrast", "contrast", "signed", pos="brighter than their surface",
            neg="darker than their surface"),
    Feature("strength", "contrast", more="stronger", less="fainter"),
    Feature("peak", "peak contrast", more="stronger at their peak", less="weaker at their peak"),
    Feature("coverage", "visible share", more="more solidly visible", less="more patchily visible"),
    Feature("inner_texture", "texture inside", more="more textured inside",
            less="smoother inside"),
    Feature("inner_fine", "fine detail inside", more="finer-grained inside",
            less="blurrier inside"),
    Feature("core", "contrast in the core", "signed", pos="bright in the core",
            neg="dark in the core"),
    Feature("rim_in", "contrast just inside the edge", "signed", pos="bright just inside the edge",
            neg="dark just inside the edge"),
    Feature("rim_out", "contrast just outside the edge", "signed",
            pos="bright just outside the edge (a halo)", neg="dark just outside the edge"),
    Feature("halo", "contrast further out", "signed", pos="bright further out",
            neg="dark further out"),
    Feature("sharpness", "edge sharpness", more="sharper-edged", less="softer-edged"),
    Feature("skew", "skew of the inside", "signed", pos="speckled with bright spots",
            neg="speckled with dark spots"),
    Feature("anisotropy", "streaks inside, against the surface around", "signed",
            pos="more streaked than their surface", neg="less streaked than their surface"),
    Feature("lightness", "lightness change", "signed", pos="lighter", neg="darker"),
    Feature("chroma", "colour shift", more="more strongly coloured", less="less coloured"),
    Feature("hue_a", "red-green shift", "signed", pos="redder", neg="greener"),
    Feature("hue_b", "yellow-blue shift", "signed", pos="yellower", neg="bluer"),
)
NAMES = tuple(f.name for f in FEATURES)
_INDEX = {n: i for i, n in enumerate(NAMES)}


def feature_matrix(crops: list[Crop]) -> np.ndarray:
    """(n, len(FEATURES)) float64, one row per crop (every crop must carry a mask)."""
    if not crops:
        return np.zeros((0, len(FEATURES)))
    return np.stack([features(c) for c in crops])


def features(crop: Crop) -> np.ndarray:
    """The measurements of one crop, in :data:`FEATURES` order."""
    assert crop.mask is not None, "features need a mask (see crops.to_common)"
    out = np.zeros(len(FEATURES))
    _geometry(crop.mask, min(crop.image_shape), out)
    _appearance(crop, out)
    return out


# -- geometry ----------------------------------------------------------------------------------


def _geometry(mask: np.ndarray, side: int, out: np.ndarray) -> None:
    ys, xs = np.nonzero(mask)
    area = float(len(xs))
    if area == 0:
        return
    cov = np.cov(np.stack([xs, ys]).astype(np.float64)) if area > 1 else np.zeros((2, 2))
    evals, evecs = np.linalg.eigh(cov + np.eye(2) * (1.0 / 12.0))  # a pixel's own spread
    l_minor, l_major = float(evals[0]), float(evals[1])
    length = math.sqrt(12.0 * l_major)
    width = area / max(length, 1.0)
    ecc = 1.0 - l_minor / max(l_major, 1e-9)  # 0 round .. 1 a line
    vx, vy = float(evecs[0, 1]), float(evecs[1, 1])
    theta = math.atan2(vy, vx)
    out[_INDEX["length"]] = length / side
    out[_INDEX["width"]] = width / side
    out[_INDEX["elongation"]] = length / max(width, 0.5)
    out[_INDEX["horizontal"]] = math.cos(2 * theta) * ecc
    out[_INDEX["diagonal"]] = -math.sin(2 * theta) * ecc  # image y points down
    h = int(ys.max() - ys.min() + 1)
    w = int(xs.max() - xs.min() + 1)
    out[_INDEX["fill"]] = area / (h * w)
    m8 = mask.astype(np.uint8)
    contours, _ = cv2.findContours(m8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    pts = np.concatenate([c.reshape(-1, 2) for c in contours])
    hull_area = cv2.contourArea(cv2.convexHull(pts)) + 0.5 * len(cv2.convexHull(pts)) + 1.0
    out[_INDEX["solidity"]] = min(1.0, area / hull_area)
    perimeter = sum(cv2.arcLength(c, True) for c in contours) + 1.0
    out[_INDEX["outline"]] = perimeter**2 / (4 * math.pi * area) / max(1.0, length / width)
    out[_INDEX["pieces"]] = float(len(contours))
    out[_INDEX["branches"]] = float(_branch_points(m8[ys.min() : ys.max() + 1,
                                                     xs.min() : xs.max() + 1]))


def _branch_points(m: np.ndarray) -> int:
    """Pixels of the mask's skeleton where three or more branches meet (at a resolution
    of at most :data:`SIZE` px, so a large blob's outline wiggles do not count)."""
    h, w = m.shape
    f = min(1.0, SIZE / max(h, w))
    if f < 1.0:
        m = cv2.resize(m, (max(1, round(w * f)), max(1, round(h * f))),
                       interpolation=cv2.INTER_AREA)
        m = (m > 0).astype(np.uint8)
    sk = _skeleton(np.pad(m, 1))
    if not sk.any():
        return 0
    nb = cv2.filter2D(sk.astype(np.uint8), -1, np.ones((3, 3), np.float32),
                      borderType=cv2.BORDER_CONSTANT) - sk
    junction = (sk > 0) & (nb >= 3)
    n, _ = cv2.connectedComponents(junction.astype(np.uint8), connectivity=8)
    return n - 1


def _skeleton(m: np.ndarray) -> np.ndarray:
    """Thinning by Zhang and Suen (1984): peel boundary pixels in two alternating
    sub-steps until nothing changes; what remains is one pixel wide and keeps the
    topology (uint8 0/1)."""
    img = (m > 0).astype(np.uint8)
    while True:
        changed = False
        for step in (0, 1):
            p = np.pad(img, 1)
            n = [p[0:-2, 1:-1], p[0:-2, 2:], p[1:-1, 2:], p[2:, 2:],
                 p[2:, 1:-1], p[2:, 0:-2], p[1:-1, 0:-2], p[0:-2, 0:-2]]  # P2..P9
            b = sum(x.astype(np.int32) for x in n)
            seq = n + [n[0]]
            a = sum(((seq[i] == 0) & (seq[i + 1] == 1)).astype(np.int32) for i in range(8))
            if step == 0:
                c1 = (n[0] * n[2] * n[4]) == 0
                c2 = (n[2] * n[4] * n[6]) == 0
            else:
                c1 = (n[0] * n[2] * n[6]) == 0
                c2 = (n[0] * n[4] * n[6]) == 0
            kill = (img == 1) & (b >= 2) & (b <= 6) & (a == 1) & c1 & c2
            if kill.any():
                img[kill] = 0
                changed = True
        if not changed:
            return img


# -- appearance --------------------------------------------------------------------------------


def _appearance(crop: Crop, out: np.ndarray) -> None:
    assert crop.mask is not None
    px = crop.pixels
    h, w = crop.mask.shape
    f = SIZE / max(h, w)
    size = (max(2, round(w * f)), max(2, round(h * f)))
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    img = cv2.resize(px, size, interpolation=interp)
    if img.ndim == 2:
        img = img[:, :, None]
    soft = cv2.resize(crop.mask.astype(F32), size, interpolation=cv2.INTER_LINEAR)
    mask = soft >= 0.5
    if not mask.any():  # thinner than a pixel at this scale: keep its strongest line
        mask = soft >= 0.5 * float(soft.max())
    gray = img.mean(axis=2) if img.shape[2] == 3 else img[:, :, 0]
    m8 = mask.astype(np.uint8)
    dist_out = cv2.distanceTransform(1 - m8, cv2.DIST_L2, 3)
    dist_in = cv2.distanceTransform(m8, cv2.DIST_L2, 3)
    ring = (dist_out > 2) & (dist_out <= 10)
    if ring.sum() < 20:
        ring = ~mask
    if ring.sum() < 20:  # the defect fills its window: compare with its own border
        ring = np.zeros_like(mask)
        ring[[0, -1], :] = True
        ring[:, [0, -1]] = True
    level = float(np.median(gray[ring]))
    spread = max(1.4826 * float(np.median(np.abs(gray[ring] - level))), 2.0 / 255)
    dev = (gray - level) / spread
    inside = dev[mask]
    out[_INDEX["contrast"]] = float(inside.mean())
    out[_INDEX["strength"]] = float(np.abs(inside).mean())
    out[_INDEX["peak"]] = float(np.percentile(np.abs(inside), 95))
    out[_INDEX["coverage"]] = float((np.abs(inside) > 2.0).mean())
    out[_INDEX["inner_texture"]] = float(inside.std())
    if inside.size > 2 and inside.std() > 1e-6:
        z = (inside - inside.mean()) / inside.std()
        out[_INDEX["skew"]] = float(np.clip((z**3).mean(), -10, 10))
    lap = cv2.Laplacian(gray.astype(F32), cv2.CV_32F, ksize=1)
    lap_ring = float(np.std(lap[ring])) + 1e-4
    out[_INDEX["inner_fine"]] = float(np.std(lap[mask])) / lap_ring

    def band(sel: np.ndarray) -> float:
        return float(dev[sel].mean()) if sel.any() else 0.0

    core = dist_in > 3
    out[_INDEX["core"]] = band(core) if core.any() else band(mask)
    out[_INDEX["rim_in"]] = band(mask & (dist_in <= 3))
    out[_INDEX["rim_out"]] = band((dist_out > 0) & (dist_out <= 3))
    out[_INDEX["halo"]] = band((dist_out > 3) & (dist_out <= 7))
    gx = cv2.Sobel(gray.astype(F32), cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray.astype(F32), cv2.CV_32F, 0, 1, ksize=3)
    mag = cv2.magnitude(gx, gy)
    edge = (dist_in > 0) & (dist_in <= 1.5) | ((dist_out > 0) & (dist_out <= 1.5))
    if edge.any():
        out[_INDEX["sharpness"]] = float(mag[edge].mean() / (mag[ring].mean() + 1e-4))
    out[_INDEX["anisotropy"]] = _coherence(gx, gy, mask) - _coherence(gx, gy, ring)
    if img.shape[2] == 3:
        lab = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2Lab)
        ring_lab = np.median(lab[ring], axis=0)
        in_lab = lab[mask].mean(axis=0)
        d = in_lab - ring_lab
        out[_INDEX["lightness"]] = float(d[0])
        out[_INDEX["chroma"]] = float(math.hypot(d[1], d[2]))
        out[_INDEX["hue_a"]] = float(d[1])
        out[_INDEX["hue_b"]] = float(d[2])


def _coherence(gx: np.ndarray, gy: np.ndarray, where: np.ndarray) -> float:
    """How much the gradients in ``where`` share one direction (0: none, 1: all): the
    structure tensor's anisotropy."""
    jxx, jyy, jxy = (float((a * b)[where].sum()) for a, b in ((gx, gx), (gy, gy), (gx, gy)))
    tr = jxx + jyy
    return math.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / tr if tr > 1e-9 else 0.0


# -- words -------------------------------------------------------------------------------------


def describe_difference(
    feature: Feature, real: np.ndarray, synthetic: np.ndarray, category: str = "defects"
) -> str:
    """One sentence saying how the synthetic values of ``feature`` differ from the real."""
    mr, ms = float(np.median(real)), float(np.median(synthetic))
    cat = category
    if feature.kind == "signed":
        def side(v: float) -> str:
            if abs(v) < 0.05 * (abs(mr) + abs(ms) + 1e-9):
                return "neither"
            return feature.pos if v > 0 else feature.neg
        sr, ss = side(mr), side(ms)
        if sr == ss:
            qual = "more" if abs(ms) > abs(mr) else "less"
            return (f"synthetic {cat} {sr.split(' (')[0]} {qual} strongly than real ones "
                    f"({feature.noun}: {ms:+.2f} vs {mr:+.2f})")
        return (f"real {cat}: {sr}; synthetic ones: {ss} "
                f"({feature.noun}: {mr:+.2f} real, {ms:+.2f} synthetic)")
    if feature.kind == "count":
        if mr >= 1 and ms < 1 or mr < 1 and ms >= 1:
            yes = feature.more.split(" ")[0] if feature.name == "branches" else "split"
            who, not_who = ("real", "synthetic") if mr > ms else ("synthetic", "real")
            return (f"{who} {cat} {yes} ({feature.noun}: median {max(mr, ms):.0f}), "
                    f"{not_who} ones do not ({min(mr, ms):.0f})")
    eps = 1e-6
    r = (abs(ms) + eps) / (abs(mr) + eps)
    if r >= 1:
        return f"synthetic {cat} are {r:.1f}x {feature.more} than real ones ({feature.noun})"
    return f"synthetic {cat}: their {feature.noun} is {r:.2f}x the real ones' ({feature.less})"
