"""``defectsynth init``: a commented starter recipe for a folder of clean images.

It looks at a few of the images (never all of a large folder) to choose what a new user
would otherwise have to learn first: ``product_mask`` (``auto`` when the product stands
on a background the estimate can separate, else ``full``), the size of the defects
(``scale: auto`` when the images are far from the 512 px the generators were tuned for),
the number of samples and the splits. The recipe is written as text with a comment on
every key, then read back and checked like any recipe.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputImageError, RecipeError

#: generators proposed, with weights, when the host has them (others are listed)
PROPOSED = (("scratch", 2.0), ("dent", 1.0), ("pit", 1.0), ("stain", 1.0),
            ("discoloration", 1.0), ("crack", 0.5))
LOOKED_AT = 12  # images read to make the guesses
REFERENCE_SIDE = 512


@dataclass
class Starter:
    """What ``init`` found and chose; ``text`` is the recipe."""

    images: int
    looked_at: int
    shorter_side: int
    product_mask: str
    separated: int
    scale: str | None
    samples: int
    split: dict[str, float]
    generators: list[str]
    others: list[str] = field(default_factory=list)
    text: str = ""


def _even_sample(n: int, k: int) -> list[int]:
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def starter_recipe(images: str | os.PathLike[str], recipe_path: str | os.PathLike[str],
                   host: Any) -> Starter:
    """Look at the images in ``images`` and return the starter recipe for
    ``recipe_path`` (not written). Raises RecipeError when the folder holds no image."""
    from .placement import estimate_product_mask
    from .recipe import parse_recipe
    from .run import read_image

    folder = Path(images).absolute()
    probe = parse_recipe(
        {"inputs": {"images": str(folder)}, "defects": ["scratch"]},
        file="init", base_dir=os.getcwd(), allow_paths=[folder],
    )
    try:
        sources = probe.sources()
    except RecipeError:
        raise RecipeError(
            f"no image file in {str(images)!r} (looked for .png .jpg .jpeg .bmp .tif .tiff "
            ".webp, in subfolders too)", file="init"
        ) from None
    sides: list[int] = []
    separated = 0
    for i in _even_sample(len(sources), LOOKED_AT):
        try:
            image, _ = read_image(sources[i].path)
        except InputImageError:
            continue
        h, w = image.shape[:2]
        sides.append(min(h, w))
        colour = image[:, :, :3] if image.ndim == 3 and image.shape[2] == 4 else image
        mask = estimate_product_mask(np.ascontiguousarray(colour))
        if mask.mean() < 0.97:  # the estimate found a product on a background
            separated += 1
    looked = len(sides)
    if not looked:
        raise RecipeError(f"none of the images in {str(images)!r} could be read", file="init")
    side = int(np.median(sides))
    product_mask = "auto" if separated * 2 > looked else "full"
    scale = "auto" if not 0.75 <= side / REFERENCE_SIDE <= 1.5 else None
    n = len(sources)
    samples = int(min(1000, max(40, 4 * n)))
    if n >= 10:
        split = {"train": 0.7, "val": 0.2, "test": 0.1}
    elif n >= 2:
        split = {"train": 0.5, "val": 0.5} if n < 4 else {"train": 0.75, "val": 0.25}
    else:
        split = {"train": 1.0}
    available = set(getattr(host, "generators", {}))
    proposed = [(g, w) for g, w in PROPOSED if g in available]
    others = sorted(available - {g for g, _ in proposed} - {"transplant"})
    start = Starter(
        images=n, looked_at=looked, shorter_side=side, product_mask=product_mask,
        separated=separated, scale=scale, samples=samples, split=split,
        generators=[g for g, _ in proposed], others=others,
    )
    base = Path(recipe_path).absolute().parent
    rel = Path(os.path.relpath(folder, base)).as_posix()
    start.text = _render(start, rel, proposed)
    return start


def _render(s: Starter, images_rel: str, proposed: list[tuple[str, float]]) -> str:
    def line(code: str, comment: str = "") -> str:
        return f"{code:<38} # {comment}" if comment else code

    cont = " " * 39 + "# "
    pm_why = (
        f"chosen: a plain background around the product in {s.separated} of "
        f"{s.looked_at} images looked at"
        if s.product_mask == "auto"
        else f"chosen: no plain background in {s.looked_at - s.separated} of "
        f"{s.looked_at} images looked at"
    )
    if s.scale:
        scale_lines = [
            line("scale: auto", f"images are ~{s.shorter_side} px on their shorter side and"),
            cont + f"sizes are tuned for {REFERENCE_SIDE} px: they grow with each image",
        ]
    else:
        scale_lines = [
            line("# scale: auto", f"images are ~{s.shorter_side} px, close to the "
                 f"{REFERENCE_SIDE} px"),
            cont + "the sizes were tuned for: no scaling needed",
        ]
    split = ", ".join(f"{k}: {v:g}" for k, v in s.split.items())
    lines = [
        f"# defectsynth starter recipe for {s.images} image(s) in {images_rel}",
        "# (written by `defectsynth init`; every key: docs/recipes.md)",
        "",
        line("seed: 0", "same seed + recipe => the same bytes"),
        "",
        "inputs:",
        line(f"  images: {_quote(images_rel)}", "a folder (searched recursively), a glob, a list"),
        line(
            f"  product_mask: {s.product_mask}", "full | auto | a file per image: masks/{stem}.png"
        ),
        cont + pm_why,
        "",
        line(f"samples: {s.samples}", "in all, spread evenly over the images"),
        line("instances: [1, 3]", "defects tried per sample"),
        line("negatives: 0.1", "share of samples left defect-free"),
        *scale_lines,
        "",
        line("defects:", "`defectsynth describe NAME` shows the params"),
    ]
    for g, w in proposed:
        lines.append(f"  - generator: {g}")
        if w != 1.0:
            lines.append(f"    weight: {w:g}")
    if s.others:
        lines.append(f"  # also available: {', '.join(s.others)}")
    lines += [
        "",
        line(f"split: {{{split}}}", "by image: no image in two splits"),
        "",
        "output:",
        line("  formats: [coco, yolo, voc, anomaly]", "also: yolo-seg"),
        line("  image_format: png", "or jpg"),
        "",
    ]
    return "\n".join(lines)


def _quote(text: str) -> str:
    safe = all(c.isalnum() or c in "._/-" for c in text) and not text.startswith("-")
    return text if safe else "'" + text.replace("'", "''") + "'"
