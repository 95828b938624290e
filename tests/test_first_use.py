"""A new user's first runs (issue 15): datasets that trainers load as they are."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from dataset_factory import PLUGINS, make_inputs, write_recipe

from defectsynth.build import load_recipe
from defectsynth.cli import cli
from defectsynth.plugins import PluginHost
from defectsynth.run import Plan, generate, iter_records
from defectsynth.validate import validate_dataset


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost([PLUGINS])


def _splits(out: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for rec in iter_records(out):
        counts[rec["split"]] = counts.get(rec["split"], 0) + 1
    return counts


# -- 1. empty splits ----------------------------------------------------------------------


def test_limit_cuts_every_split_in_proportion(tmp_path: Path, host: PluginHost) -> None:
    """3 sources x 13 variants, train 0.8 / val 0.2, --limit 10: train has two sources
    (26 tasks) and val one (13), so 7 and 3, spread over the sources of each split."""
    make_inputs(tmp_path, n=3)
    write_recipe(tmp_path, variants=13, split=None, negatives=0.0, output={"formats": ["yolo"]})
    recipe = load_recipe(tmp_path / "recipe.yaml", host=host)
    plan = Plan.build(recipe, limit=10)
    chosen = plan.limited()
    assert chosen is not None and len(chosen) == 10 and chosen == sorted(set(chosen))
    res = CliRunner().invoke(
        cli, ["generate", str(tmp_path / "recipe.yaml"), "-o", str(tmp_path / "ds"),
              "--limit", "10", "--no-progress", "-j", "1"],
    )
    assert res.exit_code == 0, res.output
    assert _splits(tmp_path / "ds") == {"train": 7, "val": 3}
    assert "warning" not in res.output
    sources = {rec["source"] for rec in iter_records(tmp_path / "ds")}
    assert len(sources) == 3  # every source, not the first one's variants
    assert Plan.build(recipe, limit=1000).limited() is None


def test_limit_smaller_than_the_splits_and_resume(tmp_path: Path, host: PluginHost) -> None:
    make_inputs(tmp_path, n=4)
    write_recipe(tmp_path, variants=5, negatives=0.0, output={"formats": ["yolo"]})
    recipe = load_recipe(tmp_path / "recipe.yaml", host=host)
    assert len(Plan.build(recipe, limit=3).limited() or []) == 3
    generate(recipe, tmp_path / "ds", host=host, workers=1, limit=3)
    assert _splits(tmp_path / "ds") == {"train": 1, "val": 1, "test": 1}
    again = generate(recipe, tmp_path / "ds", host=host, workers=1, limit=6, resume=True)
    assert again.new_samples == 3 and again.samples == 6


def test_an_empty_split_is_warned_and_data_yaml_points_elsewhere(
    tmp_path: Path, host: PluginHost
) -> None:
    """One source: val is empty. data.yaml must not name images/val (ultralytics: "No
    images found"); generate and validate say so; validate still passes."""
    make_inputs(tmp_path, n=1)
    write_recipe(tmp_path, variants=2, split=None, output={"formats": ["yolo", "yolo-seg"]})
    res = CliRunner().invoke(
        cli, ["generate", str(tmp_path / "recipe.yaml"), "-o", str(tmp_path / "ds"),
              "--no-progress", "-j", "1"],
    )
    assert res.exit_code == 0, res.output
    assert "warning: no samples in split val" in res.output
    for data_file in (tmp_path / "ds" / "data.yaml", tmp_path / "ds" / "yolo-seg" / "data.yaml"):
        data = yaml.safe_load(data_file.read_text())
        assert data["train"] == "images/train" and data["val"] == "images/train"
    report = validate_dataset(tmp_path / "ds")
    assert report.ok, report.problems
    assert any("split 'val' has no samples" in w for w in report.warnings)
    res = CliRunner().invoke(cli, ["validate", str(tmp_path / "ds")])
    assert res.exit_code == 0 and "warning: images/val: split 'val' has no samples" in res.output


def test_validate_fails_when_data_yaml_names_a_folder_without_images(
    tmp_path: Path, host: PluginHost
) -> None:
    make_inputs(tmp_path, n=1)
    write_recipe(tmp_path, variants=2, split=None, output={"formats": ["yolo"]})
    generate(load_recipe(tmp_path / "recipe.yaml", host=host), tmp_path / "ds", host=host,
             workers=1)
    path = tmp_path / "ds" / "data.yaml"
    data = yaml.safe_load(path.read_text())
    data["val"] = "images/val"  # what the writer used to write
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    report = validate_dataset(tmp_path / "ds")
    assert not report.ok
    assert any("val: images/val holds no images" in p for p in report.problems)


# -- 3. yolo-seg keeps every part of a mask ---------------------------------------------------

FIXTURES = Path(__file__).parents[1] / "fixtures"
_BUILTIN_HOST = PluginHost()
BUILTIN_GENERATORS = sorted(
    g for p in _BUILTIN_HOST.plugins if p.source == "builtin" for g in p.generators
    if g != "transplant"  # needs a library of real defects; its masks are single crops
)


def _rasterised(line: str, w: int, h: int) -> np.ndarray:
    vals = [float(v) for v in line.split()[1:]]
    pts = np.array(vals, dtype=np.float64).reshape(-1, 2) * (w, h) - 0.5
    canvas = np.zeros((h, w), np.uint8)
    cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 1)
    return canvas.astype(bool)


