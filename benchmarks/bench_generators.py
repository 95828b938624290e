"""Render time of each built-in generator against a full-image Gaussian blur.

For every registered built-in generator, one typical instance (its default ``Params``,
and the median over instances drawn from its out-of-the-box ranges) is rendered on a
region cropped, as the Synthesizer does, from a 1024x1024 BGR image. The unit is
``cv2.GaussianBlur(image, (15, 15), 0)`` of the whole 1024x1024 image, measured in the
same run. Target: every generator at or below 2 units. Prints a table; asserts nothing.

    python benchmarks/bench_generators.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from defectsynth import DefectGenerator, Light, ParamSpace, Region
from defectsynth.plugins import BUILTIN_PLUGINS, get_host

SIDE = 1024
FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "images" / "brushed_metal.png"


def _image() -> np.ndarray:
    img = cv2.imread(str(FIXTURE), cv2.IMREAD_COLOR) if FIXTURE.exists() else None
    if img is None:
        rng = np.random.default_rng(0)
        img = (rng.random((SIDE, SIDE, 3)) * 40 + 110).astype(np.uint8)
    return cv2.resize(img, (SIDE, SIDE), interpolation=cv2.INTER_CUBIC)


def _median_ms(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000.0)
    return statistics.median(times)


def _region(image: np.ndarray, shape: tuple[int, int], light: Light) -> Region:
    h, w = shape
    cy, cx = image.shape[0] // 2, image.shape[1] // 2
    y0, x0 = max(0, cy - h // 2), max(0, cx - w // 2)
    crop = image[y0 : y0 + h, x0 : x0 + w]
    pad = ((0, h - crop.shape[0]), (0, w - crop.shape[1]), (0, 0))
    px = np.pad(crop, pad, mode="reflect").astype(np.float32) / np.float32(255.0)
    px.flags.writeable = False
    pm = np.ones((h, w), np.float32)
    pm.flags.writeable = False
    return Region(pixels=px, product_mask=pm, light=light, texture_scale=9.0)


def _time_instance(
    gen: DefectGenerator, params: Any, image: np.ndarray, seed: int, repeat: int
) -> tuple[float, tuple[int, int]]:
    shape = tuple(int(v) for v in gen.extent(params, np.random.default_rng(seed)))
    region = _region(image, (shape[0], shape[1]), Light(135.0, 40.0))

    def run() -> None:
        gen.render(region, params, np.random.default_rng(seed))

    return _median_ms(run, repeat), (shape[0], shape[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15, help="timed repeats per measurement")
    ap.add_argument("--draws", type=int, default=12, help="varied instances per generator")
    args = ap.parse_args()
    image = _image()
    unit = _median_ms(lambda: cv2.GaussianBlur(image, (15, 15), 0), args.repeat * 2)
    host = get_host()
    builtin = {m.rsplit(".", 1)[-1] for m in BUILTIN_PLUGINS}
    names = [
        n for n in host.generators if (p := host.provider("generator", n)) and p.name in builtin
    ]
    print(f"unit: cv2.GaussianBlur 15x15 of a {SIDE}x{SIDE} BGR uint8 image = {unit:.2f} ms")
    print("(render only, on a region cropped as the Synthesizer does; default OpenCV threads)")
    print()
    head = f"{'generator':<15}{'region':>11}{'default ms':>12}{'units':>7}"
    head += f"{'varied ms':>11}{'units':>7}{'worst ms':>10}{'units':>7}  target <= 2"
    print(head)
    print("-" * len(head))
    for name in names:
        cls: type[DefectGenerator] = host.generator(name)
        gen = cls()
        ms, shape = _time_instance(gen, cls.Params(), image, 0, args.repeat)
        space = ParamSpace(cls, {})
        varied = []
        for i in range(args.draws):
            params = space.draw(np.random.default_rng(1000 + i))
            t, _ = _time_instance(gen, params, image, i, max(3, args.repeat // 3))
            varied.append(t)
        med, worst = statistics.median(varied), max(varied)
        ok = "ok" if max(ms, med) <= 2 * unit else "OVER"
        print(
            f"{name:<15}{shape[0]:>5}x{shape[1]:<5}{ms:>12.2f}{ms / unit:>7.2f}"
            f"{med:>11.2f}{med / unit:>7.2f}{worst:>10.2f}{worst / unit:>7.2f}  {ok}"
        )


if __name__ == "__main__":
    main()
