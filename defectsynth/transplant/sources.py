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

Clean references: an image ``.../name.ext`` is paired with ``clean/name.*`` at the top of
the source folder (same stem, any image extension), when it exists.
"""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

Box = tuple[int, int, int, int]

FORMATS = ("auto", "coco", "yolo", "voc")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
REFERENCE_FOLDER = "clean"
IGNORED_FOLDERS = (REFERENCE_FOLDER,)


class SourceError(ValueError):
    """A source folder cannot be read as the format asked for."""


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
    readers = {"coco": _read_coco, "yolo": _read_yolo, "voc": _read_voc}
    order = ("coco", "yolo", "voc") if fmt == "auto" else (fmt,)
    for name in order:
        listing = readers[name](base, files)
        if listing is not None and listing.defects:
            refs = _references(base)
            listing.defects = sorted(
                (_with_reference(d, refs) for d in listing.defects), key=SourceDefect.sort_key
            )
            return listing
    what = "COCO, YOLO or VOC labels" if fmt == "auto" else f"{fmt.upper()} labels"
    raise SourceError(f"no {what} with at least one defect found in {str(base)!r}")


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
    """(height, width) of an image file."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise SourceError(f"cannot read image {str(path)!r}")
    return int(img.shape[0]), int(img.shape[1])


def _first_existing(root: Path, candidates: list[Path]) -> str | None:
    for c in candidates:
        if c.is_file():
            try:
                return c.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                continue  # outside the source folder: not ours to read
    return None


def _clip_box(x1: float, y1: float, x2: float, y2: float, hw: tuple[int, int]) -> Box | None:
    h, w = hw
    b = (
        int(np.clip(round(x1), 0, w)),
        int(np.clip(round(y1), 0, h)),
        int(np.clip(round(x2), 0, w)),
        int(np.clip(round(y2), 0, h)),
    )
    return b if b[2] > b[0] and b[3] > b[1] else None


# -- COCO ----------------------------------------------------------------------------------


def _read_coco(root: Path, files: list[str]) -> SourceListing | None:
    docs: list[tuple[str, dict[str, Any]]] = []
    for rel in files:
        if not rel.lower().endswith(".json"):
            continue
        try:
            data = json.loads((root / rel).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and all(k in data for k in ("images", "annotations")):
            docs.append((rel, data))
    if not docs:
        return None
    listing = SourceListing(root, "coco", [], [])
    for rel, data in docs:
        json_dir = (root / rel).parent
        stem = Path(rel).stem
        split = stem.split("_", 1)[1] if stem.startswith("instances_") else None
        cats: dict[int, str] = {}
        for c in sorted(data.get("categories", []), key=lambda c: c.get("id", 0)):
            cats[int(c["id"])] = str(c.get("name", c["id"]))
            if cats[int(c["id"])] not in listing.categories:
                listing.categories.append(cats[int(c["id"])])
        images: dict[int, tuple[str, int, int]] = {}
        for im in data["images"]:
            fn = str(im["file_name"])
            cands = [json_dir / fn, json_dir / "images" / fn, root / fn, root / "images" / fn]
            if split:
                cands += [root / "images" / split / fn, json_dir.parent / "images" / split / fn]
            found = _first_existing(root, cands)
            if found is None:
                listing.skipped.append(f"{rel}: image {fn!r} not found")
                continue
            h, w = int(im.get("height", 0)), int(im.get("width", 0))
            if not h or not w:
                h, w = image_size(root / found)
            images[int(im["id"])] = (found, h, w)
        for k, a in enumerate(data["annotations"]):
            where = f"{rel}: annotation {a.get('id', k)}"
            if a.get("iscrowd", 0):
                listing.skipped.append(f"{where}: crowd region, not one defect")
                continue
            img = images.get(int(a.get("image_id", -1)))
            if img is None:
                continue
            name, h, w = img
            cat = cats.get(int(a.get("category_id", -1)), str(a.get("category_id")))
            if cat not in listing.categories:
                listing.categories.append(cat)
            polys: tuple[tuple[float, ...], ...] = ()
            rle = None
            seg = a.get("segmentation")
            if isinstance(seg, list) and seg:
                polys = tuple(_to_centres(p) for p in seg if len(p) >= 2)
            elif isinstance(seg, dict) and "counts" in seg:
                rle = {"size": list(seg.get("size", [h, w])), "counts": seg["counts"]}
            bbox = a.get("bbox")
            if bbox and len(bbox) == 4:
                x, y, bw, bh = (float(v) for v in bbox)
                box = _clip_box(x, y, x + bw, y + bh, (h, w))
            elif polys:
                box = _poly_box(polys, (h, w))
            else:
                box = None
            if box is None:
                listing.skipped.append(f"{where}: empty box")
                continue
            listing.defects.append(SourceDefect(name, box, cat, polys, rle))
    return listing


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
    LEB128-like string of the COCO API)."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, str | bytes):
        counts = _rle_string_counts(counts if isinstance(counts, str) else counts.decode())
    counts = [int(c) for c in counts]
    if sum(counts) != h * w:
        raise SourceError(f"RLE counts sum to {sum(counts)}, expected {h}*{w}")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    return np.repeat(values, counts).reshape((w, h)).T.copy()


