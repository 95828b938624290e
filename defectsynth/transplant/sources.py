"""Reading a folder of real defects: COCO, YOLO or Pascal VOC labels, boxes and masks.

Each format is read into one list of :class:`SourceDefect` (image path, box, category,
and the label's mask when it has one), sorted by image and box so that the same defects
labeled in any format give the same list. Boxes become the house format: pixel xyxy,
0-based, end exclusive, rounded to whole pixels.

Layouts understood (``format="auto"`` tries COCO, then YOLO, then VOC):

- **COCO**: any ``*.json`` under the folder with ``images``, ``annotations`` and
  ``categories``; an image's ``file_name`` is looked up beside the json, in ``images/``
  beside it or at the folder's top, and in ``images/{split}/`` for
  ``instances_{split}.json`` (the layout ``defectsynth generate`` writes). ``bbox`` is
  ``[x, y, w, h]``; ``segmentation`` polygons (continuous coordinates, as COCO tools
  write them) or RLE (list or compressed counts) give the mask. Crowd annotations
  (``iscrowd: 1``) are skipped.
- **YOLO**: ``*.txt`` label files paired with an image of the same stem in the same
  folder or in the matching ``images/`` folder (``labels/a/b.txt`` -> ``images/a/b.png``).
  A line is ``class cx cy w h`` (normalized) or ``class x1 y1 x2 y2 ...`` (a normalized
  polygon, YOLO-seg: the mask). Class names come from ``data.yaml`` (or any ``*.yaml``
  with ``names``), else ``classes.txt`` / ``obj.names``, else the class number.
- **VOC**: ``*.xml`` files whose root is ``<annotation>``; the image is ``<filename>`` in
  ``JPEGImages/`` or ``images/`` beside the ``Annotations`` folder, or beside the xml.
  ``bndbox`` is 1-based and inclusive. When ``SegmentationObject/{stem}.png`` exists, the
  ``k``-th object's mask is the pixels of value ``k`` (a gray index image, or the standard
  VOC colour palette).

- **Image + mask folders** (``masks``; tried last by ``auto``): ``images/**/NAME.ext``
  with ``masks/**/NAME.png`` (the category is the image's first sub-folder under
  ``images/``, else ``defect``), or the MVTec AD layout, ``test/CATEGORY/NAME.ext`` with
  ``ground_truth/CATEGORY/NAME_mask.png`` (``test/good`` is left out). Each connected
  part of a mask is one defect (see :func:`_read_masks`).

Clean references: an image ``.../name.ext`` is paired with ``clean/name.*`` at the top of
the source folder (same stem, any image extension), when it exists.

Label files are untrusted input, read as carefully as images (docs/robustness.md): a label
that is wrong (a NaN or negative box, a segmentation whose size or counts lie, a value of
the wrong type) is skipped with its reason in ``SourceListing.skipped``; so is a whole file
that cannot be used (not UTF-8, larger than :data:`MAX_LABEL_BYTES`, nested too deep, an
XML document type declaration, whose entities could expand without bound). Anything else
raised while one label file is read is a bug: that file is skipped with ``unexpected error
while reading: ...; please report it`` and the others are read. Image sizes come from the
image headers (:mod:`defectsynth.imagefile`), never from decoding a file.
"""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
import xml.parsers.expat as expat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..errors import InputImageError
from ..imagefile import (
    DEFAULT_MAX_PIXELS,
    decode_image,
    probe_image,
    read_file_bytes,
    read_mask_file,
)
from ..rle import crop_rle

Box = tuple[int, int, int, int]

FORMATS = ("auto", "coco", "yolo", "voc", "masks")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
REFERENCE_FOLDER = "clean"
IGNORED_FOLDERS = (REFERENCE_FOLDER,)

MAX_LABEL_BYTES = 64 << 20
"""Largest label file read (COCO json, VOC xml, YOLO txt); larger ones are skipped."""
MAX_NAMES_BYTES = 1 << 20
"""Largest ``data.yaml`` / ``classes.txt`` read (class names only)."""
MAX_POLYGON_VALUES = 1 << 20
"""Most coordinates one instance's polygons may have."""


class SourceError(ValueError):
    """A source folder cannot be read as the format asked for."""


class _Skip(Exception):
    """One label, or one label file, is unusable: the message says why (internal)."""


def _unexpected(exc: Exception) -> str:
    """The skip reason of a label file whose reader raised something no check foresaw.
    (``benchmarks/fuzz_inputs.py`` replaces it to see the traceback.)"""
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return f"unexpected error while reading: {what}; please report it"


