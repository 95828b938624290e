"""The ``transplant`` generator and its defect libraries (defectsynth.transplant)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import defectsynth.transplant.library as library_mod
from defectsynth import GeneratorFailure, Layer, Synthesizer, param
from defectsynth.build import load_recipe
from defectsynth.cli import cli
from defectsynth.defects.transplant import SEVERITY_FLOOR, TransplantGenerator
from defectsynth.errors import RecipeError
from defectsynth.generator import DefectGenerator, Region
from defectsynth.testing import check_generator, test_surface
from defectsynth.textures import bgr_to_lab
from defectsynth.transplant import (
    DEMO_SOURCE,
    Library,
    LibraryEntry,
    SourceError,
    build_library,
    forget_libraries,
    load_library,
    read_source,
)
from defectsynth.transplant.sources import decode_coco_rle, voc_palette

ROOT = Path(__file__).resolve().parents[1]
DEFECTS = ROOT / "fixtures" / "defects"
RECIPE = ROOT / "fixtures" / "recipes" / "transplant.yaml"


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own empty library cache and forgets what earlier ones loaded."""
    d = tmp_path / "cache"
    monkeypatch.setenv("DEFECTSYNTH_CACHE_DIR", str(d))
    forget_libraries()
    yield d
    forget_libraries()


# -- synthetic sources with a known true mask ------------------------------------------------


