"""Synthesizer.apply on a 1024x1024 BGR image with 3 defects, against PNG encoding.

Target (issue 3): apply <= 0.5x the time of cv2.imencode('.png') of the same image,
measured in the same run. Prints the figures; asserts nothing.

    python benchmarks/bench_synthesizer.py [--repeat 30] [--generators scratch,dent,...]

A/B modes (issue 19), each printing base/new ratios measured in the same run:

    python benchmarks/bench_synthesizer.py --gate-ab [BASE_TREE]
        the visibility gate's decisions on the regions a run of the demo mix recorded
        (512x512 fixture crops, 3 defects each): Gate.passes against the exact median
        it replaced (vis >= min_relative * texture_noise), or against BASE_TREE's
        Gate.passes (its defectsynth/visibility.py), same decisions checked;
    python benchmarks/bench_synthesizer.py --ab /tmp/base19 [--rounds 7]
        the whole on-the-fly item (Synthesizer.apply with the product mask, the demo
        mix, 3 defects, 512x512 crops; what DefectDataset[i] synthesizes) in a worker
        process per code tree (PYTHONPATH), base and new taking turns round by round
        (the order flipping), so the shared VM's drift hits both alike; the outputs'
        sha256 must agree;
    python benchmarks/bench_synthesizer.py --ab /tmp/base19 --only crack
        the item with that generator of the demo mix alone (3 of it per crop);
    python benchmarks/bench_synthesizer.py --ab /tmp/base19 --generator scratch
        the same, timing only that generator's render() on the regions, parameters and
        random states a run of the demo mix recorded (24 crops; each tree records its
        own, and the layers' sha256 must agree); for a generator with a plan step,
        its plan() + extent() on the recorded random states are timed too;
    python benchmarks/bench_synthesizer.py --phases [--passes 6]
        where the on-the-fly item's time goes: wall-clock time in each step of apply
        (timers wrapped around them; the rest is the synthesizer's own bookkeeping).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

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


ROOT = Path(__file__).parents[1]
SIDE = 512


def crops(n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` 512x512 BGR uint8 crops of the fixture photos and their product masks (as
    bench_training.py makes them, read with OpenCV alone so any code tree can run it)."""
    images, masks = [], []
    files = sorted((ROOT / "fixtures" / "images").glob("*.png"))
    for i in range(n):
        f = files[i % len(files)]
        img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(ROOT / "fixtures" / "masks" / f.name), cv2.IMREAD_UNCHANGED)
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        if img.dtype != np.uint8:
            img = (img >> 8).astype(np.uint8)
        h, w = img.shape[:2]
        if min(h, w) < SIDE:
            scale = SIDE / min(h, w)
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
            mask = cv2.resize(mask, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
            h, w = img.shape[:2]
        rng = np.random.default_rng(i)
        y = int(rng.integers(0, h - SIDE + 1))
        x = int(rng.integers(0, w - SIDE + 1))
        images.append(np.ascontiguousarray(img[y : y + SIDE, x : x + SIDE, :3]))
        m = mask if mask.ndim == 2 else mask[:, :, 0]
        masks.append(np.ascontiguousarray(m[y : y + SIDE, x : x + SIDE]) > 0)
    return images, masks


def demo_synth(only: str = "") -> Synthesizer:
    """The demo recipe's generator mix, placement and gate, 3 defects per image (read
    from the YAML directly, so any code tree can run it); with ``only``, that generator
    of the mix alone."""
    import yaml

    from defectsynth.visibility import Gate

    rec = yaml.safe_load((ROOT / "fixtures" / "recipes" / "demo.yaml").read_text())
    defects = [dict(d) for d in rec["defects"] if not only or d["generator"] == only]
    return Synthesizer(
        defects, instances=3, margin=rec["placement"]["margin"],
        max_overlap=rec["placement"]["max_overlap"], gate=Gate(**rec["gate"]),
        on_failure="reject",
    )


def worker(images: int, passes: int, only: str = "") -> None:
    """One code tree's ms per item (median of ``passes`` passes) and its outputs' hash."""
    cv2.setNumThreads(1)
    imgs, masks = crops(images)
    synth = demo_synth(only)
    digest = hashlib.sha256()
    # warm up on every image: each generator's first call pays one-time costs (OpenCV's
    # float Lab tables, ~55 ms, at the first discoloration), which a pass must not carry
    for i, (img, m) in enumerate(zip(imgs, masks, strict=True)):
        synth.apply(img, m, seed=10**6, source_id=i)
    times = []
    for p in range(passes):
        t = time.perf_counter()
        for i, (img, m) in enumerate(zip(imgs, masks, strict=True)):
            s = synth.apply(img, m, seed=p, source_id=i)
            if p == 0:
                digest.update(s.image.tobytes())
                for a in s.annotations:
                    digest.update(repr((a.box, a.visibility)).encode())
        times.append((time.perf_counter() - t) * 1000 / len(imgs))
    print(json.dumps({"ms": statistics.median(times), "sha256": digest.hexdigest()}))


def render_worker(images: int, passes: int, name: str) -> None:
    """One code tree's ms per render() of generator ``name`` on the inputs a run of the
    demo mix recorded (median of ``passes`` passes), and the layers' hash."""
    import copy

    cv2.setNumThreads(1)
    imgs, masks = crops(images)
    synth = demo_synth()
    from defectsynth.generator import plans

    recorded = []
    planned: list = []
    for prep in synth._prepared:
        gen = prep.generator
        if type(gen).name != name:
            continue

        def record(region, params, rng, _gen=gen, _fn=gen.render, **kw):
            recorded.append((_gen, region, params, copy.deepcopy(rng.bit_generator.state), kw))
            return _fn(region, params, rng, **kw)

        gen.render = record  # type: ignore[method-assign]
        if plans(type(gen)):  # and its plan step, timed with extent() as apply calls them

            def record_plan(params, rng, _gen=gen, _fn=gen.plan):
                planned.append((_gen, params, copy.deepcopy(rng.bit_generator.state)))
                return _fn(params, rng)

            gen.plan = record_plan  # type: ignore[method-assign]
    for i, (img, m) in enumerate(zip(imgs, masks, strict=True)):
        synth.apply(img, m, seed=0, source_id=i)
    digest = hashlib.sha256()
    times, plan_times = [], []
    for p in range(passes + 1):  # (the first pass warms up)
        t = time.perf_counter()
        for gen, region, params, state, kw in recorded:
            rng = np.random.default_rng()
            rng.bit_generator.state = state
            layer = type(gen).render(gen, region, params, rng, **kw)
            if p == 0:
                digest.update(np.ascontiguousarray(layer.pixels).tobytes())
                digest.update(np.ascontiguousarray(layer.coverage).tobytes())
        if p:
            times.append((time.perf_counter() - t) * 1000 / max(len(recorded), 1))
        t = time.perf_counter()
        for gen, params, state in planned:
            rng = np.random.default_rng()
            rng.bit_generator.state = state
            plan = type(gen).plan(gen, params, rng)
            ext = type(gen).extent(gen, params, rng, plan=plan)
            if p == 0:
                digest.update(repr(ext).encode())
        if p:
            plan_times.append((time.perf_counter() - t) * 1000 / max(len(planned), 1))
    print(json.dumps({"ms": statistics.median(times), "sha256": digest.hexdigest(),
                      "calls": len(recorded), "plans": len(planned),
                      "plan_ms": statistics.median(plan_times) if planned else None}))


def ab(base: str, rounds: int, images: int, passes: int, generator: str = "",
       only: str = "") -> None:
    trees = {"base": base, "new": str(ROOT)}
    ms: dict[str, list[float]] = {k: [] for k in trees}
    plan_ms: dict[str, list[float]] = {k: [] for k in trees}
    shas: dict[str, set[str]] = {k: set() for k in trees}
    for r in range(rounds):
        order = list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]
        for name, tree in order:
            env = dict(os.environ, PYTHONPATH=tree)
            out = subprocess.run(
                [sys.executable, __file__, "--worker", "--images", str(images),
                 "--passes", str(passes)] + (["--generator", generator] if generator else [])
                + (["--only", only] if only else []),
                env=env, cwd="/", check=True, capture_output=True, text=True,
            ).stdout.strip().splitlines()[-1]
            got = json.loads(out)
            ms[name].append(got["ms"])
            if got.get("plan_ms") is not None:
                plan_ms[name].append(got["plan_ms"])
            shas[name].add(got["sha256"])
    what = (f"{generator}.render() on the regions recorded from the demo mix"
            if generator else f"on-the-fly item{f', {only} alone' if only else ''}")
    calls = f" ({got['calls']} calls, {got['plans']} plans)" if generator else ""
    print(f"{what}{calls}, {images} crops of {SIDE}x{SIDE}, 3 defects, demo mix, "
          f"{rounds} rounds x {passes} passes, one thread per process")
    for name in trees:
        unit = "call" if generator else "item"
        print(f"  {name:<5} {trees[name]:<40} ms/{unit} median {statistics.median(ms[name]):6.2f}"
              f"  rounds {' '.join(f'{v:.2f}' for v in ms[name])}")
    ratios = [b / n for b, n in zip(ms["base"], ms["new"], strict=True)]
    speedup = statistics.median(ms["base"]) / statistics.median(ms["new"])
    print(f"  speed-up new vs base: {speedup:.3f}x "
          f"(per round {min(ratios):.3f}..{max(ratios):.3f})")
    if plan_ms["base"] and plan_ms["new"]:
        for name in trees:
            print(f"  {name:<5} plan() + extent() ms/call median "
                  f"{statistics.median(plan_ms[name]):6.3f}"
                  f"  rounds {' '.join(f'{v:.3f}' for v in plan_ms[name])}")
        pr = [b / n for b, n in zip(plan_ms["base"], plan_ms["new"], strict=True)]
        print(f"  plan + extent speed-up: "
              f"{statistics.median(plan_ms['base']) / statistics.median(plan_ms['new']):.3f}x "
              f"(per round {min(pr):.3f}..{max(pr):.3f})")
    same = shas["base"] == shas["new"] and len(shas["new"]) == 1
    print(f"  outputs byte-identical: {'yes' if same else 'NO'}")


