"""Fuzzing (hypothesis): the image reader, the recipe loader, every generator across its
declared parameter ranges, and whole runs over mangled sources.

What must hold: no exception other than the documented ones (InputImageError for a
source, RecipeError for a recipe, SourceError or a skip with its reason for a label file,
nothing at all for a built-in generator inside its declared ranges), no broken
synthesizer invariant, no half-written file.

The default budget is small for CI (a few seconds). ``DEFECTSYNTH_FUZZ=N`` multiplies
every test's number of examples by N for a longer local run; ``benchmarks/fuzz_inputs.py``
is the plain, fast loop for hundreds of thousands of executions.
"""

from __future__ import annotations

import dataclasses
import os
import random
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from dataset_factory import PLUGINS, make_inputs, recipe_dict
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_bad_inputs import Ws, check_consistent, exif_rotated_jpeg, palette_png, run_cli

from defectsynth.build import load_recipe
from defectsynth.errors import InputImageError, RecipeError
from defectsynth.generator import param_fields, param_info
from defectsynth.imagefile import decode_image, probe_image
from defectsynth.plugins import PluginHost
from defectsynth.synthesizer import Entry, Synthesizer

SCALE = max(1, int(os.environ.get("DEFECTSYNTH_FUZZ", "1")))


def budget(n: int) -> Any:
    return settings(
        max_examples=n * SCALE,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


# -- seeds: small real files of every supported format --------------------------------------


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    out = []
    for ext, arr in (
        (".png", img),
        (".png", img[:, :, 0]),
        (".png", img.astype(np.uint16) * 257),
        (".jpg", img),
        (".bmp", img),
        (".tiff", img),
        (".webp", img),
    ):
        ok, buf = cv2.imencode(ext, arr)
        assert ok
        out.append(buf.tobytes())
    out.append(palette_png(20, 24))
    out.append(exif_rotated_jpeg(img))
    return out


SEEDS = _seeds()
MAX_PIXELS = 1_000_000


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    """A real encoded image with a few bytes flipped, cut, spliced or a size field edited;
    or plain random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=256))
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete", "size", "dup"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "size":
            # header width/height fields sit in the first ~30 bytes of every format
            at = draw(st.integers(0, min(len(data), 40) - 1))
            data[at] = draw(st.sampled_from([0x00, 0x7F, 0xFF, 0x9C]))
        else:
            end = min(len(data), at + draw(st.integers(1, 64)))
            data[at:at] = data[at:end]
    return bytes(data)


@budget(300)
@given(mangled())
def test_image_reader_refuses_or_returns_a_sane_image(data: bytes) -> None:
    try:
        img = decode_image(data, MAX_PIXELS)
    except InputImageError as exc:
        assert str(exc)
        return
    head = probe_image(data)
    assert img.dtype in (np.uint8, np.uint16)
    assert img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (3, 4))
    assert img.shape[0] * img.shape[1] == head.pixels <= MAX_PIXELS


# -- recipes ------------------------------------------------------------------------------

VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
KEYS = st.sampled_from(
    [
        "seed", "variants", "instances", "defects", "split", "negatives", "output", "placement",
        "gate", "inputs", "plugin_dirs", "max_generator_failures", "generator", "weight",
        "params", "category", "radius", "strength", "images", "product_mask", "max_pixels",
        "formats", "image_format", "train", "val", "min_area", "margin", "sede", "",
    ]
)


@st.composite
def near_valid_recipe(draw: st.DrawFn) -> dict[str, Any]:
    """A valid recipe with a few values replaced, keys dropped, added or renamed, anywhere
    in its tree."""
    data: dict[str, Any] = recipe_dict(variants=1)
    for _ in range(draw(st.integers(0, 3))):
        node: Any = data
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            k = draw(st.sampled_from(keys))
            child = node[k]
            if isinstance(child, dict | list) and child and draw(st.booleans()):
                node = child
                continue
            op = draw(st.sampled_from(["set", "drop", "add", "rename"]))
            if op == "set":
                node[k] = draw(VALUES)
            elif op == "drop":
                node.pop(k)
            elif isinstance(node, dict):
                value = draw(VALUES) if op == "add" else node.pop(k)
                node[draw(KEYS)] = value
            break
    return data


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost([PLUGINS])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz-recipes")
    make_inputs(root, n=1)
    return root


@budget(80)
@given(data=near_valid_recipe())
def test_recipe_loader_says_recipe_error_or_loads(
    data: dict[str, Any], host: PluginHost, inputs: Path
) -> None:
    path = inputs / "recipe.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    try:
        recipe = load_recipe(path, host=host)
    except RecipeError as exc:
        assert str(exc).startswith(str(path))
        return
    Synthesizer.from_recipe(recipe, host)  # a recipe that loads builds its synthesizer
    assert recipe.to_dict()["seed"] == recipe.seed


@budget(150)
@given(text=st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_recipe_loader_on_any_text(text: str, host: PluginHost, inputs: Path) -> None:
    path = inputs / "text.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_recipe(path, host=host)
    except RecipeError:
        pass


# -- generators across their declared ranges --------------------------------------------------


def _fuzzable() -> dict[str, type]:
    gens = {}
    for name, cls in sorted(PluginHost().generators.items()):
        free_text = any(
            isinstance(f.default, str) and param_info(f).choices is None
            for f in param_fields(cls.Params)
        )
        if not free_text:  # a free string is a path (transplant's source library)
            gens[name] = cls
    return gens


GENERATORS = _fuzzable()


def _field_strategy(f: dataclasses.Field[Any]) -> st.SearchStrategy[Any]:
    info = param_info(f)
    if info.choices is not None:
        return st.sampled_from(info.choices)
    if isinstance(f.default, bool):
        return st.booleans()
    lo = info.lo if info.lo is not None else (info.vary[0] if info.vary else f.default)
    hi = info.hi if info.hi is not None else (info.vary[1] if info.vary else f.default)
    if isinstance(f.default, int):
        return st.integers(int(np.ceil(lo)), int(np.floor(hi)))
    return st.floats(float(lo), float(hi), allow_nan=False)


@st.composite
def generator_case(draw: st.DrawFn) -> tuple[str, dict[str, Any], int, Any, int]:
    name = draw(st.sampled_from(sorted(GENERATORS)))
    cls = GENERATORS[name]
    params = {f.name: draw(_field_strategy(f)) for f in param_fields(cls.Params)}
    channels = draw(st.sampled_from([1, 3, 4]))
    dtype = draw(st.sampled_from([np.uint8, np.uint16]))
    return name, params, channels, dtype, draw(st.integers(0, 2**32))


@budget(40)
@given(generator_case())
def test_generators_keep_the_synthesizer_invariants(
    case: tuple[str, dict[str, Any], int, Any, int],
) -> None:
    from defectsynth.testing import test_surface

    name, params, channels, dtype, seed = case
    image = test_surface((96, 112), channels=channels, dtype=dtype, seed=seed % 7)
    synth = Synthesizer([Entry(GENERATORS[name], params=params)], instances=(1, 2))
    sample = synth.apply(image, seed=seed)  # on_failure="raise": a built-in never fails
    assert sample.image.dtype == image.dtype and sample.image.shape == image.shape
    assert sample.footprint is not None
    outside = ~sample.footprint
    assert np.array_equal(sample.image[outside], image[outside])
    for a in sample.annotations:
        assert a.mask_crop.any() and (a.mask & ~sample.footprint).sum() == 0
    if channels == 4:
        assert np.array_equal(sample.image[:, :, 3], image[:, :, 3])


# -- whole runs over mangled sources ----------------------------------------------------------


@budget(4)
@given(files=st.lists(mangled(), min_size=1, max_size=6))
def test_runs_over_mangled_sources_leave_no_half_file(
    files: list[bytes], tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("fuzz-run")
    make_inputs(root, n=1, masks=False)
    names = [f"f{i}{ext}" for i, ext in enumerate([".png", ".jpg", ".bmp", ".tif", ".webp"] * 2)]
    for name, data in zip(names, files):
        (root / "images" / name).write_bytes(data)
    assume(len(files) >= 1)
    ws = Ws(root=root, out=root / "ds")
    ws.recipe = recipe_dict(
        inputs={"images": "images", "product_mask": "full"}, variants=1, negatives=0.0
    )
    ws.recipe["inputs"]["max_pixels"] = MAX_PIXELS
    outcome = run_cli(ws)
    assert outcome.exit == 0, outcome.output  # the good source is always there
    check_consistent(ws, outcome)
    report = ws.report()
    assert report["samples"] + sum(s["tasks"] for s in report["skipped_sources"]) == len(
        files
    ) + 1


# -- labeled folders (transplant, score, fit) -------------------------------------------------

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fuzz_inputs  # noqa: E402

from defectsynth.transplant.sources import SourceError  # noqa: E402


@pytest.fixture(scope="module")
def label_folders() -> Any:
    folders = fuzz_inputs.LabelFolders()
    yield folders
    folders.close()


@budget(200)
@given(seed=st.integers(0, 2**64 - 1), auto=st.booleans())
def test_label_readers_skip_with_a_reason_or_say_source_error(
    seed: int, auto: bool, label_folders: Any
) -> None:
    """A COCO json, YOLO label file, data.yaml or VOC xml with hostile values anywhere
    (the mutations of benchmarks/fuzz_inputs.py): a listing whose bad labels are skipped
    with their reason, or a SourceError; never another exception, a box outside the image
    or an RLE that does not decode to its size."""
    rnd = random.Random(seed)
    kind, data = fuzz_inputs.label_case(rnd, fuzz_inputs.label_seeds())
    root = label_folders.write(kind, data)
    try:
        fuzz_inputs.check_label_folder(root, "auto" if auto else fuzz_inputs.LABEL_LAYOUT[kind][1])
    except SourceError as exc:
        assert str(exc).startswith("no ")