def test_joined_outline_keeps_separate_parts_points_and_lines() -> None:
    from defectsynth.run import crop_rle
    from defectsynth.sample import tight_box
    from defectsynth.writers.yolo import segment_line

    mask = np.zeros((40, 50), bool)
    mask[5:15, 5:15] = True  # the largest part
    mask[30:33, 40:48] = True
    mask[20, 25] = True  # one pixel
    mask[2, 30:40] = True  # a one-pixel line
    mask[25:38, 3] = True
    mask[8:10, 8:10] = False  # a hole: filled, as the outline has no holes
    box = tight_box(mask)
    assert box is not None
    x1, y1, x2, y2 = box
    ann = {"box": list(box), "mask_rle": crop_rle(mask[y1:y2, x1:x2], box, mask.shape)}
    got = _rasterised(segment_line(0, ann, 50, 40), 50, 40)
    assert got[mask].all()
    assert tight_box(got) == box
    extra = got & ~mask
    assert extra.sum() <= 4 + 2 * 50  # the hole and the bridges' pixels, nothing else


@pytest.mark.parametrize("name", BUILTIN_GENERATORS)
def test_yolo_seg_polygon_gives_back_the_mask(name: str) -> None:
    """Rasterising an instance's yolo-seg polygon gives back >= 98% of its mask's pixels
    and the same tight box, for every built-in generator (pit clusters and splash stains
    have many parts)."""
    from defectsynth import Synthesizer
    from defectsynth.run import crop_rle
    from defectsynth.sample import tight_box
    from defectsynth.writers.yolo import segment_line

    # (an edge generator needs a product edge: the flange has one)
    fixture = "machined_flange" if _BUILTIN_HOST.generator(name).placement == "edge" else (
        "brushed_metal")
    mask = cv2.imread(str(FIXTURES / "masks" / f"{fixture}.png"), cv2.IMREAD_GRAYSCALE) > 0
    synth = Synthesizer([{"generator": name}], instances=(2, 3), host=_BUILTIN_HOST,
                        product_mask=mask)
    image = cv2.imread(str(FIXTURES / "images" / f"{fixture}.png"))
    h, w = image.shape[:2]
    checked = 0
    for seed in range(8):
        for a in synth(image, seed=seed).annotations:
            ann = {"box": list(a.box), "mask_rle": crop_rle(a.mask_crop, a.box, a.image_shape)}
            got = _rasterised(segment_line(0, ann, w, h), w, h)
            mask = a.mask
            kept = (got & mask).sum() / mask.sum()
            assert kept >= 0.98, (seed, a.box, kept)
            assert tight_box(got) == tuple(a.box), (seed, a.box)
            checked += 1
    assert checked >= 8