def gate_ab(repeat: int, base_tree: str | None) -> None:
    """Gate.passes against the exact median (or ``base_tree``'s Gate.passes) on the
    (vis, box) pairs a run recorded."""
    import importlib.util

    from defectsynth import visibility

    base_gate = None
    if base_tree:  # the other tree's visibility.py, loaded beside this one
        spec = importlib.util.spec_from_file_location(
            "_base_visibility", Path(base_tree) / "defectsynth" / "visibility.py")
        assert spec is not None and spec.loader is not None
        base_mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = base_mod
        spec.loader.exec_module(base_mod)

    imgs, masks = crops(24)
    synth = demo_synth()
    gate = synth.gate
    recorded: list[tuple[float, float, np.ndarray, tuple[int, int, int, int], np.ndarray]] = []
    original = type(gate).passes

    def record(self, vis, threshold, src, box, product=None):  # type: ignore[no-untyped-def]
        recorded.append((vis, threshold, src, box, product))
        return original(self, vis, threshold, src, box, product)

    type(gate).passes = record  # type: ignore[method-assign]
    try:
        for i, (img, m) in enumerate(zip(imgs, masks, strict=True)):
            synth.apply(img, m, seed=1, source_id=i)
    finally:
        type(gate).passes = original  # type: ignore[method-assign]

    if base_tree:
        base_gate = base_mod.Gate(gate.min_contrast, gate.min_area, gate.min_relative)

    def exact() -> list[bool]:
        if base_gate is not None:
            return [base_gate.passes(vis, t, src, box, prod)
                    for vis, t, src, box, prod in recorded]
        return [
            vis >= t and (gate.min_relative <= 0 or vis >= gate.min_relative
                          * visibility.texture_noise(src, box, prod))
            for vis, t, src, box, prod in recorded
        ]

    def counted() -> list[bool]:
        return [gate.passes(vis, t, src, box, prod) for vis, t, src, box, prod in recorded]

    assert exact() == counted(), "the gate's decisions differ"
    a, b = [], []
    for r in range(repeat):  # taking turns, the order flipping
        for fn, acc in ((exact, a), (counted, b)) if r % 2 else ((counted, b), (exact, a)):
            t = time.perf_counter()
            fn()
            acc.append((time.perf_counter() - t) * 1000 / len(recorded))
    ma, mb = statistics.median(a), statistics.median(b)
    what = f"base {base_tree}" if base_tree else "exact median"
    print(f"gate on {len(recorded)} recorded regions (demo mix, 24 crops of {SIDE}x{SIDE}), "
          f"{repeat} turns: {what} {ma * 1000:.0f} us/decision, new {mb * 1000:.0f} "
          f"us/decision: {ma / mb:.2f}x; same decisions: yes")


