"""Synthesizer.apply on a 1024x1024 BGR image with 3 defects, against PNG encoding.

Target (issue 3): apply <= 0.5x the time of cv2.imencode('.png') of the same image,
measured in the same run. Prints the figures; asserts nothing.

    python benchmarks/bench_synthesizer.py [--repeat 30] [--generators scratch,dent,...]
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np

from defectsynth import Synthesizer
from defectsynth.plugins import PluginHost
from defectsynth.testing import test_surface


def timed(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--generators", default="")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    host = PluginHost()
    names = [n for n in args.generators.split(",") if n] or sorted(host.generators)
    img = test_surface((1024, 1024), seed=1)
    png = timed(lambda: cv2.imencode(".png", img), args.repeat)
    print(f"cv2.imencode('.png') 1024x1024 BGR: {png:.1f} ms (the unit)")
    print(f"{'generators':<40} {'apply ms':>9} {'ratio':>6} {'instances':>9}")
    mixes = [[n] for n in names] + [names]
    for mix in mixes:
        synth = Synthesizer([{"generator": n} for n in mix], instances=3, host=host)
        counter = iter(range(10**9))
        made: list[int] = []

        def run(synth: Synthesizer = synth, counter=counter, made=made) -> None:  # type: ignore[no-untyped-def]
            s = synth.apply(img, seed=next(counter), source_id=1)
            made.append(len(s))

        run()  # warm up
        ms = timed(run, args.repeat)
        label = ",".join(mix) if len(mix) < 4 else f"mix of {len(mix)}"
        print(f"{label:<40} {ms:9.1f} {ms / png:6.2f} {np.mean(made):9.2f}")


if __name__ == "__main__":
    main()