def synthetic(kind: str, channels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(defect image, clean image, true mask), uint8: a textured, shaded surface with a
    dark irregular blob or a bright curved scratch alpha-blended onto it with soft edges;
    the true mask is where the blend weight is at least 0.5."""
    rng = np.random.default_rng(seed)
    clean = test_surface((160, 192), channels=max(channels, 3), seed=seed).astype(np.float32)
    clean /= 255.0
    h, w = clean.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "blob":
        n = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 6)
        r = np.hypot((xx - 96) / 28, (yy - 80) / 20) + 0.25 * n / n.std()
        alpha = np.clip((1 - r) / 0.06 + 0.5, 0, 1)
        colour = np.array([0.20, 0.25, 0.45], np.float32)  # rust-brown, BGR
    else:
        d = np.abs(yy - 80 - 0.004 * (xx - 96) ** 2)
        alpha = np.clip(2.0 - d, 0, 1) * ((xx > 40) & (xx < 150))
        colour = np.array([0.85, 0.85, 0.85], np.float32)
    defect = clean * (1 - alpha[:, :, None]) + colour * alpha[:, :, None]
    defect = np.clip(defect + rng.normal(0, 0.01, defect.shape), 0, 1)

    def u8(a: np.ndarray) -> np.ndarray:
        out = np.rint(a * 255).astype(np.uint8)
        return cv2.cvtColor(out, cv2.COLOR_BGR2GRAY) if channels == 1 else out

    return u8(defect), u8(clean), alpha >= 0.5


def write_coco(
    folder: Path,
    image: np.ndarray,
    true: np.ndarray,
    *,
    mask: bool = False,
    reference: np.ndarray | None = None,
    category: str = "flaw",
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    cv2.imwrite(str(folder / "images" / "p.png"), image)
    ys, xs = np.nonzero(true)
    x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    ann: dict[str, Any] = {
        "id": 1,
        "image_id": 1,
        "category_id": 1,
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "iscrowd": 0,
    }
    if mask:
        contours, _ = cv2.findContours(
            true.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        ann["segmentation"] = [(c.reshape(-1, 2) + 0.5).ravel().tolist() for c in contours]
    if reference is not None:
        (folder / "clean").mkdir(exist_ok=True)
        cv2.imwrite(str(folder / "clean" / "p.png"), reference)
    h, w = image.shape[:2]
    doc = {
        "images": [{"id": 1, "file_name": "p.png", "width": w, "height": h}],
        "annotations": [ann],
        "categories": [{"id": 1, "name": category}],
    }
    (folder / "annotations.json").write_text(json.dumps(doc))


def entry_mask(entry: LibraryEntry, shape: tuple[int, int]) -> np.ndarray:
    full = np.zeros(shape, bool)
    x0, y0 = entry.origin
    h, w = entry.shape
    full[y0 : y0 + h, x0 : x0 + w] = entry.mask
    return full


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.mark.parametrize("path", ["label", "reference", "box"])
@pytest.mark.parametrize("kind", ["blob", "scratch"])
@pytest.mark.parametrize("channels", [3, 1])
def test_extraction_recovers_the_true_mask(
    path: str, kind: str, channels: int, tmp_path: Path
) -> None:
    image, clean, true = synthetic(kind, channels)
    write_coco(
        tmp_path / "src",
        image,
        true,
        mask=path == "label",
        reference=clean if path == "reference" else None,
    )
    lib = build_library(tmp_path / "src")
    assert len(lib) == 1 and lib.categories == ("flaw",)
    entry = lib.entries[0]
    assert entry.method == path
    score = iou(entry_mask(entry, true.shape), true)
    print(f"IoU {path} {kind} {channels}ch {score:.3f}", end=" ")  # shown with -s
    assert score >= 0.8, f"{path} path, {kind}, {channels} ch: IoU {score:.3f}"


def test_the_level_of_the_source_surface_is_recorded(tmp_path: Path) -> None:
    image, clean, true = synthetic("blob", 3)
    write_coco(tmp_path / "src", image, true, reference=clean)
    entry = build_library(tmp_path / "src").entries[0]
    under = clean[true].astype(np.float32) / 255
    assert np.allclose(entry.level, np.median(under, axis=0), atol=0.01)
    assert 2.0 <= entry.texture_scale <= 256.0


# -- formats ---------------------------------------------------------------------------------


def _same(a: Library, b: Library) -> None:
    assert len(a) == len(b)
    assert set(a.categories) == set(b.categories)
    for x, y in zip(a.entries, b.entries):
        assert (x.category, x.box, x.method, x.origin) == (y.category, y.box, y.method, y.origin)
        assert np.array_equal(x.pixels, y.pixels) and np.array_equal(x.mask, y.mask)
        assert x.level == y.level and x.texture_scale == y.texture_scale


def test_box_only_coco_yolo_and_voc_give_the_same_library(tmp_path: Path) -> None:
    coco = tmp_path / "coco"
    shutil.copytree(DEFECTS / "coco" / "images", coco / "images")
    doc = json.loads((DEFECTS / "coco" / "annotations.json").read_text())
    for a in doc["annotations"]:
        a.pop("segmentation", None)
    (coco / "annotations.json").write_text(json.dumps(doc))
    libs = {
        "coco": build_library(coco, "coco"),
        "yolo": build_library(DEFECTS / "yolo", "yolo"),
        "voc": build_library(DEFECTS / "voc", "voc"),
    }
    assert len(libs["coco"]) == 9
    assert {e.method for e in libs["coco"].entries} == {"box"}
    _same(libs["coco"], libs["yolo"])
    _same(libs["coco"], libs["voc"])
    # auto-detection finds each format
    for name in ("yolo", "voc"):
        assert read_source(DEFECTS / name).format == name


def test_a_voc_filename_without_its_extension_finds_its_image(tmp_path: Path) -> None:
    """NEU-DET (and other VOC exports) write <filename>crazing_1</filename> for
    crazing_1.jpg: every such defect must still be read, as with the full name."""
    src = tmp_path / "voc"
    shutil.copytree(DEFECTS / "voc", src)
    for xml in (src / "Annotations").glob("*.xml"):
        text = xml.read_text()
        stripped = text.replace(".jpg</filename>", "</filename>")
        assert stripped != text
        xml.write_text(stripped)
    bare, full = read_source(src, "voc"), read_source(DEFECTS / "voc", "voc")
    assert not bare.skipped, bare.skipped
    assert [(d.image, d.category, d.box) for d in bare.defects] == [
        (d.image, d.category, d.box) for d in full.defects
    ]
    assert len(bare.defects) == 9
    # the images converted to PNG after labelling: the xml still says .jpg
    other = tmp_path / "png"
    shutil.copytree(DEFECTS / "voc" / "Annotations", other / "Annotations")
    (other / "JPEGImages").mkdir()
    for jpg in (DEFECTS / "voc" / "JPEGImages").glob("*.jpg"):
        cv2.imwrite(str(other / "JPEGImages" / f"{jpg.stem}.PNG"), cv2.imread(str(jpg)))
    converted = read_source(other, "voc")
    assert not converted.skipped, converted.skipped
    assert [(Path(d.image).stem, d.box) for d in converted.defects] == [
        (Path(d.image).stem, d.box) for d in full.defects
    ]
    assert all(d.image.endswith(".PNG") for d in converted.defects)


def test_a_coco_file_name_with_another_extension_finds_the_converted_image(
    tmp_path: Path,
) -> None:
    """COCO's file_name still says .jpg after the images were converted to .png: every
    defect is read, from the converted files."""
    src = tmp_path / "coco"
    shutil.copytree(DEFECTS / "coco", src)
    for jpg in (src / "images").glob("*.jpg"):
        cv2.imwrite(str(jpg.with_suffix(".png")), cv2.imread(str(jpg)))
        jpg.unlink()
    converted, full = read_source(src, "coco"), read_source(DEFECTS / "coco", "coco")
    assert not converted.skipped, converted.skipped
    assert len(converted.defects) == len(full.defects) == 9
    assert [(Path(d.image).stem, d.category, d.box) for d in converted.defects] == [
        (Path(d.image).stem, d.category, d.box) for d in full.defects
    ]
    assert all(d.image.endswith(".png") for d in converted.defects)


def test_the_fixture_coco_source_uses_every_extraction_path() -> None:
    lib = build_library(DEFECTS / "coco")
    assert {e.method for e in lib.entries} == {"label", "reference", "box"}
    assert lib.categories == ("stain", "pit", "scratch", "crack", "discoloration", "dent")


def test_yolo_seg_polygons_and_voc_instance_masks_are_label_masks(tmp_path: Path) -> None:
    image, _, true = synthetic("blob", 3)
    h, w = true.shape
    contours, _ = cv2.findContours(true.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    pts = (contours[0].reshape(-1, 2) + 0.5) / [w, h]
    yolo = tmp_path / "yolo"
    (yolo / "images").mkdir(parents=True)
    (yolo / "labels").mkdir()
    cv2.imwrite(str(yolo / "images" / "p.jpg"), image)
    coords = " ".join(f"{v:.6f}" for v in pts.ravel())
    (yolo / "labels" / "p.txt").write_text(f"0 {coords}\n")
    (yolo / "classes.txt").write_text("blob\n")
    entry = build_library(yolo).entries[0]
    assert entry.method == "label" and entry.category == "blob"
    assert iou(entry_mask(entry, true.shape), true) > 0.97

    voc = tmp_path / "voc"
    for d in ("Annotations", "JPEGImages", "SegmentationObject"):
        (voc / d).mkdir(parents=True)
    cv2.imwrite(str(voc / "JPEGImages" / "p.jpg"), image)
    ys, xs = np.nonzero(true)
    (voc / "Annotations" / "p.xml").write_text(
        "<annotation><filename>p.jpg</filename>"
        f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
        "<object><name>blob</name><bndbox>"
        f"<xmin>{xs.min() + 1}</xmin><ymin>{ys.min() + 1}</ymin>"
        f"<xmax>{xs.max() + 1}</xmax><ymax>{ys.max() + 1}</ymax>"
        "</bndbox></object></annotation>"
    )
    # a palette-coloured instance PNG, as VOC ships them (instance 1 = palette colour 1)
    seg = np.zeros((h, w, 3), np.uint8)
    seg[true] = voc_palette()[1][::-1]
    cv2.imwrite(str(voc / "SegmentationObject" / "p.png"), seg)
    entry = build_library(voc).entries[0]
    assert entry.method == "label"
    assert np.array_equal(entry_mask(entry, true.shape), true)


def test_image_and_mask_folders_are_sources_with_exact_masks(tmp_path: Path) -> None:
    """The layouts ``score`` reads are transplant sources too: ``images/`` + ``masks/``
    (category from the sub-folder) and MVTec AD (``test/good`` left out). Each part of a
    mask is one defect, its mask the part itself, pixel for pixel."""
    image, _, true = synthetic("blob", 3)
    h, w = true.shape
    second = np.zeros_like(true)
    second[10:16, 8:40] = True  # a second defect, far from the blob
    both = true | second
    flat = tmp_path / "flat"
    (flat / "images" / "rust").mkdir(parents=True)
    (flat / "masks" / "rust").mkdir(parents=True)
    cv2.imwrite(str(flat / "images" / "rust" / "p.jpg"), image)
    cv2.imwrite(str(flat / "masks" / "rust" / "p.png"), both.astype(np.uint8) * 255)
    mvtec = tmp_path / "mvtec"
    for d in ("test/rust", "test/good", "ground_truth/rust", "train/good"):
        (mvtec / d).mkdir(parents=True)
    cv2.imwrite(str(mvtec / "test" / "rust" / "000.png"), image)
    cv2.imwrite(str(mvtec / "ground_truth" / "rust" / "000_mask.png"),
                both.astype(np.uint8) * 255)
    cv2.imwrite(str(mvtec / "test" / "good" / "000.png"), image)
    cv2.imwrite(str(mvtec / "train" / "good" / "000.png"), image)
    for folder in (flat, mvtec):
        listing = read_source(folder)
        assert listing.format == "masks" and listing.categories == ["rust"]
        assert len(listing.defects) == 2, listing.defects
        lib = build_library(folder)
        masks = sorted((entry_mask(e, (h, w)) for e in lib.entries), key=lambda m: m.sum())
        assert np.array_equal(masks[0], second) and np.array_equal(masks[1], true)
        assert all(e.method == "label" and e.category == "rust" for e in lib.entries)
    assert read_source(flat, "masks").format == "masks"
    with pytest.raises(SourceError, match="no VOC labels"):
        read_source(flat, "voc")


def test_a_mask_that_does_not_fit_its_image_is_skipped_with_its_name(tmp_path: Path) -> None:
    image, _, true = synthetic("blob", 3)
    folder = tmp_path / "src"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    cv2.imwrite(str(folder / "images" / "a.png"), image)
    cv2.imwrite(str(folder / "masks" / "a.png"), true.astype(np.uint8) * 255)
    cv2.imwrite(str(folder / "images" / "b.png"), image)
    cv2.imwrite(str(folder / "masks" / "b.png"), np.full((20, 30), 255, np.uint8))
    cv2.imwrite(str(folder / "images" / "c.png"), image)
    (folder / "masks" / "c.png").write_bytes(b"not a png")
    listing = read_source(folder)
    assert [d.image for d in listing.defects] == ["images/a.png"]
    assert any("masks/b.png" in s and "30x20" in s for s in listing.skipped), listing.skipped
    assert any("masks/c.png" in s and "cannot read the mask" in s for s in listing.skipped)


def gray_alpha_png(a: np.ndarray) -> bytes:
    """A PNG of colour type 4 (gray + alpha, 8 bits) from an (h, w, 2) uint8 array."""
    h, w = a.shape[:2]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    rows = b"".join(b"\x00" + row.tobytes() for row in a)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 4, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_a_mask_with_an_alpha_channel_is_read_by_its_colour(tmp_path: Path) -> None:
    """An opaque alpha channel is not a defect: only the mask's colour counts (BGRA and
    gray + alpha PNGs)."""
    image, _, true = synthetic("blob", 3)
    h, w = true.shape
    for name, mask in (
        ("bgra", np.dstack([np.repeat(true[:, :, None], 3, axis=2).astype(np.uint8) * 255,
                            np.full((h, w), 255, np.uint8)])),
        ("gray_alpha", np.dstack([true.astype(np.uint8) * 255, np.full((h, w), 255, np.uint8)])),
    ):
        folder = tmp_path / name
        (folder / "images").mkdir(parents=True)
        (folder / "masks").mkdir()
        cv2.imwrite(str(folder / "images" / "p.png"), image)
        if mask.shape[2] == 2:  # OpenCV writes no gray + alpha PNG
            (folder / "masks" / "p.png").write_bytes(gray_alpha_png(mask))
        else:
            cv2.imwrite(str(folder / "masks" / "p.png"), mask)
        (d,) = read_source(folder).defects
        ys, xs = np.nonzero(true)
        assert d.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), name
        assert np.array_equal(decode_coco_rle(d.rle), true), name


def test_a_folder_of_clean_images_with_product_masks_is_not_read_as_defects(
    tmp_path: Path,
) -> None:
    """A recipe's inputs (images/ + masks/ of whole products) look like a mask folder:
    each product covers most of its image, so it is left out with the reason."""
    src = tmp_path / "inputs"
    shutil.copytree(ROOT / "fixtures" / "images", src / "images")
    shutil.copytree(ROOT / "fixtures" / "masks", src / "masks")
    with pytest.raises(SourceError, match="product mask rather than a defect"):
        read_source(src)


def test_compressed_coco_rle() -> None:
    mask_api = pytest.importorskip("pycocotools.mask")
    _, _, true = synthetic("blob", 3)
    rle = mask_api.encode(np.asfortranarray(true.astype(np.uint8)))
    assert np.array_equal(decode_coco_rle(rle), true)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "does not exist"),
        ("empty", "no COCO, YOLO or VOC labels"),
        ("wrong_format", "no YOLO labels"),
    ],
)
def test_unusable_sources_say_why(setup: str, message: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    if setup != "missing":
        src.mkdir()
    if setup == "wrong_format":
        shutil.copytree(DEFECTS / "voc", src, dirs_exist_ok=True)
    fmt = "yolo" if setup == "wrong_format" else "auto"
    with pytest.raises(SourceError, match=message):
        load_library(src, fmt)


# -- the cache -------------------------------------------------------------------------------


def test_extraction_runs_once_per_source(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    shutil.copytree(DEFECTS / "voc", src)
    first = load_library(src)
    files = sorted(p.name for p in (cache / "transplant").glob("*.npz"))
    assert len(files) == 1 and files[0].startswith(first.content_hash[:32])
    assert not [p for p in cache.rglob("*") if ".tmp" in p.name]  # atomic writes

    forget_libraries()

    def no_extraction(*args: Any, **kwargs: Any) -> Library:
        raise AssertionError("extracted again")

    monkeypatch.setattr(library_mod, "build_library", no_extraction)
    again = load_library(src)
    _same(first, again)
    # a copy of the folder elsewhere has the same content: same cache file
    forget_libraries()
    copy = tmp_path / "copy"
    shutil.copytree(src, copy)
    assert load_library(copy).content_hash == first.content_hash
    # a changed label file is new content: extracted again
    forget_libraries()
    xml = src / "Annotations" / "oil_on_brushed.xml"
    xml.write_text(xml.read_text().replace("<name>stain</name>", "<name>oil</name>"))
    monkeypatch.undo()
    changed = load_library(src)
    assert changed.content_hash != first.content_hash and "oil" in changed.categories


def test_a_damaged_cache_file_is_replaced(cache: Path, tmp_path: Path) -> None:
    first = load_library(DEFECTS / "yolo")
    (path,) = (cache / "transplant").glob("*.npz")
    path.write_bytes(b"not a library")
    forget_libraries()
    _same(first, load_library(DEFECTS / "yolo"))
    assert path.read_bytes()[:2] == b"PK"  # a zip (npz) again


def test_the_cache_can_be_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DEFECTSYNTH_CACHE_DIR", "off")
    lib = load_library(DEFECTS / "voc")
    assert len(lib) == 9
    assert not list(tmp_path.rglob("*.npz"))


def test_what_a_process_uses_is_what_the_cache_holds(cache: Path) -> None:
    """The process that extracts and a worker that reads the cache render the same
    bytes: the extracting process uses the cache's representation too."""
    built = load_library(DEFECTS / "coco")
    forget_libraries()
    read = load_library(DEFECTS / "coco")
    _same(built, read)


