"""``defectsynth validate OUT``: re-read a dataset and check every format.

Readers such as pycocotools, ultralytics and supervision accept many broken datasets
silently (duplicate ids, zero-size boxes, RLE counts that do not add up, labels in pixel
units ...). This module checks each format against the images, the instance masks and
the manifest, and each format's instance counts against the others. It depends only on
the files, never on the code that wrote them.
"""

from __future__ import annotations

import json
import struct
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .rle import decode_rle
from .run.manifest import MANIFEST, Record
from .sample import tight_box

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class ValidationReport:
    out: str
    samples: int = 0
    formats: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: what readers accept but a user should know (an empty split); ``ok`` ignores them
    warnings: list[str] = field(default_factory=list)
    #: False for a folder with neither manifest.jsonl nor dataset.json
    is_dataset: bool = True

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": self.out,
            "ok": self.ok,
            "samples": self.samples,
            "formats": self.formats,
            "problems": self.problems,
            "warnings": self.warnings,
            "is_dataset": self.is_dataset,
        }


@dataclass
class _Expected:
    """What the manifest says about one image."""

    split: str
    width: int
    height: int
    boxes: list[tuple[int, int, int, int]]
    categories: list[str]


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG header, or by decoding; None when unreadable."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            w, h = struct.unpack(">II", head[16:24])
            return int(w), int(h)
        img = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_UNCHANGED)
    except OSError:
        return None
    if img is None:
        return None
    return int(img.shape[1]), int(img.shape[0])


