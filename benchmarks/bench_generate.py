"""How fast `defectsynth generate` is against the I/O floor, how it scales, how much memory.

Prints each figure beside its target (issue 19); asserts nothing. Every timed run is a
fresh process (modules imported before the clock starts), and the runs of one round
take turns, so each ratio compares runs made moments apart on the same machine: the
VM is shared, and absolute rates move with its load.

- floor: read every source and write it unchanged as PNG (same images; one process, or a
  pool of two processes for the two-worker figures);
- generate: the same sources, 1 variant each, 3 defects per image, 1024x1024 PNG output,
  with COCO alone and with all four built-in formats (coco, yolo, voc, anomaly):
  ``--workers 1`` against the one-process floor and ``--workers 2`` against the
  two-process floor -> target >= 0.9x the floor's images/s; the extra formats' cost is
  the difference between the two;
- the one-worker runs also give images per CPU-second (all threads of the process), so
  a run that used a second core is not counted as "equal CPU";
- scaling: 2 workers vs 1 (all formats) -> target >= 1.8x on a 2-core machine;
- memory: peak RSS of a one-worker run of 2,000 samples vs 200 -> target within 1.2x
  (each run in its own process; the default run uses 20 vs 200 samples of 256x256), and
  the peak RSS of a run over one 4096x3000 source beside one of 1024x1024.

    python benchmarks/bench_generate.py                 # 24 sources, 3 rounds: a few minutes
    python benchmarks/bench_generate.py --no-memory     # the speed figures only
    python benchmarks/bench_generate.py --phases        # where one worker's time goes
    python benchmarks/bench_generate.py --full          # 48 sources, 5 rounds, 2,000 samples
    git worktree add /tmp/base19 COMMIT
    python benchmarks/bench_generate.py --no-memory --base /tmp/base19   # A/B in one run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
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
ALL_FORMATS = ("coco", "yolo", "voc", "anomaly")


def make_sources(folder: Path, n: int, side: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        coarse = rng.integers(60, 190, size=(side // 16, side // 16, 3)).astype(np.uint8)
        img = cv2.resize(coarse, (side, side), interpolation=cv2.INTER_CUBIC)
        grain = rng.normal(0, 6, size=(side, side, 1)).astype(np.float32)
        img = np.clip(img.astype(np.float32) + grain, 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"src{i:04d}.png"), img)


def write_recipe(
    root: Path, variants: int, generators: list[str], plugin_dirs: list[str],
    formats: tuple[str, ...] = ALL_FORMATS,
) -> Path:
    recipe = {
        "seed": 1,
        "plugin_dirs": plugin_dirs,
        "inputs": {"images": "src", "product_mask": "full"},
        "variants": variants,
        "instances": 3,
        "defects": [{"generator": g} for g in generators],
        "split": {"train": 0.8, "val": 0.2},
        "output": {"formats": list(formats)},
    }
    suffix = "" if tuple(formats) == ALL_FORMATS else "_" + "_".join(formats)
    path = root / f"recipe_{variants}{suffix}.yaml"
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


def _cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its finished children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def floor(src: Path, out: Path, workers: int, repeat: int = 1) -> tuple[float, float]:
    """images/s and images per CPU-second of read + write unchanged, ``repeat`` times over
    the sources (a pool's workers are this process's children: their CPU counts)."""
    out.mkdir(parents=True, exist_ok=True)
    jobs = [
        (str(p), str(out / f"{k}_{p.name}"))
        for k in range(repeat)
        for p in sorted(src.glob("*.png"))
    ]
    c0 = _cpu_seconds()
    t0 = time.perf_counter()
    if workers == 1:
        _init()
        for j in jobs:
            _copy_one(j)
    else:
        with ProcessPoolExecutor(workers, initializer=_init) as ex:
            list(ex.map(_copy_one, jobs, chunksize=1))
    seconds = time.perf_counter() - t0
    return len(jobs) / seconds, len(jobs) / (_cpu_seconds() - c0)


def run_generate(recipe: Path, out: Path, workers: int) -> tuple[float, float]:
    """images/s and images per CPU-second of this process (the pool's workers are the
    fork server's children, so with ``workers > 1`` the second figure is not whole)."""
    from defectsynth.build import load_recipe
    from defectsynth.run import generate

    r = load_recipe(recipe)
    c0 = _cpu_seconds()
    t0 = time.perf_counter()
    res = generate(r, out, workers=workers)
    seconds = time.perf_counter() - t0
    return res.new_samples / seconds, res.new_samples / (_cpu_seconds() - c0)


def timed_in_child(
    kind: str, path: Path, out: Path, workers: int, tree: str | None = None
) -> tuple[float, float]:
    """One timed run (``floor`` over the folder ``path`` or ``generate`` of the recipe
    ``path``) in a fresh process: no run pays for or profits from another's warm-up.
    ``tree``: import defectsynth from that source tree (a worktree of another commit)."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([tree, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    res = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path), str(out), str(workers)],
        check=True, capture_output=True, text=True, env=env,
    )
    rate, per_cpu = json.loads(res.stdout.strip().splitlines()[-1])
    return float(rate), float(per_cpu)


def _child(kind: str, path: str, out: str, workers: int) -> None:
    if kind == "floor":
        figures = floor(Path(path), Path(out), workers)
    else:
        import defectsynth.backends.local  # noqa: F401  (imported before the clock)
        import defectsynth.run.driver  # noqa: F401

        figures = run_generate(Path(path), Path(out), workers)
    print(json.dumps(list(figures)))


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


def phases(tmp: Path, n_src: int, gens: list[str], plugin_dirs: list[str],
           passes: int = 2) -> dict[str, float]:
    """Where one worker's time goes per sample, in ms (wall-clock timers around each step
    of ``TaskRunner``'s work, the last of ``passes`` passes over the sources: the one-time
    costs, the Lab tables among them, are left out), beside the floor's own steps."""
    import hashlib

    from defectsynth.build import load_recipe
    from defectsynth.imagefile import decode_image, read_file_bytes
    from defectsynth.run.manifest import annotation_record, dump_record
    from defectsynth.run.plan import Plan
    from defectsynth.run.worker import TaskRunner, WorkerSpec, encode_image, encode_mask
    from defectsynth.synthesizer import source_id
    from defectsynth.writing import atomic_write_bytes

    make_sources(tmp / "src", n_src, 1024)
    r = load_recipe(write_recipe(tmp, 1, gens, plugin_dirs))
    runner = TaskRunner(WorkerSpec(recipe=r, out_dir=str(tmp / "phases")))
    tasks = list(Plan.build(r, None).tasks(set()))
    cv2.setNumThreads(1)
    steps = ("read", "decode", "sha256", "apply", "encode image", "instance masks",
             "annotation records", "write files", "copy (floor)")
    total = dict.fromkeys(steps, 0.0)
    for k in range(passes):
        for t in tasks:
            clock = [time.perf_counter()]
            data = read_file_bytes(t.source, r.inputs.max_pixels)
            clock.append(time.perf_counter())
            image = decode_image(data)
            clock.append(time.perf_counter())
            sha = hashlib.sha256(data).hexdigest()
            clock.append(time.perf_counter())
            sample = runner.synth.apply(image, seed=r.seed, source_id=source_id(t.rel),
                                        variant=t.variant)
            clock.append(time.perf_counter())
            png = encode_image(sample.image, "png", 95)
            clock.append(time.perf_counter())
            masks = [encode_mask(a.mask_crop, a.box, a.image_shape) for a in sample.annotations]
            clock.append(time.perf_counter())
            anns = [annotation_record(a, f"m{i}") for i, a in enumerate(sample.annotations)]
            dump_record({"sha": sha, "annotations": anns})  # type: ignore[typeddict-item]
            clock.append(time.perf_counter())
            for i, m in enumerate(masks):
                atomic_write_bytes(tmp / "phases" / f"{t.name}_{i}.png", m)
            atomic_write_bytes(tmp / "phases" / f"{t.name}.png", png)
            clock.append(time.perf_counter())
            if k == passes - 1:
                for step, a, b in zip(steps, clock, clock[1:], strict=False):
                    total[step] += b - a
    # the floor's copies in a loop of their own, as the floor runs (not interleaved,
    # which would leave each step above with caches another image had filled)
    for _ in range(passes):
        t0 = time.perf_counter()
        for t in tasks:
            _copy_one((t.source, str(tmp / "phases" / f"floor_{t.name}.png")))
        total["copy (floor)"] = time.perf_counter() - t0
    return {step: 1000 * v / len(tasks) for step, v in total.items()}