# -- the generator ---------------------------------------------------------------------------


def fixture_generator(folder: str, kind: str) -> type[TransplantGenerator]:
    """A transplant generator whose default source is a fixture folder (for the
    conformance suite, which runs generators with their defaults)."""

    class FixtureTransplant(TransplantGenerator):
        name = f"transplant_{kind}"

        @dataclass(frozen=True)
        class Params(TransplantGenerator.Params):
            source: str = param(str(DEFECTS / folder), doc="fixture source")
            format: str = param(kind, choices=(kind,), doc="its format")

    return FixtureTransplant


def test_conformance_with_the_demo_library() -> None:
    check_generator(TransplantGenerator)


@pytest.mark.parametrize(("source", "fmt"), [("coco", "coco"), ("voc", "voc")])
def test_conformance_with_fixture_sources(source: str, fmt: str) -> None:
    check_generator(fixture_generator(source, fmt), seeds=(0, 1))


def _region(pixels: np.ndarray) -> Region:
    from defectsynth.generator import Light

    px = np.ascontiguousarray(pixels, np.float32)
    px.flags.writeable = False
    pm = np.ones(px.shape[:2], np.float32)
    pm.flags.writeable = False
    return Region(px, pm, Light(30.0, 45.0), 8.0)


def _render(params: dict[str, Any], surface: np.ndarray | float, channels: int = 3) -> Any:
    gen = TransplantGenerator()
    p = TransplantGenerator.Params(**params)
    h, w = gen.extent(p, np.random.default_rng(0))
    if isinstance(surface, float):
        px = np.full((h, w, channels), surface, np.float32)
    else:
        px = cv2.resize(surface, (w, h))
        px = px if px.ndim == 3 else px[:, :, None]
    layer = gen.render(_region(px), p, np.random.default_rng(0))
    return px, layer