# -- 4. outputs are not read as inputs --------------------------------------------------------


def test_outputs_inside_the_input_folder_are_not_read_as_sources(tmp_path: Path) -> None:
    """``-o images/out`` inside the input folder: the next run must not read the generated
    images and 0/255 masks as clean sources (8 tasks used to become 56)."""
    make_inputs(tmp_path, n=4)
    recipe = write_recipe(tmp_path, variants=2, negatives=0.0, output={"formats": ["coco"]})
    runner = CliRunner()
    first = tmp_path / "images" / "out"
    args = ["generate", str(recipe), "--no-progress", "-j", "1"]
    res = runner.invoke(cli, [*args, "-o", str(first)])
    assert res.exit_code == 0, res.output
    assert "wrote 8 samples" in res.output
    res = runner.invoke(cli, [*args, "-o", str(first), "--overwrite"])
    assert res.exit_code == 0 and "wrote 8 samples" in res.output, res.output
    assert "not read as inputs" not in res.output  # its own output folder, silently
    res = runner.invoke(cli, [*args, "-o", str(tmp_path / "images" / "second")])
    assert res.exit_code == 0, res.output
    assert "wrote 8 samples" in res.output
    assert res.output.count("not read as inputs") == 1 and "images/out" in res.output
    report = json.loads((tmp_path / "images" / "second" / "report.json").read_text())
    assert report["skipped_input_folders"] == ["images/out"]
    assert report["sources"] == 4


def test_a_dataset_folder_as_the_only_input_is_named(tmp_path: Path) -> None:
    from defectsynth.errors import RecipeError
    from defectsynth.recipe import read_recipe

    (tmp_path / "ds" / "images" / "train").mkdir(parents=True)
    (tmp_path / "ds" / "manifest.jsonl").write_text("")
    cv2.imwrite(str(tmp_path / "ds" / "images" / "train" / "a.png"), np.zeros((32, 32), np.uint8))
    path = write_recipe(tmp_path, inputs={"images": "ds"})
    with pytest.raises(RecipeError, match=r"no image file matches 'ds'.*manifest\.jsonl"):
        read_recipe(path).sources()
    glob = write_recipe(tmp_path, name="glob.yaml", inputs={"images": "ds/images/**/*.png"})
    assert [s.rel for s in read_recipe(glob).sources()] == ["train/a.png"]  # asked for by name


# -- 5. small things -------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, [0, 0]])
def test_instances_zero_is_an_error_that_names_negatives(tmp_path: Path, value: object) -> None:
    from defectsynth.errors import RecipeError
    from defectsynth.recipe import read_recipe

    path = write_recipe(tmp_path, instances=value)
    with pytest.raises(RecipeError, match=r"instances: .*no defect; .*use negatives"):
        read_recipe(path)
    assert read_recipe(write_recipe(tmp_path, instances=[0, 2])).instances == (0, 2)


