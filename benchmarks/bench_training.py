"""On-the-fly defects in a training loop, against albumentations' RandomShadow.

Measures, in one process and in the same run, on the same 512x512 BGR images (crops of the
fixture photos, in memory):

- ``DefectDataset[i]``: 3 defects per image from the demo recipe's generator mix, with the
  whole target (boxes, labels, instance masks) -- what a DataLoader worker does per item;
- ``AddDefects`` inside ``A.Compose`` (3 defects, p=1) -- the albumentations path;
- ``A.RandomShadow(p=1)`` -- the augmentation a user would otherwise reach for, called
  bare (the strict baseline for both ratios);
- ``RandomShadow`` inside the same ``A.Compose`` with the same bbox params and inputs as
  AddDefects: what the Compose itself costs, so AddDefects can also be compared like for
  like.

Targets (issue 19, after issue 6's 1.0x): DefectDataset >= 1.5x RandomShadow's images/s,
2.0x as the stretch; AddDefects reported alike.
Prints the figures and both ratios; asserts nothing. Within a round the contestants take
turns image by image (the order flipping each image), and the median round counts, so
load from other processes and the VM's drifting speed hit them all alike.

    python benchmarks/bench_training.py [--images 24] [--rounds 5] [--recipe PATH]
                                        [--per-generator]
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

from defectsynth import Synthesizer
from defectsynth.build import load_recipe
from defectsynth.integrations import DefectDataset, read_image

ROOT = Path(__file__).parents[1]
SIDE = 512


def crops(n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` 512x512 BGR crops of the fixture photos and their product masks."""
    images, masks = [], []
    files = sorted((ROOT / "fixtures" / "images").glob("*.png"))
    for i in range(n):
        f = files[i % len(files)]
        img = read_image(f)
        mask = read_image(ROOT / "fixtures" / "masks" / f.name)
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
        masks.append(np.ascontiguousarray(m[y : y + SIDE, x : x + SIDE]))
    return images, masks


def per_second(fn: Callable[[int], Any], n: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=24, help="images per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--recipe", default=str(ROOT / "fixtures" / "recipes" / "demo.yaml"))
    ap.add_argument("--per-generator", action="store_true",
                    help="also time each generator of the recipe alone")
    args = ap.parse_args()
    cv2.setNumThreads(1)  # one process, one thread: what each DataLoader worker gets

    import albumentations as A

    from defectsynth.integrations.albumentations import AddDefects

    recipe = load_recipe(args.recipe)
    base = Synthesizer.from_recipe(recipe)
    entries = [
        {"generator": d.generator, "weight": d.weight, "params": dict(d.params),
         "category": d.category}
        for d in recipe.defects
    ]
    synth = Synthesizer(entries, instances=3, margin=recipe.placement.margin,
                        max_overlap=recipe.placement.max_overlap,
                        gate=base.gate, host=base.host)
    images, masks = crops(args.images)
    n = len(images)
    dataset = DefectDataset(images, synth, product_mask=masks, defect_fraction=1.0)
    add = A.Compose([AddDefects(synth, p=1.0, rgb=False)],
                    bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"]),
                    seed=0)
    shadow = A.RandomShadow(p=1.0)
    shadow.set_random_seed(0)
    shadow_compose = A.Compose(
        [A.RandomShadow(p=1.0)],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"]), seed=0)

    placed: list[int] = []

    def run_dataset(i: int) -> None:
        _, target = dataset[i]
        placed.append(len(target["boxes"]))

    contestants: dict[str, Callable[[int], Any]] = {
        "DefectDataset[i] (3 defects + target)": run_dataset,
        "A.Compose([AddDefects]) (3 defects)": lambda i: add(
            image=images[i], bboxes=[], labels=[], masks=[], product_mask=masks[i]),
        "A.RandomShadow": lambda i: shadow(image=images[i]),
        "A.Compose([RandomShadow]) (same inputs)": lambda i: shadow_compose(
            image=images[i], bboxes=[], labels=[], masks=[]),
    }
    # warm up on every image: a generator's first call pays one-time costs (OpenCV's float
    # Lab tables, ~55 ms, at the first discoloration), which would land in one round
    for i in range(n):
        for fn in contestants.values():
            fn(i)
    rates: dict[str, list[float]] = {name: [] for name in contestants}
    for r in range(args.rounds):
        # image by image, every contestant in turn (the order flips each image): a shared
        # VM's speed drifts within seconds, and this way the drift hits all of them alike
        dataset.set_epoch(r + 1)
        spent = dict.fromkeys(contestants, 0.0)
        order = list(contestants.items())
        for i in range(n):
            for name, fn in order if i % 2 else order[::-1]:
                t = time.perf_counter()
                fn(i)
                spent[name] += time.perf_counter() - t
        for name in contestants:
            rates[name].append(n / spent[name])

    print(f"{n} images of {SIDE}x{SIDE} BGR per round, {args.rounds} rounds, one thread; "
          f"recipe {Path(args.recipe).name} ({', '.join(base.categories)})")
    print(f"{'':<40} {'images/s':>9} {'ms/image':>9}")
    med = {name: statistics.median(v) for name, v in rates.items()}
    for name, v in med.items():
        print(f"{name:<40} {v:9.1f} {1000 / v:9.1f}")
    print(f"defects placed per image (of 3 tried): {np.mean(placed):.2f}")
    shadow_rate = med["A.RandomShadow"]
    ds_ratio = med["DefectDataset[i] (3 defects + target)"] / shadow_rate
    add_ratio = med["A.Compose([AddDefects]) (3 defects)"] / shadow_rate
    print(f"ratio DefectDataset / RandomShadow: {ds_ratio:.2f}x "
          f"(target >= 1.5x: {'met' if ds_ratio >= 1.5 else 'NOT met'}; "
          f"stretch >= 2.0x: {'met' if ds_ratio >= 2.0 else 'not met'})")
    print(f"ratio AddDefects / RandomShadow:    {add_ratio:.2f}x "
          f"(target >= 1.5x: {'met' if add_ratio >= 1.5 else 'NOT met'}; "
          f"stretch >= 2.0x: {'met' if add_ratio >= 2.0 else 'not met'})")
    like = (med["A.Compose([AddDefects]) (3 defects)"]
            / med["A.Compose([RandomShadow]) (same inputs)"])
    print(f"like for like, AddDefects / RandomShadow both in the same A.Compose: {like:.2f}x")
    if args.per_generator:
        print("where the time goes: each generator alone, 3 defects per image, "
              "DefectDataset[i]")
        for d in recipe.defects:
            alone = Synthesizer(
                [{"generator": d.generator, "params": dict(d.params)}], instances=3,
                margin=recipe.placement.margin, max_overlap=recipe.placement.max_overlap,
                gate=base.gate, host=base.host,
            )
            ds_alone = DefectDataset(images, alone, product_mask=masks, defect_fraction=1.0)
            ds_alone[0]
            rate = statistics.median(
                per_second(lambda i, ds=ds_alone: ds[i], n) for _ in range(2)
            )
            print(f"  {d.generator:<38} {rate:9.1f} {1000 / rate:9.1f}  "
                  f"{rate / shadow_rate:.2f}x RandomShadow")


if __name__ == "__main__":
    main()
