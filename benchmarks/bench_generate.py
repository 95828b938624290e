"""How fast `defectsynth generate` is against the I/O floor, how it scales, how much memory.

Prints ratios measured in one run; asserts nothing.

- floor: read every source and write it unchanged as PNG (same images, same workers);
- generate: the same sources, 3 defects per image, 1024x1024 PNG output, all four
  built-in formats, one worker -> target >= 0.8x the floor's images/s;
- scaling: 2 workers vs 1 -> target >= 1.7x on a 2-core machine;
- memory: peak RSS of a one-worker run of 2,000 samples vs 200 -> target within 1.2x
  (each run in its own process; the default run uses 20 vs 200 samples of 256x256), and
  the peak RSS of a run over one 4096x3000 source beside one of 1024x1024.

    python benchmarks/bench_generate.py            # short: about a minute on 2 cores
    python benchmarks/bench_generate.py --full     # the sizes above: several minutes
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import yaml

GENERATORS = ("scratch", "dent", "pit", "crack", "discoloration")
FALLBACK_PLUGINS = Path(__file__).resolve().parents[1] / "tests" / "plugins"


def make_sources(folder: Path, n: int, side: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        coarse = rng.integers(60, 190, size=(side // 16, side // 16, 3)).astype(np.uint8)
        img = cv2.resize(coarse, (side, side), interpolation=cv2.INTER_CUBIC)
        grain = rng.normal(0, 6, size=(side, side, 1)).astype(np.float32)
        img = np.clip(img.astype(np.float32) + grain, 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"src{i:04d}.png"), img)


def write_recipe(root: Path, variants: int, generators: list[str], plugin_dirs: list[str]) -> Path:
    recipe = {
        "seed": 1,
        "plugin_dirs": plugin_dirs,
        "inputs": {"images": "src", "product_mask": "full"},
        "variants": variants,
        "instances": 3,
        "defects": [{"generator": g} for g in generators],
        "split": {"train": 0.8, "val": 0.2},
        "output": {"formats": ["coco", "yolo", "voc", "anomaly"]},
    }
    path = root / f"recipe_{variants}.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def _copy_one(args: tuple[str, str]) -> None:
    src, dst = args
    img = cv2.imread(src, cv2.IMREAD_UNCHANGED)
    ok, buf = cv2.imencode(".png", img)
    tmp = dst + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(buf.tobytes())
    os.replace(tmp, dst)


def _init() -> None:
    cv2.setNumThreads(1)


def floor(src: Path, out: Path, workers: int, repeat: int) -> float:
    """images/s of read + write unchanged, ``repeat`` times over the sources."""
    out.mkdir(parents=True, exist_ok=True)
    jobs = [
        (str(p), str(out / f"{k}_{p.name}"))
        for k in range(repeat)
        for p in sorted(src.glob("*.png"))
    ]
    t0 = time.perf_counter()
    if workers == 1:
        _init()
        for j in jobs:
            _copy_one(j)
    else:
        with ProcessPoolExecutor(workers, initializer=_init) as ex:
            list(ex.map(_copy_one, jobs, chunksize=1))
    return len(jobs) / (time.perf_counter() - t0)


def run_generate(recipe: Path, out: Path, workers: int) -> float:
    from defectsynth.build import load_recipe
    from defectsynth.run import generate

    r = load_recipe(recipe)
    t0 = time.perf_counter()
    res = generate(r, out, workers=workers)
    return res.new_samples / (time.perf_counter() - t0)


def peak_rss_of(code: str, recipe: Path, out: Path) -> float:
    """Peak RSS (MB) of ``python -c code RECIPE OUT`` in a fresh process; ``code`` prints
    ``ru_maxrss`` last."""
    res = subprocess.run(
        [sys.executable, "-c", code, str(recipe), str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(res.stdout.strip().splitlines()[-1]) / 1024.0


def peak_rss_mb(recipe: Path, out: Path) -> float:
    """Peak RSS (MB) of a one-worker run in a fresh process."""
    code = (
        "import resource, sys\n"
        "from defectsynth.build import load_recipe\n"
        "from defectsynth.run import generate\n"
        "generate(load_recipe(sys.argv[1]), sys.argv[2], workers=1)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    return peak_rss_of(code, recipe, out)


def memory_figures(
    mem: Path, gens: list[str], plugin_dirs: list[str], side: int, small: int, large: int,
    measure: Callable[[Path, Path], float] = peak_rss_mb,
) -> tuple[float, float]:
    """Peak RSS (MB) of a run of ``small`` and of ``large`` samples from 20 sources."""
    make_sources(mem / "src", 20, side)
    r_small = write_recipe(mem, small // 20, gens, plugin_dirs)
    r_large = write_recipe(mem, large // 20, gens, plugin_dirs)
    return measure(r_small, mem / "out_small"), measure(r_large, mem / "out_large")


def big_source_rss(mem: Path, gens: list[str], plugin_dirs: list[str],
                   size: tuple[int, int] = (4096, 3000)) -> tuple[float, float]:
    """Peak RSS (MB) of a one-worker run over one ``size`` (width, height) source, 4
    variants, and the same for a 1024x1024 source: what a large photo costs."""
    out = []
    for w, h in (size, (1024, 1024)):
        folder = mem / f"big_{w}x{h}"
        rng = np.random.default_rng(0)
        coarse = rng.integers(60, 190, size=(h // 16, w // 16, 3)).astype(np.uint8)
        img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
        (folder / "src").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / "src" / "big.png"), img)
        recipe = write_recipe(folder, 4, gens, plugin_dirs)
        out.append(peak_rss_mb(recipe, folder / "out"))
    return out[0], out[1]


def available_generators() -> tuple[list[str], list[str]]:
    from defectsynth.plugins import PluginHost

    host = PluginHost()
    gens = [g for g in GENERATORS if g in host.generators]
    if len(gens) >= 1:
        return gens, []
    return ["blob"], [str(FALLBACK_PLUGINS)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--full", action="store_true", help="the issue's sizes (several minutes)")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = ap.parse_args()
    n_src = 24 if args.full else 8
    mem_small, mem_large, mem_side = (200, 2000, 1024) if args.full else (20, 200, 256)
    gens, plugin_dirs = available_generators()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="ds-bench-") as tmpdir:
        tmp = Path(tmpdir)
        make_sources(tmp / "src", n_src, 1024)
        recipe = write_recipe(tmp, 1, gens, plugin_dirs)
        f1 = floor(tmp / "src", tmp / "floor1", 1, 1)
        g1 = run_generate(recipe, tmp / "gen1", 1)
        reps = 8 if args.full else 4
        f2 = floor(tmp / "src", tmp / "floor2", 2, reps)
        f1r = floor(tmp / "src", tmp / "floor1r", 1, reps)
        recipe2 = write_recipe(tmp, reps, gens, plugin_dirs)
        g2 = run_generate(recipe2, tmp / "gen2", 2)
        g1b = run_generate(recipe2, tmp / "gen1b", 1)
        g4 = g1b
        results.update(
            floor_1w=f1,
            generate_1w=g1,
            floor_2w=f2,
            generate_2w=g2,
            generate_1w_b=g1b,
            floor_1w_repeated=f1r,
        )

        m_small, m_large = memory_figures(
            tmp / "mem", gens, plugin_dirs, mem_side, mem_small, mem_large
        )
        results.update(rss_small_mb=m_small, rss_large_mb=m_large)
        rss_big, rss_1k = big_source_rss(tmp / "big", gens, plugin_dirs)
        results.update(rss_4096x3000_mb=rss_big, rss_1024x1024_mb=rss_1k)

    print(f"generators: {', '.join(gens)}; 3 defects per image; {n_src} sources of 1024x1024 PNG")
    print(f"I/O floor, 1 worker:     {f1:6.1f} images/s")
    print(f"generate, 1 worker:      {g1:6.1f} images/s   ratio {g1 / f1:.2f} (target >= 0.8)")
    print(
        f"generate, 1 worker, {reps} variants per source (decoded once): {g4:6.1f} images/s   "
        f"ratio {g4 / f1:.2f}"
    )
    print(f"I/O floor, 2 workers:    {f2:6.1f} images/s   vs 1 worker {f2 / f1r:.2f}x")
    print(
        f"generate, 2 workers:     {g2:6.1f} images/s   vs 1 worker {g2 / g1b:.2f}x (target >= 1.7)"
    )
    print(f"                                              vs 2-worker floor {g2 / f2:.2f}")
    print(
        f"peak RSS, {mem_large} vs {mem_small} samples ({mem_side}px, 1 worker): "
        f"{m_large:.0f} MB vs {m_small:.0f} MB, ratio {m_large / m_small:.2f} (target <= 1.2)"
    )
    print(
        f"peak RSS, one 4096x3000 source (4 variants, 3 defects, all formats): {rss_big:.0f} MB "
        f"(one 1024x1024 source: {rss_1k:.0f} MB; the pixels: {4096 * 3000 * 3 / 2**20:.0f} MB)"
    )
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