def test_render_is_clean_and_carries_the_source_category() -> None:
    demo = load_library("")
    for i, entry in enumerate(demo.entries):
        pick = (i + 0.5) / len(demo)
        for channels in (1, 3):
            px, layer = _render({"pick": pick, "rotation": 25.0, "flip": True}, 0.5, channels)
            assert layer.category == entry.category
            assert layer.pixels.shape == px.shape and layer.pixels.dtype == np.float32
            assert 0 <= layer.pixels.min() and layer.pixels.max() <= 1
            outside = layer.coverage == 0
            assert np.array_equal(layer.pixels[outside], px[outside])
            edge = np.concatenate([layer.coverage[:3].ravel(), layer.coverage[-3:].ravel(),
                                   layer.coverage[:, :3].ravel(), layer.coverage[:, -3:].ravel()])
            assert edge.max() == 0, "coverage must stay clear of the region border (Poisson)"
            # the label is the defect's mask, scaled and turned
            area = int((layer.coverage >= 0.5).sum())
            assert 0.6 * entry.mask.sum() < area < 1.6 * entry.mask.sum()


@pytest.mark.parametrize("level", [0.25, 0.75])
def test_a_dark_defect_keeps_its_ratio_to_the_destination_level(level: float) -> None:
    """Match: a stain that halves its source surface halves any destination."""
    demo = load_library("")
    k = next(i for i, e in enumerate(demo.entries) if e.category == "pit")
    entry = demo.entries[k]
    pick = (k + 0.5) / len(demo)
    _, layer = _render({"pick": pick, "scale": 1.0, "rotation": 0.0}, level)
    inside = layer.coverage >= 0.5
    src = entry.pixels[entry.mask].mean(axis=0) / np.asarray(entry.level)
    got = layer.pixels[inside].mean(axis=0) / level
    assert np.allclose(got.mean(), src.mean(), rtol=0.15)


def test_the_destination_texture_shows_through() -> None:
    stripes = 0.5 + 0.15 * np.sign(np.sin(np.arange(256) / 2.0))
    surface = np.tile(stripes.astype(np.float32), (256, 1))
    demo = load_library("")
    k = next(i for i, e in enumerate(demo.entries) if e.category == "stain")
    px, layer = _render({"pick": (k + 0.5) / len(demo)}, np.dstack([surface] * 3))
    inside = layer.coverage >= 0.5
    a = px[:, :, 1][inside]
    b = layer.pixels[:, :, 1][inside]
    assert np.corrcoef(a, b)[0, 1] > 0.8  # the stripes under the stain are still there


def test_transplants_are_seamless_on_the_fixtures() -> None:
    """Right outside an instance's mask the composite differs from the clean image by
    little more than the feathered fade of the defect's own fringe: no halo."""
    for name in ("brushed_metal", "painted_casing", "machined_flange"):
        image = cv2.imread(str(ROOT / "fixtures" / "images" / f"{name}.png"))
        synth = Synthesizer([{"generator": "transplant", "params": {"blend": "poisson"}}],
                            instances=3)
        sample = synth.apply(image, seed=5)
        assert sample.annotations
        for a in sample.annotations:
            m = a.mask.astype(np.uint8)
            k = np.ones((3, 3), np.uint8)
            ring = (cv2.dilate(m, k, iterations=6) > 0) & ~(cv2.dilate(m, k, iterations=3) > 0)
            diff = cv2.absdiff(sample.image, image).max(axis=2)
            halo = float(diff[ring].mean())
            print(f"{name} ring {halo:.2f}", end=" ")  # shown with -s
            assert halo < 2, f"{name}: halo {halo:.1f} grey levels"


# -- categories ------------------------------------------------------------------------------


