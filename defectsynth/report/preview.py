"""Pictures people can read: zoomed before/after crops of each instance, labelled in
text large enough to read, one colour per category with a legend.

Used by ``defectsynth preview`` (the contact sheet) and by the report page's examples.
Everything here draws with OpenCV on 8-bit BGR arrays; nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..sample import Annotation, to_display

#: colour-blind-safe hues first (Okabe and Ito 2008), then more; BGR
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 159, 230), (233, 180, 86), (115, 158, 0), (66, 228, 240), (178, 114, 0),
    (0, 94, 213), (167, 121, 204), (255, 255, 255), (80, 80, 255), (255, 120, 200),
    (60, 200, 255), (200, 200, 60),
)
BACKGROUND = 32
TEXT = (235, 235, 235)
FONT = cv2.FONT_HERSHEY_SIMPLEX
NEGATIVE_MARK = (120, 200, 120)
DROPPED_MARK = (60, 120, 255)


def category_colors(categories: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """A distinct colour per category, in the order given (stable for a recipe)."""
    return {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(dict.fromkeys(categories))}


def text_scale(width: int) -> float:
    """A font scale readable at ``width`` px of tile: 0.4 (about 9 px high) and up."""
    return float(np.clip(width / 640, 0.4, 0.7))


def put_label(
    img: np.ndarray, text: str, org: tuple[int, int], color: tuple[int, int, int],
    scale: float = 0.5,
) -> None:
    """``text`` with its baseline at ``org``, on a dark band so it reads on any surface."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    x, y = org
    x = int(np.clip(x, 0, max(0, img.shape[1] - tw - 2)))
    y = int(np.clip(y, th + 2, img.shape[0] - base))
    cv2.rectangle(img, (x, y - th - 2), (x + tw + 2, y + base), (16, 16, 16), -1)
    cv2.putText(img, text, (x + 1, y), FONT, scale, color, 1, cv2.LINE_AA)