def _read_text(path: Path, limit: int = MAX_LABEL_BYTES) -> str:
    """A label file's text, or :class:`_Skip` saying why not."""
    raw = _read_bytes(path, limit)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _Skip(f"is not UTF-8 text (byte {exc.start})") from None


def _read_bytes(path: Path, limit: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > limit:
            raise _Skip(f"is {size} bytes, more than the {limit} a label file may have")
        with open(path, "rb") as fh:
            raw = fh.read(limit + 1)
    except OSError as exc:
        raise _Skip(f"cannot be read: {exc.strerror or exc}") from None
    if len(raw) > limit:
        raise _Skip(f"grew beyond {limit} bytes while it was read")
    return raw


def _parse_xml(raw: bytes) -> ET.Element:
    """An XML document without a document type declaration: a DTD's entities could
    expand without bound ("billion laughs") or name other files, so none is read."""

    def refuse(*_: Any) -> None:
        raise _Skip(
            "has a document type declaration (DTD), refused: its entities could expand "
            "without bound"
        )

    tree = ET.TreeBuilder()
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.StartElementHandler = tree.start
    parser.EndElementHandler = tree.end
    parser.CharacterDataHandler = tree.data
    parser.Parse(raw, True)
    return tree.close()


def _finite(v: Any, what: str) -> float:
    """A JSON/YAML/text value as a finite float, or :class:`_Skip`."""
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise _Skip(f"{what} is {type(v).__name__}, not a number")
    try:
        x = float(v)
    except (ValueError, OverflowError):
        shown = repr(v[:40]) if isinstance(v, str) else f"{type(v).__name__} too large"
        raise _Skip(f"{what} {shown} is not a number") from None
    if not math.isfinite(x):
        raise _Skip(f"{what} is {x}, not a finite number")
    return x


def _whole(v: Any, what: str) -> int:
    x = _finite(v, what)
    if x != int(x):
        raise _Skip(f"{what} {x} is not a whole number")
    return int(x)


def _size(h: Any, w: Any, what: str) -> tuple[int, int]:
    """A sane image size (positive, at most DEFAULT_MAX_PIXELS pixels), or :class:`_Skip`."""
    hh, ww = _whole(h, f"{what} height"), _whole(w, f"{what} width")
    if hh <= 0 or ww <= 0 or hh * ww > DEFAULT_MAX_PIXELS:
        raise _Skip(f"{what} size {ww}x{hh} px is not a usable image size")
    return hh, ww


@dataclass(frozen=True)
class SourceDefect:
    """One labeled defect of a source folder.

    ``image`` and ``reference`` are POSIX paths relative to the source folder; ``box``
    is pixel xyxy (0-based, end exclusive). A label mask is given as ``polygons`` (flat
    pixel-centre coordinates), a COCO ``rle`` or a VOC ``mask_file`` with the instance's
    pixel ``mask_value``.
    """

    image: str
    box: Box
    category: str
    polygons: tuple[tuple[float, ...], ...] = ()
    rle: dict[str, Any] | None = None
    mask_file: str | None = None
    mask_value: int = 0
    reference: str | None = None

    @property
    def has_mask(self) -> bool:
        return bool(self.polygons) or self.rle is not None or self.mask_file is not None

    def sort_key(self) -> tuple[str, Box, str]:
        return self.image, self.box, self.category


@dataclass
class SourceListing:
    """What a source folder holds: its format, its defects, category names in the source's
    own order, and why any label was skipped."""

    root: Path
    format: str
    defects: list[SourceDefect]
    categories: list[str]
    skipped: list[str] = field(default_factory=list)


def read_source(root: str | os.PathLike[str], fmt: str = "auto") -> SourceListing:
    """Read the labels of the source folder ``root`` in format ``fmt``."""
    base = Path(root)
    if not base.is_dir():
        raise SourceError(f"source folder {str(base)!r} does not exist or is not a folder")
    if fmt not in FORMATS:
        raise SourceError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    files = sorted(_walk(base))
    readers = {"coco": _read_coco, "yolo": _read_yolo, "voc": _read_voc, "masks": _read_masks}
    order = ("coco", "yolo", "voc", "masks") if fmt == "auto" else (fmt,)
    skipped: list[str] = []
    for name in order:
        listing = readers[name](base, files)
        if listing is not None and listing.defects:
            refs = _references(base)
            listing.defects = sorted(
                (_with_reference(d, refs) for d in listing.defects), key=SourceDefect.sort_key
            )
            return listing
        if listing is not None:
            skipped += listing.skipped
    what = {
        "auto": "COCO, YOLO or VOC labels, and no images/ + masks/ (or MVTec ground_truth/) "
        "layout,",
        "masks": "images/ + masks/ (or MVTec ground_truth/) layout",
    }.get(fmt, f"{fmt.upper()} labels")
    why = ""
    if skipped:  # every label was bad: say why
        more = f"; and {len(skipped) - 1} more skipped" if len(skipped) > 1 else ""
        why = f" ({skipped[0]}{more})"
    raise SourceError(f"no {what} with at least one defect found in {str(base)!r}{why}")


# -- folders -------------------------------------------------------------------------------


def _walk(root: Path) -> Iterator[str]:
    """Relative POSIX paths of the regular files under ``root`` (hidden names and the
    ``clean/`` reference folder left out)."""
    for dirpath, dirs, names in os.walk(root, followlinks=False):
        rel_dir = Path(dirpath).relative_to(root)
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".") and not (rel_dir == Path(".") and d in IGNORED_FOLDERS)
        )
        for n in names:
            if not n.startswith("."):
                yield (rel_dir / n).as_posix()