def _rle_string_counts(s: str) -> list[int]:
    """Counts of a compressed COCO RLE string: 5 bits per character (offset 48), a
    continuation bit (0x20), sign-extended; from the third count on, each is stored as
    the difference to the count two places back."""
    counts: list[int] = []
    i = 0
    while i < len(s):
        x = 0
        k = 0
        more = True
        while more:
            c = ord(s[i]) - 48
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


def _yolo_names(root: Path, files: list[str]) -> list[str] | None:
    for rel in files:
        if rel.lower().endswith((".yaml", ".yml")) and "/" not in rel:
            try:
                data = yaml.safe_load((root / rel).read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError):
                continue
            names = data.get("names") if isinstance(data, dict) else None
            if isinstance(names, list):
                return [str(n) for n in names]
            if isinstance(names, dict):
                return [str(names[k]) for k in sorted(names, key=int)]
    for rel in files:
        if Path(rel).name in ("classes.txt", "obj.names") or rel.endswith(".names"):
            lines = (root / rel).read_text(encoding="utf-8").splitlines()
            return [ln.strip() for ln in lines if ln.strip()]
    return None


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
    names = _yolo_names(root, files)
    listing = SourceListing(root, "yolo", [], list(names or []))
    for rel, img in pairs:
        lines = (root / rel).read_text(encoding="utf-8").splitlines()
        if not any(ln.strip() for ln in lines):
            continue
        h, w = image_size(root / img)
        for n, line in enumerate(lines, 1):
            tok = line.split()
            if not tok:
                continue
            where = f"{rel}:{n}"
            try:
                cls = int(float(tok[0]))
                vals = [float(v) for v in tok[1:]]
            except ValueError:
                listing.skipped.append(f"{where}: not a YOLO label line")
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
    return listing


# -- VOC -----------------------------------------------------------------------------------


def _read_voc(root: Path, files: list[str]) -> SourceListing | None:
    docs = []
    for rel in files:
        if not rel.lower().endswith(".xml"):
            continue
        try:
            tree = ET.parse(root / rel)
        except (OSError, ET.ParseError):
            continue
        if tree.getroot().tag == "annotation":
            docs.append((rel, tree.getroot()))
    if not docs:
        return None
    listing = SourceListing(root, "voc", [], [])
    for rel, ann in docs:
        xml_dir = (root / rel).parent
        fn = (ann.findtext("filename") or "").strip() or Path(rel).stem + ".jpg"
        cands = [
            xml_dir.parent / "JPEGImages" / fn,
            xml_dir.parent / "images" / fn,
            xml_dir / fn,
            root / "JPEGImages" / fn,
            root / "images" / fn,
            root / fn,
        ]
        img = _first_existing(root, cands)
        if img is None:
            listing.skipped.append(f"{rel}: image {fn!r} not found")
            continue
        size = ann.find("size")
        h = int(float(size.findtext("height") or 0)) if size is not None else 0
        w = int(float(size.findtext("width") or 0)) if size is not None else 0
        if not h or not w:
            h, w = image_size(root / img)
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
    return listing


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
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise SourceError(f"cannot read mask {str(path)!r}")
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