def phases(passes: int) -> None:
    """Wall-clock time per item in each step of Synthesizer.apply."""
    from collections import Counter

    from defectsynth import synthesizer, visibility

    spent: Counter[str] = Counter()

    def timer(fn, key):  # type: ignore[no-untyped-def]
        def timed_fn(*a, **k):  # type: ignore[no-untyped-def]
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[key] += time.perf_counter() - t
        return timed_fn

    steps = [
        (synthesizer, "_extent", "generators: plan + extent"),
        (synthesizer, "_blend", "blend"),
        (synthesizer, "check_layer", "layer check"),
        (visibility, "texture_noise", "gate: local texture"),
        (synthesizer, "change_map", "change map"),
        (synthesizer, "resolve_product_mask", "product mask"),
        (synthesizer, "CentreSampler", "centre sampler"),
    ]
    if hasattr(visibility, "_detail"):
        steps[3] = (visibility, "_detail", "gate: local texture")
    saved = [(mod, name, getattr(mod, name)) for mod, name, _ in steps]
    imgs, masks = crops(24)
    synth = demo_synth()
    try:
        for mod, name, key in steps:
            setattr(mod, name, timer(getattr(mod, name), key))
        for prep in synth._prepared:
            gen = prep.generator
            gen.render = timer(gen.render, "generators: render")  # type: ignore[method-assign]
        for i, (img, m) in enumerate(zip(imgs, masks, strict=True)):  # warm up (see worker)
            synth.apply(img, m, seed=10**6, source_id=i)
        spent.clear()
        t = time.perf_counter()
        for p in range(passes):
            for i, (img, m) in enumerate(zip(imgs, masks, strict=True)):
                synth.apply(img, m, seed=p, source_id=i)
        total = time.perf_counter() - t
    finally:
        for mod, name, fn in saved:
            setattr(mod, name, fn)
    n = passes * len(imgs)
    print(f"on-the-fly item, demo mix, 3 defects, {len(imgs)} crops of {SIDE}x{SIDE}, "
          f"{passes} passes: {total * 1000 / n:.2f} ms/item")
    spent["synthesizer bookkeeping (the rest)"] = total - sum(spent.values())
    for key, v in spent.most_common():
        print(f"  {key:<38} {v * 1000 / n:6.2f} ms {100 * v / total:5.1f}%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--generators", default="")
    ap.add_argument("--ab", metavar="BASE_TREE", help="A/B the on-the-fly item against "
                    "the code tree at BASE_TREE (e.g. a git worktree of the previous commit)")
    ap.add_argument("--generator", default="", help="with --ab: time only this "
                    "generator's render() on recorded regions")
    ap.add_argument("--only", default="", help="with --ab: the item with only this "
                    "generator of the demo mix (its weight, params and the gate as there)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--phases", action="store_true")
    ap.add_argument("--gate-ab", nargs="?", const="", default=None, metavar="BASE_TREE")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    if args.worker:
        if args.generator:
            render_worker(args.images, args.passes, args.generator)
        else:
            worker(args.images, args.passes, args.only)
        return
    if args.ab:
        ab(args.ab, args.rounds, args.images, args.passes, args.generator, args.only)
        return
    if args.phases:
        phases(args.passes)
        return
    if args.gate_ab is not None:
        gate_ab(args.repeat, args.gate_ab or None)
        return
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