def zoom_window(
    box: Sequence[int], shape: tuple[int, int], grow: float = 0.6, least: int = 24
) -> tuple[int, int, int, int]:
    """A square window around ``box`` (grown by ``grow`` of its long side, at least
    ``least`` px), moved inside the image rather than cut by its border."""
    x1, y1, x2, y2 = (int(v) for v in box)
    h, w = shape
    side = max(least, round(max(x2 - x1, y2 - y1) * (1 + grow)))
    side = min(side, h, w)
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    wx = int(np.clip(cx - side // 2, 0, w - side))
    wy = int(np.clip(cy - side // 2, 0, h - side))
    return wx, wy, wx + side, wy + side


def outline(img: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], gap: int = 3) -> None:
    """Draw a mask (already at ``img``'s size) outlined ``gap`` px outside, so a thin
    defect stays visible inside its outline at any zoom."""
    m = mask.astype(np.uint8)
    if gap > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * gap + 1,) * 2)
        m = np.asarray(cv2.dilate(m, kernel), np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(img, contours, -1, color, 1, cv2.LINE_AA)


def zoom_pair(
    before: np.ndarray | None,
    after: np.ndarray,
    box: Sequence[int],
    mask_crop: np.ndarray,
    color: tuple[int, int, int],
    size: int,
) -> np.ndarray:
    """Before | after of one instance, each ``size`` px square; the mask outlined on the
    after crop only, so the before shows the surface untouched. ``before`` None: a gray
    panel marked "no source"."""
    shape = after.shape[:2]
    wx1, wy1, wx2, wy2 = zoom_window(box, shape)
    f = size / max(1, wx2 - wx1)
    interp = cv2.INTER_NEAREST if f >= 2 else cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR

    def crop(img: np.ndarray) -> np.ndarray:
        part = to_display(img)[wy1:wy2, wx1:wx2]
        return np.ascontiguousarray(cv2.resize(part, (size, size), interpolation=interp))

    right = crop(after)
    full = np.zeros(shape, np.uint8)
    x1, y1, x2, y2 = (int(v) for v in box)
    full[y1:y2, x1:x2] = mask_crop.astype(np.uint8)
    local = cv2.resize(full[wy1:wy2, wx1:wx2], (size, size), interpolation=cv2.INTER_NEAREST)
    outline(right, local, color, max(2, size // 60))
    if before is not None and before.shape[:2] == shape:
        left = crop(before)
    else:
        left = np.full((size, size, 3), 64, np.uint8)
        put_label(left, "no source", (4, size // 2), TEXT, 0.4)
    gap = np.full((size, 3, 3), BACKGROUND, np.uint8)
    return np.concatenate([left, gap, right], axis=1)


def legend(colors: Mapping[str, tuple[int, int, int]], width: int) -> np.ndarray:
    """A strip naming each category beside its colour, wrapped to ``width`` px."""
    scale = 0.5
    row_h = 24
    rows: list[list[tuple[str, int]]] = [[]]
    x = 8
    for name in colors:
        tw = cv2.getTextSize(name, FONT, scale, 1)[0][0] + 34
        if rows[-1] and x + tw > width:
            rows.append([])
            x = 8
        rows[-1].append((name, x))
        x += tw
    strip = np.full((row_h * len(rows) + 6, width, 3), 20, np.uint8)
    for r, row in enumerate(rows):
        y = 6 + r * row_h
        for name, x0 in row:
            cv2.rectangle(strip, (x0, y + 3), (x0 + 16, y + 17), colors[name], -1)
            cv2.putText(strip, name, (x0 + 22, y + 16), FONT, scale, TEXT, 1, cv2.LINE_AA)
    return strip


@dataclass
class TileInput:
    """One sample as a preview tile needs it."""

    name: str
    before: np.ndarray | None
    after: np.ndarray
    annotations: Sequence[Annotation]
    negative: bool = False
    requested: int = 0


def sample_tile(
    item: TileInput, cell: int, colors: Mapping[str, tuple[int, int, int]]
) -> np.ndarray:
    """The whole image (boxes in category colours) over a caption, then a zoomed
    before | after pair per instance with its category in text."""
    img = to_display(item.after)
    h, w = img.shape[:2]
    f = min(cell / w, cell / h)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    small = cv2.resize(img, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    for a in item.annotations:
        x1, y1, x2, y2 = (round(v * f) for v in a.box)
        cv2.rectangle(small, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)),
                      colors.get(a.category, TEXT), 2 if cell >= 256 else 1)
    scale = text_scale(cell)
    line = int(cv2.getTextSize("Ag", FONT, scale, 1)[0][1] + 10)
    top = np.full((cell + line, cell, 3), BACKGROUND, np.uint8)
    y0, x0 = (cell - size[1]) // 2, (cell - size[0]) // 2
    top[y0 : y0 + size[1], x0 : x0 + size[0]] = small
    if item.negative:
        mark, color = "negative", NEGATIVE_MARK
    elif not item.annotations and item.requested:
        mark, color = f"all {item.requested} dropped", DROPPED_MARK
    else:
        mark, color = f"{len(item.annotations)} defect(s)", TEXT
    caption = f"{item.name}: {mark}"
    cv2.putText(top, caption, (4, cell + line - 6), FONT, scale, color, 1, cv2.LINE_AA)
    parts = [top]
    zoom = max(8, (cell - 9) // 2)  # one before | after pair across the tile
    for a in item.annotations:
        p = _labelled_pair(item, a, zoom, colors.get(a.category, TEXT), scale)
        row = np.full((p.shape[0] + 3, cell, 3), BACKGROUND, np.uint8)
        row[3:, 3 : 3 + p.shape[1]] = p[:, : cell - 3]
        parts.append(row)
    return np.concatenate(parts, axis=0)


def _labelled_pair(
    item: TileInput, a: Annotation, zoom: int, color: tuple[int, int, int], scale: float
) -> np.ndarray:
    pair = zoom_pair(item.before, item.after, a.box, a.mask_crop, color, zoom)
    line = int(cv2.getTextSize("Ag", FONT, scale, 1)[0][1] + 8)
    band = np.full((line, pair.shape[1], 3), BACKGROUND, np.uint8)
    cv2.rectangle(band, (0, 2), (6, line - 3), color, -1)
    text = f"{a.category}  {a.box[2] - a.box[0]}x{a.box[3] - a.box[1]} px   before | after"
    cv2.putText(band, text, (10, line - 5), FONT, scale, TEXT, 1, cv2.LINE_AA)
    return np.concatenate([band, pair], axis=0)


def assemble(
    tiles: Sequence[np.ndarray], colors: Mapping[str, tuple[int, int, int]], cell: int
) -> np.ndarray:
    """Tiles in a near-square grid (each padded to the tallest) under a legend."""
    cols = int(np.ceil(np.sqrt(len(tiles))))
    rows = int(np.ceil(len(tiles) / cols))
    th = max(t.shape[0] for t in tiles)
    sheet = np.full((rows * th, cols * cell, 3), BACKGROUND, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * th : r * th + t.shape[0], c * cell : (c + 1) * cell] = t
    # a thin grid line between tiles
    for c in range(1, cols):
        sheet[:, c * cell - 1] = 70
    for r in range(1, rows):
        sheet[r * th - 1, :] = 70
    return np.concatenate([legend(colors, sheet.shape[1]), sheet], axis=0)


def tryout_sheet(
    image_path: str,
    generator: str,
    params: Mapping[str, object],
    n: int = 8,
    *,
    cell: int = 384,
    seed: int = 0,
    host: object = None,
) -> np.ndarray:
    """One generator with the given params on one image, ``n`` times (seeds ``seed``..):
    a sheet as :func:`assemble` makes it, without a recipe. The whole image is the
    product; one instance per sample. Raises InputImageError for an unreadable image,
    and ValueError/KeyError (from the synthesizer) for an unknown generator or bad
    params, naming them."""
    from ..imagefile import read_image_file
    from ..synthesizer import Synthesizer

    image, _ = read_image_file(image_path)
    synth = Synthesizer(
        [{"generator": generator, "params": dict(params)}], instances=1, host=host,
        on_failure="reject",
    )
    colors = category_colors(synth.categories)
    tiles = []
    for k in range(n):
        sample = synth.apply(image, seed=seed, variant=k)
        item = TileInput(f"{generator} #{k}", image, sample.image, sample.annotations,
                         requested=int(sample.stats.get("requested", 0)))
        tiles.append(sample_tile(item, cell, colors))
    return assemble(tiles, colors, cell)
