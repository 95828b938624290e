"""A plain mutation fuzzer for the doors untrusted bytes come through: the image reader
(``defectsynth.imagefile.decode_image``), the recipe loader
(``defectsynth.recipe.parse_recipe_text`` + ``Recipe.check``) and the labeled-folder
readers of ``transplant`` (and of ``score`` and ``fit``): COCO JSON, YOLO text and
``data.yaml``, VOC XML (``defectsynth.transplant.sources.read_source``).

Each execution mutates a real seed (small PNG/JPEG/BMP/TIFF/WebP files; a valid recipe's
YAML; valid label files with hostile values put anywhere in them) and calls the target.
The documented errors (InputImageError, RecipeError, SourceError, or a label skipped with
its reason) are expected; anything else is a crash: it is printed, its input saved under
``--crashes``, and the exit status is 1. Keep every crash input as a regression case:
image and label inputs in ``tests/fuzz-crashes/{image,labels}/`` (tests/test_bad_inputs.py
replays them all), a recipe as a row of the table in tests/test_bad_inputs.py.
Hypothesis covers the same ground in ``tests/test_fuzz.py`` with a small budget; this loop
is for depth:

    python benchmarks/fuzz_inputs.py                 # every target, 10**7 executions each
    python benchmarks/fuzz_inputs.py --target labels --runs 1000000 --seed 1
    python benchmarks/fuzz_inputs.py --target image --seconds 300

It prints executions, executions per second and the outcome counts per target.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from dataset_factory import PLUGINS, recipe_dict  # noqa: E402

from defectsynth.build import check_recipe  # noqa: E402
from defectsynth.errors import InputImageError, RecipeError  # noqa: E402
from defectsynth.imagefile import decode_image  # noqa: E402
from defectsynth.plugins import PluginHost  # noqa: E402
from defectsynth.recipe import parse_recipe_text  # noqa: E402
from defectsynth.transplant import sources  # noqa: E402
from defectsynth.transplant.sources import SourceError, decode_coco_rle, read_source  # noqa: E402

MAX_PIXELS = 1_000_000


def image_seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    smooth = cv2.GaussianBlur(img, (0, 0), 3)
    seeds = []
    for ext, arr, params in (
        (".png", img, []),
        (".png", smooth[:, :, 0], []),
        (".png", img.astype(np.uint16) * 257, []),
        (".png", np.dstack([img, img[:, :, 0]]), []),
        (".jpg", smooth, []),
        (".jpg", smooth, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        (".jpg", smooth[:, :, 0], []),
        (".bmp", img, []),
        (".tiff", img, []),
        (".webp", smooth, []),
        (".webp", smooth, [cv2.IMWRITE_WEBP_QUALITY, 101]),
    ):
        ok, buf = cv2.imencode(ext, arr, params)
        assert ok
        seeds.append(buf.tobytes())
    return seeds


YAML_TOKENS = [
    b"&a ", b"*a", b"!!python/object:os.system ", b"!!binary ", b"!!set ", b"[", b"]", b"{",
    b"}", b": ", b"- ", b"\n", b"\n  ", b"~", b"1e400", b"-1", b"0", b"99999999999999999999",
    b".nan", b".inf", b"'", b'"', b"\\0", b"<<: ", b"? ", b"|", b">", b"%YAML 1.1\n", b"---\n",
    b"\t", b"\xff", b"\x00", b"seed", b"defects", b"generator", b"category", b"../", b"/",
]


def mutate(data: bytes, rnd: random.Random, tokens: list[bytes] | None = None) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(7 if tokens else 6)
        at = rnd.randrange(len(b) + 1) if b else 0
        if op == 0 and b:
            b[min(at, len(b) - 1)] ^= 1 << rnd.randrange(8)
        elif op == 1:
            del b[at:]
        elif op == 2:
            b[at:at] = rnd.randbytes(rnd.randint(1, 16))
        elif op == 3:
            del b[at : at + rnd.randint(1, 32)]
        elif op == 4 and b:
            pos = rnd.randrange(min(len(b), 40))  # size fields live near the start
            b[pos] = rnd.choice([0x00, 0x7F, 0x80, 0xFF, 0x9C])
        elif op == 5 and b:
            end = min(len(b), at + rnd.randint(1, 64))
            b[at:at] = b[at:end]
        elif tokens:
            b[at:at] = rnd.choice(tokens)
    return bytes(b)


def fuzz_image(rnd: random.Random, seeds: list[bytes]) -> tuple[str, bytes, Callable[[], None]]:
    data = rnd.randbytes(rnd.randint(0, 64)) if rnd.random() < 0.05 else mutate(
        rnd.choice(seeds), rnd
    )

    def call() -> None:
        img = decode_image(data, MAX_PIXELS)
        assert img.dtype in (np.uint8, np.uint16), img.dtype
        assert img.ndim == 2 or img.shape[2] in (3, 4), img.shape
        assert img.shape[0] * img.shape[1] <= MAX_PIXELS

    return "image", data, call


def fuzz_recipe(
    rnd: random.Random, seed_text: bytes, host: PluginHost
) -> tuple[str, bytes, Callable[[], None]]:
    data = mutate(seed_text, rnd, YAML_TOKENS)

    def call() -> None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return  # read_recipe refuses it before parsing (tested elsewhere)
        recipe = parse_recipe_text(text, file="fuzz.yaml", base_dir=ROOT)
        check_recipe(recipe, host)

    return "recipe", data, call


# -- labeled folders (transplant, score, fit) ---------------------------------------------

#: the two source images every label folder holds: name -> (height, width)
LABEL_IMAGES = {"a.png": (24, 32), "b.png": (20, 24)}

#: values put anywhere in a label: wrong types, NaN, infinities, huge and negative numbers
HOSTILE: list[object] = [
    None, True, False, 0, -1, -7.5, 0.5, 1, 3, 24, 10**6, 2**31, 2**64, 10**30, 1e308,
    float("nan"), float("inf"), float("-inf"), "", "x", "1e999", "NaN", "-0", "../a.png",
    "a.png", "b.png", "a\x00.png", "x" * 300, [], {}, [[]], [0, 0, 0], [1, 2, 3, 4],
    [-5, -5, -1, -1], [1e9, 1e9, 1e9, 1e9], [float("nan")] * 4, [[1, 2, 3]],
    [[0, 0, 40, 0, 40, 30]], [[0, 0, 5, 5, 5]], {"size": [24, 32], "counts": [768]},
    {"size": [24, 32], "counts": [10**12]}, {"size": [10**9, 10**9], "counts": [10**18]},
    {"size": [24, 32], "counts": [-1, 769]}, {"size": [24, 32], "counts": "0"},
    {"size": [24, 32], "counts": "PPP"}, {"size": [24, 32], "counts": "\x7f\x00"},
    {"size": [24], "counts": []}, {"size": "24x32", "counts": [1]},
    {"size": [24, 32], "counts": [1.5, 766.5]}, {"counts": None},
    {"size": [-24, -32], "counts": [768]}, {"size": [24, 32], "counts": [0] * 2000},
]

_RLE = {"size": [24, 32], "counts": [100, 6, 18, 6, 18, 6, 614]}


def rle_string(counts: list[int]) -> str:
    """Compressed COCO RLE counts (the inverse of ``sources._rle_string_counts``): from the
    third count on, the difference to the count two places back, in 5-bit groups with a
    continuation bit, offset by 48."""
    out = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr(c + 48 + (0x20 if more else 0)))
    return "".join(out)


def label_seeds() -> dict[str, bytes]:
    """One valid label file per kind: ``coco`` (a COCO json with a box, a polygon, an
    uncompressed and a compressed RLE), ``yolo`` (a label .txt: a box and a polygon),
    ``yaml`` (a data.yaml) and ``voc`` (a VOC xml)."""
    coco = {
        "images": [
            {"id": 1, "file_name": "a.png", "height": 24, "width": 32},
            {"id": 2, "file_name": "b.png"},
        ],
        "categories": [{"id": 1, "name": "scratch"}, {"id": 2, "name": "dent"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [3, 4, 10, 6], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [14, 2, 8, 9],
             "segmentation": [[14, 2, 22, 2, 22, 11, 14, 11]]},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [4, 4, 3, 6], "segmentation": _RLE},
            {"id": 4, "image_id": 2, "category_id": 2, "bbox": [2, 10, 2, 5],
             "segmentation": {"size": [20, 24], "counts": rle_string([50, 5, 15, 5, 405])}},
        ],
    }
    voc = (
        "<annotation><filename>a.png</filename><size><width>32</width><height>24</height>"
        "<depth>3</depth></size><object><name>scratch</name><bndbox><xmin>3</xmin>"
        "<ymin>4</ymin><xmax>12</xmax><ymax>10</ymax></bndbox></object><object><name>dent"
        "</name><bndbox><xmin>14</xmin><ymin>2</ymin><xmax>22</xmax><ymax>11</ymax>"
        "</bndbox></object></annotation>"
    )
    return {
        "coco": json.dumps(coco).encode(),
        "yolo": b"0 0.25 0.3 0.2 0.25\n1 0.5 0.1 0.7 0.1 0.7 0.4 0.5 0.4\n",
        "yaml": b"path: .\ntrain: images\nnames:\n  0: scratch\n  1: dent\n",
        "voc": voc.encode(),
    }


#: where each kind's file goes in its folder, the format asked for, and its suffix
LABEL_LAYOUT = {
    "coco": ("instances.json", "coco", ".json"),
    "yolo": ("labels/a.txt", "yolo", ".txt"),
    "yaml": ("data.yaml", "yolo", ".yaml"),
    "voc": ("Annotations/a.xml", "voc", ".xml"),
}

LABEL_TOKENS = [
    b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1", b"0", b"99999999999999999999",
    b"null", b"true", b"[", b"]", b"{", b"}", b",", b":", b'"', b"\n", b" ", b"\xff\xfe",
    b"\x00", b"nan", b"inf", b"0x10", b"&a ", b"*a", b"!!binary ", b"<", b">", b"</",
    b"<!DOCTYPE a [<!ENTITY b \"bbbbbbbb\">]>", b"&b;", b"&#0;", b"<object>", b"<bndbox>",
]


class LabelFolders:
    """One source folder per kind of label file, on a RAM disk when there is one, with the
    two images of :data:`LABEL_IMAGES` and a valid file of every other kind it needs; each
    execution writes the file under test into its folder and reads the folder."""

    def __init__(self) -> None:
        shm = Path("/dev/shm")
        self.base = Path(tempfile.mkdtemp(prefix="fuzz-labels-", dir=shm if shm.is_dir() else None))
        seeds = label_seeds()
        rng = np.random.default_rng(1)
        self.roots: dict[str, Path] = {}
        for kind in LABEL_LAYOUT:
            root = self.base / kind
            (root / "images").mkdir(parents=True)
            for name, (h, w) in LABEL_IMAGES.items():
                img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                cv2.imwrite(str(root / "images" / name), img)
            if kind in ("yolo", "yaml"):
                for other in ("yolo", "yaml"):
                    path = root / LABEL_LAYOUT[other][0]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(seeds[other])
            self.roots[kind] = root

    def write(self, kind: str, data: bytes) -> Path:
        root = self.roots[kind]
        path = root / LABEL_LAYOUT[kind][0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return root

    def close(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


def _reraise(exc: Exception) -> str:
    raise exc


def check_label_folder(root: Path, fmt: str) -> None:
    """What must hold for any folder of labels: ``read_source`` returns a listing or
    raises SourceError; every defect it lists has a non-empty box inside the image, finite
    polygons, and an RLE that decodes to the image's size or raises SourceError. (A label
    file whose reader raised something else would be skipped as "unexpected error ...;
    please report it": the fuzzer makes that raise instead, so it is a crash.)"""
    real = sources._unexpected
    sources._unexpected = _reraise  # type: ignore[assignment]
    try:
        listing = read_source(root, fmt)
    finally:
        sources._unexpected = real  # type: ignore[assignment]
    assert all("please report it" not in s for s in listing.skipped), listing.skipped
    for d in listing.defects:
        x1, y1, x2, y2 = d.box
        assert all(type(v) is int for v in d.box) and 0 <= x1 < x2 and 0 <= y1 < y2, d.box
        assert all(math.isfinite(v) for p in d.polygons for v in p), d.polygons
        if d.rle is not None:
            try:
                mask = decode_coco_rle(d.rle)
            except SourceError:
                continue
            assert mask.shape == tuple(d.rle["size"]) and mask.dtype == bool