def test_preview_honours_the_extension_or_refuses_it(tmp_path: Path) -> None:
    make_inputs(tmp_path, n=2)
    path = write_recipe(tmp_path)
    runner = CliRunner()
    args = ["preview", str(path), "-n", "2", "--cell", "64"]
    res = runner.invoke(cli, [*args, "-o", str(tmp_path / "sheet.jpg")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "sheet.jpg").read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG, not PNG
    res = runner.invoke(cli, [*args, "-o", str(tmp_path / "sheet.txt")])
    assert res.exit_code == 2 and "must end in .png, .jpg" in res.output
    assert not (tmp_path / "sheet.txt").exists()
    assert "Samples on the sheet" in runner.invoke(cli, ["preview", "--help"]).output


def test_the_suite_uses_a_temporary_cache() -> None:
    from defectsynth.transplant.library import cache_dir

    cache = cache_dir()
    assert cache is not None
    assert Path.home() not in cache.resolve().parents


def test_allow_path_after_the_subcommand(tmp_path: Path) -> None:
    """``generate recipe.yaml -o out --allow-path /x`` used to fail with "No such option"."""
    data = tmp_path / "data"
    make_inputs(data, n=2)
    (tmp_path / "recipes").mkdir()
    path = write_recipe(
        tmp_path / "recipes", variants=1, output={"formats": ["coco"]},
        inputs={"images": str(data / "images")},
    )
    runner = CliRunner()
    args = ["generate", str(path), "-o", str(tmp_path / "ds"), "--no-progress", "-j", "1"]
    refused = runner.invoke(cli, args)
    assert refused.exit_code == 2 and "--allow-path" in refused.output
    res = runner.invoke(cli, [*args, "--allow-path", str(data)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["preview", str(path), "-o", str(tmp_path / "s.png"),
                              "--allow-path", str(data), "-n", "1"])
    assert res.exit_code == 0, res.output


def test_an_unquoted_pattern_in_a_flow_mapping_gets_a_hint(tmp_path: Path) -> None:
    from defectsynth.errors import RecipeError
    from defectsynth.recipe import read_recipe

    path = tmp_path / "r.yaml"
    path.write_text("inputs: {images: images, product_mask: masks/{stem}.png}\ndefects: [blob]\n")
    with pytest.raises(RecipeError, match=r"expected ',' or '\}'.*must be quoted.*'masks/\{stem\}"):
        read_recipe(path)


def test_a_recipe_synthesizer_applies_the_mask_pattern_given_the_source(tmp_path: Path) -> None:
    """``Synthesizer.from_recipe(r)`` then ``synth(image)`` silently ignored a product_mask
    pattern: now ``source=`` applies it, and without it a warning says so once."""
    import warnings

    from defectsynth import Synthesizer

    make_inputs(tmp_path, n=1, size=(96, 128))
    mask = np.zeros((96, 128), np.uint8)
    mask[:, :40] = 255  # only the left part is product
    cv2.imwrite(str(tmp_path / "masks" / "p0.png"), mask)
    path = write_recipe(tmp_path, instances=[3, 3])
    synth = Synthesizer.from_recipe(str(path), host=PluginHost([PLUGINS]))
    src = tmp_path / "images" / "p0.png"
    image = cv2.imread(str(src))
    for seed in range(4):
        sample = synth(image, seed=seed, source=src)
        for a in sample.annotations:
            assert not a.mask[:, 40:].any()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        synth(image, seed=0)
        synth(image, seed=1)
    said = [w for w in caught if "source=PATH" in str(w.message)]
    assert len(said) == 1


def test_the_torch_note_says_how_to_get_the_cpu_build() -> None:
    text = (Path(__file__).parents[1] / "docs" / "training.md").read_text(encoding="utf-8")
    assert "--index-url https://download.pytorch.org/whl/cpu" in text
    assert "torch==2.13.0 torchvision==0.28.0" in text


# -- also -----------------------------------------------------------------------------------


def test_describe_a_writer_says_it_is_an_output_format() -> None:
    res = CliRunner().invoke(cli, ["describe", "coco"])
    assert res.exit_code == 1
    assert "'coco' is an output format (a writer" in res.output
    assert "not a generator" in res.output


def test_resume_with_nothing_left_says_so(tmp_path: Path) -> None:
    make_inputs(tmp_path, n=2)
    path = write_recipe(tmp_path, variants=1, output={"formats": ["coco"]})
    args = ["generate", str(path), "-o", str(tmp_path / "ds"), "--no-progress", "-j", "1"]
    runner = CliRunner()
    assert runner.invoke(cli, args).exit_code == 0
    res = runner.invoke(cli, [*args, "--resume"])
    assert res.exit_code == 0, res.output
    assert "nothing left to do" in res.output and "images/s" not in res.output


def test_validate_on_a_folder_that_is_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.png").write_bytes(b"")
    res = CliRunner().invoke(cli, ["validate", str(tmp_path / "photos")])
    assert res.exit_code == 1
    assert "not a defectsynth dataset (no manifest.jsonl)" in res.output
    assert "problem(s)" not in res.output


def test_a_second_run_into_the_same_folder_is_refused(tmp_path: Path, host: PluginHost) -> None:
    """A live lock (this process's pid) refuses a run, --resume included; a stale one (a
    pid that no longer exists) is taken over; the lock goes when the run ends."""
    import os
    import socket
    import subprocess
    import sys

    from defectsynth.errors import RunError
    from defectsynth.run import LOCK

    make_inputs(tmp_path, n=2)
    recipe = load_recipe(
        write_recipe(tmp_path, variants=1, output={"formats": ["coco"]}), host=host
    )
    out = tmp_path / "ds"
    out.mkdir()
    (out / LOCK).write_text(f"{os.getpid()} {socket.gethostname()}\n")
    for resume in (False, True):
        with pytest.raises(RunError, match=r"another defectsynth run \(pid \d+ .*is writing"):
            generate(recipe, out, host=host, workers=1, resume=resume)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    (out / LOCK).write_text(f"{int(dead.stdout)} {socket.gethostname()}\n")
    result = generate(recipe, out, host=host, workers=1)
    assert result.samples == 2 and not (out / LOCK).exists()
    assert validate_dataset(out).ok


# -- 2. the anomaly layout ------------------------------------------------------------------


def test_anomaly_train_good_holds_the_clean_train_sources(tmp_path: Path, host: PluginHost) -> None:
    """negatives: 0 (the default) used to leave anomaly/train/good missing, and validate said
    OK. The train split's clean sources go there, linked (or copied) as they are."""
    import os

    make_inputs(tmp_path, n=4)
    write_recipe(tmp_path, variants=2, negatives=None, output={"formats": ["anomaly"]})
    recipe = load_recipe(tmp_path / "recipe.yaml", host=host)
    out = tmp_path / "ds"
    generate(recipe, out, host=host, workers=1)
    records = list(iter_records(out))
    train = sorted({r["source"] for r in records if r["split"] == "train"})
    assert train
    good = sorted((out / "anomaly" / "train" / "good").iterdir())
    assert len(good) == len(train)
    for path, source in zip(good, train):
        original = tmp_path / "images" / source
        assert path.name == f"{Path(source).stem}_src.png"
        assert path.read_bytes() == original.read_bytes()
        assert os.path.samefile(path, original)  # a hard link on this file system
    assert validate_dataset(out).ok
    # the test split still holds the samples with defects and their masks
    assert list((out / "anomaly" / "ground_truth").glob("*/*_mask.png"))
    again = generate(recipe, out, host=host, workers=1, resume=True)
    assert again.new_samples == 0 and sorted((out / "anomaly/train/good").iterdir()) == good


def test_validate_fails_and_generate_warns_when_train_good_is_empty(tmp_path: Path) -> None:
    make_inputs(tmp_path, n=2)
    path = write_recipe(tmp_path, variants=1, split={"val": 0.5, "test": 0.5},
                        output={"formats": ["anomaly"]})
    res = CliRunner().invoke(
        cli, ["generate", str(path), "-o", str(tmp_path / "ds"), "--no-progress", "-j", "1"]
    )
    assert res.exit_code == 0, res.output
    assert "warning: anomaly/train/good is empty" in res.output
    report = validate_dataset(tmp_path / "ds")
    assert not report.ok
    assert any(p.startswith("anomaly/train/good: is empty") for p in report.problems)


def test_anomaly_layout_pairs_as_an_mvtec_reader_expects(tmp_path: Path, host: PluginHost) -> None:
    """What anomalib's MVTec/Folder readers rely on, checked on the files (anomalib itself
    is not installed in CI): train/good and test/good hold only clean images, every image
    of test/<category> has ground_truth/<category>/<stem>_mask.png of its size, in the
    same sorted order, and all images share one size."""
    make_inputs(tmp_path, n=6)
    write_recipe(tmp_path, variants=2, negatives=0.3, output={"formats": ["anomaly"]})
    generate(load_recipe(tmp_path / "recipe.yaml", host=host), tmp_path / "ds", host=host,
             workers=1)
    root = tmp_path / "ds" / "anomaly"
    sizes = set()
    assert list((root / "train" / "good").iterdir())
    for sub in sorted((root / "test").iterdir()):
        images = sorted(sub.iterdir())
        if sub.name == "good":
            continue
        masks = sorted((root / "ground_truth" / sub.name).iterdir())
        assert [m.name for m in masks] == [f"{i.stem}_mask.png" for i in images]
        for img, m in zip(images, masks):
            a, b = cv2.imread(str(img)), cv2.imread(str(m), cv2.IMREAD_GRAYSCALE)
            assert a.shape[:2] == b.shape and set(np.unique(b)) <= {0, 255}
            sizes.add(a.shape[:2])
    for good in [*(root / "train" / "good").iterdir(), *(root / "test" / "good").iterdir()]:
        sizes.add(cv2.imread(str(good)).shape[:2])
    assert len(sizes) == 1


# -- 8. samples: N ----------------------------------------------------------------------------


def test_samples_spreads_a_total_over_the_sources(tmp_path: Path, host: PluginHost) -> None:
    """``samples: 10`` over 4 sources: 3, 3, 2, 2 samples, every split in its share,
    resumable, and exclusive with ``variants``."""
    from defectsynth.errors import RecipeError
    from defectsynth.recipe import read_recipe

    make_inputs(tmp_path, n=4)
    path = write_recipe(tmp_path, variants=None, samples=10, negatives=0.0,
                        output={"formats": ["coco", "yolo"]})
    recipe = load_recipe(path, host=host)
    assert recipe.samples == 10 and recipe.to_dict()["samples"] == 10
    out = tmp_path / "ds"
    result = generate(recipe, out, host=host, workers=1)
    assert result.samples == 10
    per_source: dict[str, int] = {}
    for rec in iter_records(out):
        per_source[rec["source"]] = per_source.get(rec["source"], 0) + 1
    assert sorted(per_source.values()) == [2, 2, 3, 3]
    assert set(_splits(out)) == {"train", "val", "test"}
    assert validate_dataset(out).ok
    limited = generate(recipe, tmp_path / "lim", host=host, workers=1, limit=5)
    assert limited.samples == 5
    again = generate(recipe, tmp_path / "lim", host=host, workers=1, resume=True)
    assert again.samples == 10 and again.new_samples == 5
    both = write_recipe(tmp_path, name="both.yaml", variants=2, samples=10)
    with pytest.raises(RecipeError, match=r"samples: give either samples .* or variants"):
        read_recipe(both)
    assert "samples" not in load_recipe(write_recipe(tmp_path, name="v.yaml"), host=host).to_dict()


# -- 7. generation from flags and key=value overrides ---------------------------------------


def test_generate_from_flags_without_a_recipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    make_inputs(tmp_path, n=3)
    res = CliRunner().invoke(cli, [
        "--plugin-dir", str(PLUGINS), "generate", "--images", "images", "--defects", "blob",
        "--samples", "7", "--formats", "yolo", "-o", "out", "--no-progress", "-j", "1",
    ])
    assert res.exit_code == 0, res.output
    assert "wrote 7 samples" in res.output
    assert (tmp_path / "out" / "data.yaml").exists() and not (tmp_path / "out" / "voc").exists()
    assert validate_dataset(tmp_path / "out").ok
    info = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert info["recipe"]["samples"] == 7 and info["recipe"]["output"]["formats"] == ["yolo"]
    # the same command with --resume finishes it (nothing left)
    res = CliRunner().invoke(cli, [
        "--plugin-dir", str(PLUGINS), "generate", "--images", "images", "--defects", "blob",
        "--samples", "7", "--formats", "yolo", "-o", "out", "--no-progress", "--resume",
    ])
    assert res.exit_code == 0 and "nothing left to do" in res.output, res.output
    bad = CliRunner().invoke(cli, [
        "--plugin-dir", str(PLUGINS), "generate", "--images", "images", "--defects", "blub",
        "-o", "out2",
    ])
    assert bad.exit_code == 2
    assert "command line: defects[0].generator: unknown generator 'blub'" in bad.output
    assert "did you mean 'blob'" in bad.output
    missing = CliRunner().invoke(cli, ["generate", "-o", "out3"])
    assert missing.exit_code == 2 and "--images DIR and --defects" in missing.output


def test_key_value_overrides_are_validated_like_the_recipe(tmp_path: Path) -> None:
    make_inputs(tmp_path, n=2)
    path = write_recipe(tmp_path, output={"formats": ["coco"]})
    runner = CliRunner()
    base = ["generate", str(path), "--no-progress", "-j", "1"]
    res = runner.invoke(cli, [*base, "variants=2", "defects[0].params.radius=[3,4]",
                              "split={train: 1.0}", "-o", str(tmp_path / "ds")])
    assert res.exit_code == 0, res.output
    records = list(iter_records(tmp_path / "ds"))
    assert len(records) == 4 and {r["split"] for r in records} == {"train"}
    radii = [a["params"]["radius"] for r in records for a in r["annotations"]
             if a["category"] == "blob"]
    assert radii and all(3 <= v <= 4 for v in radii)
    for args, message in [
        (["variants=0"], "recipe.yaml: variants: 0 is below the minimum 1"),
        (["defects[0].params.radiuss=3"],
         "recipe.yaml: defects[0].params.radiuss: unknown parameter of generator 'blob'"),
        (["defects[5].weight=1"], "recipe.yaml: defects[5]: the list has 2 entries"),
        (["variant=3"], "recipe.yaml: variant: unknown key 'variant' (did you mean 'variants'"),
        (["instances=[1,"], "recipe.yaml: instances: the value '[1,' is not valid YAML"),
    ]:
        res = runner.invoke(cli, [*base, *args, "-o", str(tmp_path / "x")])
        assert res.exit_code == 2, (args, res.output)
        assert message in res.output, (args, res.output)
    res = runner.invoke(cli, [*base, "oops", "-o", str(tmp_path / "x")])
    assert res.exit_code == 2 and "KEY=VALUE overrides" in res.output
    # samples replaces variants, and the other way round
    res = runner.invoke(cli, [*base, "samples=3", "-o", str(tmp_path / "s")])
    assert res.exit_code == 0 and "wrote 3 samples" in res.output, res.output


# -- 9. scale: auto | FLOAT -------------------------------------------------------------------

SIZED = ("scratch", "dent", "crack", "pit", "stain", "discoloration")


@pytest.mark.parametrize("name", SIZED)
def test_scale_auto_multiplies_the_size_parameters(name: str) -> None:
    """On an image twice the reference size, ``scale: auto`` doubles every size-like
    parameter of the same draw (within its allowed range); nothing else changes."""
    import dataclasses

    from defectsynth import Synthesizer
    from defectsynth.generator import param_info, size_fields

    cls = _BUILTIN_HOST.generator(name)
    sized = size_fields(cls)
    assert sized, f"{name} declares no size-like parameter"
    image = cv2.imread(str(FIXTURES / "images" / "brushed_metal.png"))
    big = cv2.resize(image, (image.shape[1] * 2, image.shape[0] * 2))
    factor = min(big.shape[:2]) / cls.reference_size
    plain = Synthesizer([{"generator": name}], instances=(2, 2), host=_BUILTIN_HOST)
    auto = Synthesizer([{"generator": name}], instances=(2, 2), host=_BUILTIN_HOST,
                       scale="auto")
    fields = {f.name: param_info(f) for f in dataclasses.fields(cls.Params)}
    compared = 0
    for seed in range(4):
        a = plain(big, seed=seed).annotations
        b = auto(big, seed=seed).annotations
        for x, y in zip(a, b):
            if x.seed != y.seed:
                continue  # a redraw went another way
            for key, value in x.params.items():
                if key in sized:
                    info = fields[key]
                    want = min(max(value * factor, info.lo or 0.0), info.hi or float("inf"))
                    assert y.params[key] == pytest.approx(want, rel=1e-6, abs=0.5), key
                else:
                    assert y.params[key] == value, key
            compared += 1
    assert compared


def test_scale_in_the_recipe_and_on_the_command_line(tmp_path: Path, host: PluginHost) -> None:
    from defectsynth.errors import RecipeError
    from defectsynth.recipe import read_recipe

    make_inputs(tmp_path, n=1)
    assert read_recipe(write_recipe(tmp_path, scale="auto")).scale == "auto"
    assert read_recipe(write_recipe(tmp_path, scale=2.5)).scale == 2.5
    assert "scale" not in read_recipe(write_recipe(tmp_path)).to_dict()
    with pytest.raises(RecipeError, match=r"scale: 'big' is not 'auto' or a number"):
        read_recipe(write_recipe(tmp_path, scale="big"))
    with pytest.raises(RecipeError, match=r"scale: 0 is below the minimum 0.01"):
        read_recipe(write_recipe(tmp_path, scale=0))
    path = write_recipe(tmp_path, output={"formats": ["coco"]})
    res = CliRunner().invoke(cli, ["generate", str(path), "--scale", "auto", "-o",
                                   str(tmp_path / "ds"), "--no-progress", "-j", "1"])
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert info["recipe"]["scale"] == "auto"
    res = CliRunner().invoke(cli, ["describe", "scratch"])
    assert "a size, scaled by the recipe's scale" in res.output


# -- 6. defectsynth init ------------------------------------------------------------------------


def _photos(root: Path, n: int, size: tuple[int, int], plain_background: bool) -> Path:
    rng = np.random.default_rng(3)
    root.mkdir(parents=True, exist_ok=True)
    h, w = size
    for i in range(n):
        base = rng.integers(90, 160, size=(h // 16 + 1, w // 16 + 1, 3)).astype(np.uint8)
        img = cv2.resize(base, (w, h), interpolation=cv2.INTER_LINEAR)
        if plain_background:
            canvas = np.full_like(img, 20)
            canvas[h // 5 : h - h // 5, w // 5 : w - w // 5] = img[h // 5 : h - h // 5,
                                                                 w // 5 : w - w // 5]
            img = canvas
        cv2.imwrite(str(root / f"part{i}.png"), img)
    return root


def test_init_writes_a_starter_recipe_that_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _photos(tmp_path / "photos", 5, (1200, 1500), plain_background=True)
    runner = CliRunner()
    res = runner.invoke(cli, ["init", "photos", "-o", "recipe.yaml"])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "recipe.yaml").read_text()
    data = yaml.safe_load(text)
    assert data["inputs"] == {"images": "photos", "product_mask": "auto"}
    assert data["scale"] == "auto"  # 1200 px images, sizes tuned for 512
    assert [d["generator"] for d in data["defects"]][:2] == ["scratch", "dent"]
    assert text.count("#") > 15  # commented
    assert "next:" in res.output
    for command in ("defectsynth preview recipe.yaml", "defectsynth generate recipe.yaml -o out/",
                    "defectsynth validate out/"):
        assert command in res.output
    again = runner.invoke(cli, ["init", "photos", "-o", "recipe.yaml"])
    assert again.exit_code == 1 and "--force" in again.output
    res = runner.invoke(cli, ["generate", "recipe.yaml", "-o", "out", "--limit", "3",
                              "--no-progress", "-j", "1", "--formats", "coco"])
    assert res.exit_code == 0, res.output


def test_init_chooses_full_and_no_scale_for_full_frame_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _photos(tmp_path / "shots", 3, (480, 640), plain_background=False)
    res = CliRunner().invoke(cli, ["init", "shots", "-o", "r.yaml"])
    assert res.exit_code == 0, res.output
    data = yaml.safe_load((tmp_path / "r.yaml").read_text())
    assert data["inputs"]["product_mask"] == "full"
    assert "scale" not in data
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(cli, ["init", "empty", "-o", "e.yaml"])
    assert res.exit_code == 2 and "no image file in 'empty'" in res.output


def test_defect_dataset_takes_its_length_from_samples(tmp_path: Path, host: PluginHost) -> None:
    from defectsynth.integrations.dataset import DefectDataset

    make_inputs(tmp_path, n=3)
    recipe = load_recipe(write_recipe(tmp_path, variants=None, samples=7), host=host)
    assert len(DefectDataset(None, recipe)) == 7