def source_files(root: Path) -> list[str]:
    """Every file the library of ``root`` depends on (labels, images, references): what
    its content hash covers."""
    out = list(_walk(root))
    ref = root / REFERENCE_FOLDER
    if ref.is_dir():
        for dirpath, dirs, names in os.walk(ref, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for n in names:
                if not n.startswith("."):
                    out.append((Path(dirpath) / n).relative_to(root).as_posix())
    return sorted(out)


def _is_image(rel: str) -> bool:
    return os.path.splitext(rel)[1].lower() in IMAGE_EXTENSIONS


def _references(root: Path) -> dict[str, str]:
    ref = root / REFERENCE_FOLDER
    out: dict[str, str] = {}
    if ref.is_dir():
        for p in sorted(ref.rglob("*")):
            if p.is_file() and _is_image(p.name) and not p.name.startswith("."):
                out.setdefault(p.stem, p.relative_to(root).as_posix())
    return out


def _with_reference(d: SourceDefect, refs: dict[str, str]) -> SourceDefect:
    stem = Path(d.image).stem
    if stem not in refs:
        return d
    from dataclasses import replace

    return replace(d, reference=refs[stem])


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file, from its header (nothing is decoded; the file
    must be a complete image within the default pixel limit)."""
    try:
        header = probe_image(read_file_bytes(path, DEFAULT_MAX_PIXELS))
    except InputImageError as exc:
        raise SourceError(f"cannot read image {str(path)!r}: it {exc}") from None
    if header.pixels > DEFAULT_MAX_PIXELS:
        raise SourceError(f"image {str(path)!r} is {header.size_text}, too large to use")
    return header.height, header.width


def _find_image(root: Path, folders: list[Path], name: str, also: str = "") -> str | None:
    """The image a label names, in the first of ``folders`` that has it; else, for a name
    without its extension or with another one than the file's (images converted after
    labelling), the same name and then ``also`` (the label file's own stem) with each
    image extension, in either case."""
    found = _first_existing(root, [d / name for d in folders])
    if found is not None:
        return found
    suffix = Path(name).suffix
    base = name[: -len(suffix)] if suffix.lower() in IMAGE_EXTENSIONS else name
    exts = [*IMAGE_EXTENSIONS, *(e.upper() for e in IMAGE_EXTENSIONS)]
    stems = dict.fromkeys(n for n in (base, also) if n)
    return _first_existing(root, [d / (n + e) for n in stems for d in folders for e in exts])


def _first_existing(root: Path, candidates: list[Path]) -> str | None:
    for c in candidates:
        try:
            if c.is_file():
                return c.resolve().relative_to(root.resolve()).as_posix()
        except (OSError, ValueError):
            continue  # outside the source folder, or a name no file can have
    return None


def _clip_box(x1: float, y1: float, x2: float, y2: float, hw: tuple[int, int]) -> Box | None:
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None
    h, w = hw
    b = (
        int(np.clip(round(x1), 0, w)),
        int(np.clip(round(y1), 0, h)),
        int(np.clip(round(x2), 0, w)),
        int(np.clip(round(y2), 0, h)),
    )
    return b if b[2] > b[0] and b[3] > b[1] else None


# -- COCO ----------------------------------------------------------------------------------


def _read_docs(
    root: Path,
    fmt: str,
    docs: list[tuple[str, Any]],
    unusable: list[str],
    read_doc: Callable[[Path, str, Any, SourceListing], None],
) -> SourceListing | None:
    """The listing of a format's label files: each read by ``read_doc``, a bad one skipped
    with its reason (and a bug in a reader too), the others read. None when no file is of
    this format and none was unusable."""
    if not docs:
        return SourceListing(root, fmt, [], [], unusable) if unusable else None
    listing = SourceListing(root, fmt, [], [], unusable)
    for rel, doc in docs:
        try:
            read_doc(root, rel, doc, listing)
        except _Skip as exc:
            listing.skipped.append(f"{rel}: {exc}")
        except Exception as exc:  # a bug: this file is skipped, the others are read
            listing.skipped.append(f"{rel}: {_unexpected(exc)}")
    return listing


def _read_coco(root: Path, files: list[str]) -> SourceListing | None:
    docs: list[tuple[str, dict[str, Any]]] = []
    unusable: list[str] = []
    for rel in files:
        if not rel.lower().endswith(".json"):
            continue
        try:
            data = json.loads(_read_text(root / rel))
        except _Skip as exc:
            unusable.append(f"{rel}: {exc}")
            continue
        except (ValueError, RecursionError):
            continue  # not JSON (or absurdly nested): not a COCO file
        if isinstance(data, dict) and all(k in data for k in ("images", "annotations")):
            docs.append((rel, data))
    return _read_docs(root, "coco", docs, unusable, _read_coco_doc)


def _entries(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise _Skip(f"{key!r} is {type(value).__name__}, not a list")
    return value


# (long on purpose: every check of a hostile COCO file names its own reason in line,
# in the order the fields are read; see docs/robustness.md)
def _read_coco_doc(root: Path, rel: str, data: dict[str, Any], listing: SourceListing) -> None:
    json_dir = (root / rel).parent
    stem = Path(rel).stem
    split = stem.split("_", 1)[1] if stem.startswith("instances_") else None
    cats: dict[int, str] = {}
    raw_cats = []
    for k, c in enumerate(_entries(data, "categories")):
        try:
            if not isinstance(c, dict):
                raise _Skip("is not an object")
            cid = _whole(c.get("id"), "id")
            name = c.get("name", cid)
            if not isinstance(name, str | int | float) or isinstance(name, bool):
                raise _Skip(f"name is {type(name).__name__}, not a string")
            raw_cats.append((cid, str(name)))
        except _Skip as exc:
            listing.skipped.append(f"{rel}: category {k}: {exc}")
    for cid, name in sorted(raw_cats, key=lambda c: c[0]):
        cats[cid] = name
        if name not in listing.categories:
            listing.categories.append(name)
    images: dict[int, tuple[str, int, int]] = {}
    for k, im in enumerate(_entries(data, "images")):
        try:
            if not isinstance(im, dict):
                raise _Skip("is not an object")
            fn = im.get("file_name")
            if not isinstance(fn, str) or not fn:
                raise _Skip("has no file_name")
            iid = _whole(im.get("id"), "id")
            folders = [json_dir, json_dir / "images", root, root / "images"]
            if split:
                folders += [root / "images" / split, json_dir.parent / "images" / split]
            found = _find_image(root, folders, fn)
            if found is None:
                listing.skipped.append(f"{rel}: image {fn!r} not found")
                continue
            h, w = im.get("height", 0), im.get("width", 0)
            if h and w:
                h, w = _size(h, w, f"image {fn!r}")
            else:
                try:
                    h, w = image_size(root / found)
                except SourceError as exc:
                    raise _Skip(str(exc)) from None
            images[iid] = (found, h, w)
        except _Skip as exc:
            listing.skipped.append(f"{rel}: image {k}: {exc}")
    for k, a in enumerate(_entries(data, "annotations")):
        where = f"{rel}: annotation {k}"
        try:
            if not isinstance(a, dict):
                raise _Skip("is not an object")
            ident = a.get("id", k)
            where = f"{rel}: annotation {ident if isinstance(ident, int | str) else k}"
            if a.get("iscrowd", 0):
                raise _Skip("crowd region, not one defect")
            img = images.get(_whole(a.get("image_id", -1), "image_id"))
            if img is None:
                continue
            name, h, w = img
            cat_id = a.get("category_id")
            cat = cats.get(_whole(cat_id, "category_id"), str(cat_id))
            if cat not in listing.categories:
                listing.categories.append(cat)
            polys: tuple[tuple[float, ...], ...] = ()
            rle = None
            seg = a.get("segmentation")
            if isinstance(seg, list) and seg:
                polys = _coco_polygons(seg)
            elif isinstance(seg, dict) and "counts" in seg:
                rle = _checked_rle(seg, (h, w))
            bbox = a.get("bbox")
            if isinstance(bbox, list) and len(bbox) == 4:
                x, y, bw, bh = (_finite(v, "bbox value") for v in bbox)
                box = _clip_box(x, y, x + bw, y + bh, (h, w))
            elif polys:
                box = _poly_box(polys, (h, w))
            else:
                box = None
            if box is None:
                raise _Skip("empty box")
        except _Skip as exc:
            listing.skipped.append(f"{where}: {exc}")
            continue
        listing.defects.append(SourceDefect(name, box, cat, polys, rle))


def _coco_polygons(seg: list[Any]) -> tuple[tuple[float, ...], ...]:
    """COCO polygons (flat x, y lists), checked: finite numbers, pairs, at least three
    points, at most MAX_POLYGON_VALUES coordinates in all."""
    out = []
    total = 0
    for poly in seg:
        if not isinstance(poly, list):
            raise _Skip("segmentation is not a list of polygons")
        total += len(poly)
        if total > MAX_POLYGON_VALUES:
            raise _Skip(f"segmentation has more than {MAX_POLYGON_VALUES} coordinates")
        if len(poly) < 2:
            continue
        if len(poly) % 2:
            raise _Skip(f"a polygon has {len(poly)} coordinates, not x, y pairs")
        out.append(_to_centres([_finite(v, "polygon coordinate") for v in poly]))
    return tuple(out)


def _checked_rle(seg: dict[str, Any], hw: tuple[int, int]) -> dict[str, Any]:
    """A COCO RLE segmentation whose size is the image's and whose counts cover it."""
    size = seg.get("size", list(hw))
    if not isinstance(size, list) or len(size) != 2:
        raise _Skip("RLE size is not [height, width]")
    h, w = (_whole(v, "RLE size") for v in size)
    if (h, w) != hw:
        raise _Skip(f"RLE size {h}x{w} (h x w) is not the image's {hw[0]}x{hw[1]}")
    rle = {"size": [h, w], "counts": seg["counts"]}
    try:
        _rle_counts(rle)
    except SourceError as exc:
        raise _Skip(str(exc)) from None
    return rle


def _to_centres(poly: list[float]) -> tuple[float, ...]:
    """COCO and YOLO polygons use continuous coordinates (pixel ``i`` spans ``[i, i+1)``);
    the rasterizer wants pixel centres."""
    return tuple(float(v) - 0.5 for v in poly)


def _poly_box(polys: tuple[tuple[float, ...], ...], hw: tuple[int, int]) -> Box | None:
    pts = np.concatenate([np.asarray(p, float).reshape(-1, 2) for p in polys])
    x1, y1 = pts.min(axis=0)
    x2, y2 = pts.max(axis=0)
    return _clip_box(math.floor(x1), math.floor(y1), math.floor(x2) + 1, math.floor(y2) + 1, hw)


def decode_coco_rle(rle: dict[str, Any]) -> np.ndarray:
    """A boolean mask from COCO RLE: uncompressed (a list of counts) or compressed (the
    LEB128-like string of the COCO API).

    :raises SourceError: the size is not two positive whole numbers within the default
        pixel limit, or the counts are not non-negative whole numbers covering it.
    """
    (h, w), counts = _rle_counts(rle)
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    return np.repeat(values, counts).reshape((w, h)).T.copy()


def _rle_counts(rle: Any) -> tuple[tuple[int, int], list[int]]:
    """The checked size and counts of a COCO RLE (see :func:`decode_coco_rle`)."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise SourceError("an RLE is an object with 'size' and 'counts'")
    size = rle["size"]
    try:
        if not isinstance(size, list | tuple) or len(size) != 2:
            raise _Skip("RLE size is not [height, width]")
        h, w = _size(size[0], size[1], "RLE")
    except _Skip as exc:
        raise SourceError(str(exc)) from None
    counts = rle["counts"]
    if isinstance(counts, bytes):
        try:
            counts = counts.decode("ascii")
        except UnicodeDecodeError:
            raise SourceError("compressed RLE counts are not ASCII") from None
    if isinstance(counts, str):
        if len(counts) > 2 * h * w + 16:
            raise SourceError("compressed RLE counts are longer than any mask of its size")
        counts = _rle_string_counts(counts)
    elif not isinstance(counts, list):
        raise SourceError(f"RLE counts are {type(counts).__name__}, not a list or a string")
    if len(counts) > h * w + 1:
        raise SourceError(f"RLE has {len(counts)} counts, more than its {h}x{w} pixels")
    if not all(type(c) is int for c in counts):
        try:
            counts = [_whole(c, "an RLE count") for c in counts]
        except _Skip as exc:
            raise SourceError(str(exc)) from None
    if any(c < 0 for c in counts):
        raise SourceError("RLE has a negative count")
    if sum(counts) != h * w:
        raise SourceError(f"RLE counts sum to {sum(counts)}, expected {h}*{w}")
    return (h, w), counts


def _rle_string_counts(s: str) -> list[int]:
    """Counts of a compressed COCO RLE string: 5 bits per character (offset 48), a
    continuation bit (0x20), sign-extended; from the third count on, each is stored as
    the difference to the count two places back."""
    counts: list[int] = []
    i = 0
    n = len(s)
    while i < n:
        x = 0
        k = 0
        more = True
        while more:
            if i >= n:
                raise SourceError("compressed RLE counts end in the middle of a count")
            c = ord(s[i]) - 48
            if not 0 <= c < 64:
                raise SourceError(f"compressed RLE counts hold the character {s[i]!r}")
            if k >= 13:  # 65 bits: more than any mask has pixels
                raise SourceError("compressed RLE has a count longer than 13 characters")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            i += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


# -- YOLO ----------------------------------------------------------------------------------


def _yolo_names(root: Path, files: list[str], skipped: list[str]) -> list[str] | None:
    for rel in files:
        if rel.lower().endswith((".yaml", ".yml")) and "/" not in rel:
            try:
                data = yaml.load(_read_text(root / rel, MAX_NAMES_BYTES), Loader=_YamlLoader)
            except _Skip as exc:
                skipped.append(f"{rel}: {exc}")
                continue
            except (yaml.YAMLError, RecursionError, ValueError):
                continue  # not YAML: not a data.yaml
            names = data.get("names") if isinstance(data, dict) else None
            try:
                if isinstance(names, list):
                    return [_class_name(n) for n in names]
                if isinstance(names, dict):
                    keyed = {_whole(k, "a class number"): _class_name(v) for k, v in names.items()}
                    return [keyed[k] for k in sorted(keyed)]
            except _Skip as exc:
                skipped.append(f"{rel}: names: {exc}")
    for rel in files:
        if Path(rel).name in ("classes.txt", "obj.names") or rel.endswith(".names"):
            try:
                lines = _read_text(root / rel, MAX_NAMES_BYTES).splitlines()
            except _Skip as exc:
                skipped.append(f"{rel}: {exc}")
                continue
            return [ln.strip() for ln in lines if ln.strip()]
    return None


#: libyaml's safe loader when PyYAML has it (the same documents, ten times faster)
_YamlLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _class_name(v: Any) -> str:
    """A class name of a YOLO ``names`` list: a plain value, never a structure (a YAML
    alias could make ``str()`` of one exponentially long)."""
    if v is None or isinstance(v, str | int | float | bool):
        return str(v)
    raise _Skip(f"a class name is {type(v).__name__}, not a string")


def _yolo_image(root: Path, rel: str, images: dict[str, str]) -> str | None:
    parts = Path(rel).with_suffix("").parts
    cands = ["/".join(parts)]
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "labels":
            cands.append("/".join((*parts[:i], "images", *parts[i + 1 :])))
    for c in cands:
        if c in images:
            return images[c]
    return None


def _read_yolo(root: Path, files: list[str]) -> SourceListing | None:
    images: dict[str, str] = {}
    for rel in files:
        if _is_image(rel):
            images.setdefault(os.path.splitext(rel)[0], rel)
    labels = [
        rel
        for rel in files
        if rel.endswith(".txt") and Path(rel).name not in ("classes.txt", "README.txt")
    ]
    pairs = [(rel, img) for rel in labels if (img := _yolo_image(root, rel, images))]
    if not pairs:
        return None
    skipped: list[str] = []
    names = _yolo_names(root, files, skipped)
    listing = SourceListing(root, "yolo", [], list(names or []), skipped)
    for rel, img in pairs:
        try:
            _read_yolo_file(root, rel, img, names, listing)
        except _Skip as exc:
            listing.skipped.append(f"{rel}: {exc}")
        except Exception as exc:  # a bug: this file is skipped, the others are read
            listing.skipped.append(f"{rel}: {_unexpected(exc)}")
    return listing


def _read_yolo_file(
    root: Path, rel: str, img: str, names: list[str] | None, listing: SourceListing
) -> None:
    lines = _read_text(root / rel).splitlines()
    if not any(ln.strip() for ln in lines):
        return
    try:
        h, w = image_size(root / img)
    except SourceError as exc:
        raise _Skip(str(exc)) from None
    for n, line in enumerate(lines, 1):
        tok = line.split()
        if not tok:
            continue
        where = f"{rel}:{n}"
        try:
            cls = int(float(tok[0]))
            vals = [float(v) for v in tok[1:]]
        except (ValueError, OverflowError):
            listing.skipped.append(f"{where}: not a YOLO label line")
            continue
        if len(vals) > MAX_POLYGON_VALUES:
            listing.skipped.append(f"{where}: more than {MAX_POLYGON_VALUES} numbers")
            continue
        if not all(math.isfinite(v) for v in vals):
            listing.skipped.append(f"{where}: a value is not a finite number")
            continue
        cat = names[cls] if names is not None and 0 <= cls < len(names) else str(cls)
        if cat not in listing.categories:
            listing.categories.append(cat)
        polys: tuple[tuple[float, ...], ...] = ()
        if len(vals) in (4, 5):  # box, or box + confidence
            cx, cy, bw, bh = vals[:4]
            box = _clip_box((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w,
                            (cy + bh / 2) * h, (h, w))
        elif len(vals) >= 6 and len(vals) % 2 == 0:
            pts = np.asarray(vals, float).reshape(-1, 2) * [w, h]
            polys = (_to_centres(pts.ravel().tolist()),)
            box = _poly_box(polys, (h, w))
        else:
            listing.skipped.append(f"{where}: {len(vals)} numbers after the class")
            continue
        if box is None:
            listing.skipped.append(f"{where}: empty box")
            continue
        listing.defects.append(SourceDefect(img, box, cat, polys))


# -- VOC -----------------------------------------------------------------------------------


def _read_voc(root: Path, files: list[str]) -> SourceListing | None:
    docs = []
    unusable: list[str] = []
    for rel in files:
        if not rel.lower().endswith(".xml"):
            continue
        try:
            ann = _parse_xml(_read_bytes(root / rel, MAX_LABEL_BYTES))
        except _Skip as exc:
            unusable.append(f"{rel}: {exc}")
            continue
        except (expat.ExpatError, ValueError, RecursionError):
            continue  # not XML: not a VOC file
        if ann.tag == "annotation":
            docs.append((rel, ann))
    return _read_docs(root, "voc", docs, unusable, _read_voc_doc)


def _read_voc_doc(root: Path, rel: str, ann: ET.Element, listing: SourceListing) -> None:
    xml_dir = (root / rel).parent
    fn = (ann.findtext("filename") or "").strip() or Path(rel).stem + ".jpg"
    folders = [xml_dir.parent / "JPEGImages", xml_dir.parent / "images", xml_dir,
               root / "JPEGImages", root / "images", root]
    # (NEU-DET writes <filename>crazing_1</filename> for crazing_1.jpg)
    img = _find_image(root, folders, fn, Path(rel).stem)
    if img is None:
        listing.skipped.append(f"{rel}: image {fn!r} not found")
        return
    size = ann.find("size")
    h_text = (size.findtext("height") or "").strip() if size is not None else ""
    w_text = (size.findtext("width") or "").strip() if size is not None else ""
    h = w = 0
    if h_text and w_text:
        hv, wv = _finite(h_text, "height"), _finite(w_text, "width")
        if hv and wv:
            h, w = _size(hv, wv, f"image {fn!r}")
    if not h or not w:
        try:
            h, w = image_size(root / img)
        except SourceError as exc:
            raise _Skip(str(exc)) from None
    seg_png = xml_dir.parent / "SegmentationObject" / f"{Path(fn).stem}.png"
    seg = _first_existing(root, [seg_png])
    for k, obj in enumerate(ann.findall("object"), 1):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        if not name or bb is None:
            listing.skipped.append(f"{rel}: object {k} has no name or bndbox")
            continue
        if name not in listing.categories:
            listing.categories.append(name)
        try:
            x1, y1, x2, y2 = (float(bb.findtext(t) or "nan") for t in
                              ("xmin", "ymin", "xmax", "ymax"))
        except ValueError:
            listing.skipped.append(f"{rel}: object {k} has a malformed bndbox")
            continue
        box = _clip_box(x1 - 1, y1 - 1, x2, y2, (h, w))
        if box is None:
            listing.skipped.append(f"{rel}: object {k} has an empty box")
            continue
        listing.defects.append(
            SourceDefect(img, box, name, mask_file=seg, mask_value=k if seg else 0)
        )


# -- image + mask folders --------------------------------------------------------------------


def _mask_pairs(files: list[str]) -> list[tuple[str, str, str]]:
    """(image, mask, category) of both mask layouts, from the folder's relative paths:
    ``images/**/NAME.ext`` with ``masks/**/NAME.png`` (category: the image's first
    sub-folder under ``images/``, else ``defect``); MVTec AD ``test/CATEGORY/NAME.ext``
    with ``ground_truth/CATEGORY/NAME_mask.png`` (``test/good`` holds no defect)."""
    present = set(files)
    pairs: list[tuple[str, str, str]] = []
    for rel in files:
        if not _is_image(rel):
            continue
        parts = rel.split("/")
        if parts[0] == "images" and len(parts) >= 2:
            mask = "/".join(["masks", *parts[1:-1], os.path.splitext(parts[-1])[0] + ".png"])
            if mask in present:
                pairs.append((rel, mask, parts[1] if len(parts) > 2 else "defect"))
        elif parts[0] == "test" and len(parts) == 3 and parts[1] != "good":
            mask = f"ground_truth/{parts[1]}/{os.path.splitext(parts[2])[0]}_mask.png"
            if mask in present:
                pairs.append((rel, mask, parts[1]))
    return pairs


def _read_masks(root: Path, files: list[str]) -> SourceListing | None:
    """Defects given as binary masks beside their images (:func:`_mask_pairs`). A mask is
    any image whose non-zero pixels are the defect; each connected part of it is one
    defect, parts closer than 2 % of the image's diagonal (at least 3 px) joined (a
    defect often breaks into pieces where it fades), parts under 4 px dropped as noise,
    parts covering half of the image or more left out (product masks, see
    :data:`MASK_WHOLE`). The part is the defect's mask (an RLE of it)."""
    pairs = _mask_pairs(files)
    if not pairs:
        return None
    listing = SourceListing(root, "masks", [], [])
    for rel, mask_rel, cat in pairs:
        try:
            hw = image_size(root / rel)
        except SourceError as exc:
            listing.skipped.append(f"{rel}: {exc}")
            continue
        try:
            fg = read_mask_file(root / mask_rel, hw, mask_rel, DEFAULT_MAX_PIXELS, kind="mask",
                                allow_empty=True)
        except InputImageError as exc:
            listing.skipped.append(f"{mask_rel}: cannot read the mask: {exc}")
            continue
        for box, part in _mask_parts(fg):
            share = float(part.sum()) / (hw[0] * hw[1])
            if share >= MASK_WHOLE:
                listing.skipped.append(
                    f"{mask_rel}: a part covers {share:.0%} of the image: a product mask "
                    "rather than a defect? (left out)"
                )
                continue
            if cat not in listing.categories:
                listing.categories.append(cat)
            listing.defects.append(SourceDefect(rel, box, cat, rle=dict(crop_rle(part, box, hw))))
    return listing


