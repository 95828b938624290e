"""Ragged shapes on a region's pixel grid: blobs, strokes and tapered lobes (bool masks)."""

from __future__ import annotations

import math

import numpy as np

F32 = np.float32


def grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(yy, xx) float32 pixel-centre coordinates of a region."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(F32)
    return yy, xx


def wobble(t: np.ndarray, period: float, rng: np.random.Generator, terms: int = 3) -> np.ndarray:
    """A smooth 1-D random function of ``t`` (about unit deviation), features ~``period``
    long: a few sines of random phase, each twice as fine and half as strong."""
    out = np.zeros_like(t, dtype=F32)
    total = 0.0
    for k in range(terms):
        f = (2.0**k) * rng.uniform(0.8, 1.25) / max(period, 1e-3)
        a = 0.5**k
        out += F32(a) * np.sin(F32(2 * math.pi * f) * t + F32(rng.uniform(0, 2 * math.pi)))
        total += a * a
    return out * F32(1.0 / math.sqrt(total / 2.0))


def blob(
    shape: tuple[int, int],
    centre: tuple[float, float],
    radius: float,
    roughness: float,
    rng: np.random.Generator,
    *,
    aspect: float = 1.0,
    angle: float = 0.0,
) -> np.ndarray:
    """An irregular filled blob: an ellipse (``radius`` along ``angle`` radians, ``radius *
    aspect`` across) whose outline wanders by up to about ``roughness * 0.3`` of it."""
    yy, xx = grid(shape)
    cx, cy = centre
    ca, sa = math.cos(angle), math.sin(angle)
    dx, dy = xx - F32(cx), yy - F32(cy)
    u = dx * F32(ca) + dy * F32(sa)
    v = (-dx * F32(sa) + dy * F32(ca)) / F32(max(aspect, 1e-3))
    theta = np.arctan2(v, u)
    rr = F32(radius) * (F32(1.0) + F32(0.3 * roughness) * _angular(theta, rng))
    mask = np.hypot(u, v) <= np.maximum(rr, F32(0.5))
    if not mask.any():  # a sub-pixel blob is still one pixel
        iy, ix = int(round(cy)), int(round(cx))
        if 0 <= iy < shape[0] and 0 <= ix < shape[1]:
            mask[iy, ix] = True
    return mask


def _angular(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A smooth periodic random function of an angle, about unit deviation."""
    out = np.zeros_like(theta, dtype=F32)
    for k in (2, 3, 4, 5):
        out += F32(rng.normal(0.0, 1.2 / k)) * np.cos(F32(k) * theta + F32(rng.uniform(0, 6.3)))
    return np.clip(out, -1.5, 1.5)


def stroke(
    shape: tuple[int, int],
    a: tuple[float, float],
    b: tuple[float, float],
    width: float,
    roughness: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """A filled stroke from point ``a`` to ``b`` (x, y) with round ends, ``width`` wide,
    its two sides wandering independently by up to about ``roughness * 0.35`` of it."""
    yy, xx = grid(shape)
    ax, ay = a
    bx, by = b
    L = max(math.hypot(bx - ax, by - ay), 1e-3)
    tx, ty = (bx - ax) / L, (by - ay) / L
    dx, dy = xx - F32(ax), yy - F32(ay)
    s = dx * F32(tx) + dy * F32(ty)
    n = -dx * F32(ty) + dy * F32(tx)
    sc = np.clip(s, 0.0, L)
    half = F32(width / 2.0)
    left = half * (F32(1.0) + F32(0.35 * roughness) * wobble(sc, max(L, width) * 1.5, rng))
    right = half * (F32(1.0) + F32(0.35 * roughness) * wobble(sc, max(L, width) * 1.5, rng))
    side = np.where(n >= 0, left, right)
    # distance to the segment, measured against the local half-width
    d = np.hypot(s - sc, n)
    return d <= np.maximum(side, F32(0.5))


def lobe(
    shape: tuple[int, int],
    base: tuple[float, float],
    direction: tuple[float, float],
    length: float,
    width: float,
    roughness: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """A tapered protrusion from ``base`` (x, y) along the unit ``direction``: ``width``
    wide at the base, narrowing to a rounded tip ``length`` away; it also reaches a little
    behind the base (into the copper it grows from), so it is attached."""
    yy, xx = grid(shape)
    bx, by = base
    tx, ty = direction
    dx, dy = xx - F32(bx), yy - F32(by)
    s = dx * F32(tx) + dy * F32(ty)
    n = -dx * F32(ty) + dy * F32(tx)
    L = max(length, 1.0)
    tip = max(width * 0.55, 0.8)
    frac = np.clip(s / F32(L), 0.0, 1.0)
    half = F32(width / 2.0) * (F32(1.0) - frac) ** F32(0.6) + F32(tip / 2.0) * frac
    half = half * (F32(1.0) + F32(0.3 * roughness) * wobble(s, max(L, 4.0), rng))
    body = (s >= -width / 2.0) & (s <= L) & (np.abs(n) <= half)
    tip_disc = np.hypot(s - F32(L), n) <= F32(tip / 2.0 + 0.3)
    return body | tip_disc


def brush(
    shape: tuple[int, int],
    centre: tuple[float, float],
    length: float,
    width: float,
    angle: float,
    roughness: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """A short dab of a brush: two ragged strokes meeting at a slight bend, ``length``
    long in all along ``angle`` (radians), ``width`` wide, centred on ``centre`` (x, y).
    Less regular than an ellipse: how a blob of stray copper or a hole in it looks."""
    cx, cy = centre
    half = max(length - width, 0.0) / 2.0
    bend = float(rng.normal(0.0, 0.45 * roughness))
    a0, a1 = angle - bend / 2.0, angle + bend / 2.0
    mid = (cx + float(rng.normal(0.0, 0.1 * width)), cy + float(rng.normal(0.0, 0.1 * width)))
    p0 = (mid[0] - math.cos(a0) * half, mid[1] - math.sin(a0) * half)
    p1 = (mid[0] + math.cos(a1) * half, mid[1] + math.sin(a1) * half)
    w0 = width * float(rng.uniform(0.75, 1.15))
    w1 = width * float(rng.uniform(0.75, 1.15))
    return stroke(shape, p0, mid, w0, roughness, rng) | stroke(shape, mid, p1, w1, roughness, rng)
