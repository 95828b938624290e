"""Can a small CNN tell synthetic defect patches from real ones? (needs the torch extra)

``score`` measures 27 described features; a CNN sees the pixels, so it also catches what
no feature describes (a straight edge where a transplant was cut off by its box, a
repeated texture, a halo of the wrong shape). This is the classifier two-sample test of
the issue "Learn from the user's own defects", with a learned classifier: per NEU-DET
class, 64x64 patches around the held-out real defects against patches around synthetic
ones of each recipe, a small CNN trained under group k-fold (a fold never splits one
photo or one rendered sample), and the AUC of its out-of-fold scores. 0.5 = the CNN
cannot tell them apart.

Both sides go through the same steps: the whole image JPEG-encoded at ``--quality``
(NEU-DET's photos are JPEGs, the synthetic ones would otherwise be the only clean
pixels), a square window around the box grown by a quarter, gray, resized to 64x64, its
mean subtracted (the surface's brightness says nothing about the defect).

NEU-DET (``--sets neu``): the shots, held-out photos and clean surface as in
``bench_fit.py``. DeepPCB (``--sets deeppcb``): the board scans split as in
``realism_deeppcb.prepare`` (a third are shots), the defect-free templates as the clean
boards, the pcb plugin's generator per type. Recipes:

- ``default``: the class's generator (``bench_realism.NEU_GENERATORS``, the pcb plugin's
  for DeepPCB), default ranges;
- ``transplant``: transplants of the 10 shots, with the generator's default variation;
- ``tp-as-cut``: the same with ``cut_fade: 0``: a defect that the label's box (or the
  photo's frame) cut off ends in the straight line of the cut (as before the fade);
- ``tp-anywhere``: the same with ``context: 0``: a defect cut from a layout (a board's
  traces) lands where it was drawn, not where the board has that layout.

    pip install torch  # a CPU build: see docs/training.md
    OMP_NUM_THREADS=1 python benchmarks/bench_cnn_realism.py      # NEU-DET, ~20 min
    OMP_NUM_THREADS=1 python benchmarks/bench_cnn_realism.py --sets deeppcb
    python benchmarks/bench_cnn_realism.py --classes patches --recipes transplant
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realism_deeppcb  # noqa: E402
from bench_fewshot import patch  # noqa: E402
from bench_fit import CLASSES, DATA, boxes, clean_surface, recipe_file, voc_folder  # noqa: E402
from bench_realism import NEU_GENERATORS  # noqa: E402

RECIPES = ("default", "transplant", "tp-as-cut", "tp-anywhere")


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def two_sample_cnn(real: list[np.ndarray], real_groups: list[str], syn: list[np.ndarray],
                   syn_groups: list[str], seed: int, epochs: int, folds: int = 4) -> float:
    """Out-of-fold AUC of a small CNN telling synthetic patches (1) from real ones (0);
    folds by group, each side balanced by sample weights."""
    import torch
    from torch import nn

    from defectsynth.realism.score import auc_of

    torch.set_num_threads(1)
    x_all = np.stack(real + syn).astype(np.float32)[:, None]
    x_all -= x_all.mean(axis=(2, 3), keepdims=True)
    y_all = np.r_[np.zeros(len(real)), np.ones(len(syn))].astype(np.float32)
    groups = list(real_groups) + [f"syn:{g}" for g in syn_groups]
    uniq = sorted(set(groups))
    rng = np.random.default_rng(seed)
    fold_of = {g: i % folds for i, g in enumerate(uniq[j] for j in rng.permutation(len(uniq)))}
    fold = np.array([fold_of[g] for g in groups])
    scores = np.zeros(len(y_all), np.float32)
    for f in range(folds):
        tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        torch.manual_seed(seed + f)
        net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(32, 1),
        )
        x, y = torch.tensor(x_all[tr]), torch.tensor(y_all[tr])
        pos = float(y.sum())
        w = torch.where(y > 0, (len(y) - pos) / max(pos, 1.0), torch.tensor(1.0))
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        g = torch.Generator().manual_seed(seed + f)
        for _ in range(epochs):
            order = torch.randperm(len(y), generator=g)
            for i in range(0, len(y), 64):
                idx = order[i : i + 64]
                xb = x[idx]
                if torch.rand(1, generator=g).item() < 0.5:  # mirrored: no side is special
                    xb = xb.flip(3)
                opt.zero_grad()
                loss = nn.functional.binary_cross_entropy_with_logits(
                    net(xb)[:, 0], y[idx], weight=w[idx])
                loss.backward()
                opt.step()
        with torch.no_grad():
            scores[te] = net(torch.tensor(x_all[te]))[:, 0].numpy()
    return auc_of(y_all.astype(int), scores)


def synthetic_patches(recipe_path: Path, host: object, n: int, seed: int, quality: int,
                      ) -> tuple[list[np.ndarray], list[str]]:
    from defectsynth.build import load_recipe
    from defectsynth.synthesizer import Synthesizer, source_id

    rec = load_recipe(recipe_path, host=host)
    synth = Synthesizer.from_recipe(rec, host, on_failure="reject")
    sources = [(src, cv2.imread(src.path, cv2.IMREAD_GRAYSCALE), rec.mask_path(src))
               for src in rec.sources()]
    out: list[np.ndarray] = []
    groups: list[str] = []
    v = 0
    while len(out) < n and v < 50:
        for src, img, mp in sources:
            m = cv2.imread(str(mp), cv2.IMREAD_GRAYSCALE) > 0 if mp else None
            smp = synth.apply(img, m, seed=seed, source_id=source_id(src.rel), variant=v)
            if not smp.annotations:
                continue
            enc = jpeg(smp.image, quality)
            for a in smp.annotations:
                out.append(patch(enc, a.box))
                groups.append(f"{src.rel}@{v}")
        v += 1
    return out[:n], groups[:n]


def _entries(generator: str, category: str, shots: Path) -> dict[str, dict[str, Any]]:
    return {
        "default": {"generator": generator, "category": category},
        "transplant": {"generator": "transplant", "params": {"source": str(shots)}},
        "tp-as-cut": {"generator": "transplant",
                      "params": {"source": str(shots), "cut_fade": 0.0}},
        "tp-anywhere": {"generator": "transplant",
                        "params": {"source": str(shots), "context": 0.0}},
    }


def _cases(sets: list[str], chosen: list[str], args: argparse.Namespace,
           work: Path) -> Iterator[dict[str, Any]]:
    """Per class: real patches and their groups, the recipes' inputs and entries."""
    if "neu" in sets and DATA.is_dir():
        rng = np.random.default_rng(args.seed)
        stems_all = sorted(p.stem for p in (DATA / "annotations").glob("*.xml"))
        for cls in CLASSES:
            stems = [s for s in stems_all if s.startswith(cls + "_")]
            order = [stems[i] for i in rng.permutation(len(stems))]  # bench_fit's draws
            if cls not in chosen:
                continue
            shots, test = order[: args.shots], order[args.shots :]
            base = work / cls
            shots_dir = voc_folder(shots, base / "shots")
            clean, mask_pattern, _ = clean_surface(shots, test, stems_all, base / "clean")
            real, groups = [], []
            for s in test:
                img = jpeg(cv2.imread(str(DATA / "images" / f"{s}.jpg"),
                                      cv2.IMREAD_GRAYSCALE), args.quality)
                for b in boxes(DATA / "annotations" / f"{s}.xml"):
                    real.append(patch(img, b))
                    groups.append(s)
            yield {"class": cls, "real": real, "groups": groups, "base": base,
                   "inputs": {"images": str(clean), "product_mask": mask_pattern},
                   "entries": _entries(NEU_GENERATORS[cls], cls, shots_dir)}
    if "deeppcb" in sets and realism_deeppcb.DATA.is_dir():
        types = [c for c in chosen if c in {c for c, _ in realism_deeppcb.TYPES.values()}]
        if not types:
            return
        cases = realism_deeppcb.prepare(work / "deeppcb", types=types, seed=args.seed)
        scans = {stem: (test, bx) for stem, _, test, bx in realism_deeppcb.pairs()}
        kinds = {c: k for k, (c, _) in realism_deeppcb.TYPES.items()}
        for e in cases:
            real, groups = [], []
            for p in sorted((Path(e["real"]) / "images" / e["class"]).glob("*.png")):
                test_p, bx = scans[p.stem]
                img = jpeg(cv2.imread(str(test_p), cv2.IMREAD_GRAYSCALE), args.quality)
                for b in bx:
                    if b[4] == kinds[e["class"]]:
                        real.append(patch(img, tuple(b[:4])))  # type: ignore[arg-type]
                        groups.append(p.stem)
            entries = _entries(e["generator"], e["class"], Path(e["shots"]))
            entries["default"]["params"] = {"fallback": False}
            yield {"class": e["class"], "real": real, "groups": groups,
                   "base": Path(e["recipe"]).parent,
                   "inputs": {"images": str(e["clean"]), "product_mask": "full"},
                   "entries": entries}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default="neu", help="neu, deeppcb or both (comma-separated)")
    ap.add_argument("--classes", default="", help="comma-separated classes (default all)")
    ap.add_argument("--recipes", default=",".join(RECIPES), help=", ".join(RECIPES))
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--samples", type=int, default=300, help="synthetic patches per recipe")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--quality", type=int, default=80, help="JPEG quality of both sides")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not DATA.is_dir() and not realism_deeppcb.DATA.is_dir():
        print(f"skipped: {DATA.parent} is not here (see ../shared/data/README.md)")
        return 0
    try:
        import torch  # noqa: F401
    except ImportError:
        print("skipped: needs torch (pip install 'defectsynth[torch]')")
        return 0
    from defectsynth.plugins import get_host

    sets = args.sets.split(",")
    recipes = args.recipes.split(",")
    pcb = [c for c, _ in realism_deeppcb.TYPES.values()]
    known = (list(CLASSES) if "neu" in sets else []) + (pcb if "deeppcb" in sets else [])
    chosen = args.classes.split(",") if args.classes else known
    unknown = [c for c in chosen if c not in known] + [r for r in recipes if r not in RECIPES]
    unknown += [x for x in sets if x not in ("neu", "deeppcb")]
    if unknown:
        ap.error(f"unknown {', '.join(unknown)} (sets: neu, deeppcb; classes: "
                 f"{', '.join(known)}; recipes: {', '.join(RECIPES)})")
    host = get_host()
    work = Path(tempfile.mkdtemp(prefix="bench_cnn_realism_"))
    os.environ.setdefault("DEFECTSYNTH_CACHE_DIR", str(work / "cache"))
    print(f"CNN two-sample AUC (0.5 = cannot tell synthetic from real) on held-out real "
          f"defects, {args.samples} synthetic patches, JPEG q{args.quality}, "
          f"{args.epochs} epochs")
    print(f"{'class':<16}{'real':>6}" + "".join(f"{r:>12}" for r in recipes) + f"{'s':>6}")
    means: dict[str, list[float]] = {r: [] for r in recipes}
    for case in _cases(sets, chosen, args, work):
        t0 = time.monotonic()
        row = []
        for r in recipes:
            path = recipe_file({"seed": args.seed, "instances": 1, "inputs": case["inputs"],
                                "defects": [case["entries"][r]]}, case["base"] / f"{r}.yaml")
            syn, syn_groups = synthetic_patches(path, host, args.samples, args.seed,
                                                args.quality)
            auc = two_sample_cnn(case["real"], case["groups"], syn, syn_groups, args.seed,
                                 args.epochs)
            means[r].append(auc)
            row.append(auc)
        print(f"{case['class']:<16}{len(case['real']):>6}" + "".join(f"{a:12.3f}" for a in row)
              + f"{time.monotonic() - t0:6.0f}", flush=True)
    print(f"{'mean':<16}{'':>6}" + "".join(f"{np.mean(means[r]):12.3f}" for r in recipes))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
