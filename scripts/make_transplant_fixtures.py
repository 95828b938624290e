"""Write the defect sources the ``transplant`` generator is tested and shown with.

Real defect photographs cannot be shipped, so the "real" defects are made here with the
other built-in generators on the clean fixtures, cut to small photos (JPEG, as cameras
save them) and labeled the way teams label real ones:

    fixtures/defects/coco/   images/*.jpg, annotations.json; masks (polygons) for some
                             defects, clean aligned references (clean/) for some images,
                             boxes only for the rest: all three extraction paths
    fixtures/defects/yolo/   images/*.jpg, labels/*.txt, data.yaml: boxes only
    fixtures/defects/voc/    JPEGImages/*.jpg, Annotations/*.xml: boxes only
    defectsynth/transplant/demo/   the library used when a recipe names no source: the
                             same photos, COCO with a mask for every defect

The same photos and boxes are in all three formats (the tests check that box-only COCO,
YOLO and VOC give the same library). Deterministic: fixed seeds, no external inputs.

    python scripts/make_transplant_fixtures.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from defectsynth import Synthesizer, source_id
from defectsynth.sample import Annotation

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
DEMO = ROOT / "defectsynth" / "transplant" / "demo"
JPEG_QUALITY = 92
SIDE = (112, 144)  # (h, w) of a source photo, grown when a defect needs more


@dataclass(frozen=True)
class Shot:
    """One source photo: a fixture, the defects to put on it, and how it is labeled."""

    name: str
    fixture: str
    entries: list[dict[str, Any]]
    seed: int
    instances: int = 1
    masks: bool = False  # COCO gives polygon masks
    reference: bool = False  # COCO's clean/ holds the aligned clean photo
    centre: tuple[int, int] | None = None  # (x, y) where the defect goes, else anywhere
    extra: dict[str, Any] = field(default_factory=dict)


SHOTS = [
    Shot(
        "oil_on_brushed",
        "brushed_metal",
        [{"generator": "stain", "params": {"kind": "spot", "substance": "oil", "size": 16.0}}],
        seed=3,
        masks=True,
    ),
    Shot(
        "rust_on_flange",
        "machined_flange",
        [{"generator": "stain", "params": {"kind": "spot", "substance": "rust", "size": 14.0,
                                           "opacity": 0.8}}],
        seed=5,
        reference=True,
    ),
    Shot(
        "pits_on_strip",
        "steel_strip_gray",
        [{"generator": "pit", "params": {"count": 4, "radius": 3.5, "spread": 12.0}}],
        seed=2,
    ),
    Shot(
        "scratch_on_flange",
        "machined_flange",
        [{"generator": "scratch", "params": {"length": 60.0, "width": 2.2, "depth": 1.0,
                                             "exposure": 0.5, "micro_scratches": 0}}],
        seed=8,
        masks=True,
    ),
    Shot(
        "crack_on_flange",
        "machined_flange",
        [{"generator": "crack", "params": {"length": 60.0}}],
        seed=4,
        reference=True,
    ),
    Shot(
        "tint_on_brushed",
        "brushed_metal",
        [{"generator": "discoloration", "params": {"kind": "heat_tint", "size": 24.0,
                                                   "strength": 0.9}}],
        seed=6,
    ),
    Shot(
        "dent_on_casing",
        "painted_casing",
        [{"generator": "dent", "params": {"radius": 14.0, "depth": 0.3}}],
        seed=1,
        masks=True,
    ),
    Shot(
        "grease_and_pit_on_strip",
        "steel_strip_gray",
        [
            {"generator": "stain", "params": {"kind": "spot", "substance": "grease",
                                              "size": 10.0}},
            {"generator": "pit", "params": {"count": 1, "radius": 4.5}},
        ],
        seed=9,
        instances=2,
        reference=True,
    ),
]


def load_fixture(name: str) -> tuple[np.ndarray, np.ndarray]:
    image = cv2.imread(str(FIXTURES / "images" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
    mask = cv2.imread(str(FIXTURES / "masks" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
    if image is None or mask is None:
        raise SystemExit(f"cannot read fixture {name}")
    return image, mask


@dataclass
class Photo:
    name: str
    image: np.ndarray  # the defect photo (after JPEG)
    clean: np.ndarray  # the clean photo, same crop (after JPEG)
    annotations: list[tuple[str, tuple[int, int, int, int], np.ndarray]]  # cat, box, mask
    shot: Shot


def make_photo(shot: Shot) -> Photo:
    image, product = load_fixture(shot.fixture)
    synth = Synthesizer(shot.entries, instances=shot.instances, product_mask=product, margin=40)
    sid = source_id(f"{shot.fixture}.png")
    for seed in range(shot.seed, shot.seed + 100):
        sample = synth.apply(image, seed=seed, source_id=sid)
        if len(sample.annotations) == shot.instances and _fits(sample.annotations, image.shape):
            break
    else:
        raise SystemExit(f"{shot.name}: no seed placed {shot.instances} defects")
    x0, y0, w, h = _window(sample.annotations, image.shape[:2])
    crop = sample.image[y0 : y0 + h, x0 : x0 + w]
    clean = image[y0 : y0 + h, x0 : x0 + w]
    anns = []
    for a in sample.annotations:
        m = a.mask[y0 : y0 + h, x0 : x0 + w]
        x1, y1, x2, y2 = a.box
        anns.append((a.category, (x1 - x0, y1 - y0, x2 - x0, y2 - y0), m))
    return Photo(shot.name, _jpeg(crop), _jpeg(clean), anns, shot)


def _fits(anns: list[Annotation], shape: tuple[int, ...]) -> bool:
    h, w = shape[:2]
    return all(a.box[0] >= 12 and a.box[1] >= 12 and a.box[2] <= w - 12 and a.box[3] <= h - 12
               for a in anns)


def _window(anns: list[Annotation], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, w, h): a photo of at least SIDE around every defect, 12+ px of surface
    around each."""
    H, W = shape
    x1 = min(a.box[0] for a in anns) - 12
    y1 = min(a.box[1] for a in anns) - 12
    x2 = max(a.box[2] for a in anns) + 12
    y2 = max(a.box[3] for a in anns) + 12
    h = max(SIDE[0], y2 - y1)
    w = max(SIDE[1], x2 - x1)
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    x0 = int(np.clip(cx - w // 2, 0, W - w))
    y0 = int(np.clip(cy - h // 2, 0, H - h))
    return x0, y0, w, h


def _jpeg(img: np.ndarray) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    assert ok
    out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return out


def _write_jpeg(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # the decoded JPEG re-encoded at the same quality: stable bytes, the pixels we labeled
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    assert ok
    path.write_bytes(buf.tobytes())


def _polygons(mask: np.ndarray) -> list[list[float]]:
    """Outer contours in COCO's continuous coordinates (pixel centres + 0.5)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in contours:
        pts = c.reshape(-1, 2).astype(float) + 0.5
        if len(pts) >= 3:
            out.append([round(float(v), 2) for v in pts.ravel()])
    return out


def categories(photos: list[Photo]) -> list[str]:
    seen: dict[str, None] = {}
    for p in photos:
        for cat, _, _ in p.annotations:
            seen.setdefault(cat, None)
    return list(seen)


def write_coco(out: Path, photos: list[Photo], *, masks: str) -> None:
    """``masks``: "some" (the shots that ask), "all" or "none"; "some" also writes the
    clean references of the shots that ask."""
    cats = categories(photos)
    doc: dict[str, Any] = {"images": [], "annotations": [], "categories": [
        {"id": i + 1, "name": c, "supercategory": "defect"} for i, c in enumerate(cats)
    ]}
    for i, p in enumerate(photos, 1):
        fn = f"{p.name}.jpg"
        _write_jpeg(out / "images" / fn, p.image)
        h, w = p.image.shape[:2]
        doc["images"].append({"id": i, "file_name": fn, "width": w, "height": h})
        if masks == "some" and p.shot.reference:
            _write_jpeg(out / "clean" / fn, p.clean)
        for cat, (x1, y1, x2, y2), m in p.annotations:
            ann: dict[str, Any] = {
                "id": len(doc["annotations"]) + 1,
                "image_id": i,
                "category_id": cats.index(cat) + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": 0,
            }
            if masks == "all" or (masks == "some" and p.shot.masks):
                ann["segmentation"] = _polygons(m)
                ann["area"] = int(m.sum())
            doc["annotations"].append(ann)
    (out / "annotations.json").write_text(json.dumps(doc, indent=1) + "\n")


def write_yolo(out: Path, photos: list[Photo]) -> None:
    cats = categories(photos)
    for p in photos:
        _write_jpeg(out / "images" / f"{p.name}.jpg", p.image)
        h, w = p.image.shape[:2]
        lines = []
        for cat, (x1, y1, x2, y2), _ in p.annotations:
            lines.append(
                f"{cats.index(cat)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} "
                f"{(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
            )
        (out / "labels").mkdir(parents=True, exist_ok=True)
        (out / "labels" / f"{p.name}.txt").write_text("\n".join(lines) + "\n")
    names = "\n".join(f"  {i}: {c}" for i, c in enumerate(cats))
    (out / "data.yaml").write_text(f"path: .\ntrain: images\nval: images\nnames:\n{names}\n")


def write_voc(out: Path, photos: list[Photo]) -> None:
    for p in photos:
        fn = f"{p.name}.jpg"
        _write_jpeg(out / "JPEGImages" / fn, p.image)
        h, w = p.image.shape[:2]
        ann = ET.Element("annotation")
        ET.SubElement(ann, "folder").text = "JPEGImages"
        ET.SubElement(ann, "filename").text = fn
        size = ET.SubElement(ann, "size")
        for tag, v in (("width", w), ("height", h), ("depth", 1 if p.image.ndim == 2 else 3)):
            ET.SubElement(size, tag).text = str(v)
        ET.SubElement(ann, "segmented").text = "0"
        for cat, (x1, y1, x2, y2), _ in p.annotations:
            obj = ET.SubElement(ann, "object")
            ET.SubElement(obj, "name").text = cat
            ET.SubElement(obj, "difficult").text = "0"
            bb = ET.SubElement(obj, "bndbox")
            for tag, v in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
                ET.SubElement(bb, tag).text = str(v)
        ET.indent(ann, space="  ")
        (out / "Annotations").mkdir(parents=True, exist_ok=True)
        (out / "Annotations" / f"{p.name}.xml").write_bytes(ET.tostring(ann) + b"\n")


def library_sheet(source: Path) -> np.ndarray:
    """Every defect of the library of ``source``: its photo crop at 3x with the extracted
    mask outlined, captioned with its category and how the mask was found."""
    from defectsynth.transplant import build_library

    lib = build_library(source)
    cells = []
    side = 168
    for e in lib.entries:
        px = np.clip(np.rint(e.pixels * 255), 0, 255).astype(np.uint8)
        if px.shape[2] == 1:
            px = cv2.cvtColor(px, cv2.COLOR_GRAY2BGR)
        f = min(3.0, (side - 24) / max(e.shape))
        big = cv2.resize(px, None, fx=f, fy=f, interpolation=cv2.INTER_NEAREST)
        m = cv2.resize(e.mask.astype(np.uint8), (big.shape[1], big.shape[0]),
                       interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(big, contours, -1, (0, 220, 255), 1, cv2.LINE_AA)
        cell = np.full((side, side, 3), 255, np.uint8)
        y, x = (side - 18 - big.shape[0]) // 2 + 18, (side - big.shape[1]) // 2
        cell[y : y + big.shape[0], x : x + big.shape[1]] = big
        cv2.putText(cell, f"{e.category} ({e.method})", (4, 13), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cells.append(cell)
    gap = np.full((side, 4, 3), 255, np.uint8)
    row: list[np.ndarray] = []
    for c in cells:
        row += [c, gap]
    return np.hstack(row[:-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(FIXTURES / "defects"))
    ap.add_argument("--demo", default=str(DEMO))
    ap.add_argument(
        "--sheet",
        default=str(ROOT / "docs" / "gallery" / "transplant_library.png"),
        help="picture of the extracted COCO library ('' for none)",
    )
    args = ap.parse_args()
    photos = [make_photo(s) for s in SHOTS]
    out = Path(args.out)
    for sub in ("coco", "yolo", "voc"):
        shutil.rmtree(out / sub, ignore_errors=True)
    write_coco(out / "coco", photos, masks="some")
    write_yolo(out / "yolo", photos)
    write_voc(out / "voc", photos)
    demo = Path(args.demo)
    demo.mkdir(parents=True, exist_ok=True)
    for sub in ("images", "annotations.json"):
        p = demo / sub
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    write_coco(demo, photos, masks="all")
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    total_demo = sum(f.stat().st_size for f in demo.rglob("*") if f.is_file())
    print(f"{len(photos)} photos, {sum(len(p.annotations) for p in photos)} defects; "
          f"{out}: {total / 1024:.0f} KiB, {demo}: {total_demo / 1024:.0f} KiB")
    if args.sheet:
        sheet = library_sheet(out / "coco")
        cv2.imwrite(args.sheet, sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(f"{args.sheet}  {sheet.shape[1]}x{sheet.shape[0]}")

if __name__ == "__main__":
    main()