def test_categories_come_from_the_source_and_can_be_renamed() -> None:
    src = str(DEFECTS / "coco")
    synth = Synthesizer([{"generator": "transplant", "params": {"source": src}}])
    assert synth.categories == ["stain", "pit", "scratch", "crack", "discoloration", "dent"]
    renamed = Synthesizer(
        [
            {
                "generator": "transplant",
                "params": {"source": src},
                "category": {"discoloration": "heat_tint", "stain": "contamination"},
            },
            {"generator": "scratch"},
        ]
    )
    assert renamed.categories == ["contamination", "pit", "scratch", "crack", "heat_tint",
                                  "dent"]
    one = Synthesizer([{"generator": "transplant", "params": {"source": src},
                        "category": "real"}])
    assert one.categories == ["real"]
    image = test_surface((256, 256))
    cats = {a.category for v in range(6) for a in renamed.apply(image, variant=v).annotations}
    assert cats and cats <= set(renamed.categories)


def test_recipe_errors_name_the_key(tmp_path: Path) -> None:
    def recipe(defect: str) -> Path:
        p = tmp_path / "r.yaml"
        p.write_text(f"inputs: {{images: {ROOT / 'fixtures' / 'images'}}}\ndefects:\n{defect}")
        return p

    with pytest.raises(RecipeError, match=r"defects\[0\]\.params\.source: .*does not exist"):
        load_recipe(recipe("  - {generator: transplant, params: {source: nowhere}}\n"))
    with pytest.raises(RecipeError, match=r"defects\[0\]\.category: .*no category 'scrach'"):
        load_recipe(recipe(f"  - generator: transplant\n    params: {{source: {DEFECTS}/voc}}"
                           "\n    category: {scrach: x}\n"))
    with pytest.raises(RecipeError, match=r"defects\[0\]\.category\.stain: .*reserved"):
        load_recipe(recipe("  - generator: transplant\n    category: {stain: good}\n"))


def test_a_layer_category_the_generator_did_not_declare_is_an_error() -> None:
    class Liar(DefectGenerator):
        name = "liar"

        @dataclass(frozen=True)
        class Params:
            pass

        def extent(self, params: Any, rng: np.random.Generator) -> tuple[int, int]:
            return 16, 16

        def render(self, region: Region, params: Any, rng: np.random.Generator) -> Layer:
            cov = np.zeros(region.shape, np.float32)
            cov[4:12, 4:12] = 1
            return Layer(np.zeros_like(region.pixels), cov, "undeclared")

    synth = Synthesizer([{"generator": Liar}], instances=1)
    with pytest.raises(GeneratorFailure, match="'undeclared' is not one of its categories"):
        synth.apply(test_surface((64, 64)))


# -- the dataset run -------------------------------------------------------------------------


