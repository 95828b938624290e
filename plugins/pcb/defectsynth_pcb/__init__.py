"""Printed-circuit defects for defectsynth: open, short, mousebite, spur, spurious copper
and pin-hole, each placed where it can physically happen on the board's own copper.

Every generator finds the copper layer in the region it is given (a binarised scan, where
copper is one of two grey levels, or a colour photo of a green board, where it is the
lighter green under the solder mask), looks in that region for a site where its defect
can happen (a trace to break, two nearby traces to bridge, a trace edge, a gap, a copper
area), changes the copper there, and draws the change in the image's own look: new
copper takes that image's copper tone, removed copper the substrate tone nearby, with the
image's own edge softness and noise. The label is the copper that changed.

When a region holds no suitable site the layer is empty and the synthesizer draws the
defect again at another place. A grey region that shows no copper pattern at all (not a
board) gets the defect's shape as a plain blob in a contrasting tone, unless
``fallback`` is false, so the generators work on any image; on a colour board photo
(and a binarised scan) there is no fallback: no site, no defect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from defectsynth import DefectGenerator, Layer, Region, hookimpl, param

from .copper import CopperLayer, find_copper, render_change
from .shapes import blob, brush, lobe, stroke, wobble

__version__ = "0.1.0"

__all__ = [
    "PcbOpenGenerator",
    "PcbShortGenerator",
    "PcbMousebiteGenerator",
    "PcbSpurGenerator",
    "PcbSpuriousCopperGenerator",
    "PcbPinholeGenerator",
    "GENERATORS",
    "find_copper",
]

F32 = np.float32
_TRIES = 16  # candidate sites tried per region before giving up (empty layer)


@dataclass(frozen=True)
class _Common:
    search: float = param(
        128.0, lo=24.0, hi=1024.0, size=True,
        doc="side of the square region searched for a site where the defect can happen, px",
    )
    roughness: float = param(
        0.5, lo=0.0, hi=1.0, vary=(0.3, 0.8), doc="how ragged the outline is (0 smooth)"
    )
    # (a choice, so that a misspelt value is refused when the recipe is read, naming its
    # key; `fit` may try the other polarities, which find no copper and score worse)
    copper: str = param(
        "auto", choices=("auto", "dark", "light"),
        doc="which tone is copper: auto (dark on grey scans, the lighter green on colour "
        "boards), dark or light",
    )
    compression: float = param(
        0.25, lo=0.0, hi=1.0, vary=(0.1, 0.4),
        doc="on a binarised scan, JPEG ringing around the defect (0 none, 1 heavy)",
    )
    fallback: bool = param(
        True,
        doc="on a surface with no copper pattern, draw the shape anyway as a contrasting blob "
        "(false: skip such places)",
    )


def _pick(
    mask: np.ndarray, rng: np.random.Generator, k: int = _TRIES
) -> list[tuple[int, int]]:
    """Up to ``k`` distinct (y, x) of ``mask``, drawn at random with a preference for the
    region's centre (where the synthesizer placed the defect)."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return []
    h, w = mask.shape
    r = np.hypot(ys - (h - 1) / 2.0, xs - (w - 1) / 2.0) / (0.3 * max(min(h, w), 1))
    p = 1.0 / (1.0 + r**2)
    p /= p.sum()
    idx = rng.choice(len(ys), size=min(k, len(ys)), replace=False, p=p)
    return [(int(ys[i]), int(xs[i])) for i in idx]


def _components(mask: np.ndarray) -> np.ndarray:
    return cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[1]


