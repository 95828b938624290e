"""Downstream check of ``fit`` on NEU-DET: does a model trained on the synthetic defects
find the real ones? (needs the torch extra)

Per NEU-DET class, as in ``bench_fit.py``: 10 shots are the user's real defects, the
class's other photos the held-out test, clean surface is what lies far from the shots'
boxes (or the other classes' photos, by ``bench_fit.clean_surface``'s rule). For each
training set a small CNN learns to tell 64x64 defect patches from clean-surface patches,
and is tested on the held-out photos: patches around their real defects against patches
far from every box. Printed: the test AUC of

- ``default``: defects of the best built-in generator with default ranges;
- ``fitted``: the fitted generator alone;
- ``transplant``: transplants of the shots;
- ``fitted+tp``: the recipe ``fit`` writes;
- ``shots``: the 10 real shots alone, oversampled and augmented (flips, 90-degree turns,
  brightness and contrast jitter), the baseline a user has without defectsynth.

Every training set has the same number of defect and clean patches, the same network,
epochs and seed. Target (issue 13): fitted+tp beats default and shots.

    pip install torch  # a CPU build: see docs/training.md
    python benchmarks/bench_fewshot.py --classes scratches,patches
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fit import CLASSES, DATA, boxes, clean_surface, recipe_file, voc_folder  # noqa: E402

PATCH = 64


def patch(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """A square window around a box (grown by a quarter), resized to PATCH, gray 0..1."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    side = int(max(x2 - x1, y2 - y1) * 1.25) + 4
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    a, b = max(0, cx - side // 2), max(0, cy - side // 2)
    crop = image[b : min(h, b + side), a : min(w, a + side)]
    if crop.ndim == 3:
        crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    return cv2.resize(crop, (PATCH, PATCH), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def clean_patches(images: list[tuple[np.ndarray, np.ndarray]], n: int, rng: np.random.Generator,
                  ) -> list[np.ndarray]:
    """Patches wholly inside product masks (random sizes 24..96 px)."""
    out: list[np.ndarray] = []
    tries = 0
    while len(out) < n and tries < 50 * n:
        tries += 1
        img, mask = images[int(rng.integers(len(images)))]
        s = int(rng.integers(24, 97))
        h, w = mask.shape
        if s >= min(h, w):
            continue
        x, y = int(rng.integers(0, w - s)), int(rng.integers(0, h - s))
        if mask[y : y + s, x : x + s].all():
            out.append(patch(img, (x, y, x + s, y + s)))
    return out


def augment(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    p = np.rot90(p, int(rng.integers(4)))
    if rng.random() < 0.5:
        p = p[:, ::-1]
    gain, bias = rng.uniform(0.8, 1.2), rng.uniform(-0.08, 0.08)
    return np.clip((p - p.mean()) * gain + p.mean() + bias, 0, 1).astype(np.float32)


def train_and_test(pos: list[np.ndarray], neg: list[np.ndarray], test_pos: list[np.ndarray],
                   test_neg: list[np.ndarray], seed: int, epochs: int) -> float:
    import torch
    from torch import nn

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(32, 1),
    )
    x = torch.tensor(np.stack(pos + neg))[:, None]
    x = x - x.mean(dim=(2, 3), keepdim=True)  # level-free: the surface's brightness says nothing
    y = torch.tensor([1.0] * len(pos) + [0.0] * len(neg))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 64):
            idx = order[i : i + 64]
            opt.zero_grad()
            loss = nn.functional.binary_cross_entropy_with_logits(net(x[idx])[:, 0], y[idx])
            loss.backward()
            opt.step()
    with torch.no_grad():
        xt = torch.tensor(np.stack(test_pos + test_neg))[:, None]
        xt = xt - xt.mean(dim=(2, 3), keepdim=True)
        s = net(xt)[:, 0].numpy()
    from defectsynth.realism.score import auc_of

    return auc_of(np.array([1] * len(test_pos) + [0] * len(test_neg)), s)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classes", default=",".join(CLASSES))
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--patches", type=int, default=600, help="defect patches per training set")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"skipped: {DATA} is not here (see ../shared/data/README.md)")
        return 0
    try:
        import torch  # noqa: F401
    except ImportError:
        print("skipped: needs torch (pip install 'defectsynth[torch]')")
        return 0
    import os

    from defectsynth.build import load_recipe
    from defectsynth.plugins import get_host
    from defectsynth.realism.fit import fit
    from defectsynth.synthesizer import Synthesizer, source_id

    host = get_host()
    work = Path(tempfile.mkdtemp(prefix="bench_fewshot_"))
    os.environ.setdefault("DEFECTSYNTH_CACHE_DIR", str(work / "cache"))
    rng = np.random.default_rng(args.seed)
    stems_all = sorted(p.stem for p in (DATA / "annotations").glob("*.xml"))
    names = ("default", "fitted", "transplant", "fitted+tp", "shots")
    print(f"NEU-DET few-shot: {args.shots} shots, CNN on {args.patches} defect + "
          f"{args.patches} clean patches, {args.epochs} epochs, test AUC on held-out photos")
    print(f"{'class':<16}" + "".join(f"{n:>11}" for n in names) + f"{'s':>6}")
    chosen = args.classes.split(",")
    unknown = [c for c in chosen if c not in CLASSES]
    if unknown:
        ap.error(f"--classes: unknown {', '.join(unknown)} (NEU-DET has {', '.join(CLASSES)})")
    for cls in CLASSES:
        stems = [s for s in stems_all if s.startswith(cls + "_")]
        # drawn for every class, so --classes picks the same shots as a full run
        order = [stems[i] for i in rng.permutation(len(stems))]
        if cls not in chosen:
            continue
        t0 = time.monotonic()
        shots, test = order[: args.shots], order[args.shots :]
        base = work / cls
        shots_dir = voc_folder(shots, base / "shots")
        # the clean surface by bench_fit's rule (the other classes' photos when the shots'
        # own keep too little of it)
        clean, mask_pattern, _ = clean_surface(shots, test, stems_all, base / "clean")
        cleans = []
        for p in sorted(clean.iterdir()):
            img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
            m = cv2.imread(mask_pattern.format(stem=p.stem), cv2.IMREAD_GRAYSCALE) > 0
            cleans.append((img, m))
        # the held-out test: real defect patches and clean patches of the test photos
        test_pos, test_imgs = [], []
        for s in test:
            img = cv2.imread(str(DATA / "images" / f"{s}.jpg"), cv2.IMREAD_GRAYSCALE)
            m = np.ones(img.shape, bool)
            for b in boxes(DATA / "annotations" / f"{s}.xml"):
                test_pos.append(patch(img, b))
                x1, y1, x2, y2 = b
                m[max(0, y1 - 6) : y2 + 6, max(0, x1 - 6) : x2 + 6] = False
            test_imgs.append((img, m))
        test_neg = clean_patches(test_imgs, len(test_pos), np.random.default_rng(1))
        result = fit(shots_dir, clean, product_mask=mask_pattern, rounds=args.rounds,
                     seed=args.seed, host=host, recipe_dir=base)
        cf = result.per_category.get(cls)
        full = result.recipe.data
        proc = [d for d in full["defects"] if d["generator"] != "transplant"]
        gen = cf.generator if cf is not None and cf.generator else "scratch"
        recipes = {
            "default": dict(full, defects=[{"generator": gen, "category": cls}]),
            "fitted": dict(full, defects=proc or [{"generator": gen, "category": cls}]),
            "transplant": dict(full, defects=[d for d in full["defects"]
                                              if d["generator"] == "transplant"]),
            "fitted+tp": full,
        }
        aucs = {}
        neg = clean_patches(cleans, args.patches, np.random.default_rng(2))
        for name, data in recipes.items():
            rec = load_recipe(recipe_file(dict(data, instances=1), base / f"{name}.yaml"),
                              host=host)
            synth = Synthesizer.from_recipe(rec, host, on_failure="reject")
            pos: list[np.ndarray] = []
            v = 0
            while len(pos) < args.patches and v < 50:
                for src in rec.sources():
                    img = cv2.imread(src.path, cv2.IMREAD_GRAYSCALE)
                    mp = rec.mask_path(src)
                    m = cv2.imread(str(mp), cv2.IMREAD_GRAYSCALE) > 0 if mp else None
                    smp = synth.apply(img, m, seed=args.seed, source_id=source_id(src.rel),
                                      variant=v)
                    pos += [patch(smp.image, a.box) for a in smp.annotations]
                v += 1
            aucs[name] = train_and_test(pos[: args.patches], neg, test_pos, test_neg,
                                        args.seed, args.epochs)
        shot_pos = []
        for s in shots:
            img = cv2.imread(str(DATA / "images" / f"{s}.jpg"), cv2.IMREAD_GRAYSCALE)
            shot_pos += [patch(img, b) for b in boxes(DATA / "annotations" / f"{s}.xml")]
        arng = np.random.default_rng(3)
        pos = [augment(shot_pos[i % len(shot_pos)], arng) for i in range(args.patches)]
        aucs["shots"] = train_and_test(pos, neg, test_pos, test_neg, args.seed, args.epochs)
        print(f"{cls:<16}" + "".join(f"{aucs[n]:11.3f}" for n in names)
              + f"{time.monotonic() - t0:6.0f}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
