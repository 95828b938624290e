"""Hostile inputs, crashes and full disks: one table, one row per case (issue 8).

Each row is an input (a bad source, recipe, plugin, output folder or signal), the exit
status of ``defectsynth generate``, a pattern the message must match (it names the file,
the key or the plugin) and what must have been written. Every row also checks the
invariants that hold whatever goes wrong: no traceback, no temporary file left, every
manifest record's files present and readable, and no file in images/ or masks/ that the
manifest does not hold (a stopped run leaves no half sample). A run that ends with 0
must also pass ``defectsynth validate``.

Runs go through the CLI in this process with one worker (fast), except where a row needs
a real pool, a real signal or a real full file system.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from dataset_factory import PLUGINS, make_inputs, recipe_dict, tree_bytes

from defectsynth import Synthesizer, imagefile
from defectsynth.build import load_recipe
from defectsynth.cli import cli
from defectsynth.errors import RecipeError
from defectsynth.recipe import ALLOW_ENV
from defectsynth.run import MANIFEST, read_image
from defectsynth.validate import validate_dataset
from defectsynth.writing import TMP_MARK

HOSTILE = Path(__file__).parent / "plugins_hostile"
NOBODY = 65534


# -- building inputs ----------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width: int, height: int, color_type: int, rows: bytes, plte: bytes = b"") -> bytes:
    """A PNG written by hand (8 bits per sample), for what OpenCV cannot write: palette
    images and headers that lie about their size."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    body = _png_chunk(b"IHDR", ihdr)
    if plte:
        body += _png_chunk(b"PLTE", plte)
    body += _png_chunk(b"IDAT", zlib.compress(rows)) + _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def palette_png(h: int = 96, w: int = 128) -> bytes:
    rng = np.random.default_rng(3)
    plte = bytes(rng.integers(60, 200, 256 * 3, dtype=np.uint8))
    idx = rng.integers(0, 256, (h, w), dtype=np.uint8)
    rows = b"".join(b"\x00" + idx[y].tobytes() for y in range(h))
    return png_bytes(w, h, 3, rows, plte)


def exif_rotated_jpeg(raw: np.ndarray, orientation: int = 6) -> bytes:
    """A JPEG of ``raw`` with an EXIF Orientation tag (6: turn 90 degrees clockwise)."""
    ok, buf = cv2.imencode(".jpg", raw, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    data = buf.tobytes()
    ifd = struct.pack(">HHHI", 1, 0x0112, 3, 1) + struct.pack(">HH", orientation, 0) + b"\0" * 4
    app1 = b"Exif\0\0" + b"MM\0\x2a\0\0\0\x08" + ifd
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]