def test_generate_then_validate(tmp_path: Path) -> None:
    out = tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(cli, ["generate", str(RECIPE), "-o", str(out), "--workers", "1"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["validate", str(out)])
    assert res.exit_code == 0, res.output
    info = json.loads((out / "dataset.json").read_text())
    assert "heat_tint" in info["categories"] and "stain" in info["categories"]
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    gens = {a["generator"] for r in records for a in r["annotations"]}
    assert gens == {"transplant"}


def test_the_demo_library_ships_with_the_package() -> None:
    assert (DEMO_SOURCE / "annotations.json").is_file()
    lib = load_library("")
    assert len(lib) == 9 and {e.method for e in lib.entries} == {"label"}


# -- variation -------------------------------------------------------------------------------

NEUTRAL: dict[str, Any] = {
    "warp": 0.0, "stretch_along": 1.0, "stretch_across": 1.0, "severity": 1.0, "recolor": 0.0,
    "denoise": 0.0, "cut_fade": 0.0,
}


def _fixture(name: str) -> np.ndarray:
    image = cv2.imread(str(ROOT / "fixtures" / "images" / f"{name}.png"))
    assert image is not None
    return image


def _golden_renders() -> str:
    """sha256 over renders of every demo entry, gray and colour, on a patterned surface."""
    gen = TransplantGenerator()
    h = hashlib.sha256()
    extras: tuple[dict[str, Any], ...] = (
        {}, {"scale": 0.7, "rotation": 25.0, "flip": True},
        {"scale": 1.3, "rotation": -10.0, "match": 0.5},
    )
    for i in range(9):
        for ch in (1, 3):
            for extra in extras:
                p = TransplantGenerator.Params(pick=(i + 0.5) / 9, **extra, **NEUTRAL)
                eh, ew = gen.extent(p, np.random.default_rng(0))
                yy, xx = np.mgrid[0:eh, 0:ew].astype(np.float32)
                px = (0.4 + 0.1 * np.sin(xx / 3.0)[:, :, None]
                      + 0.05 * np.cos(yy / 5.0)[:, :, None]
                      * np.arange(1, ch + 1, dtype=np.float32))
                layer = gen.render(_region(px), p, np.random.default_rng(0))
                h.update(layer.pixels.tobytes())
                h.update(layer.coverage.tobytes())
    return h.hexdigest()


def test_neutral_variation_gives_exactly_the_old_output() -> None:
    """warp 0, stretch 1, severity 1, recolor 0 (and cut_fade 0) reproduce the
    transplants of before the variation (digests recorded with commit 7f213ca), render by
    render and through the Synthesizer (fixed fields draw nothing, so every other draw is
    unchanged too). Recorded with OpenCV 4.x; re-record from that commit if OpenCV's warps
    change."""
    assert _golden_renders() == (
        "6cabfddeed00258614a7472bbf4dbe7daadb14c1d87d562478631cfb42ec07c4"
    )
    h = hashlib.sha256()
    for name in ("brushed_metal", "painted_casing"):
        image = _fixture(name)
        synth = Synthesizer([{"generator": "transplant", "params": NEUTRAL}], instances=3)
        sample = synth.apply(image, seed=7)
        h.update(sample.image.tobytes())
        for a in sample.annotations:
            h.update(a.mask.tobytes())
            h.update(repr(a.box).encode())
    assert h.hexdigest() == "f6db871f5a4e726aaf37c6a3e7ee1c91cf5fbaf1720d62f67c6c0497947efbd7"


def _pick(category: str) -> float:
    """The first demo entry of a category (or whose image's name has ``category`` in it)."""
    demo = load_library("")
    k = next(i for i, e in enumerate(demo.entries)
             if e.category == category or category in e.image)
    return (k + 0.5) / len(demo)


def _axes(mask: np.ndarray) -> tuple[float, float, float]:
    """(major, minor) standard deviations of a mask along its principal axes, and area."""
    ys, xs = np.nonzero(mask)
    evals = np.linalg.eigvalsh(np.cov(np.stack([xs, ys]).astype(np.float64)))
    return float(np.sqrt(evals[1])), float(np.sqrt(evals[0])), float(len(xs))


def _varied(category: str, seed: int = 0, **params: Any) -> tuple[np.ndarray, Layer]:
    fixed = {"pick": _pick(category), "rotation": 0.0, **NEUTRAL, **params}
    gen = TransplantGenerator()
    p = TransplantGenerator.Params(**fixed)
    h, w = gen.extent(p, np.random.default_rng(seed))
    px = np.full((h, w, 3), 0.5, np.float32)
    layer = gen.render(_region(px), p, np.random.default_rng(seed))
    edge = np.concatenate([layer.coverage[:3].ravel(), layer.coverage[-3:].ravel(),
                           layer.coverage[:, :3].ravel(), layer.coverage[:, -3:].ravel()])
    assert edge.max() == 0, "extent() must leave room for the stretched, warped defect"
    return px, layer


@pytest.mark.parametrize("category", ["scratch", "crack", "discoloration"])
def test_stretch_along_and_across_the_main_axis(category: str) -> None:
    major, minor, _ = _axes(_varied(category)[1].coverage >= 0.5)
    along, minor_a, _ = _axes(_varied(category, stretch_along=1.5)[1].coverage >= 0.5)
    major_c, across, _ = _axes(_varied(category, stretch_across=1.5)[1].coverage >= 0.5)
    assert along / major == pytest.approx(1.5, rel=0.08)
    assert minor_a / minor == pytest.approx(1.0, rel=0.15)
    assert major_c / major == pytest.approx(1.0, rel=0.08)
    if category == "discoloration":  # wide enough that its width is measured, not rounded
        assert across / minor == pytest.approx(1.5, rel=0.1)


def _contrast(px: np.ndarray, layer: Layer) -> float:
    inside = layer.coverage >= 0.5
    return float(np.abs(layer.pixels - px)[inside].max(axis=1).mean())


@pytest.mark.parametrize("category", ["stain", "dent", "discoloration"])
def test_severity_scales_the_contrast_with_a_floor(category: str) -> None:
    px, plain = _varied(category)
    base = _contrast(px, plain)
    assert _contrast(*_varied(category, severity=0.5)) / base == pytest.approx(0.5, abs=0.08)
    assert _contrast(*_varied(category, severity=1.5)) / base == pytest.approx(1.5, abs=0.2)
    faint = _contrast(*_varied(category, severity=0.25))
    assert faint >= 0.9 * min(base, SEVERITY_FLOOR), "the floor keeps it visible"


@pytest.mark.parametrize("category", ["scratch", "stain", "crack"])
def test_warp_bends_the_shape_and_keeps_its_area(category: str) -> None:
    plain = _varied(category)[1].coverage >= 0.5
    _, _, area = _axes(plain)
    for seed in range(4):
        warped = _varied(category, seed, warp=0.1)[1].coverage >= 0.5
        assert not np.array_equal(warped, plain)
        assert abs(_axes(warped)[2] / area - 1.0) < 0.3
        assert abs(_axes(warped)[0] / _axes(plain)[0] - 1.0) < 0.3  # bent, not blown up
    a = _varied(category, 1, warp=0.1)[1]
    b = _varied(category, 1, warp=0.1)[1]
    c = _varied(category, 2, warp=0.1)[1]
    assert np.array_equal(a.pixels, b.pixels) and np.array_equal(a.coverage, b.coverage)
    assert not np.array_equal(a.coverage, c.coverage)  # the field comes from the rng


def test_recolor_moves_the_defect_towards_the_product_hue() -> None:
    gen = TransplantGenerator()
    blue = np.array([0.65, 0.35, 0.15], np.float32)  # painted casing, BGR
    host_ab = bgr_to_lab(blue[None, None, :])[0, 0, 1:]

    def ab(recolor: float) -> np.ndarray:
        p = TransplantGenerator.Params(pick=_pick("rust"), **{**NEUTRAL, "recolor": recolor})
        h, w = gen.extent(p, np.random.default_rng(0))
        px = np.broadcast_to(blue, (h, w, 3)).copy()
        layer = gen.render(_region(px), p, np.random.default_rng(0))
        inside = layer.coverage >= 0.5
        return np.asarray(bgr_to_lab(layer.pixels)[inside][:, 1:].mean(axis=0))

    own, half, full = ab(0.0), ab(0.5), ab(1.0)
    # the defect's own brown pulls a*, b* off the host's blue; recolouring moves it back
    dist = [float(np.linalg.norm(v - host_ab)) for v in (own, half, full)]
    assert dist[0] > dist[1] > dist[2]
    assert dist[2] < 0.25 * dist[0]
    # at 1 the defect has the host's hue (dark blue), whatever its own colour
    cos = float(full @ host_ab / (np.linalg.norm(full) * np.linalg.norm(host_ab)))
    assert cos > 0.99


def test_varied_transplants_are_on_by_default_and_reproducible() -> None:
    image = _fixture("machined_flange")
    synth = Synthesizer([{"generator": "transplant"}], instances=3)
    a, b = synth.apply(image, seed=3), synth.apply(image, seed=3)
    assert np.array_equal(a.image, b.image)
    assert [x.box for x in a.annotations] == [x.box for x in b.annotations]
    drawn = [x.params for x in a.annotations]
    assert drawn and all(0.0 <= p["warp"] <= 0.08 and 0.6 <= p["severity"] <= 1.5
                         for p in drawn)
    assert any(p["stretch_along"] != 1.0 and p["recolor"] > 0.0 for p in drawn)


def test_denoise_leaves_the_source_photos_grain_behind_and_keeps_the_defect(
    tmp_path: Path, cache: Path
) -> None:
    """A dark blob with a one-pixel bright line across it, photographed with strong grain
    (sigma 0.04), transplanted onto a flat, grain-free surface: with ``denoise`` the
    grain under the blob is mostly gone, the blob is as dark and the line as bright."""
    rng = np.random.default_rng(0)
    h, w = 120, 140
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    blob = np.hypot((xx - 70) / 30, (yy - 60) / 22) <= 1.0
    line = blob & (np.abs(yy - 60) < 0.5)
    img = np.full((h, w), 0.6, np.float32)
    img[blob] *= 0.5
    img[line] += 0.35
    img += rng.normal(0, 0.04, img.shape).astype(np.float32)
    write_coco(tmp_path / "src", np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8), blob,
               mask=True)
    still = {"source": str(tmp_path / "src"), "format": "coco", "pick": 0.5, "scale": 1.0,
             "rotation": 0.0, "feather": 0.0, "blend": "alpha", **NEUTRAL}

    def placed(denoise: float) -> tuple[np.ndarray, np.ndarray]:
        _, layer = _render({**still, "denoise": denoise}, 0.5, channels=1)
        return layer.pixels[:, :, 0], layer.coverage >= 0.5

    raw, m = placed(0.0)
    clean, m2 = placed(1.5)
    assert np.array_equal(m, m2)
    inner = cv2.erode(m.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    rows = np.flatnonzero(m.any(axis=1))
    mid = int(np.argmax([raw[r][m[r]].mean() for r in rows[3:-3]])) + rows[3]  # the line
    inner[mid - 2 : mid + 3] = False

    def grain(a: np.ndarray) -> float:
        return float(np.std((a - cv2.GaussianBlur(a, (0, 0), 3.0))[inner]))

    assert grain(clean) < 0.5 * grain(raw)
    assert abs(float(clean[inner].mean()) - float(raw[inner].mean())) < 0.01
    # the line stands far out of the grain: it keeps (nearly) all its contrast
    assert clean[mid][m[mid]].mean() > 0.9 * raw[mid][m[mid]].mean()


# -- a defect the label's box cut off --------------------------------------------------------


def _band_source(folder: Path, box: tuple[int, int, int, int]) -> Library:
    """A dark band across a whole gray photo, labeled by ``box`` alone (box-only COCO)."""
    rng = np.random.default_rng(0)
    img = np.clip(150 + rng.normal(0, 2, (120, 200)), 0, 255)
    img[50:70] *= 0.5  # the band runs from the left edge of the photo to its right edge
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "p.png"), np.rint(img).astype(np.uint8))
    x1, y1, x2, y2 = box
    doc = {
        "images": [{"id": 1, "file_name": "p.png", "width": 200, "height": 120}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                         "bbox": [x1, y1, x2 - x1, y2 - y1]}],
        "categories": [{"id": 1, "name": "band"}],
    }
    (folder / "annotations.json").write_text(json.dumps(doc))
    return load_library(folder, "coco")