def _hostile(rnd: random.Random) -> object:
    return copy.deepcopy(rnd.choice(HOSTILE))


def _put_hostile(node: object, rnd: random.Random) -> object:
    """``node`` (parsed JSON) with one value, anywhere, replaced by a hostile one."""
    if isinstance(node, dict) and node and rnd.random() < 0.8:
        key = rnd.choice(list(node))
        if rnd.random() < 0.1:
            some = rnd.choice(["id", "size", "counts", "bbox", "segmentation", key])
            node[some] = _hostile(rnd)
        else:
            node[key] = _put_hostile(node[key], rnd)
        return node
    if isinstance(node, list) and node and rnd.random() < 0.8:
        k = rnd.randrange(len(node))
        op = rnd.random()
        if op < 0.1:
            node.append(_hostile(rnd))
        elif op < 0.15:
            del node[k]
        elif op < 0.2:
            node.extend(copy.deepcopy(node) * rnd.randint(1, 4))
        else:
            node[k] = _put_hostile(node[k], rnd)
        return node
    return _hostile(rnd)


def _yolo_line(rnd: random.Random) -> bytes:
    nums = ["0", "1", "-1", "0.5", "0.25", "1.5", "nan", "inf", "-inf", "1e400", "2e-9",
            "99999999999999999999", "0x10", "1_0", "x", "", "3"]
    n = rnd.choice([0, 1, 4, 5, 6, 7, 8, 9, 12, rnd.randint(0, 40)])
    return " ".join(rnd.choice(nums) for _ in range(n + 1)).encode()


