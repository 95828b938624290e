"""fit on real steel-strip defects (NEU-DET), per class: held-out realism of four recipes.

For each NEU-DET class, ``--shots`` defect photos (10) are the user's few real defects;
the class's other photos are the held-out test. Clean surface is what lies far from every
box of the shots' own photos: a product mask leaves out each box and 16 px around it (NEU
has no defect-free photos, and each class was photographed on its own kind of strip, so
another class's photos would be another surface). Photos whose boxes leave less than
15 % of them are left out; when fewer than 3 photos are left, or what they keep averages
under 25 % of a photo (pitted surface: slivers that clip every synthetic field), the class
has too little clean surface, and the other classes' photos (but the test ones) are used
instead; the table says so (the same rule as ``bench_realism.py``). The data is read from
``../shared/data/neu-det`` (never copied into the repository); the working files go to a
temporary folder.

Printed per class, the score (classifier AUC against the held-out real defects; 0.5 =
indistinguishable) of:

- ``default``: the built-in generator that scores best on the shots, default ranges;
- ``fitted``: the fitted generator alone (``--transplant-share 0``);
- ``transplant``: transplants of the shots alone;
- ``fitted+tp``: the recipe ``fit`` writes (fitted and transplants, half each);

and the fit's wall time. Targets (issue 13): fitted+tp below transplant and at least 0.10
below default on 4 of the 6 classes; mean fitted at most 0.75; a class fits in 5 minutes
or less on 2 cores.

    python benchmarks/bench_fit.py                    # all six classes
    python benchmarks/bench_fit.py --classes scratches,patches --rounds 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import yaml

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "neu-det"
CLASSES = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")


def boxes(xml: Path) -> list[tuple[int, int, int, int]]:
    root = ET.parse(xml).getroot()
    out = []
    for o in root.findall("object"):
        b = o.find("bndbox")
        assert b is not None
        x1, y1, x2, y2 = (int(float(b.findtext(k) or 0)) for k in ("xmin", "ymin", "xmax", "ymax"))
        out.append((x1 - 1, y1 - 1, x2, y2))
    return out


def voc_folder(stems: list[str], dest: Path) -> Path:
    (dest / "JPEGImages").mkdir(parents=True)
    (dest / "Annotations").mkdir()
    for s in stems:
        shutil.copy(DATA / "images" / f"{s}.jpg", dest / "JPEGImages" / f"{s}.jpg")
        shutil.copy(DATA / "annotations" / f"{s}.xml", dest / "Annotations" / f"{s}.xml")
    return dest


def clean_folder(stems: list[str], dest: Path) -> tuple[Path, str]:
    """The photos with a product mask of what lies 16 px or more from every box (a
    defect placed closer would have a real one in its window)."""
    (dest / "images").mkdir(parents=True)
    (dest / "masks").mkdir()
    for s in stems:
        img = cv2.imread(str(DATA / "images" / f"{s}.jpg"), cv2.IMREAD_GRAYSCALE)
        mask = np.full(img.shape, 255, np.uint8)
        for x1, y1, x2, y2 in boxes(DATA / "annotations" / f"{s}.xml"):
            mask[max(0, y1 - 16) : y2 + 16, max(0, x1 - 16) : x2 + 16] = 0
        if (mask > 0).mean() < 0.15:
            continue  # hardly any clean surface left
        cv2.imwrite(str(dest / "images" / f"{s}.png"), img)
        cv2.imwrite(str(dest / "masks" / f"{s}.png"), mask)
    return dest / "images", str(dest / "masks" / "{stem}.png")


# seed 0's shots keep (photos, mean clean share): crazing 8, 30 %; pitted surface 3, 23 %
# (slivers); the other classes 10, 52-60 %
MIN_CLEAN_SHARE = 0.25


def clean_share(masks: Path) -> float:
    """Mean share of clean surface in the photos kept (pitted-surface boxes cover most of
    each photo: what is left are slivers that clip every synthetic field to their shape)."""
    shares = [float((cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 0).mean())
              for p in masks.glob("*.png")]
    return float(np.mean(shares)) if shares else 0.0


def clean_surface(shots: list[str], test: list[str], all_stems: list[str],
                  dest: Path) -> tuple[Path, str, str]:
    """The clean surface a class's defects are drawn on: its shots' own photos, unless
    fewer than 3 keep enough of it or what they keep averages under 25 % of a photo;
    then every photo of the other classes but the test ones. (folder, product mask
    pattern, a note saying which)."""
    clean, mask = clean_folder(shots, dest)
    if len(list(clean.iterdir())) >= 3 and clean_share(dest / "masks") >= MIN_CLEAN_SHARE:
        return clean, mask, ""
    shutil.rmtree(dest)
    held = set(test)
    clean, mask = clean_folder([s for s in all_stems if s not in held], dest)
    return clean, mask, "clean surface from other classes"


def recipe_file(data: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classes", default=",".join(CLASSES))
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--samples", type=int, default=150, help="synthetic defects per score")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the working folder")
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"skipped: {DATA} is not here (see ../shared/data/README.md)")
        return 0
    from defectsynth.plugins import get_host
    from defectsynth.realism.crops import read_defects
    from defectsynth.realism.fit import fit
    from defectsynth.realism.score import score

    host = get_host()
    work = Path(tempfile.mkdtemp(prefix="bench_fit_"))
    os.environ.setdefault("DEFECTSYNTH_CACHE_DIR", str(work / "cache"))
    rng = np.random.default_rng(args.seed)
    all_stems = sorted(p.stem for p in (DATA / "annotations").glob("*.xml"))
    rows = []
    print(f"NEU-DET, {args.shots} shots per class, rounds {args.rounds}, seed {args.seed}")
    print(f"{'class':<16} {'default':>8} {'fitted':>8} {'transplant':>10} {'fitted+tp':>10}"
          f"  {'generator':<14} {'fit s':>6}")
    chosen = args.classes.split(",")
    unknown = [c for c in chosen if c not in CLASSES]
    if unknown:
        ap.error(f"--classes: unknown {', '.join(unknown)} (NEU-DET has {', '.join(CLASSES)})")
    for cls in CLASSES:
        stems = [s for s in all_stems if s.startswith(cls + "_")]
        # drawn for every class, so --classes picks the same shots as a full run
        order = [stems[i] for i in rng.permutation(len(stems))]
        if cls not in chosen:
            continue
        shots, test = order[: args.shots], order[args.shots :]
        base = work / cls
        shots_dir = voc_folder(shots, base / "shots")
        test_dir = voc_folder(test, base / "test")
        clean, mask, note = clean_surface(shots, test, all_stems, base / "clean")
        note = f" ({note})" if note else ""
        test_set = read_defects(test_dir)
        t0 = time.monotonic()
        result = fit(shots_dir, clean, product_mask=mask, rounds=args.rounds, seed=args.seed,
                     host=host, recipe_dir=base)
        seconds = time.monotonic() - t0
        cf = result.per_category.get(cls)
        if cf is None or cf.generator is None:
            print(f"{cls:<16} not fitted: {result.warnings}")
            continue
        full = result.recipe.data
        procedural = [d for d in full["defects"] if d["generator"] != "transplant"]
        fitted = dict(full, defects=procedural)
        default = dict(fitted, defects=[{"generator": cf.generator, "category": cls}])
        transplant = dict(
            full, defects=[d for d in full["defects"] if d["generator"] == "transplant"]
        )
        scores = {}
        for name, data in (("default", default), ("fitted", fitted), ("transplant", transplant),
                           ("fitted+tp", full)):
            path = recipe_file(dict(data, instances=1), base / f"{name}.yaml")
            s = score(test_set, path, samples=args.samples, seed=args.seed, host=host)
            scores[name] = s.auc
        rows.append((cls, scores, cf.generator, seconds))
        print(f"{cls:<16} {scores['default']:8.2f} {scores['fitted']:8.2f} "
              f"{scores['transplant']:10.2f} {scores['fitted+tp']:10.2f}  {cf.generator:<14} "
              f"{seconds:6.0f}{note}", flush=True)
    if rows:
        mean = {k: float(np.mean([r[1][k] for r in rows])) for k in rows[0][1]}
        print(f"{'mean':<16} {mean['default']:8.2f} {mean['fitted']:8.2f} "
              f"{mean['transplant']:10.2f} {mean['fitted+tp']:10.2f}")
        better = sum(r[1]["fitted+tp"] < r[1]["transplant"]
                     and r[1]["fitted+tp"] <= r[1]["default"] - 0.10 for r in rows)
        print(f"targets: fitted+tp below transplant and 0.10 below default on {better} of "
              f"{len(rows)} classes (target 4 of 6); mean fitted {mean['fitted']:.2f} "
              f"(target <= 0.75); slowest fit {max(r[3] for r in rows):.0f} s (target <= 300)")
    if args.keep:
        print(f"working files: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