MIN_MASK_PART = 4
MASK_JOIN = 0.02
MASK_WHOLE = 0.5
"""A mask part covering this share of its image or more is left out, with the reason: a
folder of clean images with product masks (the layout of a recipe's inputs) is read
as defects otherwise."""


def _mask_parts(fg: np.ndarray) -> list[tuple[Box, np.ndarray]]:
    """(box, the part's mask within its box) of each defect of a boolean mask."""
    import cv2

    u8 = fg.astype(np.uint8)
    if not u8.any():
        return []
    reach = max(3, int(round(MASK_JOIN * float(np.hypot(*fg.shape)))) | 1)
    joined = cv2.dilate(u8, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (reach, reach)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    out = []
    for k in range(1, n):
        x, y, w, h = (int(v) for v in stats[k, :4])
        part = (labels[y : y + h, x : x + w] == k) & fg[y : y + h, x : x + w]
        if int(part.sum()) < MIN_MASK_PART:
            continue
        ys, xs = np.nonzero(part)
        box = (x + int(xs.min()), y + int(ys.min()), x + int(xs.max()) + 1, y + int(ys.max()) + 1)
        bx1, by1, bx2, by2 = box
        out.append((box, part[by1 - y : by2 - y, bx1 - x : bx2 - x].copy()))
    return out


def voc_palette() -> np.ndarray:
    """The standard Pascal VOC colour map, (256, 3) RGB uint8: index bits spread over the
    high bits of the three channels."""
    pal = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def read_index_mask(path: Path) -> np.ndarray:
    """Instance indices of a VOC ``SegmentationObject`` PNG (gray, or palette colours
    mapped back through :func:`voc_palette`; unknown colours become 0)."""
    try:
        img = decode_image(read_file_bytes(path, DEFAULT_MAX_PIXELS), DEFAULT_MAX_PIXELS)
    except InputImageError as exc:
        raise SourceError(f"cannot read mask {str(path)!r}: it {exc}") from None
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim == 2:
        return img.astype(np.int32)
    rgb = img[:, :, 2::-1].astype(np.int32)
    key = (rgb[:, :, 0] << 16) | (rgb[:, :, 1] << 8) | rgb[:, :, 2]
    pal = voc_palette().astype(np.int32)
    lut = {int((r << 16) | (g << 8) | b): i for i, (r, g, b) in enumerate(pal)}
    out = np.zeros(key.shape, np.int32)
    for k in np.unique(key):
        out[key == k] = lut.get(int(k), 0)
    return out