def _band_profile(folder: Path, fade: float) -> tuple[np.ndarray, np.ndarray]:
    """The change along the placed band's middle row, and the layer's coverage there."""
    gen = TransplantGenerator()
    p = TransplantGenerator.Params(source=str(folder), format="coco", blend="alpha",
                                   **dict(NEUTRAL, cut_fade=fade))
    h, w = gen.extent(p, np.random.default_rng(0))
    px = np.full((h, w, 1), 0.6, np.float32)
    layer = gen.render(_region(px), p, np.random.default_rng(0))
    change = np.abs(layer.pixels[:, :, 0] - 0.6)
    row = int(np.argmax(change.sum(axis=1)))
    return change[row], layer.coverage[row]


def test_a_defect_cut_off_by_its_box_or_the_frame_fades_out_instead_of_ending_straight(
    tmp_path: Path,
) -> None:
    from defectsynth.defects.transplant import _cut_sides

    # the box starts at the photo's left edge (the frame cut the band) and ends in the
    # middle of the band on the right (the person who drew it cut it)
    lib = _band_source(tmp_path / "src", (0, 44, 120, 76))
    assert _cut_sides(lib.entries[0]) == ["left", "right"]
    cut, cov_cut = _band_profile(tmp_path / "src", 0.0)
    faded, cov_faded = _band_profile(tmp_path / "src", 0.3)
    full = float(np.median(cut[cov_cut >= 0.5]))
    assert full > 0.2  # the band: 0.6 -> 0.3
    # as cut: the band ends at full strength, a step from nothing to all of it within
    # the feather's few pixels
    lab = np.flatnonzero(cov_cut >= 0.5)
    assert (cut[lab[[0, -1]]] > 0.8 * full).all()
    assert float(np.abs(np.diff(cut)).max()) > 0.3 * full
    # faded: it comes in gradually from both cut ends, with no step larger than a fifth
    xs = np.flatnonzero(cov_faded > 0)
    ends = faded[xs[[0, -1]]]
    assert (ends < 0.2 * full).all()
    assert float(np.abs(np.diff(faded[xs[0] : xs[-1] + 1])).max()) < 0.2 * full
    # the middle keeps its full change, and the label keeps half the change or more
    mid = len(faded) // 2
    assert faded[mid] == pytest.approx(cut[mid], abs=0.02)
    assert (faded[cov_faded >= 0.5] >= 0.45 * full).all()