def _yaml_names(rnd: random.Random) -> bytes:
    return rnd.choice([
        b"names: [a, b, c]\n", b"names: {0: a, 1: b}\n", b"names: {a: 1, b: 2}\n",
        b"names: {0: [x, y], 1: {k: v}}\n", b"names: 5\n", b"names: ~\n", b"- names\n",
        b"names: {-1: a, 1e3: b, .nan: c}\n", b"names: [[[[[[[[[[]]]]]]]]]]\n",
        b"a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
        b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nnames: [*c, *c, *c, *c, *c, *c, *c, *c]\n",
        b"names: &r [*r]\n", b"names: !!binary aGVsbG8=\n", b"names: {? [1, 2] : a}\n",
        b"names: [" + b"[" * 200 + b"]" * 200 + b"]\n",
    ])


def _voc_doc(rnd: random.Random, seed: bytes) -> bytes:
    vals = ["3", "-1", "0", "nan", "inf", "1e400", "abc", "", "12.5", "99999999999", "24"]
    if rnd.random() < 0.5:
        return seed
    parts = [f"<annotation><filename>{rnd.choice(['a.png', 'b.png', '', '../x.png'])}</filename>"]
    if rnd.random() < 0.8:
        parts.append(f"<size><width>{rnd.choice(vals)}</width><height>{rnd.choice(vals)}"
                     "</height></size>")
    for _ in range(rnd.randint(0, 4)):
        parts.append(f"<object><name>{rnd.choice(['scratch', '', ' d '])}</name><bndbox>"
                     + "".join(f"<{t}>{rnd.choice(vals)}</{t}>"
                               for t in ("xmin", "ymin", "xmax", "ymax") if rnd.random() < 0.9)
                     + "</bndbox></object>")
    parts.append("</annotation>")
    doc = "".join(parts).encode()
    if rnd.random() < 0.1:
        doc = (b'<?xml version="1.0"?><!DOCTYPE annotation [<!ENTITY a "aaaaaaaaaa">'
               b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>' + doc.replace(b"scratch", b"&b;"))
    return doc


def label_case(rnd: random.Random, seeds: dict[str, bytes]) -> tuple[str, bytes]:
    """A kind of label file and its (hostile) content."""
    kind = rnd.choice(list(LABEL_LAYOUT))
    if kind == "coco":
        if rnd.random() < 0.85:
            doc = json.loads(seeds["coco"])
            for _ in range(rnd.randint(1, 3)):
                doc = _put_hostile(doc, rnd)
            data = json.dumps(doc).encode()
        else:
            data = seeds["coco"]
    elif kind == "yolo":
        data = b"\n".join(_yolo_line(rnd) for _ in range(rnd.randint(0, 4)))
    elif kind == "yaml":
        data = _yaml_names(rnd)
    else:
        data = _voc_doc(rnd, seeds["voc"])
    if rnd.random() < 0.3:
        data = mutate(data, rnd, LABEL_TOKENS)
    return kind, data


def fuzz_labels(
    rnd: random.Random, seeds: dict[str, bytes], folders: LabelFolders
) -> tuple[str, bytes, Callable[[], None]]:
    kind, data = label_case(rnd, seeds)
    fmt = "auto" if rnd.random() < 0.2 else LABEL_LAYOUT[kind][1]

    def call() -> None:
        check_label_folder(folders.write(kind, data), fmt)

    return f"labels-{kind}", data, call


def replay_label_file(path: Path) -> None:
    """Run one saved label input (its kind from its suffix) through the label target."""
    kind = next(k for k, (_, _, ext) in LABEL_LAYOUT.items() if path.suffix == ext)
    folders = LabelFolders()
    try:
        root = folders.write(kind, path.read_bytes())
        for fmt in ("auto", LABEL_LAYOUT[kind][1]):
            try:
                check_label_folder(root, fmt)
            except SourceError:
                pass
    finally:
        folders.close()


EXPECTED: dict[str, type[BaseException]] = {
    "image": InputImageError,
    "recipe": RecipeError,
    "labels": SourceError,
}
TARGETS = ("image", "recipe", "labels")

DEFAULT_RUNS = 10_000_000
"""Executions per target by default (docs/robustness.md gives the time it takes)."""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=[*TARGETS, "both", "all"], default="all",
                    help="one target, 'both' (image and recipe) or 'all' (default)")
    ap.add_argument("--runs", type=int, default=None,
                    help=f"executions per target (default {DEFAULT_RUNS:.0e} unless --seconds)")
    ap.add_argument("--seconds", type=float, default=None,
                    help="time budget for the whole run (default: none)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    ap.add_argument("--crashes", type=Path, default=Path("fuzz-crashes"))
    ap.add_argument("-v", "--verbose", action="store_true", help="keep the decoders' warnings")
    args = ap.parse_args(argv)
    runs = args.runs if args.runs is not None else (None if args.seconds else DEFAULT_RUNS)
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    rnd = random.Random(seed)
    if not args.verbose:
        # libpng, libjpeg and OpenCV print warnings about every broken file to stderr
        err = os.dup(2)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        sys.stderr = os.fdopen(err, "w", buffering=1)
    targets = {"both": ["image", "recipe"], "all": list(TARGETS)}.get(args.target, [args.target])
    seeds = image_seeds()
    host = PluginHost([PLUGINS])
    recipe_text = yaml.safe_dump(recipe_dict(variants=2), sort_keys=False).encode()
    labels = label_seeds()
    folders = LabelFolders() if "labels" in targets else None
    counts: dict[str, Counter[str]] = {t: Counter() for t in targets}
    times: Counter[str] = Counter()
    crashes = 0
    start = time.perf_counter()
    n = 0
    active = list(targets)
    try:
        while active:
            if args.seconds is not None and time.perf_counter() - start > args.seconds:
                break
            target = active[n % len(active)]
            t0 = time.perf_counter()
            if target == "image":
                name, data, call = fuzz_image(rnd, seeds)
            elif target == "recipe":
                name, data, call = fuzz_recipe(rnd, recipe_text, host)
            else:
                assert folders is not None
                name, data, call = fuzz_labels(rnd, labels, folders)
            n += 1
            try:
                call()
                counts[target]["accepted"] += 1
            except EXPECTED[target]:
                counts[target]["refused"] += 1
            except KeyboardInterrupt:
                break
            except BaseException:  # SystemExit and friends are crashes too
                crashes += 1
                counts[target]["CRASH"] += 1
                args.crashes.mkdir(parents=True, exist_ok=True)
                ext = LABEL_LAYOUT[name.split("-", 1)[1]][2] if target == "labels" else ".bin"
                path = args.crashes / f"{name}-{n}{ext}"
                path.write_bytes(data)
                print(f"CRASH in {name} (input saved to {path}):", file=sys.stderr)
                traceback.print_exc()
            times[target] += time.perf_counter() - t0
            if runs is not None and sum(counts[target].values()) >= runs:
                active.remove(target)
    finally:
        if folders is not None:
            folders.close()
    elapsed = time.perf_counter() - start
    print(f"seed {seed}: {n} executions in {elapsed:.1f} s ({n / max(elapsed, 1e-9):.0f}/s)")
    for t, c in counts.items():
        total = sum(c.values())
        rate = total / max(times[t], 1e-9)
        print(f"  {t}: {total} executions ({rate:.0f}/s), "
              + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