def print_phases(ms: dict[str, float]) -> None:
    sample = sum(v for k, v in ms.items() if k != "copy (floor)")
    floor_steps = ("read", "decode", "encode image", "write files")
    print("where one worker's time goes, per sample (steady state, ms; the floor's own "
          "steps marked *):")
    for step, v in ms.items():
        if step == "copy (floor)":
            continue
        mark = "*" if step in floor_steps else " "
        print(f"  {mark} {step:20s} {v:6.2f} ms  {100 * v / sample:5.1f}%")
    print(f"    sample total         {sample:6.2f} ms; the floor's copy of the same source "
          f"{ms['copy (floor)']:.2f} ms: at most {ms['copy (floor)'] / sample:.2f}x the floor "
          "before any fixed cost")


def speed_figures(tmp: Path, n_src: int, rounds: int, gens: list[str],
                  plugin_dirs: list[str], base: str | None = None,
                  workers_list: tuple[int, ...] = (1, 2)) -> dict[str, list[float]]:
    """Each round: the floors and the generate runs, one after another (and the same
    generate runs of the ``base`` source tree); returns every figure per round."""
    make_sources(tmp / "src", n_src, 1024)
    recipes = {
        "coco": write_recipe(tmp, 1, gens, plugin_dirs, ("coco",)),
        "all": write_recipe(tmp, 1, gens, plugin_dirs),
    }
    runs: dict[str, list[float]] = {}
    for k in range(rounds):
        for workers in workers_list:
            order: list[tuple[str, Path | None, str | None]] = [
                ("floor", None, None), ("coco", recipes["coco"], None),
                ("all", recipes["all"], None),
            ]
            if base is not None:
                order += [("base_coco", recipes["coco"], base), ("base_all", recipes["all"], base)]
            for name, recipe, tree in order if k % 2 == 0 else order[::-1]:
                out = tmp / f"out_{name}_{workers}_{k}"
                if recipe is None:
                    rate, per_cpu = timed_in_child("floor", tmp / "src", out, workers)
                else:
                    rate, per_cpu = timed_in_child("generate", recipe, out, workers, tree)
                runs.setdefault(f"{name}_{workers}w", []).append(rate)
                runs.setdefault(f"{name}_{workers}w_per_cpu", []).append(per_cpu)
    return runs