def _stems(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {
        p.stem: p
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith(".")
    }


class _Checker:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.categories: list[str] = []
        self.splits: list[str] = []
        self.formats: list[str] = []
        self.expected: dict[tuple[str, str], _Expected] = {}
        self.sizes: dict[Path, tuple[int, int] | None] = {}

    def add(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def warn(self, where: str, message: str) -> None:
        self.warnings.append(f"{where}: {message}")

    def check_splits(self) -> None:
        """Warn about a split of the recipe that holds no sample (too few sources for the
        fractions, or a --limit): the formats then point readers elsewhere or lack it."""
        if not self.expected:
            return
        counts = Counter(split for split, _ in self.expected)
        for split in self.splits:
            if not counts.get(split):
                self.warn(
                    f"images/{split}",
                    f"split {split!r} has no samples (too few sources or a --limit); "
                    "add sources or variants, or change 'split' in the recipe",
                )

    def size(self, path: Path) -> tuple[int, int] | None:
        if path not in self.sizes:
            self.sizes[path] = image_size(path)
        return self.sizes[path]

    # -- dataset.json and manifest ---------------------------------------------------------

    def load_info(self) -> None:
        path = self.out / "dataset.json"
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            self.categories = [str(c) for c in info["categories"]]
            self.splits = [str(s) for s in info["splits"]]
            self.formats = [str(f) for f in info["formats"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.add("dataset.json", f"missing or unreadable ({exc}); checking what is present")
            self.splits = [
                p.name for p in sorted((self.out / "images").glob("*")) if p.is_dir()
            ] or ["train", "val", "test"]
            self.formats = [
                f
                for f, marker in (
                    ("coco", "annotations"),
                    ("yolo", "data.yaml"),
                    ("yolo-seg", "yolo-seg"),
                    ("voc", "voc"),
                    ("anomaly", "anomaly"),
                )
                if (self.out / marker).exists()
            ]

    def records(self) -> Iterator[tuple[int, Record]]:
        """The manifest's lines as the records they claim to be (typed as
        :class:`~defectsynth.run.manifest.Record`); :meth:`check_manifest` checks every
        field it reads before trusting it."""
        path = self.out / MANIFEST
        if not path.exists():
            self.add(MANIFEST, "missing")
            return
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.endswith("\n"):
                    self.add(f"manifest.jsonl:{n}", "torn last line (run killed? use --resume)")
                    return
                try:
                    yield n, json.loads(line)
                except ValueError as exc:
                    self.add(f"manifest.jsonl:{n}", f"not JSON: {exc}")

    def check_manifest(self) -> int:
        seen_tasks: set[int] = set()
        last = -1
        count = 0
        for n, rec in self.records():
            where = f"manifest.jsonl:{n}"
            try:
                task = int(rec["task"])
                split = str(rec["split"])
                img_rel = str(rec["image"])
                w, h = int(rec["width"]), int(rec["height"])
                anns = list(rec["annotations"])
            except (KeyError, TypeError, ValueError) as exc:
                self.add(where, f"record lacks a field: {exc}")
                continue
            count += 1
            if task in seen_tasks:
                self.add(where, f"task {task} appears twice")
            elif task < last:
                self.add(where, f"task {task} is out of order (after {last})")
            seen_tasks.add(task)
            last = max(last, task)
            if split not in self.splits:
                self.add(where, f"split {split!r} is not one of {self.splits}")
            img = self.out / img_rel
            size = self.size(img)
            if size is None:
                self.add(where, f"image {img_rel} is missing or unreadable")
            elif size != (w, h):
                self.add(where, f"image {img_rel} is {size[0]}x{size[1]}, record says {w}x{h}")
            boxes: list[tuple[int, int, int, int]] = []
            cats: list[str] = []
            for k, a in enumerate(anns):
                aw = f"{where} annotation {k}"
                box = tuple(int(v) for v in a["box"])
                if len(box) != 4:
                    self.add(aw, f"box {list(box)} does not have 4 numbers")
                    continue
                bx = (box[0], box[1], box[2], box[3])
                self.check_box(aw, bx, w, h)
                if a["category"] not in self.categories:
                    self.add(aw, f"category {a['category']!r} not in {self.categories}")
                mask = self.check_rle(aw, a.get("mask_rle"), w, h, bx, a.get("area"))
                mpath = a.get("mask")
                if mpath:
                    m = cv2.imread(str(self.out / mpath), cv2.IMREAD_GRAYSCALE)
                    if m is None:
                        self.add(aw, f"mask file {mpath} is missing or unreadable")
                    elif mask is not None and (
                        m.shape != mask.shape or not ((m > 0) == mask).all()
                    ):
                        self.add(aw, f"mask file {mpath} differs from the record's RLE")
                for poly in a.get("polygons", []):
                    if len(poly) % 2 or len(poly) < 6:
                        self.add(
                            aw, f"polygon with {len(poly)} coordinates (need an even number >= 6)"
                        )
                boxes.append(bx)
                cats.append(str(a["category"]))
            stem = Path(img_rel).stem
            if (split, stem) in self.expected:
                self.add(where, f"image name {stem!r} used twice in split {split!r}")
            self.expected[(split, stem)] = _Expected(split, w, h, boxes, cats)
        return count

    def check_box(self, where: str, box: tuple[int, int, int, int], w: int, h: int) -> None:
        x1, y1, x2, y2 = box
        if x2 <= x1 or y2 <= y1:
            self.add(where, f"box {list(box)} has zero or negative width/height")
        elif x1 < 0 or y1 < 0 or x2 > w or y2 > h:
            self.add(where, f"box {list(box)} is outside the image {w}x{h}")

    def check_rle(
        self,
        where: str,
        rle: Any,
        w: int,
        h: int,
        box: tuple[int, int, int, int] | None,
        area: Any,
    ) -> np.ndarray | None:
        if not isinstance(rle, dict) or "counts" not in rle or "size" not in rle:
            self.add(where, "segmentation is not an RLE {size, counts}")
            return None
        counts = rle["counts"]
        if not isinstance(counts, list):
            self.add(where, "RLE counts are compressed (a string); expected a list")
            return None
        if list(rle["size"]) != [h, w]:
            self.add(where, f"RLE size {rle['size']} is not the image's [h, w] = [{h}, {w}]")
            return None
        if any((not isinstance(c, int)) or c < 0 for c in counts):
            self.add(where, "RLE counts contain a negative or non-integer run")
            return None
        total = sum(counts)
        if total != h * w:
            self.add(where, f"RLE counts sum to {total}, not h*w = {h * w}")
            return None
        mask = decode_rle(rle)
        tb = tight_box(mask)
        if tb is None:
            self.add(where, "mask is empty")
        elif box is not None and tb != box:
            self.add(where, f"box {list(box)} is not the tight box {list(tb)} of the mask")
        if area is not None and int(area) != int(mask.sum()):
            self.add(where, f"area {area} != mask pixel count {int(mask.sum())}")
        return mask

    def expect_count(self, fmt: str, where: str, split: str, stem: str, n: int) -> None:
        exp = self.expected.get((split, stem))
        if exp is None:
            self.add(where, f"{fmt}: image {split}/{stem} is not in the manifest")
        elif len(exp.boxes) != n:
            self.add(where, f"{fmt} has {n} instance(s), the manifest {len(exp.boxes)}")

    def missing_from(self, fmt: str, found: set[tuple[str, str]], splits: list[str]) -> None:
        for split, stem in sorted(self.expected):
            if split in splits and (split, stem) not in found:
                self.add(fmt, f"manifest image {split}/{stem} has no entry in this format")

    # -- COCO ---------------------------------------------------------------------------

    def check_coco(self) -> None:
        ann_ids: set[int] = set()
        image_ids: set[int] = set()
        found: set[tuple[str, str]] = set()
        for split in self.splits:
            rel = f"annotations/instances_{split}.json"
            path = self.out / rel
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                self.add(rel, f"missing or not JSON ({exc})")
                continue
            for key in ("images", "annotations", "categories"):
                if not isinstance(data.get(key), list):
                    self.add(rel, f"'{key}' is missing or not a list")
                    data[key] = []
            cats: dict[int, str] = {}
            for c in data["categories"]:
                cid = c.get("id")
                if cid in cats:
                    self.add(rel, f"category id {cid} appears twice")
                cats[cid] = c.get("name")
            want = {i + 1: name for i, name in enumerate(self.categories)}
            if self.categories and cats != want:
                self.add(rel, f"categories {cats} differ from the dataset's {want}")
            images = self.coco_images(rel, split, data["images"], image_ids)
            folder = self.out / "images" / split
            per_image: Counter[int] = Counter()
            for a in data["annotations"]:
                aid = a.get("id")
                where = f"{rel} annotation id {aid}"
                if aid in ann_ids:
                    self.add(where, "duplicate annotation id")
                ann_ids.add(aid)
                if a.get("category_id") not in cats:
                    self.add(where, f"category_id {a.get('category_id')} is not in 'categories'")
                im = images.get(a.get("image_id"))
                if im is None:
                    self.add(where, f"image_id {a.get('image_id')} is not in 'images'")
                    continue
                per_image[a["image_id"]] += 1
                self.coco_annotation(where, a, int(im["width"]), int(im["height"]))
            for iid, im in images.items():
                stem = Path(str(im.get("file_name"))).stem
                found.add((split, stem))
                self.expect_count("coco", rel, split, stem, per_image[iid])
            listed = {Path(str(im.get("file_name"))).name for im in images.values()}
            for _stem, p in _stems(folder, IMAGE_SUFFIXES).items():
                if p.name not in listed:
                    self.add(rel, f"image images/{split}/{p.name} has no entry in the JSON")
        self.missing_from("coco", found, self.splits)

    def coco_images(
        self, rel: str, split: str, entries: list[Any], image_ids: set[int]
    ) -> dict[int, dict[str, Any]]:
        """A split's ``images`` by id, each checked against its file."""
        images: dict[int, dict[str, Any]] = {}
        folder = self.out / "images" / split
        for im in entries:
            iid = im.get("id")
            if iid in images or iid in image_ids:
                self.add(rel, f"image id {iid} appears twice")
            images[iid] = im
            image_ids.add(iid)
            fpath = folder / str(im.get("file_name"))
            size = self.size(fpath)
            if size is None:
                self.add(rel, f"image {im.get('file_name')!r} has no file in images/{split}/")
            elif size != (im.get("width"), im.get("height")):
                self.add(
                    rel,
                    f"image {im.get('file_name')!r} is {size[0]}x{size[1]}, "
                    f"the JSON says {im.get('width')}x{im.get('height')}",
                )
        return images

    def coco_annotation(self, where: str, a: dict[str, Any], w: int, h: int) -> None:
        """One COCO annotation's bbox, iscrowd and segmentation, in a ``w`` x ``h`` image."""
        bbox = a.get("bbox")
        box: tuple[int, int, int, int] | None = None
        if not (isinstance(bbox, list) and len(bbox) == 4):
            self.add(where, f"bbox {bbox!r} is not [x, y, w, h]")
        else:
            x, y, bw, bh = (float(v) for v in bbox)
            if bw <= 0 or bh <= 0:
                self.add(where, f"bbox {bbox} has zero or negative width/height")
            elif x < 0 or y < 0 or x + bw > w or y + bh > h:
                self.add(where, f"bbox {bbox} is outside the image {w}x{h}")
            else:
                box = (int(x), int(y), int(x + bw), int(y + bh))
        if a.get("iscrowd") not in (0, 1):
            self.add(where, f"iscrowd {a.get('iscrowd')!r} is not 0 or 1")
        seg = a.get("segmentation")
        if isinstance(seg, list):
            for poly in seg:
                if not isinstance(poly, list) or len(poly) % 2 or len(poly) < 6:
                    n = len(poly) if isinstance(poly, list) else poly
                    self.add(where, f"polygon with {n} coordinates (need even, >= 6)")
        else:
            self.check_rle(where, seg, w, h, box, a.get("area"))

    # -- YOLO ---------------------------------------------------------------------------

    def check_yolo(self, root: Path, fmt: str, segment: bool) -> None:
        prefix = f"{root.relative_to(self.out).as_posix()}/" if root != self.out else ""
        names_list = self.yolo_names(root, prefix)
        found: set[tuple[str, str]] = set()
        for split in self.splits:
            imgs = _stems(root / "images" / split, IMAGE_SUFFIXES)
            labels = _stems(root / "labels" / split, (".txt",))
            for stem in sorted(set(labels) - set(imgs)):
                self.add(f"{prefix}labels/{split}/{stem}.txt", "label file without an image")
            for stem in sorted(set(imgs) - set(labels)):
                self.add(f"{prefix}images/{split}/{imgs[stem].name}", "image without a label file")
            for stem in sorted(set(labels) & set(imgs)):
                where = f"{prefix}labels/{split}/{stem}.txt"
                size = self.size(imgs[stem])
                if size is None:
                    self.add(where, "its image is unreadable")
                    continue
                w, h = size
                exp = self.expected.get((split, stem))
                lines = [
                    ln for ln in labels[stem].read_text(encoding="utf-8").splitlines() if ln.strip()
                ]
                found.add((split, stem))
                self.expect_count(fmt, where, split, stem, len(lines))
                for i, line in enumerate(lines):
                    box = exp.boxes[i] if exp is not None and i < len(exp.boxes) else None
                    cat = exp.categories[i] if box is not None and exp is not None else None
                    self.yolo_line(f"{where}:{i + 1}", line, names_list, segment, (w, h), box, cat)
        self.missing_from(fmt, found, self.splits)

    def yolo_names(self, root: Path, prefix: str) -> list[str]:
        """The class names of ``root/data.yaml``, with its keys checked."""
        import yaml

        try:
            data = yaml.safe_load((root / "data.yaml").read_text(encoding="utf-8"))
            names = data["names"]
            names_list = (
                [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
            )
        except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
            self.add(f"{prefix}data.yaml", f"missing or unreadable ({exc})")
            names_list = list(self.categories)
            data = {}
        if self.categories and names_list != self.categories:
            self.add(f"{prefix}data.yaml", f"names {names_list} differ from {self.categories}")
        if isinstance(data, dict) and "val" not in data:
            self.add(f"{prefix}data.yaml", "has no 'val' key (ultralytics requires one)")
        for key in ("train", "val", "test"):
            value = data.get(key) if isinstance(data, dict) else None
            if not isinstance(value, str) or Path(value).is_absolute():
                continue
            if not _stems(root / value, IMAGE_SUFFIXES):
                self.add(
                    f"{prefix}data.yaml",
                    f"{key}: {value} holds no images (ultralytics stops with 'No images found')",
                )
        return names_list

    def yolo_line(
        self,
        lw: str,
        line: str,
        names_list: list[str],
        segment: bool,
        size: tuple[int, int],
        box: tuple[int, int, int, int] | None,
        cat: str | None,
    ) -> None:
        """One label line; ``box`` and ``cat``: what the manifest says it must be."""
        nc = len(names_list)
        w, h = size
        parts = line.split()
        try:
            cls = int(parts[0])
            vals = [float(v) for v in parts[1:]]
        except (ValueError, IndexError):
            self.add(lw, f"not numbers: {line!r}")
            return
        if not 0 <= cls < nc:
            self.add(lw, f"class {cls} is not in 0..{nc - 1}")
        if any(v > 1.0 for v in vals):
            self.add(lw, "coordinates above 1: labels in pixel units? (must be 0..1)")
            return
        if any(v < 0.0 for v in vals):
            self.add(lw, "negative coordinates")
            return
        if segment:
            if len(vals) % 2 or len(vals) < 6:
                self.add(lw, f"polygon with {len(vals)} coordinates (need even, >= 6)")
            return
        if len(vals) != 4:
            self.add(lw, f"{len(vals)} numbers after the class, expected 4")
            return
        cx, cy, bw, bh = vals
        if bw <= 0 or bh <= 0:
            self.add(lw, "zero or negative width/height")
            return
        if cx - bw / 2 < -1e-6 or cy - bh / 2 < -1e-6 or cx + bw / 2 > 1 + 1e-6:
            self.add(lw, "box reaches outside the image")
            return
        if box is not None:
            x1, y1, x2, y2 = box
            px = (
                (cx - bw / 2) * w,
                (cy - bh / 2) * h,
                (cx + bw / 2) * w,
                (cy + bh / 2) * h,
            )
            if max(abs(a - b) for a, b in zip(px, (x1, y1, x2, y2))) > 1.0:
                self.add(lw, f"box differs from the manifest's {[x1, y1, x2, y2]}")
            if self.categories and cat != names_list[cls % max(nc, 1)]:
                self.add(lw, f"class {cls} but the manifest says {cat!r}")

    # -- VOC ----------------------------------------------------------------------------

    def check_voc(self) -> None:
        root = self.out / "voc"
        xmls = _stems(root / "Annotations", (".xml",))
        imgs = _stems(root / "JPEGImages", IMAGE_SUFFIXES)
        for stem in sorted(set(imgs) - set(xmls)):
            self.add(f"voc/JPEGImages/{imgs[stem].name}", "image without an annotation file")
        listed: dict[str, str] = {}
        for split in self.splits:
            path = root / "ImageSets" / "Main" / f"{split}.txt"
            if not path.exists():
                self.add(f"voc/ImageSets/Main/{split}.txt", "missing")
                continue
            for name in path.read_text(encoding="utf-8").split():
                if name in listed:
                    self.add(f"voc/ImageSets/Main/{split}.txt", f"{name} also in {listed[name]}")
                listed[name] = split
                if name not in xmls:
                    self.add(f"voc/ImageSets/Main/{split}.txt", f"{name} has no annotation file")
        found: set[tuple[str, str]] = set()
        for stem, path in xmls.items():
            where = f"voc/Annotations/{path.name}"
            try:
                ann = ET.parse(path).getroot()
                fname = ann.findtext("filename") or ""
                w = int(ann.findtext("size/width") or 0)
                h = int(ann.findtext("size/height") or 0)
            except (ET.ParseError, ValueError) as exc:
                self.add(where, f"unreadable: {exc}")
                continue
            size = self.size(root / "JPEGImages" / fname)
            if size is None:
                self.add(where, f"annotation without an image (JPEGImages/{fname})")
            elif size != (w, h):
                self.add(where, f"size {w}x{h} but the image is {size[0]}x{size[1]}")
            in_split = listed.get(stem)
            if in_split is None:
                self.add(where, "not listed in any ImageSets/Main/{split}.txt")
                continue
            objs = ann.findall("object")
            found.add((in_split, stem))
            self.expect_count("voc", where, in_split, stem, len(objs))
            for i, obj in enumerate(objs):
                obj_name = obj.findtext("name")
                if self.categories and obj_name not in self.categories:
                    self.add(where, f"object {i}: name {obj_name!r} not in {self.categories}")
                try:
                    b = [
                        int(float(obj.findtext(f"bndbox/{k}") or "nan"))
                        for k in ("xmin", "ymin", "xmax", "ymax")
                    ]
                except ValueError:
                    self.add(where, f"object {i}: bndbox is not four numbers")
                    continue
                xmin, ymin, xmax, ymax = b
                if xmax < xmin or ymax < ymin:
                    self.add(where, f"object {i}: bndbox {b} has zero or negative size")
                elif xmin < 1 or ymin < 1 or xmax > w or ymax > h:
                    self.add(where, f"object {i}: bndbox {b} is outside 1..{w} x 1..{h}")
                exp = self.expected.get((in_split, stem))
                if exp is not None and i < len(exp.boxes):
                    x1, y1, x2, y2 = exp.boxes[i]
                    if b != [x1 + 1, y1 + 1, x2, y2]:
                        self.add(where, f"object {i}: bndbox {b} differs from the manifest")
        self.missing_from("voc", found, self.splits)

    # -- anomaly --------------------------------------------------------------------------

    def check_anomaly(self) -> None:
        root = self.out / "anomaly"
        if not root.is_dir():
            self.add("anomaly", "missing")
            return
        by_stem = {stem: key for key in self.expected for stem in [key[1]]}
        for sub in sorted(p for p in (root / "test").glob("*") if p.is_dir()):
            cat = sub.name
            for stem, img in _stems(sub, IMAGE_SUFFIXES).items():
                where = f"anomaly/test/{cat}/{img.name}"
                key = by_stem.get(stem)
                exp = self.expected.get(key) if key else None
                if exp is None:
                    self.add(where, "image is not in the manifest")
                mask_path = root / "ground_truth" / cat / f"{stem}_mask.png"
                if cat == "good":
                    if exp is not None and exp.boxes:
                        self.add(where, "image has defects but is in test/good")
                    continue
                m = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
                if m is None:
                    self.add(where, f"no ground-truth mask ground_truth/{cat}/{stem}_mask.png")
                    continue
                size = self.size(img)
                if size is not None and m.shape != (size[1], size[0]):
                    self.add(where, "ground-truth mask size differs from the image")
                if not (m > 0).any():
                    self.add(where, "ground-truth mask is empty")
                if exp is not None:
                    if not exp.boxes:
                        self.add(where, "defect-free image in a defect folder")
                    elif len(set(exp.categories)) == 1 and exp.categories[0] != cat:
                        self.add(where, f"category {exp.categories[0]!r} filed under {cat!r}")
        for gt in sorted((root / "ground_truth").glob("*/*_mask.png")):
            stem = gt.name[: -len("_mask.png")]
            if stem not in _stems(root / "test" / gt.parent.name, IMAGE_SUFFIXES):
                self.add(
                    f"anomaly/ground_truth/{gt.parent.name}/{gt.name}", "mask without an image"
                )
        for (split, stem), exp in sorted(self.expected.items()):
            if not exp.boxes:
                folder = "train/good" if split == "train" else "test/good"
            elif split == "train":
                continue  # defects of train sources are left out of the anomaly layout
            else:
                cats = set(exp.categories)
                folder = f"test/{cats.pop() if len(cats) == 1 else 'combined'}"
            if not any((root / folder / f"{stem}{ext}").exists() for ext in IMAGE_SUFFIXES):
                self.add("anomaly", f"manifest image {split}/{stem} is missing from {folder}/")
        good = _stems(root / "train" / "good", IMAGE_SUFFIXES)
        train_sources = {
            stem.rsplit("_", 1)[0] for split, stem in self.expected if split == "train"
        }
        for stem, img in good.items():
            if stem.endswith("_src"):
                if stem[: -len("_src")] not in train_sources:
                    self.add(f"anomaly/train/good/{img.name}", "not a source of the train split")
                continue
            key = by_stem.get(stem)
            exp = self.expected.get(key) if key else None
            if exp is None or exp.boxes:
                self.add(f"anomaly/train/good/{img.name}", "not a defect-free manifest image")
        for src in sorted(train_sources):
            if f"{src}_src" not in good:
                self.add("anomaly/train/good", f"the clean source of {src!r} is missing")
        if not good:
            self.add(
                "anomaly/train/good",
                "is empty: an anomaly model trains on clean images, and there are none "
                "(no sample in the train split?)",
            )


def validate_dataset(out: str | Path) -> ValidationReport:
    """Check the dataset in ``out``; the report lists every problem found."""
    root = Path(out)
    if not (root / "manifest.jsonl").exists() and not (root / "dataset.json").exists():
        return ValidationReport(
            str(out),
            problems=[f"{out}: not a defectsynth dataset (no manifest.jsonl)"],
            is_dataset=False,
        )
    c = _Checker(root)
    c.load_info()
    samples = c.check_manifest()
    c.check_splits()
    for fmt in c.formats:
        if fmt == "coco":
            c.check_coco()
        elif fmt == "yolo":
            c.check_yolo(root, "yolo", segment=False)
        elif fmt == "yolo-seg":
            c.check_yolo(root / "yolo-seg", "yolo-seg", segment=True)
        elif fmt == "voc":
            c.check_voc()
        elif fmt == "anomaly":
            c.check_anomaly()
    return ValidationReport(str(out), samples, list(c.formats), c.problems, c.warnings)
