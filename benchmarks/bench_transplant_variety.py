"""How different the transplants of one real defect are from each other, without and with
the transplant generator's variation (warp, stretch, severity, recolour). Prints figures
measured in one run; asserts nothing.

For each source defect (every entry of the demo library, or ``--sources`` entries spread
evenly over a labeled folder's library, skipping those too large for the clean images),
``-n`` transplants are rendered through the public API onto the clean images, twice:

- **plain**: the variation fixed neutral (warp 0, stretch 1, severity 1, recolor 0), scale
  and rotation drawn from their default ranges, as before the variation existed;
- **varied**: every parameter but ``pick`` at its default (what ``generator: transplant``
  gives).

Each instance is cut from the composite by its annotation (``realism.crops.cut`` and
``to_common``) and measured (``realism.features.feature_matrix``). Features are
standardised over all transplants of the run; the table gives, per category, the mean
pairwise distance between transplants of one source defect, plain and varied, and between
different source defects of that category (the real spread, for scale). With
scikit-learn, the realism score (``realism.score.compare``: 0.5 = indistinguishable from
the real defects) of each set against the source defects themselves follows.

    python benchmarks/bench_transplant_variety.py                     # demo library, fixtures
    python benchmarks/bench_transplant_variety.py \\
        --source ../shared/data/neu-det --clean ../shared/data/neu-det/images
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
NEUTRAL = {"warp": 0.0, "stretch_along": 1.0, "stretch_across": 1.0, "severity": 1.0,
           "recolor": 0.0}


def clean_images(folder: Path, limit: int) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(name, image, product mask or None) of up to ``limit`` images of a folder; a
    ``masks/`` folder beside ``images/`` (the fixtures' layout) gives product masks."""
    out: list[tuple[str, np.ndarray, np.ndarray | None]] = []
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    step = max(1, len(paths) // limit)
    for path in paths[::step][:limit]:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            continue
        if image.ndim == 3 and image.shape[2] == 3 and _gray(image):
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        mpath = folder.parent / "masks" / path.name
        mask = cv2.imread(str(mpath), cv2.IMREAD_GRAYSCALE) if mpath.is_file() else None
        out.append((path.name, image, mask))
    if not out:
        raise SystemExit(f"no clean image in {folder}")
    return out


def _gray(image: np.ndarray) -> bool:
    return bool(np.abs(image.astype(np.int16) - image[:, :, 1:2]).max() <= 2)


def transplants(
    source: str,
    pick: float,
    fixed: Mapping[str, Any],
    clean: list[tuple[str, np.ndarray, np.ndarray | None]],
    n: int,
    seed0: int,
) -> Iterator[Any]:
    """``n`` (sample, annotation) pairs of one source defect, cycling over the clean
    images; a seed whose instance the visibility gate dropped moves on to the next."""
    from defectsynth import Synthesizer, source_id

    synths = {}
    made = 0
    seed = seed0
    while made < n and seed < seed0 + 20 * n:
        name, image, mask = clean[seed % len(clean)]
        if name not in synths:
            synths[name] = Synthesizer(
                [{"generator": "transplant",
                  "params": {"source": source, "pick": pick, **fixed}}],
                instances=1,
                product_mask="full" if mask is None else mask,
            )
        sample = synths[name].apply(image, seed=seed, source_id=source_id(name))
        seed += 1
        if sample.annotations:
            made += 1
            yield sample, sample.annotations[0]


def mean_pairwise(x: np.ndarray) -> float:
    if len(x) < 2:
        return float("nan")
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2))
    return float(d[np.triu_indices(len(x), 1)].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="", help="labeled folder (default: the demo library)")
    ap.add_argument("--clean", default=str(ROOT / "fixtures" / "images"),
                    help="folder of clean images to place on (default: the fixtures)")
    ap.add_argument("-n", type=int, default=40, help="transplants per source defect and mode")
    ap.add_argument("--sources", type=int, default=30,
                    help="source defects at most, spread evenly over the library")
    ap.add_argument("--images", type=int, default=24, help="clean images at most")
    ap.add_argument("--no-score", action="store_true", help="skip the realism score")
    args = ap.parse_args()
    os.environ.setdefault("DEFECTSYNTH_CACHE_DIR", str(Path(tempfile.gettempdir()) / "ds-bench"))

    from defectsynth.realism.crops import cut, read_defects, to_common, to_float
    from defectsynth.realism.features import FEATURES, feature_matrix
    from defectsynth.transplant import DEMO_SOURCE, load_library

    source = str(Path(args.source).resolve()) if args.source else ""
    lib = load_library(source)
    clean = clean_images(Path(args.clean), args.images)
    side = min(min(img.shape[:2]) for _, img, _ in clean)
    fits = [k for k, e in enumerate(lib.entries) if max(e.shape) <= 0.6 * side]
    chosen = fits if len(fits) <= args.sources else [
        fits[round(i * (len(fits) - 1) / (args.sources - 1))] for i in range(args.sources)
    ]
    print(f"library {args.source or 'demo'}: {len(lib)} defects, {len(fits)} fit the "
          f"{side}px clean images ({len(clean)} of them); {len(chosen)} used, "
          f"{args.n} transplants each per mode")

    real = read_defects(args.source or DEMO_SOURCE)
    shape_of = {c.where: c.image_shape for c in real.crops}

    def source_shape(k: int) -> tuple[int, int] | None:
        e = lib.entries[k]
        return shape_of.get(f"{e.image} {e.category} box {list(e.box)}")
    gray = any(c.channels == 1 for c in real.crops) or any(img.ndim == 2 for _, img, _ in clean)
    box_only = not real.has_masks
    t0 = time.perf_counter()
    rows: dict[str, list[tuple[int, np.ndarray]]] = {"plain": [], "varied": []}
    crops: dict[str, list[Any]] = {"plain": [], "varied": []}
    for k in chosen:
        pick = (k + 0.5) / len(lib)
        for mode, fixed in (("plain", NEUTRAL), ("varied", {})):
            exact = []
            for sample, ann in transplants(source, pick, fixed, clean, args.n, 1000 * k):
                crop = cut(to_float(sample.image), ann.box, ann.mask, lib.entries[k].category,
                           f"source{k}")
                # sizes are measured in units of the image's side: measure a transplant
                # as if on an image of its source's size (it is placed at the source's
                # pixel scale; the clean images may be larger)
                crop = replace(crop, image_shape=source_shape(k) or crop.image_shape)
                exact.append(to_common(crop, gray, False))
                if not args.no_score:
                    crops[mode].append(to_common(crop, gray, box_only) if box_only
                                       else exact[-1])
            for x in feature_matrix(exact):
                rows[mode].append((k, x))
    print(f"rendered and measured in {time.perf_counter() - t0:.0f} s")

    every = np.stack([x for mode in rows.values() for _, x in mode])
    mu, sd = every.mean(axis=0), every.std(axis=0)
    keep = sd > 1e-9

    def z(x: np.ndarray) -> np.ndarray:
        return ((x - mu) / np.where(keep, sd, 1.0))[..., keep]

    # the real spread: the source defects as extracted (their library masks, measured
    # like the transplants), between different defects of one category
    real_by_cat: dict[str, list[np.ndarray]] = {}
    extracted = []
    for k in chosen:
        e = lib.entries[k]
        ys, xs = np.nonzero(e.mask)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        crop = cut(np.asarray(e.pixels), box, e.mask, e.category, e.image)
        crop = replace(crop, image_shape=source_shape(k) or crop.image_shape)
        extracted.append(to_common(crop, gray, False))
    for c, x in zip(extracted, feature_matrix(extracted)):
        real_by_cat.setdefault(c.category, []).append(z(x))
    wanted = {f"{lib.entries[k].image} {lib.entries[k].category} box {list(lib.entries[k].box)}"
              for k in chosen}
    real_used = [c for c in real.crops if c.where in wanted]
    if len(real_used) < 4:
        real_used = list(real.crops)

    cats = list(dict.fromkeys(lib.entries[k].category for k in chosen))
    print()
    print("mean pairwise distance (standardised features, "
          f"{int(keep.sum())} of {len(FEATURES)}) between transplants of one source defect")
    print(f"{'category':<18}{'sources':>8}{'plain':>9}{'varied':>9}{'ratio':>8}"
          f"{'real, between sources':>24}")
    totals: dict[str, list[float]] = {"plain": [], "varied": []}
    for cat in [*cats, "all"]:
        ks = [k for k in chosen if cat == "all" or lib.entries[k].category == cat]
        got = {}
        for mode in ("plain", "varied"):
            per = [mean_pairwise(z(np.stack([x for kk, x in rows[mode] if kk == k])))
                   for k in ks]
            got[mode] = float(np.nanmean(per))
        between = [x for c, xs in real_by_cat.items() if cat in ("all", c) for x in xs]
        spread = mean_pairwise(np.stack(between)) if len(between) > 1 else float("nan")
        print(f"{cat:<18}{len(ks):>8}{got['plain']:>9.2f}{got['varied']:>9.2f}"
              f"{got['varied'] / got['plain']:>8.2f}{spread:>24.2f}")
        if cat != "all":
            for mode in totals:
                totals[mode].append(got[mode])

    names = [f.name for f, k in zip(FEATURES, keep) if k]
    spread_of = {}
    for mode in ("plain", "varied"):
        spread_of[mode] = np.nanmean(
            [z(np.stack([x for kk, x in rows[mode] if kk == k])).std(axis=0) for k in chosen],
            axis=0,
        )
    ratio = spread_of["varied"] / np.maximum(spread_of["plain"], 1e-9)
    order = np.argsort(-ratio)
    print("spread (std) within a source, varied / plain, by feature:")
    parts = [f"{names[i]} {ratio[i]:.2f}x" for i in order]
    for i in range(0, len(parts), 8):
        print("  " + ", ".join(parts[i : i + 8]))

    if args.no_score:
        return
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print("\nrealism score skipped: scikit-learn is not installed")
        return
    from defectsynth.realism.score import compare

    real_common = [to_common(c, gray, box_only) for c in real_used]
    print(f"\nrealism score against the {len(real_common)} source defects themselves "
          f"(AUC, 0.5 = indistinguishable; masks from {'boxes' if box_only else 'labels'})")
    print(f"{'set':<10}{'AUC':>8}{'95% interval':>18}")
    for mode in ("plain", "varied"):
        s = compare(real_common, crops[mode], seed=0)
        print(f"{mode:<10}{s.auc:>8.3f}{f'{s.ci[0]:.3f}..{s.ci[1]:.3f}':>18}")
        for d in s.differences[:2]:
            print(f"{'':<10}{d}")


if __name__ == "__main__":
    main()