class _Geometry:
    """Per-region measurements of the copper shared by the site searches."""

    def __init__(self, layer: CopperLayer) -> None:
        self.layer = layer
        c = layer.copper
        self.c8 = c.astype(np.uint8)
        smooth = cv2.GaussianBlur(c.astype(F32), (0, 0), 1.2)
        # gradient of the copper share: points from substrate into copper
        self.gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
        self.gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
        big = float(sum(c.shape))  # (no edge at all: OpenCV returns a huge distance)
        self.inside = np.minimum(cv2.distanceTransform(self.c8, cv2.DIST_L2, 5), big)
        self.outside = np.minimum(cv2.distanceTransform(1 - self.c8, cv2.DIST_L2, 5), big)
        self.labels = _components(c)

    def orientation(self, y: int, x: int, radius: float) -> tuple[np.ndarray, float]:
        """Unit normal (x, y) of the copper edges near (y, x), and their coherence (1:
        straight parallel edges, 0: no direction, e.g. a corner or a round pad)."""
        r = max(int(math.ceil(radius)), 2)
        h, w = self.gx.shape
        sl = (slice(max(y - r, 0), min(y + r + 1, h)), slice(max(x - r, 0), min(x + r + 1, w)))
        gx, gy = self.gx[sl], self.gy[sl]
        jxx, jyy, jxy = float((gx * gx).sum()), float((gy * gy).sum()), float((gx * gy).sum())
        tr = jxx + jyy
        if tr < 1e-6:
            return np.array([1.0, 0.0]), 0.0
        diff = math.hypot(jxx - jyy, 2 * jxy)
        coherence = diff / tr
        ang = 0.5 * math.atan2(2 * jxy, jxx - jyy)
        return np.array([math.cos(ang), math.sin(ang)]), coherence

    def edge_normal(self, y: int, x: int) -> np.ndarray | None:
        """Unit vector (x, y) from the copper edge at (y, x) into the copper."""
        g = np.array([float(self.gx[y, x]), float(self.gy[y, x])])
        n = float(np.hypot(*g))
        return g / n if n > 1e-4 else None

    def thickness(self, y: int, x: int, inward: np.ndarray, limit: float) -> float:
        """How far copper reaches from (y, x) along ``inward`` (px, at most ``limit``)."""
        h, w = self.c8.shape
        k = 0.0
        while k < limit:
            k += 1.0
            yy, xx = int(round(y + inward[1] * k)), int(round(x + inward[0] * k))
            if not (0 <= yy < h and 0 <= xx < w) or not self.c8[yy, xx]:
                return k
        return limit

    def edge_pixels(self) -> np.ndarray:
        c = self.c8
        eroded = cv2.erode(c, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
        return (c > 0) & (eroded == 0) & self.layer.usable


def _window(shape: tuple[int, int], y: int, x: int, r: float) -> tuple[slice, slice]:
    ri = int(math.ceil(r))
    h, w = shape
    return slice(max(y - ri, 0), min(y + ri + 1, h)), slice(max(x - ri, 0), min(x + ri + 1, w))


def _fallback_layer(layer: CopperLayer, as_copper: bool) -> CopperLayer:
    """A plain surface taken as all substrate (``as_copper`` False: new copper takes the
    contrasting tone) or as all copper (a hole takes the contrasting tone)."""
    if not as_copper:
        return layer
    return CopperLayer(
        copper=layer.usable.copy(), usable=layer.usable, found=False,
        cu=layer.sub, sub=layer.cu, edge_sigma=0.0,
    )


class _PcbGenerator(DefectGenerator):
    """Shared machinery: find the copper, search a site, draw the change."""

    version = __version__
    # the defaults were chosen on 640 x 640 binarised scans (DeepPCB)
    reference_size = 640
    #: whether the defect adds copper (short, spur, island) or removes it
    adds_copper: bool = True

    def size(self, params: Any) -> float:
        """The defect's own size in px, for its extent and its fallback blob."""
        raise NotImplementedError

    def extent(self, params: Any, rng: np.random.Generator) -> tuple[int, int]:
        side = int(math.ceil(max(params.search, 3.0 * self.size(params) + 16.0)))
        return side, side

    def place(
        self, geo: _Geometry, params: Any, rng: np.random.Generator
    ) -> np.ndarray | None:
        """The new copper mask, or None when the region holds no site for this defect."""
        raise NotImplementedError

    def render(self, region: Region, params: Any, rng: np.random.Generator) -> Layer:
        layer = find_copper(region, params.copper)
        h, w = region.shape
        if layer.found:
            new = self.place(_Geometry(layer), params, rng)
            if new is None:
                return Layer(region.pixels.copy(), np.zeros((h, w), F32))
            new = new & layer.usable | layer.copper & ~layer.usable
            return render_change(region, layer, new, params.compression)
        if not params.fallback or layer.board:
            return Layer(region.pixels.copy(), np.zeros((h, w), F32))
        layer = _fallback_layer(layer, as_copper=not self.adds_copper)
        r = max(self.size(params) / 2.0, 1.0)
        shape = blob(
            (h, w), ((w - 1) / 2.0, (h - 1) / 2.0), r, params.roughness, rng,
            aspect=float(rng.uniform(0.6, 1.0)), angle=float(rng.uniform(0, math.pi)),
        ) & layer.usable
        new = (layer.copper | shape) if self.adds_copper else (layer.copper & ~shape)
        return render_change(region, layer, new)


class PcbOpenGenerator(_PcbGenerator):
    """Open circuit: a break across a trace, which disconnects it.

    It finds the traces in its region (copper of a width up to ``max_width``, with straight
    parallel edges: not pads or pours), picks a point on a trace's centre line and removes
    the copper across the whole trace width, in a band ``gap`` long along the trace whose
    two cut edges are ragged and may be slanted. The break is kept only if the two sides
    are no longer connected near it. New substrate takes the tone of the substrate next to
    the trace. Category ``open`` (DeepPCB type 1).
    """

    name = "pcb_open"
    category = "open"
    adds_copper = False

    @dataclass(frozen=True)
    class Params(_Common):
        gap: float = param(
            7.0, lo=1.5, hi=80.0, vary=(4.0, 12.0), size=True,
            doc="length of the break along the trace, px",
        )
        slant: float = param(
            0.0, lo=-75.0, hi=75.0, vary=(-60.0, 60.0),
            doc="angle of the cut away from square across the trace, degrees",
        )
        max_width: float = param(
            30.0, lo=3.0, hi=300.0, size=True,
            doc="widest trace it breaks, px (wider copper is a pad or a pour)",
        )

    def size(self, params: Any) -> float:
        return params.gap * 1.5

    def place(self, geo: _Geometry, params: Any, rng: np.random.Generator) -> np.ndarray | None:
        c = geo.layer.copper
        d = geo.inside
        ridge = (d >= cv2.dilate(d, np.ones((3, 3), np.uint8)) - 1e-3) & c & geo.layer.usable
        ridge &= (d >= 1.0) & (2 * d <= params.max_width)
        tan = math.tan(math.radians(params.slant))
        for y, x in _pick(ridge, rng):
            half_w = float(d[y, x])
            normal, coherence = geo.orientation(y, x, max(2.0 * half_w, 4.0))
            if coherence < 0.5:
                continue
            t = np.array([-normal[1], normal[0]])  # along the trace
            reach = params.gap / 2.0 * (1.0 + 0.45 * params.roughness) + abs(tan) * (half_w + 3)
            R = reach + 2 * half_w + 8
            sl = _window(c.shape, y, x, R)
            oy, ox = sl[0].start, sl[1].start
            yy, xx = np.mgrid[sl[0], sl[1]].astype(F32)
            dx, dy = xx - x, yy - y
            u = dx * F32(t[0]) + dy * F32(t[1])
            v = dx * F32(normal[0]) + dy * F32(normal[1])
            half = F32(params.gap / 2.0) * (
                F32(1.0) + F32(0.45 * params.roughness) * wobble(v, max(2 * half_w, 4.0), rng)
            )
            off = F32(tan) * v
            band = (np.abs(u - off) <= np.maximum(half, F32(0.5))) & (
                np.abs(v) <= half_w + 2.0 + 2.0 * params.roughness
            )
            local = _components(c[sl])
            comp = local == local[y - oy, x - ox]
            removed = band & comp
            if not removed.any() or (removed & ~geo.layer.usable[sl]).any():
                continue
            after = c[sl] & ~removed
            ends = []
            for sign in (1.0, -1.0):
                for k in range(1, int(R) + 1):
                    py = int(round(y - oy + sign * t[1] * k))
                    px = int(round(x - ox + sign * t[0] * k))
                    if not (0 <= py < after.shape[0] and 0 <= px < after.shape[1]):
                        break
                    if after[py, px] and not removed[py, px]:
                        ends.append((py, px))
                        break
            if len(ends) != 2:
                continue
            lab = _components(after)
            if lab[ends[0]] == lab[ends[1]]:
                continue  # the copper still connects the two sides nearby: no open
            new = c.copy()
            new[sl] = after
            return new
        return None


class PcbShortGenerator(_PcbGenerator):
    """Short circuit: a copper bridge between two nearby traces, which connects them.

    It finds, in its region, the gaps between two facing copper edges that are not
    connected there (up to ``max_gap`` across, keeping their width along the traces: not
    the wedge where two traces join), and lays a ragged strip of copper ``width`` wide
    from one to the other, keeping clear of every third piece of copper.
    New copper takes the tone of the copper nearby. Category ``short`` (DeepPCB type 2).
    """

    name = "pcb_short"
    category = "short"

    @dataclass(frozen=True)
    class Params(_Common):
        width: float = param(
            9.0, lo=1.5, hi=60.0, vary=(6.0, 14.0), size=True, doc="width of the bridge, px"
        )
        max_gap: float = param(
            24.0, lo=2.0, hi=200.0, size=True,
            doc="widest gap between two traces it bridges, px",
        )

    def size(self, params: Any) -> float:
        return max(params.width, params.max_gap / 2.0)

    def place(self, geo: _Geometry, params: Any, rng: np.random.Generator) -> np.ndarray | None:
        c = geo.layer.copper
        if not c.any():
            return None
        _, nearest = cv2.distanceTransformWithLabels(
            1 - geo.c8, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_CCOMP
        )
        sub = ~c & geo.layer.usable & (geo.outside <= params.max_gap / 2.0 + 1.0)
        seam = np.zeros_like(sub)
        seam[:, :-1] |= nearest[:, :-1] != nearest[:, 1:]
        seam[:-1, :] |= nearest[:-1, :] != nearest[1:, :]
        seam &= sub
        for y, x in _pick(seam, rng):
            la = int(nearest[y, x])
            nb = [
                int(nearest[yy, xx])
                for yy, xx in ((y, x + 1), (y + 1, x), (y, x - 1), (y - 1, x))
                if 0 <= yy < c.shape[0] and 0 <= xx < c.shape[1]
            ]
            others = [v for v in nb if v != la]
            if not others:
                continue
            lb = others[0]
            R = params.max_gap + params.width + 6
            sl = _window(c.shape, y, x, R)
            oy, ox = sl[0].start, sl[1].start
            cw, nw = c[sl], nearest[sl]
            ends = []
            for lab in (la, lb):
                ys, xs = np.nonzero(cw & (nw == lab))
                if len(ys) == 0:
                    break
                k = int(np.argmin((ys - (y - oy)) ** 2 + (xs - (x - ox)) ** 2))
                ends.append((float(xs[k]), float(ys[k])))
            if len(ends) != 2:
                continue
            (ax, ay), (bx, by) = ends
            L = math.hypot(bx - ax, by - ay)
            if L > params.max_gap + 1.5 or L < 1.0:
                continue
            tx, ty = (bx - ax) / L, (by - ay) / L
            # across a gap between two facing edges (parallel traces), not into the
            # wedge where two traces meet: both edges face the bridge
            face_a = geo.edge_normal(int(ay) + oy, int(ax) + ox)
            face_b = geo.edge_normal(int(by) + oy, int(bx) + ox)
            if face_a is None or face_b is None:
                continue
            if face_a[0] * tx + face_a[1] * ty > -0.7 or face_b[0] * tx + face_b[1] * ty < 0.7:
                continue
            # and the gap keeps its width for a bridge's width either side (parallel
            # edges, not the narrowing wedge where two traces join)
            gap = float(geo.outside[y, x])
            steady = True
            for sgn in (1.0, -1.0):
                qy = int(round(y + sgn * tx * params.width))
                qx = int(round(x - sgn * ty * params.width))
                if not (0 <= qy < c.shape[0] and 0 <= qx < c.shape[1]):
                    continue
                g = float(geo.outside[qy, qx])
                if g < 0.6 * gap or g > 1.6 * gap + 1.0:
                    steady = False
            if not steady:
                continue
            ext = 1.5 + params.width * 0.25  # reach into both traces so it is attached
            a = (ax - tx * ext, ay - ty * ext)
            b = (bx + tx * ext, by + ty * ext)
            bridge = stroke(cw.shape, a, b, params.width, params.roughness, rng)
            added = bridge & ~cw
            # one piece: the part that spans the gap (the ends may graze the traces' edges)
            parts = _components(added)
            mid = parts[int(round((ay + by) / 2)), int(round((ax + bx) / 2))]
            if mid:
                added = parts == mid
            # a bridge, not a sliver along something's rim
            if added.sum() < 0.5 * params.width * L:
                continue
            if not added.any() or (added & ~geo.layer.usable[sl]).any():
                continue
            # both ends on traces, not on a crumb of copper
            big = 3.0 * params.width**2
            if min(int((c & (nearest == la)).sum()), int((c & (nearest == lb)).sum())) < big:
                continue
            third = cw & (nw != la) & (nw != lb)
            if third.any():
                clear = cv2.distanceTransform((~third).astype(np.uint8), cv2.DIST_L2, 5)
                if float(clear[added].min()) < 2.0:
                    continue
            after = cw | added
            lab_after = _components(after)
            ia = (int(round(ay)), int(round(ax)))
            ib = (int(round(by)), int(round(bx)))
            if lab_after[ia] != lab_after[ib]:
                continue
            new = c.copy()
            new[sl] = after
            return new
        return None


class PcbMousebiteGenerator(_PcbGenerator):
    """Mousebite: one or a few small bites out of a trace's edge.

    It picks a point on a straight stretch of a trace edge and removes ``bites`` small
    ragged notches side by side along the edge, each reaching ``depth`` of its radius
    into the copper; no bite takes more than about half of the copper's width there (on a
    narrow trace the bites are smaller), so the trace stays connected. New substrate takes
    the tone of the substrate nearby. Category ``mousebite`` (DeepPCB type 3).
    """

    name = "pcb_mousebite"
    category = "mousebite"
    adds_copper = False

    @dataclass(frozen=True)
    class Params(_Common):
        radius: float = param(
            5.5, lo=1.0, hi=30.0, vary=(4.0, 8.0), size=True, doc="radius of a bite, px"
        )
        bites: int = param(
            1, lo=1, hi=6, vary=(1, 2), doc="how many bites, side by side (overlapping)"
        )
        depth: float = param(
            1.2, lo=0.3, hi=2.0, vary=(0.9, 1.6), doc="how deep a bite reaches / its radius"
        )
        elongation: float = param(
            1.6, lo=1.0, hi=4.0, vary=(1.0, 2.6),
            doc="length / width of a bite, its long axis pointing into the copper",
        )

    def size(self, params: Any) -> float:
        return params.radius * (2.0 + 1.4 * params.bites)

    def place(self, geo: _Geometry, params: Any, rng: np.random.Generator) -> np.ndarray | None:
        c = geo.layer.copper
        sites = _pick(geo.edge_pixels(), rng)
        # first where the bite fits at its size, then (narrow traces only) smaller bites
        for y, x, shrink in [(y, x, False) for y, x in sites] + [(y, x, True) for y, x in sites]:
            r = params.radius
            depth = r * params.depth
            inward = geo.edge_normal(y, x)
            if inward is None:
                continue
            _, coherence = geo.orientation(y, x, max(2 * r, 3.0))
            if coherence < 0.5:
                continue
            # a bite takes at most about half the copper's thickness here: on a narrow
            # trace, a smaller bite
            room = (geo.thickness(y, x, inward, 4 * depth + 4) - 1.0) / 2.0
            if room < depth:
                if not shrink:
                    continue
                r, depth = r * room / depth, room
            if r < 1.5 or depth < 1.5:
                continue  # too small to see
            tangent = np.array([-inward[1], inward[0]])
            spacing = r * float(rng.uniform(0.8, 1.4))  # overlapping: one ragged notch
            R = r * (2 + params.bites * 1.5) + 6
            sl = _window(c.shape, y, x, R)
            oy, ox = sl[0].start, sl[1].start
            shape = (sl[0].stop - oy, sl[1].stop - ox)
            cut = np.zeros(shape, bool)
            for k in range(params.bites):
                along = (k - (params.bites - 1) / 2.0) * spacing
                rk = r * float(rng.uniform(0.75, 1.15))
                cx = x - ox + tangent[0] * along - inward[0] * (rk - depth)
                cy = y - oy + tangent[1] * along - inward[1] * (rk - depth)
                axis = math.atan2(inward[1], inward[0]) + float(rng.normal(0.0, 0.3))
                cut |= blob(shape, (cx, cy), rk, params.roughness, rng,
                            aspect=1.0 / params.elongation, angle=axis)
            local = _components(c[sl])
            comp = local == local[y - oy, x - ox]
            removed = cut & comp
            if not removed.any() or (removed & ~geo.layer.usable[sl]).any():
                continue
            if not (cv2.dilate(removed.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)[
                ~c[sl]
            ].any():
                continue  # closed inside the copper: a pin-hole, not a bite
            after = c[sl] & ~removed
            n_before = int(local.max())
            if int(_components(after).max()) != n_before:
                continue  # a bite cut the trace or left a crumb: not a mousebite
            new = c.copy()
            new[sl] = after
            return new
        return None


class PcbSpurGenerator(_PcbGenerator):
    """Spur: a protrusion of copper from a trace's edge into the gap beside it.

    It picks a point on a trace edge and grows a tapered, ragged lobe ``length`` long and
    ``width`` wide at its base outward (tilted a little at random), keeping at least
    ``clearance`` from any other copper so that it never becomes a short. New copper takes
    the tone of the trace it grows from. Category ``spur`` (DeepPCB type 4).
    """

    name = "pcb_spur"
    category = "spur"

    @dataclass(frozen=True)
    class Params(_Common):
        length: float = param(
            10.0, lo=2.0, hi=100.0, vary=(6.0, 18.0), size=True,
            doc="how far the spur reaches from the edge, px",
        )
        width: float = param(
            9.0, lo=1.5, hi=60.0, vary=(6.0, 13.0), size=True, doc="width at its base, px"
        )
        clearance: float = param(
            3.0, lo=1.0, hi=40.0, size=True, doc="least distance kept to other copper, px"
        )

    def size(self, params: Any) -> float:
        return params.length + params.width

    def place(self, geo: _Geometry, params: Any, rng: np.random.Generator) -> np.ndarray | None:
        c = geo.layer.copper
        for y, x in _pick(geo.edge_pixels(), rng):
            inward = geo.edge_normal(y, x)
            if inward is None:
                continue
            _, coherence = geo.orientation(y, x, max(params.width, 3.0))
            if coherence < 0.4:
                continue
            tilt = float(rng.normal(0.0, 0.35 * params.roughness))
            ca, sa = math.cos(tilt), math.sin(tilt)
            out = np.array([-inward[0] * ca + inward[1] * sa, -inward[0] * sa - inward[1] * ca])
            R = params.length + params.width + params.clearance + 6
            sl = _window(c.shape, y, x, R)
            oy, ox = sl[0].start, sl[1].start
            cw = c[sl]
            shape = cw.shape
            spur = lobe(shape, (x - ox - out[0], y - oy - out[1]), (out[0], out[1]),
                        params.length + 1.0, params.width, params.roughness, rng)
            added = spur & ~cw
            # one piece: the lobe itself (a tilted base may graze the edge beside it)
            parts = _components(added)
            tip_y = int(round(y - oy + out[1] * params.length / 2.0))
            tip_x = int(round(x - ox + out[0] * params.length / 2.0))
            if 0 <= tip_y < shape[0] and 0 <= tip_x < shape[1] and parts[tip_y, tip_x]:
                added = parts == parts[tip_y, tip_x]
            if not added.any() or (added & ~geo.layer.usable[sl]).any():
                continue
            local = _components(cw)
            own = local == local[y - oy, x - ox]
            yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
            near = np.hypot(yy - (y - oy), xx - (x - ox)) <= (
                params.width / 2.0 + params.clearance + 2.0
            )
            obstacles = cw & ~(own & near)
            if obstacles.any():
                clear = cv2.distanceTransform((~obstacles).astype(np.uint8), cv2.DIST_L2, 5)
                if float(clear[added].min()) < params.clearance:
                    continue
            after = cw | added
            if int(_components(after).max()) != int(local.max()):
                continue
            new = c.copy()
            new[sl] = after
            return new
        return None


class PcbSpuriousCopperGenerator(_PcbGenerator):
    """Spurious copper: an island of copper left in a gap, touching no other copper.

    It picks a point of substrate at least ``clearance`` plus the island's radius away from
    any copper and draws a ragged, often elongated and slightly bent dab ``size`` long
    there, its length along ``angle``. New
    copper takes the tone of the board's copper nearby. Category ``copper`` (DeepPCB type
    5, "spurious copper").
    """

    name = "pcb_spurious_copper"
    category = "copper"

    @dataclass(frozen=True)
    class Params(_Common):
        size: float = param(
            18.0, lo=2.0, hi=150.0, vary=(12.0, 28.0), size=True, doc="length of the island, px"
        )
        aspect: float = param(
            0.55, lo=0.2, hi=1.0, vary=(0.3, 0.8), doc="width / length of the island"
        )
        angle: float = param(
            90.0, lo=0.0, hi=180.0, vary=(0.0, 180.0),
            doc="direction of its length, degrees (0 = right, 90 = down)",
        )
        clearance: float = param(
            3.0, lo=1.0, hi=40.0, size=True, doc="least distance kept to other copper, px"
        )

    def size(self, params: Any) -> float:
        return params.size

    def place(self, geo: _Geometry, params: Any, rng: np.random.Generator) -> np.ndarray | None:
        c = geo.layer.copper
        free = (~c & geo.layer.usable).astype(np.uint8)
        room = cv2.distanceTransform(free, cv2.DIST_L2, 5)
        r = params.size / 2.0
        need = r * (1.2 + 0.35 * params.roughness) + params.clearance + 1.0
        for y, x in _pick(room >= need, rng):
            isl = brush(c.shape, (float(x), float(y)), params.size,
                        params.size * params.aspect, math.radians(params.angle),
                        params.roughness, rng)
            if (isl & ~geo.layer.usable).any():
                continue
            if float(geo.outside[isl].min()) < params.clearance:
                continue
            return c | isl
        return None


class PcbPinholeGenerator(_PcbGenerator):
    """Pin-hole: a small hole through the copper, fully inside a copper area.

    It picks a point of copper at least ``clearance`` plus the hole's radius from the
    copper's edge and removes a small, irregular, often elongated and slightly bent hole
    ``length`` long there, its length along ``angle`` (in copper too narrow for it, a
    trace, a narrower hole with its length along the trace). The hole shows the
    substrate's tone. Category ``pin-hole`` (DeepPCB type 6).
    """

    name = "pcb_pinhole"
    category = "pin-hole"
    adds_copper = False

    @dataclass(frozen=True)
    class Params(_Common):
        length: float = param(
            13.0, lo=1.5, hi=60.0, vary=(8.0, 20.0), size=True, doc="length of the hole, px"
        )
        aspect: float = param(
            0.55, lo=0.2, hi=1.0, vary=(0.3, 0.9), doc="width / length of the hole"
        )
        angle: float = param(
            90.0, lo=0.0, hi=180.0, vary=(0.0, 180.0),
            doc="direction of its length, degrees (0 = right, 90 = down)",
        )
        clearance: float = param(
            2.0, lo=1.0, hi=40.0, size=True, doc="least copper left around the hole, px"
        )

    def size(self, params: Any) -> float:
        return params.length

    def place(self, geo: _Geometry, params: Any, rng: np.random.Generator) -> np.ndarray | None:
        c = geo.layer.copper
        solid = (c & geo.layer.usable).astype(np.uint8)
        room = cv2.distanceTransform(solid, cv2.DIST_L2, 5)
        # how far a dab reaches beyond its nominal half-width / half-length
        spill = 0.8 + 0.4 * params.roughness
        ridge = cv2.dilate(room, np.ones((5, 5), np.uint8))
        # where a hole at least 1.5 px wide fits across
        for y, x in _pick(room >= params.clearance + 1.0 + 0.75 * spill, rng):
            d = float(room[y, x]) - params.clearance - 1.0
            length = params.length
            width = length * params.aspect
            angle = math.radians(params.angle)
            if length / 2.0 * (1.0 + 0.2 * params.roughness) + width / 2.0 * spill > d:
                # narrow copper (a trace): a narrower hole on its centre line, its length
                # along the trace
                if room[y, x] < ridge[y, x] - 0.5:
                    continue
                normal, _ = geo.orientation(y, x, max(2.0 * d, 4.0))
                angle = math.atan2(normal[1], normal[0]) + math.pi / 2.0
                width = min(width, d / spill * 2.0 * 0.75)
                if width < 1.5:
                    continue
            hole = brush(c.shape, (float(x), float(y)), length, width, angle,
                         params.roughness, rng)
            if (hole & ~c).any() or (hole & ~geo.layer.usable).any():
                continue
            if float(geo.inside[hole].min()) <= params.clearance:
                continue
            return c & ~hole
        return None


GENERATORS: tuple[type[_PcbGenerator], ...] = (
    PcbOpenGenerator,
    PcbShortGenerator,
    PcbMousebiteGenerator,
    PcbSpurGenerator,
    PcbSpuriousCopperGenerator,
    PcbPinholeGenerator,
)


@hookimpl
def register_generators(register: Any) -> None:
    for cls in GENERATORS:
        register(cls)
