"""A defect library: every labeled defect of a source folder, cut out once and cached.

:func:`load_library` is what the ``transplant`` generator calls. It reads the source's
labels (:mod:`.sources`), extracts each defect (:mod:`.extract`) and keeps, per defect,
a :class:`LibraryEntry`: the pixels around it, its mask, the surface it sat on (pixel by
pixel, and its level), the texture scale of that surface and its category.

Caching (extraction runs once per source):

- **On disk**, in the user cache folder: ``$DEFECTSYNTH_CACHE_DIR`` when set, else
  ``$XDG_CACHE_HOME/defectsynth``, else ``~/.cache/defectsynth``; libraries live in its
  ``transplant/`` folder as ``{content hash}-{format}-v{EXTRACTION_VERSION}.npz``. The
  content hash covers every file of the source folder (relative path and bytes), so an
  edited, added or removed file makes a new library and a moved or copied folder finds the
  old one. ``transplant/index/`` remembers, per folder, the hash for a listing of file
  sizes and modification times, so an unchanged folder is not read again to be hashed.
  Every file is written to a temporary name and renamed (atomic); concurrent processes at
  worst extract the same library twice. ``DEFECTSYNTH_CACHE_DIR=off`` (or an unwritable
  folder) keeps libraries in memory only. Deleting the folder is always safe.
- **In memory**, per process, keyed by the folder's absolute path and format: a process
  reads a source once (a worker of a dataset run loads the library the parent already
  extracted). :func:`forget_libraries` drops them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import InputImageError
from ..imagefile import DEFAULT_MAX_PIXELS, probe_image, read_file_bytes
from .extract import Box, mask_from_box, mask_from_label, mask_from_reference, polygon_mask
from .sources import (
    SourceDefect,
    SourceError,
    SourceListing,
    decode_coco_rle,
    read_index_mask,
    read_source,
    source_files,
)

F32 = np.float32
EXTRACTION_VERSION = 2
CACHE_ENV = "DEFECTSYNTH_CACHE_DIR"
CROP_MARGIN = 8
DEMO_SOURCE = Path(__file__).parent / "demo"
METHODS = ("label", "reference", "box")

__all__ = [
    "CACHE_ENV",
    "DEMO_SOURCE",
    "Library",
    "LibraryEntry",
    "build_library",
    "cache_dir",
    "forget_libraries",
    "load_library",
]


@dataclass(frozen=True, eq=False)
class LibraryEntry:
    """One extracted defect.

    ``pixels``: float32 (h, w, c) in 0..1, c = 1 or 3 (BGR), the defect with a margin of
    its source surface around it (read-only). ``mask``: bool (h, w), the defect.
    ``surface``: like ``pixels``, the source surface without the defect: the clean
    reference when there is one, else the pixels with the defect (and 2 px around it)
    filled in from its surroundings (smooth: it knows the surface's shading, not its
    texture). ``level``: the source surface's colour under/around the defect, per
    channel, 0..1.
    ``texture_scale``: the source surface's texture wavelength in px. ``image``, ``box``
    and ``origin``: where it came from (source-relative path, the label's box, the (x, y)
    of the crop's top-left pixel in that image); ``method``: how its mask was found
    (``label``, ``reference`` or ``box``).
    """

    pixels: np.ndarray
    mask: np.ndarray
    surface: np.ndarray
    level: tuple[float, ...]
    texture_scale: float
    category: str
    image: str
    box: Box
    method: str
    origin: tuple[int, int] = (0, 0)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.mask.shape[0]), int(self.mask.shape[1])


@dataclass(frozen=True, eq=False)
class Library:
    """Every defect of one source folder. ``categories`` lists the source's categories that
    have at least one entry, in the source's own order; ``skipped`` says which labels gave
    no entry and why."""

    root: str
    format: str
    content_hash: str
    entries: tuple[LibraryEntry, ...]
    categories: tuple[str, ...]
    skipped: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.entries)


# -- loading -------------------------------------------------------------------------------

_MEMO: dict[tuple[str, str], Library] = {}
_LOCK = threading.Lock()


def load_library(source: str | os.PathLike[str] = "", fmt: str = "auto") -> Library:
    """The library of a source folder (``""``: the small demo library shipped with
    defectsynth), from memory, the disk cache, or extracted now.

    :raises SourceError: the folder is missing, unreadable as ``fmt``, or yields no defect.
    """
    root = Path(source) if str(source) else DEMO_SOURCE
    if not str(source):
        fmt = "auto"
    key = (str(root.absolute()), fmt)
    with _LOCK:
        lib = _MEMO.get(key)
        if lib is None:
            lib = _load(root, fmt)
            _MEMO[key] = lib
    return lib


def forget_libraries() -> None:
    """Drop the libraries this process holds (the next use re-checks the disk)."""
    with _LOCK:
        _MEMO.clear()


def _load(root: Path, fmt: str) -> Library:
    if not root.is_dir():
        raise SourceError(f"source folder {str(root)!r} does not exist or is not a folder")
    cache = cache_dir()
    digest = content_hash(root, cache)
    name = f"{digest[:32]}-{fmt}-v{EXTRACTION_VERSION}.npz"
    path = cache / "transplant" / name if cache is not None else None
    if path is not None and path.is_file():
        try:
            return _decode(path.read_bytes(), root)
        except (OSError, ValueError, KeyError):
            pass  # damaged or foreign: extract again and replace it
    data = _encode(build_library(root, fmt, digest))
    if path is not None:
        _atomic_write(path, data)
    # what this process uses is exactly what the cache holds (pixels stored as 16-bit), so
    # a worker that reads the cache renders the same bytes as the process that wrote it
    return _decode(data, root)


def cache_dir() -> Path | None:
    """The cache folder (see the module docs), or None when caching is off."""
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        if env.strip().lower() in ("", "0", "off", "none", "false"):
            return None
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg) / "defectsynth"
    try:
        return Path.home() / ".cache" / "defectsynth"
    except RuntimeError:  # no home folder to be found: keep libraries in memory
        return None


def content_hash(root: Path, cache: Path | None = None) -> str:
    """sha256 over the source's files (relative path and bytes); when ``cache`` is given,
    an unchanged listing (sizes, modification times) reuses the hash recorded there."""
    files = source_files(root)
    listing = hashlib.sha256()
    for rel in files:
        st = (root / rel).stat()
        listing.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    sig = listing.hexdigest()
    index = None
    if cache is not None:
        name = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:32]
        index = cache / "transplant" / "index" / f"{name}.json"
        try:
            rec = json.loads(index.read_text(encoding="utf-8"))
            if rec.get("listing") == sig and isinstance(rec.get("content"), str):
                return str(rec["content"])
        except (OSError, ValueError):
            pass
    h = hashlib.sha256()
    for rel in files:
        fh = hashlib.sha256()
        with open(root / rel, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                fh.update(chunk)
        h.update(f"{rel}\0{fh.hexdigest()}\n".encode())
    digest = h.hexdigest()
    if index is not None:
        rec = {"root": str(root.resolve()), "listing": sig, "content": digest}
        _atomic_write(index, json.dumps(rec).encode())
    return digest


# -- extraction ----------------------------------------------------------------------------


def build_library(root: str | os.PathLike[str], fmt: str = "auto", digest: str = "") -> Library:
    """Extract every defect of ``root`` (no cache involved)."""
    base = Path(root)
    listing = read_source(base, fmt)
    entries: list[LibraryEntry] = []
    skipped = list(listing.skipped)
    by_image: dict[str, list[SourceDefect]] = {}
    for d in listing.defects:
        by_image.setdefault(d.image, []).append(d)
    for image_rel, defects in by_image.items():
        image = _read_image(base / image_rel)
        if image is None:
            skipped.append(f"{image_rel}: cannot read the image")
            continue
        ref_cache: dict[str, np.ndarray | None] = {}
        masks_cache: dict[str, np.ndarray] = {}
        for d in defects:
            where = f"{image_rel} {d.category} box {list(d.box)}"
            try:
                mask, method, reference = _defect_mask(
                    base, image, d, listing, ref_cache, masks_cache, skipped
                )
            except SourceError as exc:
                skipped.append(f"{where}: {exc}")
                continue
            if not mask.any():
                skipped.append(f"{where}: no defect found in the box ({method})")
                continue
            entries.append(_entry(image, mask, reference, d, method))
    if not entries:
        raise SourceError(
            f"no defect could be extracted from {str(base)!r}"
            + (f" ({skipped[0]}" + (f" and {len(skipped) - 1} more)" if len(skipped) > 1 else ")")
               if skipped else "")
        )
    used = {e.category for e in entries}
    cats = tuple(c for c in listing.categories if c in used)
    cats += tuple(sorted(used - set(cats)))
    return Library(str(base), listing.format, digest, tuple(entries), cats, tuple(skipped))


def _read_image(path: Path) -> np.ndarray | None:
    """float32 (h, w, c) 0..1 with c = 1 or 3; alpha dropped. None when the file is not
    a complete image within the default pixel limit (its header is checked before
    anything is decoded, as for every untrusted image)."""
    try:
        data = read_file_bytes(path, DEFAULT_MAX_PIXELS)
        if probe_image(data).pixels > DEFAULT_MAX_PIXELS:
            return None
    except InputImageError:
        return None
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None:
        return None
    scale = 1.0 / (65535.0 if raw.dtype == np.uint16 else 255.0)
    if raw.dtype not in (np.uint8, np.uint16):
        return None
    img = raw.astype(F32) * F32(scale)
    if img.ndim == 2:
        img = img[:, :, None]
    elif img.shape[2] == 4:
        img = np.ascontiguousarray(img[:, :, :3])
    elif img.shape[2] != 3:
        return None
    return img


def _defect_mask(
    base: Path,
    image: np.ndarray,
    d: SourceDefect,
    listing: SourceListing,
    ref_cache: dict[str, np.ndarray | None],
    masks_cache: dict[str, np.ndarray],
    skipped: list[str],
) -> tuple[np.ndarray, str, np.ndarray | None]:
    h, w = image.shape[:2]
    reference = None
    if d.reference is not None:
        if d.reference not in ref_cache:
            ref = _read_image(base / d.reference)
            if ref is not None and ref.shape != image.shape:
                skipped.append(
                    f"{d.reference}: reference {ref.shape[1]}x{ref.shape[0]}x{ref.shape[2]} "
                    f"does not match {d.image} ({w}x{h}x{image.shape[2]}); not used"
                )
                ref = None
            ref_cache[d.reference] = ref
        reference = ref_cache[d.reference]
    if d.has_mask:
        return label_mask(base, d, (h, w), masks_cache), "label", reference
    if reference is not None:
        return mask_from_reference(image, reference, d.box), "reference", reference
    return mask_from_box(image, d.box), "box", None


def label_mask(
    base: Path, d: SourceDefect, shape: tuple[int, int], cache: dict[str, np.ndarray]
) -> np.ndarray:
    """The full-size mask a defect's label gives (polygons, RLE or a VOC instance PNG,
    read once per file through ``cache``), limited to its box.

    :raises SourceError: the label's mask is not the image's size.
    """
    if d.polygons:
        label = polygon_mask(shape, d.polygons)
    elif d.rle is not None:
        label = decode_coco_rle(d.rle)
        if label.shape != shape:
            raise SourceError(f"RLE size {label.shape} is not the image's {shape}")
    else:
        assert d.mask_file is not None
        if d.mask_file not in cache:
            cache[d.mask_file] = read_index_mask(base / d.mask_file)
        index = cache[d.mask_file]
        if index.shape != shape:
            raise SourceError(f"{d.mask_file} is {index.shape}, not the image's {shape}")
        label = index == d.mask_value
    return mask_from_label(label, d.box)


def _entry(
    image: np.ndarray,
    mask: np.ndarray,
    reference: np.ndarray | None,
    d: SourceDefect,
    method: str,
) -> LibraryEntry:
    h, w = image.shape[:2]
    ys, xs = np.nonzero(mask)
    x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    cx1, cy1 = max(0, x1 - CROP_MARGIN), max(0, y1 - CROP_MARGIN)
    cx2, cy2 = min(w, x2 + CROP_MARGIN), min(h, y2 + CROP_MARGIN)
    # the surface around the defect: a ring a few px out, inside a window around it
    size = max(x2 - x1, y2 - y1)
    pad = int(np.clip(0.3 * size, 6, 32)) + 3
    wx1, wy1, wx2, wy2 = max(0, x1 - pad), max(0, y1 - pad), min(w, x2 + pad), min(h, y2 + pad)
    wmask = mask[wy1:wy2, wx1:wx2].astype(np.uint8)
    near = cv2.dilate(wmask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    ring = near == 0
    window = image[wy1:wy2, wx1:wx2]
    if reference is not None:  # the true surface under the defect
        level = np.median(reference[mask], axis=0)
    elif ring.sum() >= 8:
        level = np.median(window[ring], axis=0)
    else:
        level = np.median(image.reshape(-1, image.shape[2]), axis=0)
    texture = reference[wy1:wy2, wx1:wx2] if reference is not None else window
    pixels = np.ascontiguousarray(image[cy1:cy2, cx1:cx2])
    crop_mask = np.ascontiguousarray(mask[cy1:cy2, cx1:cx2])
    if reference is not None:
        surface = np.ascontiguousarray(reference[cy1:cy2, cx1:cx2])
    else:
        surface = _inpaint(pixels, crop_mask)
    for a in (pixels, crop_mask, surface):
        a.flags.writeable = False
    return LibraryEntry(
        pixels=pixels,
        mask=crop_mask,
        surface=surface,
        level=tuple(float(v) for v in level),
        texture_scale=_texture_scale(texture, ring if reference is None else None),
        category=d.category,
        image=d.image,
        box=d.box,
        method=method,
        origin=(cx1, cy1),
    )


def _inpaint(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The crop with the defect and 2 px around it filled in from the surface around it:
    an estimate of the surface under the defect. Normalized convolution at growing
    scales: each hole pixel takes the Gaussian-weighted mean of the known pixels at the
    smallest scale that reaches enough of them (fine near the hole's edge, coarse deep
    inside), so the fill follows the surface's shading smoothly."""
    hole = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    known = (hole == 0).astype(F32)
    out = pixels.astype(F32).copy()
    if not known.any():  # nothing around it to learn from
        out[:] = np.median(pixels.reshape(-1, pixels.shape[2]), axis=0)
        return out
    todo = hole > 0
    sigma = 1.5
    while todo.any():
        weight = cv2.GaussianBlur(known, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        ready = todo & (weight > 0.2)
        if sigma > 4 * max(pixels.shape[:2]):
            ready = todo & (weight > 0)
            if not ready.any():
                break
        if ready.any():
            w = np.maximum(weight, 1e-12)
            for c in range(pixels.shape[2]):
                num = cv2.GaussianBlur(
                    pixels[:, :, c] * known, (0, 0), sigma, borderType=cv2.BORDER_REFLECT
                )
                out[:, :, c][ready] = (num / w)[ready]
            todo &= ~ready
        sigma *= 2.0
    return out


def _texture_scale(pixels: np.ndarray, where: np.ndarray | None) -> float:
    """Characteristic texture wavelength in px, 2*pi * std(I) / std(grad I) on the
    high-passed grey surface (the measure the synthesizer uses for a whole image)."""
    g = pixels.mean(axis=2).astype(F32) if pixels.shape[2] == 3 else pixels[:, :, 0]
    k = max(3, (min(g.shape) // 4) | 1)
    hp = g - cv2.blur(g, (k, k))
    gx = cv2.Sobel(hp, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(hp, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    sel = np.ones(g.shape, bool) if where is None else where
    if sel.sum() < 8:
        return 8.0
    sg = float(np.sqrt((gx[sel] ** 2 + gy[sel] ** 2).mean()))
    si = float(hp[sel].std())
    if sg < 1e-6 or si < 1e-6:
        return 64.0
    return float(np.clip(2 * np.pi * si / sg, 2.0, 256.0))


# -- the cache file ------------------------------------------------------------------------


def _atomic_write(path: Path, data: bytes) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except OSError:
        return False  # an unwritable cache only costs a re-extraction next time
    return True


def _encode(lib: Library) -> bytes:
    meta: dict[str, Any] = {
        "version": EXTRACTION_VERSION,
        "root": lib.root,
        "format": lib.format,
        "content_hash": lib.content_hash,
        "categories": list(lib.categories),
        "skipped": list(lib.skipped),
        "entries": [
            {
                "category": e.category,
                "image": e.image,
                "box": list(e.box),
                "method": e.method,
                "origin": list(e.origin),
                "level": list(e.level),
                "texture_scale": e.texture_scale,
            }
            for e in lib.entries
        ],
    }
    arrays: dict[str, np.ndarray] = {
        "meta": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    }
    for i, e in enumerate(lib.entries):
        arrays[f"pixels_{i}"] = np.rint(e.pixels * 65535.0).astype(np.uint16)
        arrays[f"surface_{i}"] = np.rint(np.clip(e.surface, 0, 1) * 65535.0).astype(np.uint16)
        arrays[f"mask_{i}"] = e.mask.astype(np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def _decode(data: bytes, root: Path) -> Library:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        meta = json.loads(bytes(z["meta"]).decode("utf-8"))
        if meta.get("version") != EXTRACTION_VERSION:
            raise ValueError("another extraction version")
        entries = []
        for i, m in enumerate(meta["entries"]):
            px = z[f"pixels_{i}"].astype(F32) * F32(1.0 / 65535.0)
            surface = z[f"surface_{i}"].astype(F32) * F32(1.0 / 65535.0)
            mask = z[f"mask_{i}"].astype(bool)
            for a in (px, surface, mask):
                a.flags.writeable = False
            entries.append(
                LibraryEntry(
                    pixels=px,
                    mask=mask,
                    surface=surface,
                    level=tuple(float(v) for v in m["level"]),
                    texture_scale=float(m["texture_scale"]),
                    category=str(m["category"]),
                    image=str(m["image"]),
                    box=_box(m["box"]),
                    method=str(m["method"]),
                    origin=(int(m["origin"][0]), int(m["origin"][1])),
                )
            )
    return Library(
        str(root),
        str(meta["format"]),
        str(meta["content_hash"]),
        tuple(entries),
        tuple(str(c) for c in meta["categories"]),
        tuple(str(s) for s in meta["skipped"]),
    )


def _box(values: Iterable[Any]) -> Box:
    x1, y1, x2, y2 = (int(v) for v in values)
    return x1, y1, x2, y2
