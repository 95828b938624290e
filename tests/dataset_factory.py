"""Small inputs and recipes for the dataset tests (images made on the fly, a few KB each)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

PLUGINS = Path(__file__).parent / "plugins"


def make_inputs(
    root: Path, n: int = 4, size: tuple[int, int] = (96, 128), masks: bool = True
) -> Path:
    """``root/images/p{i}.png`` (textured grey, 3 channels) and ``root/masks/p{i}.png``."""
    rng = np.random.default_rng(1234)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    h, w = size
    for i in range(n):
        base = rng.integers(90, 150, size=(h // 8 + 1, w // 8 + 1, 3)).astype(np.uint8)
        img = cv2.resize(base, (w, h), interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(str(root / "images" / f"p{i}.png"), img)
        if masks:
            m = np.zeros((h, w), np.uint8)
            m[6 : h - 6, 6 : w - 6] = 255
            cv2.imwrite(str(root / "masks" / f"p{i}.png"), m)
    return root


def recipe_dict(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "seed": 5,
        "plugin_dirs": [str(PLUGINS)],
        "inputs": {"images": "images", "product_mask": "masks/{stem}.png"},
        "variants": 3,
        "instances": [1, 3],
        "defects": [
            {"generator": "blob", "params": {"strength": [-0.7, -0.35]}},
            {"generator": "blob", "category": "bright", "params": {"strength": [0.35, 0.7]}},
        ],
        "split": {"train": 0.5, "val": 0.25, "test": 0.25},
        "negatives": 0.25,
        "output": {"formats": ["coco", "yolo", "yolo-seg", "voc", "anomaly"]},
    }
    for k, v in over.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v
    return d


def write_recipe(root: Path, name: str = "recipe.yaml", **over: Any) -> Path:
    path = root / name
    path.write_text(yaml.safe_dump(recipe_dict(**over), sort_keys=False), encoding="utf-8")
    return path


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under root (relative POSIX path -> bytes)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