def test_a_defect_that_ends_inside_its_box_is_not_faded(tmp_path: Path) -> None:
    from defectsynth.defects.transplant import _cut_sides

    img, _, true = synthetic("blob", 1)
    write_coco(tmp_path / "src", img, true)  # the box is the blob's own, with a margin
    lib = load_library(tmp_path / "src", "coco")
    assert _cut_sides(lib.entries[0]) == []
    a = _band_profile(tmp_path / "src", 0.0)
    b = _band_profile(tmp_path / "src", 0.3)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_on_a_binarised_scan_a_transplant_is_in_the_scan_s_two_tones(tmp_path: Path) -> None:
    """A thresholded scan (black copper on white) keeps two tones: the placed defect is
    made of them, not the grays of a resampled cut-out, and its label is what flipped."""
    img, _, true = synthetic("blob", 1)
    write_coco(tmp_path / "src", img, true)
    gen = TransplantGenerator()
    p = TransplantGenerator.Params(source=str(tmp_path / "src"), format="coco", rotation=7.0,
                                   scale=1.1, warp=0.05, severity=2.0, blend="alpha")
    h, w = gen.extent(p, np.random.default_rng(0))
    scan = np.full((h, w, 1), 0.95, np.float32)  # white board
    scan[:, : w // 4] = 0.05  # copper beside the defect (a dark blob: copper added)
    layer = gen.render(_region(scan), p, np.random.default_rng(0))
    cov = layer.coverage > 0
    assert cov.any()
    values = layer.pixels[cov, 0]
    assert np.allclose(values[values < 0.5], 0.05) and np.allclose(values[values >= 0.5], 0.95)
    label = layer.coverage >= 0.5
    flipped = np.abs(layer.pixels[:, :, 0] - scan[:, :, 0]) > 0.5
    assert np.array_equal(label, flipped)
    # on a photo with its continuous tones the same defect keeps its grays
    photo = np.broadcast_to(np.linspace(0.7, 0.9, w, dtype=np.float32)[None, :, None],
                            (h, w, 1))
    gray = gen.render(_region(photo), p, np.random.default_rng(0))
    assert len(np.unique(np.round(gray.pixels[gray.coverage > 0, 0], 3))) > 10


def _board(h: int, w: int, traces: tuple[int, ...], pad: bool) -> np.ndarray:
    """A binarised board scan: white substrate, 10 px black traces at ``traces`` rows."""
    img = np.full((h, w), 240, np.uint8)
    for y in traces:
        img[y : y + 10, 8 : w - 8] = 15
    if pad:
        img[h - 70 : h - 10, 20 : w - 20] = 15  # a copper pour
    return img


def _open_source(folder: Path) -> Path:
    """Opens (white gaps across a black trace) in an images + masks folder."""
    (folder / "images" / "open").mkdir(parents=True)
    (folder / "masks" / "open").mkdir(parents=True)
    for i, x in enumerate((40, 90)):
        img = _board(128, 160, (30, 80), pad=False)
        mask = np.zeros_like(img)
        mask[30:40, x : x + 4] = 255
        img[mask > 0] = 240
        cv2.imwrite(str(folder / "images" / "open" / f"b{i}.png"), img)
        cv2.imwrite(str(folder / "masks" / "open" / f"b{i}.png"), mask)
    return folder


def _lands_across_a_trace(host: np.ndarray, mask: np.ndarray) -> bool:
    """The mask covers copper of the host and has substrate just above and below it."""
    ys, xs = np.nonzero(mask)
    y1, y2, x1, x2 = ys.min(), ys.max(), xs.min(), xs.max()
    above = host[max(y1 - 3, 0), x1 : x2 + 1]
    below = host[min(y2 + 3, host.shape[0] - 1), x1 : x2 + 1]
    return bool((host[mask] < 128).all() and (above > 128).all() and (below > 128).all())


def test_a_defect_cut_from_a_layout_lands_where_the_product_has_that_layout(
    tmp_path: Path,
) -> None:
    """An open cut from a trace goes across one of the product's traces, not into its
    copper pour: the placed crop slides to where the surroundings it was cut from
    correlate with the product's. ``context: 0`` places it anywhere (the test's control)."""
    source = _open_source(tmp_path / "opens")
    host = _board(256, 256, (50, 120), pad=True)
    params = {"source": str(source), "rotation": 0.0, "scale": 1.0, "warp": 0.0,
              "stretch_along": 1.0, "stretch_across": 1.0}
    outcome: dict[float, list[bool]] = {}
    for context in (0.7, 0.0):
        synth = Synthesizer(
            [{"generator": "transplant", "params": {**params, "context": context}}],
            instances=3,
        )
        landed = []
        for seed in range(6):
            sample = synth.apply(host, seed=seed)
            landed += [_lands_across_a_trace(host, a.mask) for a in sample.annotations]
        outcome[context] = landed
    assert len(outcome[0.7]) >= 10 and all(outcome[0.7]), outcome[0.7]
    assert not all(outcome[0.0])  # placed anywhere, some opens fall in the pour


def test_a_defect_from_a_textured_surface_is_placed_as_drawn() -> None:
    """The demo's defects sit on textured metal and paint, with no layout: ``context``
    leaves their placement (and so every pixel) as it was."""
    image = _fixture("brushed_metal")
    out = []
    for context in (0.7, 0.0):
        synth = Synthesizer([{"generator": "transplant", "params": {"context": context}}],
                            instances=3)
        sample = synth.apply(image, seed=3)
        out.append((sample.image.tobytes(), [a.box for a in sample.annotations]))
    assert out[0] == out[1]


def test_no_demo_or_fixture_defect_counts_as_cut_from_a_layout() -> None:
    """The demo's and the fixtures' defects sit on metal, paint and castings: none of them
    is placed by layout, so their transplants are placed as drawn."""
    from defectsynth.defects.transplant import _has_layout

    for source, fmt in (("", "auto"), (str(DEFECTS / "coco"), "coco"),
                        (str(DEFECTS / "voc"), "voc")):
        lib = load_library(source, fmt)
        assert not any(_has_layout(e) for e in lib.entries), source


def test_a_layout_defect_stretched_and_turned_a_quarter_fits_its_region(
    tmp_path: Path,
) -> None:
    """The extent of a defect placed by layout is square and leaves room for each quarter
    turn of a stretched crop: none is cut off by the region's border."""
    from defectsynth.defects.transplant import _place, _seek

    lib = load_library(str(_open_source(tmp_path / "opens")), "masks")
    gen = TransplantGenerator()
    for along, across in ((2.0, 0.5), (0.5, 2.0)):
        p = TransplantGenerator.Params(source=str(tmp_path / "opens"), scale=2.0,
                                       rotation=10.0, stretch_along=along,
                                       stretch_across=across, warp=0.05)
        entry = lib.entries[0]
        seek = _seek(entry, p)
        h, w = gen.extent(p, np.random.default_rng(0))
        assert seek > 0 and h == w
        for quarter in range(4):
            turned = dataclasses.replace(p, rotation=p.rotation + 90.0 * quarter)
            _, _, inside, valid, _ = _place(entry, turned, (h - 2 * seek, w - 2 * seek),
                                            np.random.default_rng(0))
            border = np.r_[valid[0], valid[-1], valid[:, 0], valid[:, -1]]
            assert not border.any(), (along, quarter)
            assert inside.sum() > 0


def test_a_layout_defect_is_not_placed_on_a_layout_off_the_product(tmp_path: Path) -> None:
    """The only trace within reach lies off the product mask: the open is not placed
    there (an empty layer, drawn again elsewhere by the synthesizer); on the product it
    is."""
    source = _open_source(tmp_path / "opens")
    gen = TransplantGenerator()
    p = TransplantGenerator.Params(source=str(source), rotation=0.0, scale=1.0)
    h, w = gen.extent(p, np.random.default_rng(0))
    board = np.full((h, w, 1), 240 / 255, np.float32)
    board[h // 2 + 10 : h // 2 + 20, :, 0] = 15 / 255  # one trace, below the centre
    from defectsynth.generator import Light

    for product_below, placed in ((1.0, True), (0.0, False)):
        pm = np.ones((h, w), np.float32)
        pm[h // 2 + 5 :] = product_below
        px = board.copy()
        px.flags.writeable = False
        pm.flags.writeable = False
        layer = gen.render(Region(px, pm, Light(30.0, 45.0), 8.0), p,
                           np.random.default_rng(0))
        assert bool((layer.coverage >= 0.5).any()) == placed