def textured(h: int = 96, w: int = 128, seed: int = 7, dtype: Any = np.uint8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(90, 150, size=(h // 8 + 1, w // 8 + 1, 3)).astype(np.uint8)
    img = cv2.resize(base, (w, h), interpolation=cv2.INTER_LINEAR)
    return img.astype(np.uint16) * 257 if dtype == np.uint16 else img


def encoded(img: np.ndarray, ext: str = ".png") -> bytes:
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


# -- a row of the table ---------------------------------------------------------------------


@dataclass
class Ws:
    """A workspace: inputs, a recipe and the dataset folder of one row."""

    root: Path
    recipe: dict[str, Any] = field(default_factory=dict)
    recipe_text: str | None = None
    args: list[str] = field(default_factory=list)
    out: Path = Path()
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def images(self) -> Path:
        return self.root / "images"

    def write_recipe(self) -> Path:
        path = self.root / "recipe.yaml"
        if self.recipe_text is not None:
            path.write_text(self.recipe_text, encoding="utf-8")
        else:
            path.write_text(yaml.safe_dump(self.recipe, sort_keys=False), encoding="utf-8")
        return path

    def records(self) -> list[dict[str, Any]]:
        path = self.out / MANIFEST
        if not path.exists():
            return []
        return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]

    def report(self) -> dict[str, Any]:
        return json.loads((self.out / "report.json").read_text(encoding="utf-8"))


@dataclass
class Outcome:
    exit: int
    output: str


def base(root: Path, n: int = 2, **over: Any) -> Ws:
    """Two good 96x128 sources, whole-image product, one variant, fast defaults."""
    make_inputs(root, n=n, masks=False)
    recipe = recipe_dict(
        inputs={"images": "images", "product_mask": "full"},
        variants=1,
        negatives=0.0,
        output={"formats": ["coco", "yolo", "voc", "anomaly"]},
    )
    recipe.update(over)
    return Ws(root=root, recipe=recipe, out=root / "ds")


def with_hostile(ws: Ws, mode: str, weight: float = 1.0, **params: Any) -> Ws:
    ws.recipe["plugin_dirs"] = [str(PLUGINS), str(HOSTILE)]
    ws.recipe["defects"] = [
        {"generator": "blob", "params": {"strength": [-0.7, -0.35]}},
        {"generator": "hostile", "weight": weight, "params": {"mode": mode, **params}},
    ]
    ws.recipe["instances"] = [2, 2]
    ws.recipe["variants"] = 2
    return ws


def run_cli(ws: Ws, *extra: str, workers: int = 1) -> Outcome:
    path = ws.write_recipe()
    args = ["generate", str(path), "-o", str(ws.out), "-j", str(workers), "--no-progress"]
    res = CliRunner().invoke(cli, [*args, *ws.args, *extra])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return Outcome(res.exit_code, res.output)


# -- invariants every row checks ------------------------------------------------------------


def check_consistent(ws: Ws, outcome: Outcome) -> None:
    assert "Traceback" not in outcome.output, outcome.output
    if not ws.out.exists():
        return
    assert not [p for p in ws.out.rglob("*") if TMP_MARK in p.name], "temporary files left"
    records = ws.records()
    held: set[str] = set()
    for rec in records:
        img = cv2.imread(str(ws.out / rec["image"]), cv2.IMREAD_UNCHANGED)
        assert img is not None, f"{rec['image']} is missing or unreadable"
        assert img.shape[:2] == (rec["height"], rec["width"])
        held.add(rec["image"])
        for a in rec["annotations"]:
            m = cv2.imread(str(ws.out / a["mask"]), cv2.IMREAD_GRAYSCALE)
            assert m is not None and m.shape == img.shape[:2], a["mask"]
            held.add(a["mask"])
    on_disk = {
        p.relative_to(ws.out).as_posix()
        for folder in ("images", "masks")
        for p in (ws.out / folder).rglob("*")
        if p.is_file()
    }
    assert on_disk == held, f"files the manifest does not hold: {sorted(on_disk - held)[:5]}"
    if outcome.exit == 0:
        problems = validate_dataset(ws.out).problems
        if not any(rec["split"] == "train" for rec in records):
            # the good sources all fell in val/test: the anomaly layout then has no clean
            # image to train on, which validate rightly reports (issue 15)
            problems = [p for p in problems if not p.startswith("anomaly/train/good: is empty")]
        assert problems == []


# -- sources --------------------------------------------------------------------------------


def src_zero_byte(ws: Ws) -> None:
    (ws.images / "zero.png").write_bytes(b"")


def src_truncated_png(ws: Ws) -> None:
    data = encoded(textured(seed=11))
    (ws.images / "cut.png").write_bytes(data[: len(data) * 2 // 3])


def src_truncated_jpeg(ws: Ws) -> None:
    data = encoded(textured(seed=12), ".jpg")
    (ws.images / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])


def src_text_as_png(ws: Ws) -> None:
    (ws.images / "notes.png").write_text("hello, this is not a picture\n")


def src_folder_named_png(ws: Ws) -> None:
    (ws.images / "x.png").mkdir()
    (ws.images / "x.png" / "inner.png").write_bytes(encoded(textured(seed=13)))


def src_symlink_loop(ws: Ws) -> None:
    os.symlink("loop.png", ws.images / "loop.png")  # a link to itself
    (ws.images / "sub").mkdir()
    os.symlink("..", ws.images / "sub" / "up")  # a folder loop: never followed


def src_not_regular(ws: Ws) -> None:
    os.mkfifo(ws.images / "pipe.png")  # opening it would block forever
    os.symlink("/dev/zero", ws.images / "zeros.png")  # reading it would never end


def src_unreadable(ws: Ws) -> None:
    p = ws.images / "locked.png"
    p.write_bytes(encoded(textured(seed=14)))
    p.chmod(0)
    ws.notes["as_nobody"] = os.geteuid() == 0


def src_16bit(ws: Ws) -> None:
    (ws.images / "deep.png").write_bytes(encoded(textured(seed=15, dtype=np.uint16)))


def src_gray(ws: Ws) -> None:
    (ws.images / "gray.png").write_bytes(encoded(textured(seed=16)[:, :, 1]))


def src_rgba(ws: Ws) -> None:
    img = textured(seed=17)
    alpha = np.full(img.shape[:2], 255, np.uint8)
    alpha[:, :20] = 0  # transparent strip: no defect may land there
    (ws.images / "alpha.png").write_bytes(encoded(np.dstack([img, alpha])))


def src_palette(ws: Ws) -> None:
    (ws.images / "palette.png").write_bytes(palette_png())


def src_one_pixel(ws: Ws) -> None:
    (ws.images / "dot.png").write_bytes(encoded(np.full((1, 1, 3), 128, np.uint8)))


def src_header_bomb(ws: Ws) -> None:
    # 40000 x 40000 claimed by a 100-byte file: 1.6 gigapixels if anyone decoded it
    (ws.images / "bomb.png").write_bytes(png_bytes(40000, 40000, 0, b"\x00" * 64))


def src_pixel_limit(ws: Ws) -> None:
    ws.recipe["inputs"]["max_pixels"] = 5000  # the 96x128 sources are 12288 px


def src_exif_rotated(ws: Ws) -> None:
    (ws.images / "turned.jpg").write_bytes(exif_rotated_jpeg(textured(seed=18)))


def src_non_ascii(ws: Ws) -> None:
    (ws.images / "défaut ü.png").write_bytes(encoded(textured(seed=19)))
    (ws.images / "日本語.png").write_bytes(encoded(textured(seed=20)))


def src_same_names(ws: Ws) -> None:
    for i, sub in enumerate(("a", "b")):
        (ws.images / sub).mkdir()
        (ws.images / sub / "x.png").write_bytes(encoded(textured(seed=21 + i)))
    (ws.images / "a__x.png").write_bytes(encoded(textured(seed=23)))  # a/x flattened


def check_skipped(name: str) -> Callable[[Ws], None]:
    def check(ws: Ws) -> None:
        skipped = {s["source"] for s in ws.report()["skipped_sources"]}
        assert name in skipped
        assert name not in {r["source"] for r in ws.records()}

    return check


def check_output_image(name: str, dtype: Any, channels: int) -> Callable[[Ws], None]:
    def check(ws: Ws) -> None:
        (rec,) = [r for r in ws.records() if r["source"] == name]
        img = cv2.imread(str(ws.out / rec["image"]), cv2.IMREAD_UNCHANGED)
        assert img.dtype == dtype and (1 if img.ndim == 2 else img.shape[2]) == channels
        assert rec["channels"] == channels

    return check


def check_rgba(ws: Ws) -> None:
    check_output_image("alpha.png", np.uint8, 4)(ws)
    for rec in ws.records():
        for a in rec["annotations"] if rec["source"] == "alpha.png" else ():
            assert a["box"][0] >= 20, "a defect landed on transparent pixels"


def check_folder_named_png(ws: Ws) -> None:
    assert "x.png/inner.png" in {r["source"] for r in ws.records()}
    assert ws.report()["skipped_sources"] == []


def check_exif(ws: Ws) -> None:
    (rec,) = [r for r in ws.records() if r["source"] == "turned.jpg"]
    # stored 128 wide and 96 high, shown (and labeled) 96 wide and 128 high
    assert (rec["width"], rec["height"]) == (96, 128)
    for a in rec["annotations"]:
        x1, y1, x2, y2 = a["box"]
        assert 0 <= x1 < x2 <= 96 and 0 <= y1 < y2 <= 128
    data = (ws.images / "turned.jpg").read_bytes()
    stored = cv2.imdecode(
        np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    )
    image, _ = read_image(str(ws.images / "turned.jpg"))
    assert np.array_equal(image, np.rot90(stored, k=-1))  # the pixels the labels are on


def check_non_ascii(ws: Ws) -> None:
    recs = {r["source"]: r for r in ws.records()}
    assert {"défaut ü.png", "日本語.png"} <= set(recs)
    for r in recs.values():
        assert Path(r["image"]).name.isascii()


def check_same_names(ws: Ws) -> None:
    images = [r["image"] for r in ws.records()]
    assert {"a/x.png", "b/x.png", "a__x.png"} <= {r["source"] for r in ws.records()}
    assert len(set(images)) == len(images) == 5


def check_not_decoded(ws: Ws) -> None:
    # the bomb's header was read, its pixels never: imdecode never saw its bytes
    assert ws.notes["decoded_bomb"] is False


def check_slow_input_not_read(ws: Ws) -> None:
    assert {"pipe.png", "zeros.png"} <= {s["source"] for s in ws.report()["skipped_sources"]}


# -- recipes --------------------------------------------------------------------------------


def rec(**over: Any) -> Callable[[Ws], None]:
    def build(ws: Ws) -> None:
        ws.recipe.update(over)

    return build


def rec_text(text: str) -> Callable[[Ws], None]:
    def build(ws: Ws) -> None:
        ws.recipe_text = text

    return build


def rec_defects(*defects: Any) -> Callable[[Ws], None]:
    def build(ws: Ws) -> None:
        ws.recipe["defects"] = list(defects)

    return build


def rec_escape_plugin(ws: Ws) -> None:
    ws.recipe["plugin_dirs"] = [str(PLUGINS), str(HOSTILE)]
    ws.recipe["defects"] = [{"generator": "escape"}]


def rec_empty_inputs(ws: Ws) -> None:
    shutil.rmtree(ws.images)
    ws.images.mkdir()
    (ws.images / "readme.txt").write_text("no images here")


def rec_many_variants(ws: Ws) -> None:
    ws.recipe["variants"] = 1_000_000  # two million tasks: streamed, never listed
    ws.args = ["--limit", "3"]


PYTHON_TAG = """\
seed: !!python/object/apply:os.system ["touch PWNED"]
inputs: {images: images}
defects: [blob]
"""

def _laughs(levels: int = 8) -> str:
    """Aliases nested ``levels`` deep, ten copies each: 10**levels values once expanded."""
    expr = "&l0 [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"
    for i in range(1, levels):
        expr = f"&l{i} [{expr}" + f", *l{i - 1}" * 9 + "]"
    head = "inputs: {images: images}\ndefects:\n  - generator: blob\n"
    return head + f"    params: {{radius: {expr}}}\n"


LAUGHS = _laughs()


def check_no_pwned(ws: Ws) -> None:
    assert not (ws.root / "PWNED").exists() and not Path("PWNED").exists()


def check_nothing_outside(ws: Ws) -> None:
    assert not ws.out.exists()
    assert {p.name for p in ws.root.iterdir()} <= {"images", "masks", "recipe.yaml"}
    assert not list(ws.root.parent.glob("*outside*")) and not list(ws.root.glob("*/x"))


# -- plugins --------------------------------------------------------------------------------


def plug(mode: str, **params: Any) -> Callable[[Ws], None]:
    def build(ws: Ws) -> None:
        with_hostile(ws, mode, **params)

    return build


def check_rejected(message: str) -> Callable[[Ws], None]:
    def check(ws: Ws) -> None:
        fails = ws.report()["generator_failures"]
        assert fails["hostile"]["rejected_instances"] >= 1
        assert message in fails["hostile"]["last_error"]
        assert all(a["generator"] == "blob" for r in ws.records() for a in r["annotations"])
        assert sum(r["stats"]["generator_failures"] for r in ws.records()) == fails["hostile"][
            "rejected_instances"
        ]

    return check


def plug_exits_on_import(ws: Ws) -> None:
    folder = ws.root / "more_plugins"
    folder.mkdir()
    (folder / "quitter.py").write_text("import sys\nsys.exit(3)\n")
    (folder / "skipper.py").write_text(  # pytest.skip() at import is a BaseException too
        "class Skipped(BaseException):\n    pass\n\nraise Skipped('no thanks')\n"
    )
    ws.recipe["plugin_dirs"] = [str(PLUGINS), str(folder)]


def check_flaky(ws: Ws) -> None:
    gens = [a["generator"] for r in ws.records() for a in r["annotations"]]
    assert "hostile" in gens  # the calls that worked are labeled
    assert ws.report()["generator_failures"]["hostile"]["rejected_instances"] >= 1


def plug_stops(via: str) -> Callable[[Ws], None]:
    def build(ws: Ws) -> None:
        with_hostile(ws, "raises", weight=3.0)
        ws.recipe["variants"] = 6
        if via == "cli":
            ws.args = ["--max-generator-failures", "3"]
        else:
            ws.recipe["max_generator_failures"] = 2

    return build


def check_stopped_early(ws: Ws) -> None:
    assert len(ws.records()) < 12
    assert not (ws.out / "report.json").exists()


# -- output ---------------------------------------------------------------------------------


def out_is_file(ws: Ws) -> None:
    ws.out = ws.root / "ds.txt"
    ws.out.write_text("a file")


def out_under_file(ws: Ws) -> None:
    (ws.root / "plain.txt").write_text("a file")
    ws.out = ws.root / "plain.txt" / "ds"


def out_read_only_fs(ws: Ws) -> None:
    ws.notes["mount_ro"] = True


def out_no_permission(ws: Ws) -> None:
    locked = ws.root / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    ws.out = locked / "ds"
    ws.notes["as_nobody"] = os.geteuid() == 0


def _files_of(ws: Ws) -> int:
    return sum(1 for _ in ws.images.iterdir())


def disk_full_after(n_files: int | str) -> Callable[[Ws], None]:
    def build(ws: Ws) -> None:
        ws.recipe["variants"] = 3
        ws.notes["enospc_after"] = n_files

    return build


def manifest_full(ws: Ws) -> None:
    ws.recipe["variants"] = 3
    ws.notes["manifest_full_after"] = 2


def tmpfs_full(ws: Ws) -> None:
    for i in range(6):
        noise = np.random.default_rng(i).integers(0, 256, (256, 256, 3), dtype=np.uint8)
        (ws.images / f"noisy{i}.png").write_bytes(encoded(noise))
    ws.recipe["variants"] = 2
    ws.notes["tmpfs"] = True


def check_resumes_identically(ws: Ws) -> None:
    assert ws.notes["resumed_equal"]


# -- signals --------------------------------------------------------------------------------


def slow_run(ws: Ws, delay: float = 0.02) -> None:
    # 32 tasks in chunks of 2 (one source's variants): at most 12 are in a pool's hands
    # at a time, so a signal always finds tasks that have not started
    make_inputs(ws.root, n=16, masks=False)
    with_hostile(ws, "ok", delay=delay)
    ws.recipe["variants"] = 2
    ws.recipe["instances"] = [1, 3]


def sigint(ws: Ws) -> None:
    slow_run(ws)
    ws.notes["signal"] = "sigint"


def sigterm(ws: Ws) -> None:
    slow_run(ws)
    ws.notes["signal"] = "sigterm"


def sigkill_loop(ws: Ws) -> None:
    slow_run(ws)
    ws.notes["signal"] = "sigkill"


# -- the table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    id: str
    build: Callable[[Ws], None]
    exit: int
    says: str  # regex over the CLI output
    samples: int | None = None  # samples in the manifest afterwards
    check: Callable[[Ws], None] | None = None


R = Row
TABLE = [
    # sources: the bad ones are skipped with their reason, the good ones written
    R("zero-byte", src_zero_byte, 0, r"zero\.png: is an empty \(zero-byte\) file", 2,
      check_skipped("zero.png")),
    R("truncated-png", src_truncated_png, 0,
      r"cut\.png: is truncated: a PNG file that ends after \d+ bytes, inside a 'IDAT' chunk", 2,
      check_skipped("cut.png")),
    R("truncated-jpeg", src_truncated_jpeg, 0,
      r"cut\.jpg: is truncated: a JPEG file that ends after \d+ bytes, inside its image data",
      2, check_skipped("cut.jpg")),
    R("text-named-png", src_text_as_png, 0,
      r"notes\.png: is not an image: its content is not PNG, JPEG, BMP, TIFF or WebP "
      r"\(it starts with the text 'hello, this is n'\)", 2, check_skipped("notes.png")),
    R("folder-named-png", src_folder_named_png, 0, r"wrote 3 samples", 3,
      check_folder_named_png),
    R("symlink-loop", src_symlink_loop, 0,
      r"loop\.png: cannot be read: Too many levels of symbolic links \(ELOOP\)", 2,
      check_skipped("loop.png")),
    R("fifo-and-device", src_not_regular, 0,
      r"pipe\.png: is not a regular file \(a device, FIFO or socket\)", 2,
      check_slow_input_not_read),
    R("unreadable", src_unreadable, 0, r"locked\.png: cannot be read: Permission denied \(EACCES\)",
      2, check_skipped("locked.png")),
    R("16-bit-png", src_16bit, 0, r"wrote 3 samples", 3,
      check_output_image("deep.png", np.uint16, 3)),
    R("grayscale", src_gray, 0, r"wrote 3 samples", 3, check_output_image("gray.png", np.uint8, 1)),
    R("rgba", src_rgba, 0, r"wrote 3 samples", 3, check_rgba),
    R("palette-png", src_palette, 0, r"wrote 3 samples", 3,
      check_output_image("palette.png", np.uint8, 3)),
    R("1x1", src_one_pixel, 0, r"dot\.png: is 1x1 px, smaller than inputs\.min_side = 16", 2,
      check_skipped("dot.png")),
    R("header-40000x40000", src_header_bomb, 0,
      r"bomb\.png: is 40000x40000 px \(1600\.0 megapixels\), above the limit "
      r"inputs\.max_pixels = 100000000; not decoded", 2, check_not_decoded),
    R("pixel-limit-from-recipe", src_pixel_limit, 1,
      r"p0\.png: is 128x96 px .* above the limit inputs\.max_pixels = 5000(.|\n)*"
      r"error: no sample could be written", 0),
    R("exif-rotated-jpeg", src_exif_rotated, 0, r"wrote 3 samples", 3, check_exif),
    R("non-ascii-names", src_non_ascii, 0, r"wrote 4 samples", 4, check_non_ascii),
    R("same-name-two-folders", src_same_names, 0, r"wrote 5 samples", 5, check_same_names),
    # recipes: exit 2, the message names the file and the key; nothing is written
    R("unknown-key", rec(varients=2), 2,
      r"recipe\.yaml: varients: unknown key 'varients' \(did you mean 'variants'\?\)"),
    R("wrong-type", rec(variants="many"), 2, r"recipe\.yaml: variants: 'many' \(str\) is not an"),
    R("wrong-type-mapping", rec(inputs=["images"]), 2,
      r"recipe\.yaml: inputs: expected a mapping of keys, got a list"),
    R("python-tag", rec_text(PYTHON_TAG), 2,
      r"recipe\.yaml: line 1, column 7: could not determine a constructor for the tag "
      r"'tag:yaml\.org,2002:python/object/apply:os\.system'.*YAML tags that build Python "
      r"objects are refused", None, check_no_pwned),
    R("duplicate-key", rec_text("seed: 1\nseed: 2\n"), 2,
      r"recipe\.yaml: line 2, column 1: duplicate key 'seed' \(first given on line 1\)"),
    R("alias-bomb", rec_text(LAUGHS), 2,
      r"recipe\.yaml: defects: the recipe expands to more than 100000 values"),
    R("deep-nesting", rec_text("seed: " + "[" * 3000 + "]" * 3000 + "\n"), 2,
      r"recipe\.yaml: values are nested too deeply"),
    R("all-weights-zero", rec_defects({"generator": "blob", "weight": 0}), 2,
      r"recipe\.yaml: defects: all weights are zero; at least one must be > 0"),
    R("negative-weight", rec_defects({"generator": "blob", "weight": -1}), 2,
      r"recipe\.yaml: defects\[0\]\.weight: -1 is below the minimum 0"),
    R("unknown-generator", rec_defects({"generator": "blop"}), 2,
      r"recipe\.yaml: defects\[0\]\.generator: unknown generator 'blop' \(did you mean 'blob'\?\)"),
    R("absurd-variants", rec(variants=10**12), 2,
      r"recipe\.yaml: variants: 1000000000000 is above the maximum 1000000"),
    R("absurd-instances", rec(instances=10**9), 2,
      r"recipe\.yaml: instances: 1000000000 is above the maximum 1000"),
    R("many-variants-streamed", rec_many_variants, 0, r"wrote 3 samples", 3),
    R("category-slash", rec_defects({"generator": "blob", "category": "a/b"}), 2,
      r"recipe\.yaml: defects\[0\]\.category: category 'a/b' cannot be used", None,
      check_nothing_outside),
    R("category-dotdot", rec_defects({"generator": "blob", "category": "../../x"}), 2,
      r"defects\[0\]\.category: category '\.\./\.\./x' cannot be used", None,
      check_nothing_outside),
    R("category-nul", rec_text('inputs: {images: images}\ndefects:\n  - {generator: blob, '
                               'category: "a\\0b"}\n'), 2,
      r"recipe\.yaml: defects\[0\]\.category: contains a NUL character"),
    R("category-from-plugin", rec_escape_plugin, 2,
      r"defects\[0\]\.category: category '\.\./\.\./outside' cannot be used", None,
      check_nothing_outside),
    # a recipe is data: its paths stay in its folder and the working directory
    R("path-absolute-outside", rec(inputs={"images": "/etc", "product_mask": "full"}), 2,
      r"recipe\.yaml: inputs\.images: '/etc' leads to '/etc', outside the folders a recipe "
      r"may read \(.*\)\. A recipe is data .*--allow-path DIR or DEFECTSYNTH_ALLOW_PATHS"),
    R("path-dotdot-outside", rec(inputs={"images": "../" * 40 + "etc"}), 2,
      r"recipe\.yaml: inputs\.images: '(\.\./)+etc' leads to '/etc', outside the folders"),
    R("mask-pattern-outside", rec(inputs={"images": "images",
                                          "product_mask": "/etc/masks/{stem}.png"}), 2,
      r"recipe\.yaml: inputs\.product_mask: .* leads to '/etc/masks/stem\.png', outside"),
    R("plugin-dir-outside", rec(plugin_dirs=["/opt/defectsynth-plugins"]), 2,
      r"recipe\.yaml: plugin_dirs\[0\]: '/opt/defectsynth-plugins' leads to .*, outside"),
    R("path-param-outside", rec_defects({"generator": "transplant",
                                         "params": {"source": "/etc/defects"}}), 2,
      r"recipe\.yaml: defects\[0\]\.params\.source: '/etc/defects' leads to '/etc/defects', "
      r"outside"),
    R("empty-input-set", rec_empty_inputs, 2,
      r"recipe\.yaml: inputs\.images: no image file matches 'images'"),
    # plugins: a bad instance is rejected naming the generator; K failures in a row stop
    R("plugin-wrong-shape", plug("shape"), 0,
      r"generator 'hostile': \d+ instance\(s\) rejected; last error: generator 'hostile': "
      r"Layer\.pixels has shape \(23, 24, 3\), expected \(24, 24, 3\)", 4,
      check_rejected("Layer.pixels has shape")),
    R("plugin-wrong-dtype", plug("dtype"), 0,
      r"generator 'hostile': Layer\.pixels has dtype float64, expected float32", 4,
      check_rejected("dtype float64")),
    R("plugin-nan", plug("nan"), 0, r"generator 'hostile': Layer\.pixels contains NaN or inf",
      4, check_rejected("NaN")),
    R("plugin-inf", plug("inf"), 0, r"generator 'hostile': Layer\.coverage contains NaN or inf",
      4, check_rejected("coverage contains")),
    R("plugin-coverage-range", plug("coverage"), 0,
      r"generator 'hostile': coverage outside \[0, 1\] \(min 0, max 3\)", 4,
      check_rejected("coverage outside")),
    R("plugin-raises", plug("raises"), 0,
      r"generator 'hostile': render\(\) failed: RuntimeError\('the hostile plugin gives up'\)",
      4, check_rejected("gives up")),
    R("plugin-mutates-region", plug("mutates"), 0,
      r"generator 'hostile': render\(\) tried to modify its input region", 4,
      check_rejected("tried to modify")),
    R("plugin-mutates-sneakily", plug("mutates_sneaky"), 0,
      r"generator 'hostile': render\(\) modified its input region", 4,
      check_rejected("modified its input region")),
    R("plugin-not-a-layer", plug("not_a_layer"), 0,
      r"generator 'hostile' returned tuple, not a Layer", 4, check_rejected("not a Layer")),
    R("plugin-bad-extent", plug("bad_extent"), 0,
      r"generator 'hostile': extent\(\) returned \(-5, 0\)", 4, check_rejected("extent()")),
    R("plugin-flaky", plug("flaky"), 0, r"generator 'hostile': \d+ instance\(s\) rejected", 4,
      check_flaky),
    R("plugin-exits-on-import", plug_exits_on_import, 0,
      r"warning: plugin 'quitter' \(.*quitter\.py\): failed to import: SystemExit: 3\n"
      r"warning: plugin 'skipper' \(.*skipper\.py\): failed to import: Skipped: no thanks",
      2),
    R("plugin-k-in-a-row-cli", plug_stops("cli"), 1,
      r"error: generator 'hostile' failed [34] times in a row \(max_generator_failures = 3\), so "
      r"the run stopped rather than write a dataset without its category \(hostile\)\. Last "
      r"error: generator 'hostile': render\(\) failed", None, check_stopped_early),
    R("plugin-k-in-a-row-recipe", plug_stops("recipe"), 1,
      r"generator 'hostile' failed [23] times in a row \(max_generator_failures = 2\)", None,
      check_stopped_early),
    # output
    R("out-is-a-file", out_is_file, 2,
      r"Error: Invalid value for '-o' / '--out': Directory '.*ds\.txt' is a file"),
    R("out-under-a-file", out_under_file, 1,
      r"error: cannot write to the output folder '.*plain\.txt/ds'.*Not a directory \(ENOTDIR\)"),
    R("out-read-only-fs", out_read_only_fs, 1,
      r"error: cannot write to the output folder '.*ro/ds'.*Read-only file system \(EROFS\)"),
    R("out-no-permission", out_no_permission, 1,
      r"error: cannot write to the output folder '.*locked/ds'.*Permission denied \(EACCES\)"),
    R("disk-full-mid-run", disk_full_after(4), 1,
      r"error: the disk is full: cannot write (images|masks)/\S+: No space left on device "
      r"\(ENOSPC\)\. The run stopped; the \d+ samples in manifest\.jsonl are complete(.|\n)*"
      r"--resume", None, check_resumes_identically),
    R("disk-full-in-index-files", disk_full_after("after-samples"), 1,
      r"error: the disk is full: cannot write the index files .*\(ENOSPC\)(.|\n)*--resume", 6,
      check_resumes_identically),
    R("disk-full-on-manifest", manifest_full, 1,
      r"error: the disk is full: cannot append to manifest\.jsonl: No space left on device "
      r"\(ENOSPC\)", 2, check_resumes_identically),
    R("disk-full-tmpfs", tmpfs_full, 1,
      r"error: the disk is full: cannot (write|append to) \S+: No space left on device "
      r"\(ENOSPC\)(.|\n)*--resume", None, check_resumes_identically),
    # signals
    R("sigint", sigint, 130,
      r"stopped after the samples in flight; every sample in .*manifest\.jsonl is complete\. "
      r"Finish with:\n  defectsynth generate .* --resume", None, check_resumes_identically),
    R("sigterm", sigterm, 143,
      r"stopped after the samples in flight; every sample in .*manifest\.jsonl is complete\. "
      r"Finish with:\n  defectsynth generate .* --resume", None, check_resumes_identically),
    R("sigkill-loop", sigkill_loop, 0, r"wrote 32 samples", 32, check_resumes_identically),
]


# -- special runners --------------------------------------------------------------------------


@contextlib.contextmanager
def as_user(uid: int) -> Iterator[None]:
    """Drop the effective uid (root bypasses file permissions); restored afterwards."""
    os.setegid(uid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@contextlib.contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False) -> Iterator[None]:
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


class FullDisk:
    """``open`` for the writing module: the first ``allow`` files open for writing work,
    later ones write half their bytes and then fail with ENOSPC."""

    def __init__(self, allow: int) -> None:
        self.allow = allow

    def open(self, file: Any, mode: str = "r", *args: Any, **kw: Any) -> Any:
        fh = builtins.open(file, mode, *args, **kw)
        if "w" not in mode or self.allow > 0:
            self.allow -= "w" in mode
            return fh
        return _Failing(fh, file)


class _Failing:
    def __init__(self, fh: Any, name: Any) -> None:
        self.fh, self.name = fh, name

    def write(self, data: Any) -> int:
        self.fh.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.name))

    def __enter__(self) -> _Failing:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.fh.close()


def _sample_files(ws: Ws) -> int:
    return sum(1 + len(r["annotations"]) for r in ws.records())


def run_reference(ws: Ws, workers: int = 1) -> dict[str, bytes]:
    """A run without trouble at the same path (data.yaml holds it), kept in memory."""
    res = run_cli(ws, workers=workers)
    assert res.exit == 0, res.output
    ref = tree_bytes(ws.out)
    shutil.rmtree(ws.out)
    return ref


def run_enospc(ws: Ws, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    from defectsynth import writing
    from defectsynth.run import driver

    ref = run_reference(ws)
    after = ws.notes.get("enospc_after")
    if after == "after-samples":
        n_files = sum(
            1 + len(json.loads(x)["annotations"])
            for x in ref["manifest.jsonl"].decode().splitlines()
        )
        after = n_files + 1  # dataset.json, the sample files, then an index file fails
    if after is not None:
        monkeypatch.setattr(writing, "open", FullDisk(int(after)).open, raising=False)
    else:
        real = driver._append
        left = [ws.notes["manifest_full_after"]]

        def append(fd: int, data: bytes) -> None:
            if left[0] <= 0:
                os.write(fd, data[:10])  # a torn line that must not stay
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            left[0] -= 1
            real(fd, data)

        monkeypatch.setattr(driver, "_append", append)
    outcome = run_cli(ws)
    monkeypatch.undo()
    check_consistent(ws, outcome)
    ws.notes["at_stop"] = len(ws.records())
    resumed = run_cli(ws, "--resume")
    assert resumed.exit == 0, resumed.output
    ws.notes["resumed_equal"] = tree_bytes(ws.out) == ref
    return outcome


def run_tmpfs(ws: Ws) -> Outcome:
    ws.out = ws.root / "mnt" / "ds"
    with tmpfs(ws.root / "mnt", "64m"):
        ref = run_reference(ws, workers=2)
        remount(ws.root / "mnt", "1m")
        outcome = run_cli(ws, workers=2)
        check_consistent(ws, outcome)
        ws.notes["at_stop"] = len(ws.records())
        remount(ws.root / "mnt", "64m")
        resumed = run_cli(ws, "--resume", workers=2)
        assert resumed.exit == 0, resumed.output
        ws.notes["resumed_equal"] = tree_bytes(ws.out) == ref
    return outcome


def _cli_cmd(ws: Ws, *extra: str) -> list[str]:
    path = ws.root / "recipe.yaml"
    return [sys.executable, "-m", "defectsynth.cli", "generate", str(path), "-o", str(ws.out),
            "-j", "2", "--no-progress", *extra]


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _foreground_signals() -> None:
    # a job started from a terminal gets SIGINT at its default; when the tests themselves
    # run as a background job (nohup ... &), SIGINT is ignored and the run rightly leaves
    # it so (graceful_signals): give the child what a terminal would
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(ws: Ws, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        _cli_cmd(ws, *extra),
        preexec_fn=_foreground_signals,
        start_new_session=True,  # its own process group, like a job in a terminal
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )


def _wait_for_lines(ws: Ws, proc: subprocess.Popen[bytes], n: int) -> None:
    deadline = time.monotonic() + 60
    while _lines(ws.out / MANIFEST) < n and proc.poll() is None:
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.002)


def run_signals(ws: Ws) -> Outcome:
    ws.write_recipe()
    ref = subprocess.run(_cli_cmd(ws), capture_output=True)
    assert ref.returncode == 0, ref.stderr
    reference = tree_bytes(ws.out)
    shutil.rmtree(ws.out)
    if ws.notes["signal"] in ("sigint", "sigterm"):
        proc = _start(ws)
        _wait_for_lines(ws, proc, 3)
        if ws.notes["signal"] == "sigint":
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        else:
            os.kill(proc.pid, signal.SIGTERM)  # what a job scheduler does first
        out, err = proc.communicate(timeout=60)
        outcome = Outcome(proc.returncode, (out + err).decode())
        assert _lines(ws.out / MANIFEST) < 32, "the run finished before the signal"
    else:
        rnd = random.Random()
        seed = rnd.randrange(1 << 30)
        rnd.seed(seed)
        kills = 0
        for attempt in range(3):
            proc = _start(ws, *(["--resume"] if attempt else []))
            _wait_for_lines(ws, proc, _lines(ws.out / MANIFEST) + rnd.randint(1, 6))
            time.sleep(rnd.uniform(0, 0.03))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += proc.returncode == -signal.SIGKILL
        assert kills >= 2, f"the runs ended before they could be killed (seed {seed})"
        done = subprocess.run(_cli_cmd(ws, "--resume"), capture_output=True)
        outcome = Outcome(done.returncode, (done.stdout + done.stderr).decode())
    check_consistent(ws, outcome)
    if outcome.exit != 0:
        ws.notes["at_stop"] = len(ws.records())
        done = subprocess.run(_cli_cmd(ws, "--resume"), capture_output=True)
        assert done.returncode == 0, done.stderr
    ws.notes["resumed_equal"] = tree_bytes(ws.out) == reference
    return outcome


# -- the test -------------------------------------------------------------------------------


@pytest.fixture
def world_writable_tmp() -> Iterator[Path]:
    """A workspace another user can enter (pytest's tmp folders are private to root)."""
    root = Path(tempfile.mkdtemp(prefix="defectsynth-bad-"))
    root.chmod(0o777)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("row", TABLE, ids=[r.id for r in TABLE])
def test_bad_input(
    row: Row, tmp_path: Path, world_writable_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = base(tmp_path / "ws")
    row.build(ws)
    if ws.notes.get("signal"):
        outcome = run_signals(ws)
    elif ws.notes.get("tmpfs"):
        outcome = run_tmpfs(ws)
    elif "enospc_after" in ws.notes or "manifest_full_after" in ws.notes:
        outcome = run_enospc(ws, monkeypatch)
    elif ws.notes.get("mount_ro"):
        ws.out = ws.root / "ro" / "ds"
        with tmpfs(ws.root / "ro", "1m", read_only=True):
            outcome = run_cli(ws)
    elif "as_nobody" in ws.notes:
        outcome = run_unprivileged(ws, row, world_writable_tmp)
    elif row.id == "header-40000x40000":
        outcome = run_spying_decoder(ws, monkeypatch)
    else:
        outcome = run_cli(ws)
    assert outcome.exit == row.exit, outcome.output
    assert re.search(row.says, outcome.output), f"{row.says!r} not in:\n{outcome.output}"
    check_consistent(ws, outcome)
    if row.exit == 2:
        assert not ws.out.is_dir(), "a recipe error must not create the output folder"
    if row.samples is not None:
        # after a stop (rows that resume afterwards), else at the end
        assert ws.notes.get("at_stop", len(ws.records())) == row.samples
    if row.check is not None:
        row.check(ws)


def run_unprivileged(ws: Ws, row: Row, shared: Path) -> Outcome:
    """Permissions only stop other users: as root the run goes as 'nobody' in a workspace
    that user can enter; as anyone else chmod is enough."""
    if not ws.notes["as_nobody"]:
        target = ws.images / "locked.png" if row.id == "unreadable" else ws.out.parent
        if os.access(target, os.R_OK if row.id == "unreadable" else os.W_OK):
            pytest.skip("this user can read or write anything (a capability)")
        return run_cli(ws)
    moved = shared / "ws"
    shutil.copytree(ws.root, moved, symlinks=True)
    for p in [moved, *moved.rglob("*")]:
        if p.name not in ("locked.png", "locked"):
            p.chmod(0o777 if p.is_dir() else 0o666)
    ws.root, ws.out = moved, moved / ws.out.relative_to(ws.root)
    with as_user(NOBODY):
        return run_cli(ws)


def run_spying_decoder(ws: Ws, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    bomb = (ws.images / "bomb.png").read_bytes()
    real = imagefile.cv2.imdecode
    ws.notes["decoded_bomb"] = False

    def spy(buf: np.ndarray, flags: int) -> Any:
        if bytes(buf[:64]) == bomb[:64]:
            ws.notes["decoded_bomb"] = True
        return real(buf, flags)

    monkeypatch.setattr(imagefile.cv2, "imdecode", spy)
    return run_cli(ws)


def test_recipe_paths_outside_are_read_only_when_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recipe in one folder naming images in another (outside the working directory
    too) is refused until the user allows that folder: --allow-path, the variable, or the
    Python API's allow_paths; '/' allows anything."""
    make_inputs(tmp_path / "data", n=2, masks=False)
    (tmp_path / "recipes").mkdir()
    recipe = recipe_dict(inputs={"images": str(tmp_path / "data" / "images")}, variants=1,
                         negatives=0.0, output={"formats": ["coco"]})
    path = tmp_path / "recipes" / "r.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    monkeypatch.chdir(tmp_path / "recipes")
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    monkeypatch.setenv(ALLOW_ENV, str(PLUGINS))  # the test plugins only

    def gen(*extra: str, out: str) -> Outcome:
        res = CliRunner().invoke(cli, [*extra, "generate", str(path), "-o",
                                       str(tmp_path / out), "--no-progress"])
        return Outcome(res.exit_code, res.output)

    refused = gen(out="a")
    assert refused.exit == 2 and "inputs.images" in refused.output
    assert "outside the folders a recipe may read" in refused.output
    assert not (tmp_path / "a").exists()
    assert gen("--allow-path", str(tmp_path / "data"), out="b").exit == 0
    assert gen("--allow-path", "/", out="c").exit == 0
    monkeypatch.setenv(ALLOW_ENV, os.pathsep.join([str(PLUGINS), str(tmp_path / "data")]))
    assert gen(out="d").exit == 0
    assert (tmp_path / "b" / "manifest.jsonl").read_bytes() == (
        tmp_path / "d" / "manifest.jsonl").read_bytes()
    monkeypatch.setenv(ALLOW_ENV, str(PLUGINS))
    with pytest.raises(RecipeError, match=r"inputs\.images: .* outside the folders"):
        load_recipe(path)
    assert len(load_recipe(path, allow_paths=[tmp_path / "data"]).sources()) == 2


# -- the same rules through the Python API ---------------------------------------------------


def test_synthesizer_raises_by_default_and_rejects_on_request() -> None:
    from defectsynth.errors import GeneratorFailure
    from defectsynth.plugins import PluginHost
    from defectsynth.synthesizer import Entry, Synthesizer

    host = PluginHost([PLUGINS, HOSTILE])
    image = textured()
    entries = [Entry("blob"), Entry("hostile", params={"mode": "nan"})]
    with pytest.raises(GeneratorFailure, match="generator 'hostile': Layer.pixels contains NaN"):
        for seed in range(20):
            Synthesizer(entries, instances=3, host=host).apply(image, seed=seed)
    synth = Synthesizer(entries, instances=3, host=host, on_failure="reject")
    sample = synth.apply(image, seed=1)
    failed = [err for name, err in sample.render_log if err is not None]
    assert failed and all("hostile" in err for err in failed)
    assert sample.stats["generator_failures"] == len(failed)
    assert all(a.generator == "blob" for a in sample.annotations)
    with pytest.raises(ValueError, match="on_failure must be 'raise' or 'reject'"):
        Synthesizer(entries, host=host, on_failure="ignore")


def test_resume_accepts_another_failure_limit(tmp_path: Path) -> None:
    ws = base(tmp_path)
    ws.recipe["variants"] = 2
    assert run_cli(ws, "--limit", "2").exit == 0
    resumed = run_cli(ws, "--resume", "--max-generator-failures", "3")
    assert resumed.exit == 0, resumed.output
    assert len(ws.records()) == 4
    ws.recipe["seed"] = 6  # a recipe change that matters is still refused
    refused = run_cli(ws, "--resume")
    assert refused.exit == 1 and "differs in: seed" in refused.output


# -- one bad file never stops a run (issue 20) -------------------------------------------------

CRASHES = Path(__file__).parent / "fuzz-crashes"
EXPLODING = Path(__file__).parent / "plugins_exploding"
BACKENDS = [
    pytest.param(["-j", "1"], id="workers-1"),
    pytest.param(["-j", "2"], id="workers-2"),
    pytest.param(["--dask-local", "2"], id="dask-local-2", marks=pytest.mark.dask),
]


def _run_with(ws: Ws, backend: list[str]) -> Outcome:
    if "--dask-local" in backend:
        pytest.importorskip("distributed")
    path = ws.write_recipe()
    args = ["generate", str(path), "-o", str(ws.out), "--no-progress", *backend]
    res = CliRunner().invoke(cli, args)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return Outcome(res.exit_code, res.output)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_tiff_that_crashed_generate_is_skipped_and_the_rest_written(
    backend: list[str], tmp_path: Path
) -> None:
    ws = base(tmp_path / "ws", n=1)
    shutil.copy(CRASHES / "image" / "tiff-imagelength-count-0.tif", ws.images / "bad.tif")
    outcome = _run_with(ws, backend)
    assert outcome.exit == 0, outcome.output
    assert "bad.tif: is corrupt: TIFF tag 257 (ImageLength) has no value" in outcome.output
    check_consistent(ws, outcome)
    check_skipped("bad.tif")(ws)
    assert [r["source"] for r in ws.records()] == ["p0.png"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_reader_that_raises_anything_skips_only_its_source(
    backend: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the plugin patches the decoder in every process that loads it; restored here after
    monkeypatch.setattr(imagefile, "decode_image", imagefile.decode_image)
    ws = base(tmp_path / "ws", n=2)
    ws.recipe["plugin_dirs"] = [str(PLUGINS), str(EXPLODING)]
    (ws.images / "boom.png").write_bytes(encoded(textured(seed=31)) + b"EXPLODE")
    outcome = _run_with(ws, backend)
    assert outcome.exit == 0, outcome.output
    assert (
        "boom.png: unexpected error while reading: RuntimeError: the decoder exploded on "
        "this file; please report it" in outcome.output
    ), outcome.output
    check_consistent(ws, outcome)
    assert sorted(r["source"] for r in ws.records()) == ["p0.png", "p1.png"]
    (skip,) = ws.report()["skipped_sources"]
    assert skip["source"] == "boom.png"
    assert "Traceback" in skip["traceback"] and "exploding_decoder.py" in skip["traceback"]


def test_an_estimate_of_the_product_mask_that_raises_skips_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from defectsynth.run import worker as run_module

    ws = base(tmp_path / "ws", n=2)
    ws.recipe["inputs"]["product_mask"] = "auto"
    (ws.images / "odd.png").write_bytes(encoded(textured(h=80, seed=32)))
    real = run_module.resolve_product_mask

    def fragile(spec: Any, image: np.ndarray) -> np.ndarray:
        if image.shape[0] == 80:
            raise ZeroDivisionError("division by zero")
        return real(spec, image)

    monkeypatch.setattr(run_module, "resolve_product_mask", fragile)
    outcome = run_cli(ws)
    assert outcome.exit == 0, outcome.output
    assert (
        "odd.png: unexpected error while estimating the product mask: ZeroDivisionError: "
        "division by zero; please report it" in outcome.output
    ), outcome.output
    check_consistent(ws, outcome)
    assert sorted(r["source"] for r in ws.records()) == ["p0.png", "p1.png"]


def test_the_product_mask_estimated_by_the_worker_is_the_one_apply_would_make(
    tmp_path: Path,
) -> None:
    """The worker estimates an ``auto`` product mask itself (to name its failures); the
    dataset must be the one the synthesizer makes alone."""
    from defectsynth.run import Plan, TaskRunner, WorkerSpec

    ws = base(tmp_path / "ws", n=1)
    ws.recipe["inputs"]["product_mask"] = "auto"
    img = textured(seed=33)
    img[:, :30] = 0  # a dark margin: not product
    alpha = np.full(img.shape[:2], 255, np.uint8)
    alpha[:10] = 0
    (ws.images / "p0.png").write_bytes(encoded(np.dstack([img, alpha])))
    recipe = load_recipe(ws.write_recipe())
    runner = TaskRunner(WorkerSpec(recipe=recipe, out_dir=str(ws.out)))
    task = Plan.build(recipe).task(0)
    sample, _ = runner.sample(task)
    alone = Synthesizer.from_recipe(recipe).apply(
        read_image(task.source)[0], seed=recipe.seed, source_id=sample.source_id,
        variant=task.variant, instances=0 if task.negative else None,
    )
    assert np.array_equal(sample.image, alone.image)
    assert [a.box for a in sample.annotations] == [a.box for a in alone.annotations]


def test_defect_dataset_names_the_file_whose_reader_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from defectsynth.errors import InputImageError
    from defectsynth.integrations import dataset as dataset_module
    from defectsynth.integrations.dataset import DefectDataset

    ws = base(tmp_path / "ws", n=1)
    boom = ws.images / "boom.png"
    boom.write_bytes(encoded(textured(seed=34)))
    real = dataset_module.decode_image

    def exploding(data: bytes, max_pixels: int) -> np.ndarray:
        if data == boom.read_bytes():
            raise RuntimeError("the decoder exploded on this file")
        return real(data, max_pixels)

    monkeypatch.setattr(dataset_module, "decode_image", exploding)
    ds = DefectDataset(ws.images, load_recipe(ws.write_recipe()))
    ds[ds.sources.index("p0.png")]  # the good one still works
    with pytest.raises(InputImageError) as info:
        ds[ds.sources.index("boom.png")]
    assert str(info.value) == (
        f"{boom}: unexpected error while reading: RuntimeError: the decoder exploded on this "
        "file; please report it"
    )
    assert isinstance(info.value.__cause__, RuntimeError)


def _crash_inputs(kind: str) -> list[Path]:
    return sorted(p for p in (CRASHES / kind).glob("*") if p.is_file() and p.suffix != ".md")


@pytest.mark.parametrize("path", _crash_inputs("image"), ids=lambda p: p.name)
def test_every_image_crash_ever_found_is_refused_with_a_reason(path: Path) -> None:
    with pytest.raises(imagefile.InputImageError) as info:
        imagefile.decode_image(path.read_bytes())
    assert str(info.value).startswith(("is ", "decoded to ", "has "))


def test_a_tiff_tag_without_a_value_is_a_corrupt_file() -> None:
    data = (CRASHES / "image" / "tiff-imagelength-count-0.tif").read_bytes()
    with pytest.raises(imagefile.InputImageError, match=r"^is corrupt: TIFF tag 257 "
                       r"\(ImageLength\) has no value$"):
        imagefile.probe_image(data)


# -- labeled folders: a bad label file is skipped with its reason or a SourceError ----------

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fuzz_inputs  # noqa: E402

from defectsynth.transplant import sources  # noqa: E402
from defectsynth.transplant.sources import SourceError, read_source  # noqa: E402


@pytest.mark.parametrize("path", _crash_inputs("labels"), ids=lambda p: p.name)
def test_every_label_crash_ever_found_is_a_skip_or_a_source_error(path: Path) -> None:
    fuzz_inputs.replay_label_file(path)  # raises anything but SourceError


@pytest.fixture
def label_folders() -> Iterator[fuzz_inputs.LabelFolders]:
    folders = fuzz_inputs.LabelFolders()
    yield folders
    folders.close()


@pytest.mark.parametrize(
    ("name", "skipped"),
    [
        ("coco-bbox-nan.json", "instances.json: annotation 1: bbox value is nan, not a finite "
         "number"),
        ("coco-rle-size-lies.json", "instances.json: annotation 1: RLE size 100000x100000 "
         "(h x w) is not the image's 24x32"),
        ("coco-rle-huge-image.json", "instances.json: image 0: image 'a.png' size 100000x100000 "
         "px is not a usable image size"),
        ("coco-rle-string-ends-mid-count.json", "instances.json: annotation 1: compressed RLE "
         "counts end in the middle of a count"),
        ("coco-file-name-nul.json", "instances.json: image 'a\\x00.png' not found"),
        ("yolo-nan-box.txt", "labels/a.txt:1: a value is not a finite number"),
        ("yolo-not-utf8.txt", "labels/a.txt: is not UTF-8 text (byte 0)"),
        ("yaml-names-alias-bomb.yaml", "data.yaml: names: a class name is list, not a string"),
        ("voc-height-not-a-number.xml", "Annotations/a.xml: height 'abc' is not a number"),
        ("voc-billion-laughs.xml", "Annotations/a.xml: has a document type declaration (DTD), "
         "refused: its entities could expand without bound"),
        ("voc-external-entity.xml", "Annotations/a.xml: has a document type declaration (DTD), "
         "refused"),
    ],
)
def test_a_bad_label_is_skipped_with_its_reason(
    name: str, skipped: str, label_folders: fuzz_inputs.LabelFolders
) -> None:
    path = CRASHES / "labels" / name
    kind = next(k for k, v in fuzz_inputs.LABEL_LAYOUT.items() if v[2] == path.suffix)
    root = label_folders.write(kind, path.read_bytes())
    try:
        listing = read_source(root, fuzz_inputs.LABEL_LAYOUT[kind][1])
        reasons = listing.skipped
    except SourceError as exc:
        reasons = [str(exc).split(" (", 1)[1]]  # "no ... labels found in ROOT (why; ...)"
    assert any(r.startswith(skipped) for r in reasons), reasons


def test_a_label_file_whose_reader_raises_anything_is_skipped_and_the_rest_read(
    label_folders: fuzz_inputs.LabelFolders, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeds = fuzz_inputs.label_seeds()
    root = label_folders.write("coco", seeds["coco"])
    (root / "broken.json").write_bytes(seeds["coco"])
    real = sources._read_coco_doc

    def fragile(root: Path, rel: str, data: dict[str, Any], listing: Any) -> None:
        if rel == "broken.json":
            raise IndexError("list index out of range")
        real(root, rel, data, listing)

    monkeypatch.setattr(sources, "_read_coco_doc", fragile)
    listing = read_source(root, "coco")
    assert "broken.json: unexpected error while reading: IndexError: list index out of range; " \
        "please report it" in listing.skipped
    assert len(listing.defects) == 4  # instances.json, read in full


def _tiff_with(tag: int, typ: int | None = None, num: int | None = None,
               value: int | None = None) -> bytes:
    """A little-endian TIFF of OpenCV's with one directory entry changed."""
    data = bytearray(encoded(textured(24, 32, seed=35), ".tif"))
    assert data[:4] == b"II*\x00"
    (ifd,) = struct.unpack("<I", data[4:8])
    (count,) = struct.unpack("<H", data[ifd : ifd + 2])
    for k in range(count):
        at = ifd + 2 + 12 * k
        t, ty, n = struct.unpack("<HHI", data[at : at + 8])
        if t == tag:
            data[at + 2 : at + 8] = struct.pack("<HI", ty if typ is None else typ,
                                                n if num is None else num)
            if value is not None:
                data[at + 8 : at + 12] = struct.pack("<I", value)
            return bytes(data)
    raise AssertionError(f"no tag {tag}")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_tiff_with(256, num=0), r"^is corrupt: TIFF tag 256 \(ImageWidth\) has no value$"),
        (_tiff_with(257, typ=2), r"^is corrupt: TIFF tag 257 \(ImageLength\) has type 2, not an "
         r"unsigned integer type$"),
        (_tiff_with(273, num=1 << 24), r"^is corrupt: TIFF tag 273 \(StripOffsets\) claims "
         r"16777216 values$"),
        (_tiff_with(279, num=2, value=4), r"^is corrupt: TIFF tag 279 \(StripByteCounts\): its "
         r"values at offset 4 overlap the header$"),
        (_tiff_with(279, typ=3, num=3, value=8), r"^is corrupt: TIFF tag 273 \(StripOffsets\) "
         r"has \d+ values? but tag 279 \(StripByteCounts\) has 3$"),
        (b"II*\x00\x04\x00\x00\x00" + b"\x00" * 16, r"^is corrupt: TIFF first directory offset "
         r"4 points into the file header$"),
        (b"II*\x00\x08\x00\x00\x00\xff\xff" + b"\x00" * 16, r"^is corrupt: TIFF first directory "
         r"claims 65535 entries$"),
    ],
    ids=["no-value", "ascii-height", "huge-count", "offset-into-header", "counts-differ",
         "ifd-in-header", "many-entries"],
)
def test_a_tiff_directory_that_lies_is_corrupt(data: bytes, message: str) -> None:
    with pytest.raises(imagefile.InputImageError, match=message):
        imagefile.decode_image(data)


def test_verbose_prints_the_traceback_of_an_unexpected_read_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from defectsynth import imagefile

    real = imagefile.decode_image

    def exploding_here(data: bytes, *args: Any, **kwargs: Any) -> np.ndarray:
        if data.endswith(b"EXPLODE"):
            raise RuntimeError("the decoder exploded on this file")
        return real(data, *args, **kwargs)

    monkeypatch.setattr(imagefile, "decode_image", exploding_here)
    ws = base(tmp_path / "ws", n=1)
    (ws.images / "boom.png").write_bytes(encoded(textured(seed=33)) + b"EXPLODE")
    path = ws.write_recipe()
    args = ["generate", str(path), "-o", str(ws.out), "--no-progress", "-j", "1"]
    quiet = CliRunner().invoke(cli, args)
    assert quiet.exit_code == 0, quiet.output
    assert "boom.png: unexpected error while reading" in quiet.output
    assert "Traceback" not in quiet.output
    loud = CliRunner().invoke(cli, ["-v", *args, "--overwrite"])
    assert loud.exit_code == 0, loud.output
    assert "Traceback (most recent call last)" in loud.output
    assert "exploding_here" in loud.output