def _ratios(runs: dict[str, list[float]], a: str, b: str) -> list[float]:
    return [x / y for x, y in zip(runs[a], runs[b], strict=True)]


def _span(values: list[float]) -> str:
    med = statistics.median(values)
    return f"{med:.2f} (rounds {min(values):.2f}-{max(values):.2f})"


def print_speed(runs: dict[str, list[float]], n_src: int, gens: list[str]) -> None:
    med = {k: statistics.median(v) for k, v in runs.items()}
    workers_list = [w for w in (1, 2) if f"floor_{w}w" in runs]
    print(f"generators: {', '.join(gens)}; 3 defects per image; {n_src} sources of 1024x1024 "
          f"PNG, 1 variant each; {len(runs[f'floor_{workers_list[0]}w'])} rounds, medians of "
          "paired ratios")
    for w in workers_list:
        procs = "one process" if w == 1 else "two processes"
        print(f"I/O floor, {procs}: {med[f'floor_{w}w']:6.1f} images/s")
        for name, what in (("coco", "COCO alone"), ("all", "all four formats")):
            ratio = _ratios(runs, f"{name}_{w}w", f"floor_{w}w")
            print(f"  generate --workers {w}, {what:16s} {med[f'{name}_{w}w']:6.1f} images/s   "
                  f"vs floor {_span(ratio)}   target >= 0.9")
        extra = _ratios(runs, f"coco_{w}w", f"all_{w}w")
        cost = 100 * (statistics.median(extra) - 1)
        print(f"  the extra formats (yolo, voc, anomaly) cost {cost:.1f}% of the COCO-alone time")
    for name, what in (("coco", "COCO alone"), ("all", "all four formats")):
        if 1 not in workers_list:
            break
        ratio = _ratios(runs, f"{name}_1w_per_cpu", "floor_1w_per_cpu")
        print(f"per CPU-second, --workers 1, {what}: {med[f'{name}_1w_per_cpu']:5.1f} vs floor "
              f"{med['floor_1w_per_cpu']:5.1f} images/CPU-s: {_span(ratio)}   target >= 0.9")
    if "base_all_1w" in runs:
        print("against the base tree, same rounds (new / base images/s):")
        for w in workers_list:
            for name, what in (("coco", "COCO alone"), ("all", "all four formats")):
                gain = _ratios(runs, f"{name}_{w}w", f"base_{name}_{w}w")
                base_floor = _ratios(runs, f"base_{name}_{w}w", f"floor_{w}w")
                print(f"  --workers {w}, {what:16s} {_span(gain)}; base vs floor "
                      f"{_span(base_floor)}")
        for name, what in (("coco", "COCO alone"), ("all", "all four formats")):
            if 1 not in workers_list:
                break
            gain = _ratios(runs, f"{name}_1w_per_cpu", f"base_{name}_1w_per_cpu")
            base_floor = _ratios(runs, f"base_{name}_1w_per_cpu", "floor_1w_per_cpu")
            print(f"  per CPU-second, --workers 1, {what:16s} {_span(gain)}; base vs floor "
                  f"{_span(base_floor)}")
    if workers_list != [1, 2]:
        return
    scale = _ratios(runs, "all_2w", "all_1w")
    print(f"scaling, generate 2 workers vs 1 (all formats): {_span(scale)}   target >= 1.8 "
          f"(the floor: {_span(_ratios(runs, 'floor_2w', 'floor_1w'))})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--full", action="store_true",
                    help="48 sources, 5 rounds, the issue's memory sizes")
    ap.add_argument("--sources", type=int, default=None, help="how many 1024x1024 sources (24)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds of paired runs (3)")
    ap.add_argument("--workers", type=int, nargs="+", choices=(1, 2), default=[1, 2],
                    help="which worker counts to time (both)")
    ap.add_argument("--phases", action="store_true",
                    help="only where one worker's time goes per sample (ms per step)")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory figures")
    ap.add_argument("--base", metavar="TREE", default=None,
                    help="also time generate from this source tree (a git worktree), A/B")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    ap.add_argument("--child", nargs=4, metavar=("KIND", "PATH", "OUT", "WORKERS"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, path, out, workers = args.child
        _child(kind, path, out, int(workers))
        return
    n_src = args.sources or (48 if args.full else 24)
    rounds = args.rounds or (5 if args.full else 3)
    mem_small, mem_large, mem_side = (200, 2000, 1024) if args.full else (20, 200, 256)
    gens, plugin_dirs = available_generators()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="ds-bench-") as tmpdir:
        tmp = Path(tmpdir)
        if args.phases:
            print_phases(phases(tmp / "phases", n_src, gens, plugin_dirs))
            return
        base = str(Path(args.base).resolve()) if args.base else None
        runs = speed_figures(tmp / "speed", n_src, rounds, gens, plugin_dirs, base,
                             tuple(sorted(set(args.workers))))
        results.update(runs)
        print_speed(runs, n_src, gens)
        if args.no_memory:
            if args.json:
                print(json.dumps(results, indent=2))
            return
        m_small, m_large = memory_figures(
            tmp / "mem", gens, plugin_dirs, mem_side, mem_small, mem_large
        )
        results.update(rss_small_mb=m_small, rss_large_mb=m_large)
        rss_big, rss_1k = big_source_rss(tmp / "big", gens, plugin_dirs)
        results.update(rss_4096x3000_mb=rss_big, rss_1024x1024_mb=rss_1k)
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
