"""Realism of the pcb plugin's six generators against real DeepPCB defects, per type.

DeepPCB (``../shared/data/deeppcb``, read in place, never copied into the repository)
pairs each binarised 640 x 640 board scan that has defects (``{id}_test.jpg``) with its
defect-free template (``{id}_temp.jpg``); ``{id}.txt`` lists the boxes, ``x1 y1 x2 y2
type``, type 1 open, 2 short, 3 mousebite, 4 spur, 5 spurious copper, 6 pin-hole.

:func:`prepare` builds, in a working folder, per type:

- the real defects as an images + masks folder (what ``defectsynth score`` and ``fit``
  read): ``images/CATEGORY/{id}.png`` is the test scan, ``masks/CATEGORY/{id}.png`` the
  pixels where test and template differ, inside each box of that type; the board scans
  are split by image into ``shots`` (a third, what ``fit`` learns from) and ``held-out``
  (the rest, what every score is measured on);
- one clean folder of the templates (defect-free boards; shared by all types);
- a recipe with the type's generator, default parameters, on those templates.

:func:`main` prints, per type, the ``score`` (classifier AUC: 0.5 = synthetic and real
cannot be told apart) of the default recipe on the held-out defects, and with ``--fit``
the held-out score after ``fit`` on the shots (the fitted generator alone).

    python benchmarks/realism_deeppcb.py                    # default scores, ~1 min
    python benchmarks/realism_deeppcb.py --fit              # and after fit, a few min
    python benchmarks/realism_deeppcb.py --types open,short --samples 80
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "deeppcb"
#: the types that add copper (short, spur, spurious copper); the others remove it
ADDS_COPPER = frozenset({2, 4, 5})
#: DeepPCB type -> (category, generator)
TYPES: dict[int, tuple[str, str]] = {
    1: ("open", "pcb_open"),
    2: ("short", "pcb_short"),
    3: ("mousebite", "pcb_mousebite"),
    4: ("spur", "pcb_spur"),
    5: ("copper", "pcb_spurious_copper"),
    6: ("pin-hole", "pcb_pinhole"),
}


def pairs(data: Path = DATA) -> list[tuple[str, Path, Path, list[tuple[int, ...]]]]:
    """(id, template, test scan, boxes) of every labelled board scan."""
    out = []
    for note in sorted(data.glob("group*/*_not/*.txt")):
        folder = note.parent.parent / note.parent.name[: -len("_not")]
        temp, test = folder / f"{note.stem}_temp.jpg", folder / f"{note.stem}_test.jpg"
        if not (temp.is_file() and test.is_file()):
            continue
        boxes = []
        for line in note.read_text().splitlines():
            parts = line.replace(",", " ").split()
            if len(parts) == 5:
                boxes.append(tuple(int(float(v)) for v in parts))
        out.append((note.stem, temp, test, boxes))
    return out


def defect_mask(temp: np.ndarray, test: np.ndarray, box: tuple[int, ...]) -> np.ndarray:
    """The pixels inside ``box`` where the test scan's copper differs from the template's
    in the direction of the box's type (``box[4]``): copper added for a short, a spur or
    spurious copper, removed for an open, a mousebite or a pin-hole.

    The two scans are aligned only to about a pixel, so a pixel counts as changed when the
    template has no pixel of its new state within 1 px (copper where the template has none
    nearby, substrate where it has none nearby); each such core then takes back the
    changed pixels touching it. Changes the other way are the scans' misregistration along
    the trace edges near the defect (an open's box held 12 % copper pixels that the
    template lacks), not the defect. Parts under 4 px, or under a tenth of the largest,
    are scan noise and dropped."""
    x1, y1, x2, y2 = (int(v) for v in box[:4])
    h, w = temp.shape
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    out = np.zeros((h, w), np.uint8)
    if x2 <= x1 or y2 <= y1:
        return out
    k = np.ones((3, 3), np.uint8)
    before = (temp < 128).astype(np.uint8)
    after = (test < 128).astype(np.uint8)
    adds = len(box) > 4 and int(box[4]) in ADDS_COPPER
    if adds:
        core = ((after > 0) & (cv2.dilate(before, k) == 0)).astype(np.uint8)
        diff = (after > 0) & (before == 0)
    else:
        core = ((after == 0) & (cv2.erode(before, k) > 0)).astype(np.uint8)
        diff = (after == 0) & (before > 0)
    grown = (cv2.dilate(core, k) > 0) & diff
    part = grown[y1:y2, x1:x2].astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(part, connectivity=8)
    if n <= 1:
        return out
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = [i + 1 for i, a in enumerate(areas) if a >= max(4, 0.1 * areas.max())]
    out[y1:y2, x1:x2] = np.isin(lab, keep).astype(np.uint8) * 255
    return out


def _real_folder(dest: Path, category: str, kind: int,
                 chosen: list[tuple[str, Path, Path, list[tuple[int, ...]]]]) -> int:
    (dest / "images" / category).mkdir(parents=True, exist_ok=True)
    (dest / "masks" / category).mkdir(parents=True, exist_ok=True)
    made = 0
    for stem, temp_p, test_p, boxes in chosen:
        mine = [b for b in boxes if b[4] == kind]
        if not mine:
            continue
        temp = cv2.imread(str(temp_p), cv2.IMREAD_GRAYSCALE)
        test = cv2.imread(str(test_p), cv2.IMREAD_GRAYSCALE)
        if temp is None or test is None or temp.shape != test.shape:
            continue
        mask = np.zeros(temp.shape, np.uint8)
        for b in mine:
            mask |= defect_mask(temp, test, b)
        if not mask.any():
            continue
        cv2.imwrite(str(dest / "images" / category / f"{stem}.png"), test)
        cv2.imwrite(str(dest / "masks" / category / f"{stem}.png"), mask)
        made += 1
    return made


def prepare(
    work: Path,
    *,
    types: list[str] | None = None,
    max_images: int = 40,
    seed: int = 0,
    data: Path = DATA,
) -> list[dict[str, Any]]:
    """Build the real-defect folders, the clean templates and a default recipe per type.

    :param work: an empty or new folder for the files.
    :param types: categories to prepare (default all six: open, short, mousebite, spur,
        copper, pin-hole).
    :param max_images: at most this many held-out board scans per type (and half as many
        shots), to keep the scores quick.
    :returns: per type a dict: ``class`` (the category), ``generator``, ``real`` (the
        held-out real defects folder), ``shots`` (the folder ``fit`` learns from),
        ``clean`` (the templates folder) and ``recipe`` (the default recipe's path).
    """
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    everything = pairs(data)
    rng = np.random.default_rng(seed)
    order = [everything[i] for i in rng.permutation(len(everything))]
    n_shots = len(order) // 3
    shots, held = order[:n_shots], order[n_shots:]
    clean = work / "clean"
    clean.mkdir(exist_ok=True)
    for stem, temp_p, _, _ in everything:
        dest = clean / f"{stem}.png"
        if not dest.exists():
            img = cv2.imread(str(temp_p), cv2.IMREAD_GRAYSCALE)
            if img is not None:
                cv2.imwrite(str(dest), img)
    out: list[dict[str, Any]] = []
    for kind, (category, generator) in TYPES.items():
        if types and category not in types:
            continue
        base = work / category.replace("-", "_")
        with_kind = [p for p in held if any(b[4] == kind for b in p[3])][:max_images]
        shot_kind = [p for p in shots if any(b[4] == kind for b in p[3])][: max_images // 2]
        _real_folder(base / "held_out", category, kind, with_kind)
        _real_folder(base / "shots", category, kind, shot_kind)
        recipe = {
            "seed": seed,
            "inputs": {"images": "clean", "product_mask": "full"},
            "instances": 1,
            "defects": [{"generator": generator, "category": category,
                         "params": {"fallback": False}}],
        }
        # beside the templates: a recipe reads only below its own folder
        path = work / f"{base.name}_default.yaml"
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        out.append({"class": category, "generator": generator, "real": base / "held_out",
                    "shots": base / "shots", "clean": clean, "recipe": path})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--types", default="", help="comma-separated categories (default all)")
    ap.add_argument("--samples", type=int, default=60, help="synthetic defects per score")
    ap.add_argument("--max-images", type=int, default=40,
                    help="held-out board scans per type (shots: half as many)")
    ap.add_argument("--fit", action="store_true", help="also fit on the shots (slower)")
    ap.add_argument("--rounds", type=int, default=2, help="fit search rounds")
    ap.add_argument("--fit-budget", type=float, default=60.0,
                    help="seconds each type's fit may search (it stops after the round "
                    "that passes it)")
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
    if "pcb_open" not in host.generators:
        print("the pcb plugin is not installed: pip install -e ./plugins/pcb")
        return 1
    work = Path(tempfile.mkdtemp(prefix="realism_deeppcb_"))
    os.environ.setdefault("DEFECTSYNTH_CACHE_DIR", str(work / "cache"))
    types = [t for t in args.types.split(",") if t] or None
    started = time.monotonic()
    entries = prepare(work, types=types, max_images=args.max_images, seed=args.seed)
    print(f"DeepPCB, held-out real defects per type from up to {args.max_images} scans, "
          f"{args.samples} synthetic, seed {args.seed}")
    head = f"{'type':<10} {'generator':<20} {'real':>5} {'default':>8} {'95% interval':>13}"
    print(head + (f" {'fitted':>8} {'fit s':>6}" if args.fit else ""))
    for e in entries:
        real = read_defects(e["real"])
        s = score(real, e["recipe"], samples=args.samples, seed=args.seed, host=host)
        cat = s.per_category.get(e["class"], s.overall)
        line = (f"{e['class']:<10} {e['generator']:<20} {len(real.crops):>5} {cat.auc:8.2f} "
                f"  [{cat.ci[0]:.2f}, {cat.ci[1]:.2f}]")
        if args.fit:
            t0 = time.monotonic()
            result = fit(e["shots"], e["clean"], mapping={e["class"]: e["generator"]},
                         rounds=args.rounds, seed=args.seed, host=host,
                         recipe_dir=e["recipe"].parent, transplant_share=0.0,
                         budget_seconds=args.fit_budget)
            data = dict(result.recipe.data, instances=1)
            fitted = e["recipe"].parent / e["recipe"].name.replace("_default", "_fitted")
            fitted.write_text(yaml.safe_dump(data, sort_keys=False))
            f = score(real, fitted, samples=args.samples, seed=args.seed, host=host)
            fcat = f.per_category.get(e["class"], f.overall)
            line += f" {fcat.auc:8.2f} {time.monotonic() - t0:6.0f}"
        print(line, flush=True)
    print(f"total {time.monotonic() - started:.0f} s")
    if args.keep:
        print(f"working files: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
