"""Pictures the page shows, as ``data:`` URLs: the sample, its label overlay, thumbnails
and defect crops. Lossless PNG at the fastest compression for what is compared pixel by
pixel (before / after), JPEG for thumbnails."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from ..sample import Annotation, Sample, category_color, to_display

#: opacity (0..255) of a mask's fill in the overlay; its outline is opaque
MASK_FILL = 72


def data_url(image: np.ndarray, fmt: str = "png") -> str:
    """An 8-bit image (BGR, BGRA or gray) as a ``data:`` URL."""
    if fmt == "png":
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        mime = "image/png"
    else:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 88])
        mime = "image/jpeg"
    if not ok:  # pragma: no cover - OpenCV encodes any 8-bit array
        raise ValueError("cannot encode the picture")
    return f"data:{mime};base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def overlay(annotations: Sequence[Annotation], shape: tuple[int, int]) -> np.ndarray:
    """A transparent BGRA layer: each instance mask filled in its category's colour and
    outlined (the page puts it over the picture and toggles it without a request)."""
    h, w = shape
    layer = np.zeros((h, w, 4), np.uint8)
    for a in annotations:
        b, g, r = category_color(a.category)
        x1, y1, x2, y2 = a.box
        view = layer[y1:y2, x1:x2]
        view[a.mask_crop] = (b, g, r, MASK_FILL)
        contours, _ = cv2.findContours(
            a.mask_crop.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        cv2.drawContours(view, contours, -1, (b, g, r, 255), 1)
    return layer


def instance_rows(sample: Sample) -> list[dict[str, Any]]:
    """Per instance: category, generator, box, area, colour and visible contrast (the
    mean change under the mask, in grey levels and as a fraction of full scale, which is
    what the gate's ``min_contrast`` compares)."""
    full = 65535.0 if sample.image.dtype == np.uint16 else 255.0
    rows = []
    for i, a in enumerate(sample.annotations):
        b, g, r = category_color(a.category)
        rows.append({
            "index": i,
            "category": a.category,
            "generator": a.generator,
            "box": list(a.box),
            "area": a.area,
            "color": f"#{r:02x}{g:02x}{b:02x}",
            "contrast": round(float(a.visibility) / full, 4),
            "levels": round(float(a.visibility), 1),
            "params": {k: _short_value(v) for k, v in a.params.items()},
        })
    return rows


def _short_value(v: Any) -> Any:
    return round(v, 3) if isinstance(v, float) else v


def thumbnail(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` (8-bit) shrunk so its longer side is at most ``side`` px."""
    h, w = image.shape[:2]
    f = side / max(h, w)
    if f >= 1:
        return image
    return cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))),
                      interpolation=cv2.INTER_AREA)


def crop_picture(pixels: np.ndarray, side: int = 112) -> str:
    """A defect crop (float 0..1 (h, w, c), or 8/16-bit) as a square-ish JPEG thumbnail."""
    img: np.ndarray
    if pixels.dtype.kind == "f":
        img = np.clip(pixels * 255.0 + 0.5, 0, 255).astype(np.uint8)
    else:
        img = to_display(pixels)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    h, w = img.shape[:2]
    f = side / max(h, w)
    img = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))),
                     interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_NEAREST)
    return data_url(img, "jpg")
