"""Clean images to render synthetic defects on, for ``score`` and ``fit``.

Images are read once, through the same checked reader as ``generate``
(:mod:`defectsynth.imagefile`), and kept in memory; a file that cannot be read is
skipped with its reason. Rendering is deterministic: image ``i``'s variant ``v`` uses
the random stream of ``(seed, source_id(relative path), v)``, as a dataset run does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..imagefile import DEFAULT_MAX_PIXELS, read_image_file, read_mask_file
from ..synthesizer import source_id
from .crops import DefectSet, RealismError, crops_from_samples

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MAX_IMAGES = 200


@dataclass
class CleanImage:
    rel: str
    image: np.ndarray
    mask: Any  # bool array, or "auto" / "full"

    @property
    def sid(self) -> int:
        return source_id(self.rel)


@dataclass
class CleanImages:
    """Clean product images in memory, with their product masks."""

    images: list[CleanImage] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    root: str = ""
    product_mask: str = "full"

    def __init__(
        self,
        folder: str | os.PathLike[str] | None = None,
        product_mask: str = "full",
        max_images: int = MAX_IMAGES,
    ) -> None:
        self.images, self.skipped = [], []
        self.root = str(folder or "")
        self.product_mask = product_mask
        if folder is None:
            return
        base = Path(folder)
        if not base.is_dir():
            raise RealismError(f"clean image folder {str(base)!r} does not exist")
        files = []
        for dirpath, dirs, names in os.walk(base):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for n in sorted(names):
                if not n.startswith(".") and os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS:
                    files.append(Path(dirpath) / n)
        for f in files[:max_images]:
            rel = f.relative_to(base).as_posix()
            mask_file = None
            if product_mask not in ("auto", "full"):
                stem = Path(rel)
                # a pattern of the image's name, relative to the working directory
                mask_file = Path(product_mask.format(
                    stem=stem.stem, name=stem.name, parent=stem.parent.as_posix(),
                    relstem=stem.with_suffix("").as_posix(), ext=stem.suffix.lstrip("."),
                ))
            self.add(str(f), rel, mask_file)
        if not self.images:
            raise RealismError(
                f"no readable clean image in {str(base)!r}"
                + (f" ({self.skipped[0]})" if self.skipped else "")
            )

    @classmethod
    def from_recipe(cls, recipe: Any, max_images: int = MAX_IMAGES) -> CleanImages:
        spec = recipe.inputs.product_mask
        out = cls(None, spec if spec in ("auto", "full") else "full")
        for src in recipe.sources()[:max_images]:
            out.add(src.path, src.rel, recipe.mask_path(src))
        if not out.images:
            raise RealismError(
                f"no readable input image in {recipe.file!r}"
                + (f" ({out.skipped[0]})" if out.skipped else "")
            )
        return out

    def add(self, path: str, rel: str, mask_file: Path | None) -> None:
        try:
            image, _ = read_image_file(path, DEFAULT_MAX_PIXELS)
            mask: Any = self.product_mask
            if mask_file is not None:
                mask = read_mask_file(mask_file, image.shape[:2], str(mask_file),
                                      DEFAULT_MAX_PIXELS)
        except Exception as exc:  # noqa: BLE001 - one bad file is a skip, never the end
            self.skipped.append(f"{rel}: {exc}")
            return
        self.images.append(CleanImage(rel, image, mask))

    def render(self, synth: Any, defects: int, seed: int, max_tries: int = 10) -> DefectSet:
        """Samples of ``synth`` over the images, round robin, until ``defects`` defects are
        made or ``max_tries`` times as many samples were tried."""
        pairs = []
        made = 0
        tries = 0
        v = 0
        while made < defects and tries < max_tries * max(defects, 1):
            for im in self.images:
                s = synth.apply(im.image, im.mask, seed=seed, source_id=im.sid, variant=v)
                tries += 1
                if s.annotations:
                    # one group per sample, not per clean image: a clean image's defects
                    # all in one fold would leave its surface to the real side in
                    # training, and the classifier would learn the surface, backwards
                    pairs.append((f"{im.rel}@{v}", s))
                    made += len(s.annotations)
                    if made >= defects:
                        break
            v += 1
        out = crops_from_samples(pairs)
        out.source = self.root or "recipe inputs"
        return out
