"""A plain mutation fuzzer for the two doors untrusted bytes come through: the image
reader (``defectsynth.imagefile.decode_image``) and the recipe loader
(``defectsynth.recipe.parse_recipe_text`` + ``Recipe.check``).

Each execution mutates a real seed (small PNG/JPEG/BMP/TIFF/WebP files; a valid recipe's
YAML) and calls the target. The documented errors (InputImageError, RecipeError) are
expected; anything else is a crash: it is printed, its input saved under ``--crashes``,
and the exit status is 1. Hypothesis covers the same ground in ``tests/test_fuzz.py`` with
a small budget; this loop is for long local runs:

    python benchmarks/fuzz_inputs.py --seconds 300              # both targets
    python benchmarks/fuzz_inputs.py --target image --runs 300000

It prints executions, executions per second and the outcome counts per target.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
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

from defectsynth.errors import InputImageError, RecipeError  # noqa: E402
from defectsynth.imagefile import decode_image  # noqa: E402
from defectsynth.plugins import PluginHost  # noqa: E402
from defectsynth.recipe import parse_recipe_text  # noqa: E402

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
        recipe.check(host)

    return "recipe", data, call


EXPECTED = {"image": InputImageError, "recipe": RecipeError}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=["image", "recipe", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=60.0, help="time budget (default 60)")
    ap.add_argument("--runs", type=int, default=None, help="stop after this many executions")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    ap.add_argument("--crashes", type=Path, default=Path("fuzz-crashes"))
    ap.add_argument("-v", "--verbose", action="store_true", help="keep the decoders' warnings")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    rnd = random.Random(seed)
    if not args.verbose:
        # libpng, libjpeg and OpenCV print warnings about every broken file to stderr
        err = os.dup(2)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        sys.stderr = os.fdopen(err, "w", buffering=1)
    seeds = image_seeds()
    host = PluginHost([PLUGINS])
    recipe_text = yaml.safe_dump(recipe_dict(variants=2), sort_keys=False).encode()
    targets = ["image", "recipe"] if args.target == "both" else [args.target]
    counts: dict[str, Counter[str]] = {t: Counter() for t in targets}
    crashes = 0
    start = time.perf_counter()
    n = 0
    while True:
        elapsed = time.perf_counter() - start
        if args.runs is not None and n >= args.runs:
            break
        if args.runs is None and elapsed > args.seconds:
            break
        target = targets[n % len(targets)]
        if target == "image":
            name, data, call = fuzz_image(rnd, seeds)
        else:
            name, data, call = fuzz_recipe(rnd, recipe_text, host)
        n += 1
        try:
            call()
            counts[name]["accepted"] += 1
        except EXPECTED[name]:
            counts[name]["refused"] += 1
        except KeyboardInterrupt:
            break
        except BaseException:  # SystemExit and friends are crashes too
            crashes += 1
            counts[name]["CRASH"] += 1
            args.crashes.mkdir(parents=True, exist_ok=True)
            path = args.crashes / f"{name}-{n}.bin"
            path.write_bytes(data)
            print(f"CRASH in {name} (input saved to {path}):", file=sys.stderr)
            traceback.print_exc()
    elapsed = time.perf_counter() - start
    print(f"seed {seed}: {n} executions in {elapsed:.1f} s ({n / elapsed:.0f}/s)")
    for t, c in counts.items():
        total = sum(c.values())
        print(f"  {t}: {total} executions, " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
