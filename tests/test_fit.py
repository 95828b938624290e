"""score and fit: learning from a user's own real defects (needs the fit extra).

"Real" defects here are made by a built-in generator with secret parameters, away from
its defaults, on the fixture photos, and written by ``generate`` (a COCO folder with
masks): ``fixtures/recipes/stand_in_real.yaml``, the stand-in docs/fit.md uses. What a
fit should recover is known.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

pytest.importorskip("sklearn")

from defectsynth import DefectGenerator, Layer, Region, param  # noqa: E402
from defectsynth.cli import cli  # noqa: E402
from defectsynth.realism import DefectSet, RealismError, read_defects, score  # noqa: E402
from defectsynth.realism.fit import fit  # noqa: E402
from defectsynth.realism.score import score_sets  # noqa: E402
from defectsynth.realism.sources import CleanImages  # noqa: E402
from defectsynth.synthesizer import Synthesizer  # noqa: E402

pytestmark = pytest.mark.fit

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "fixtures" / "images"
MASKS = str(ROOT / "fixtures" / "masks" / "{stem}.png")
STAND_IN = ROOT / "fixtures" / "recipes" / "stand_in_real.yaml"
SECRET = yaml.safe_load(STAND_IN.read_text())["defects"][0]["params"]


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("real") / "real"
    res = CliRunner().invoke(cli, ["generate", str(STAND_IN), "-o", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    return out


class WhiteSquare(DefectGenerator):
    """A flat white square: what no real defect looks like."""

    name = "white_square"
    version = "1"

    @dataclass(frozen=True)
    class Params:
        size: int = param(14, lo=4, hi=64, vary=(10, 20), doc="side in px")

    def extent(self, params: Any, rng: np.random.Generator) -> tuple[int, int]:
        return params.size + 4, params.size + 4

    def render(self, region: Region, params: Any, rng: np.random.Generator) -> Layer:
        h, w = region.shape
        cov = np.zeros((h, w), np.float32)
        cov[2 : 2 + params.size, 2 : 2 + params.size] = 1.0
        px = region.pixels.copy()
        px[cov > 0] = 1.0
        return Layer(px, cov)


def squares() -> DefectSet:
    images = CleanImages(IMAGES, MASKS)
    synth = Synthesizer([{"generator": WhiteSquare}], instances=1)
    return images.render(synth, 60, seed=1)


# -- score sanity ---------------------------------------------------------------------------------


def halves(real: DefectSet) -> tuple[DefectSet, DefectSet]:
    groups = sorted({c.group for c in real.crops})
    first = set(groups[::2])
    a = [c for c in real.crops if c.group in first]
    b = [c for c in real.crops if c.group not in first]
    return DefectSet(a, [], "a"), DefectSet(b, [], "b")


def test_two_halves_of_one_real_set_cannot_be_told_apart(real_dir: Path) -> None:
    a, b = halves(read_defects(real_dir))
    s = score_sets(a, b)
    assert s.auc <= 0.6, str(s)
    assert s.mask_from == "label"
    assert s.ci[0] <= s.auc <= s.ci[1]


def test_real_defects_against_painted_white_squares_score_near_one(real_dir: Path) -> None:
    s = score(real_dir, squares())
    assert s.auc >= 0.95, str(s)
    assert s.overall.differences, "the features that give the squares away are named"
    assert s.overall.n_real == 36


def test_a_recipe_is_scored_by_rendering_it_in_memory(real_dir: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "inputs": {"images": str(IMAGES), "product_mask": MASKS},
        "instances": 1,
        "defects": [{"generator": "scratch", "params": SECRET}],
    }))
    res = CliRunner().invoke(
        cli, ["--allow-path", "/", "score", str(real_dir), str(recipe), "--samples", "40",
              "--json"],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["auc"] <= 0.65, data
    assert data["per_category"]["scratch"]["n_synthetic"] >= 40
    assert list(tmp_path.iterdir()) == [recipe], "scoring a recipe writes nothing"


# -- the same defects in every format -------------------------------------------------------------


def _coco(real_dir: Path) -> tuple[dict[str, Any], Path]:
    (js,) = (real_dir / "annotations").glob("instances_*.json")
    return json.loads(js.read_text()), real_dir / "images" / "train"


def _masks_of(real_dir: Path) -> list[tuple[str, np.ndarray, str, np.ndarray]]:
    """(file name, image, category, full-size mask) of every defect of a generate folder."""
    from defectsynth.transplant.sources import decode_coco_rle

    data, images = _coco(real_dir)
    cats = {c["id"]: c["name"] for c in data["categories"]}
    names = {im["id"]: im["file_name"] for im in data["images"]}
    out = []
    for a in data["annotations"]:
        fn = names[a["image_id"]]
        img = cv2.imread(str(images / fn), cv2.IMREAD_UNCHANGED)
        out.append((fn, img, cats[a["category_id"]], decode_coco_rle(a["segmentation"])))
    return out


def write_formats(real_dir: Path, root: Path, boxes_only: bool) -> dict[str, Path]:
    """The same defects as COCO, YOLO, VOC (and, with masks, an images + masks folder)."""
    defects = _masks_of(real_dir)
    out: dict[str, Path] = {}
    # COCO
    coco = root / "coco"
    (coco / "images").mkdir(parents=True)
    doc: dict[str, Any] = {"images": [], "annotations": [], "categories": [
        {"id": 1, "name": "scratch"}]}
    for i, (fn, img, _, m) in enumerate(defects, 1):
        cv2.imwrite(str(coco / "images" / fn), img)
        ys, xs = np.nonzero(m)
        x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        ann: dict[str, Any] = {"id": i, "image_id": i, "category_id": 1,
                               "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0}
        if not boxes_only:
            ann["segmentation"] = _polygons(m)
        doc["images"].append({"id": i, "file_name": fn, "height": img.shape[0],
                              "width": img.shape[1]})
        doc["annotations"].append(ann)
    (coco / "labels.json").write_text(json.dumps(doc))
    out["coco"] = coco
    # YOLO
    yolo = root / "yolo"
    (yolo / "images").mkdir(parents=True)
    (yolo / "labels").mkdir()
    (yolo / "data.yaml").write_text(yaml.safe_dump({"names": ["scratch"]}))
    for fn, img, _, m in defects:
        cv2.imwrite(str(yolo / "images" / fn), img)
        h, w = m.shape
        ys, xs = np.nonzero(m)
        x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        if boxes_only:
            line = (f"0 {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} "
                    f"{(y2 - y1) / h:.6f}")
        else:
            (poly,) = _polygons(m)[:1]
            pts = np.asarray(poly).reshape(-1, 2) / [w, h]
            line = "0 " + " ".join(f"{v:.6f}" for v in pts.ravel())
        (yolo / "labels" / f"{Path(fn).stem}.txt").write_text(line + "\n")
    out["yolo"] = yolo
    # VOC
    voc = root / "voc"
    for sub in ("Annotations", "JPEGImages", "SegmentationObject"):
        (voc / sub).mkdir(parents=True)
    for fn, img, _, m in defects:
        cv2.imwrite(str(voc / "JPEGImages" / fn), img)
        ys, xs = np.nonzero(m)
        h, w = m.shape
        (voc / "Annotations" / f"{Path(fn).stem}.xml").write_text(
            f"<annotation><filename>{fn}</filename><size><width>{w}</width>"
            f"<height>{h}</height><depth>3</depth></size><object><name>scratch</name>"
            f"<bndbox><xmin>{xs.min() + 1}</xmin><ymin>{ys.min() + 1}</ymin>"
            f"<xmax>{xs.max() + 1}</xmax><ymax>{ys.max() + 1}</ymax></bndbox></object>"
            "</annotation>"
        )
        if not boxes_only:
            cv2.imwrite(str(voc / "SegmentationObject" / f"{Path(fn).stem}.png"),
                        m.astype(np.uint8))
    out["voc"] = voc
    if not boxes_only:
        folder = root / "masks"
        (folder / "images").mkdir(parents=True)
        (folder / "masks").mkdir()
        for fn, img, _, m in defects:
            cv2.imwrite(str(folder / "images" / fn), img)
            cv2.imwrite(str(folder / "masks" / f"{Path(fn).stem}.png"), m.astype(np.uint8) * 255)
        out["masks"] = folder
    return out


def _polygons(m: np.ndarray) -> list[list[float]]:
    """Outline polygons in COCO's continuous coordinates (pixel i spans [i, i+1)): the
    outline of the mask's pixels traced at 4x and scaled back."""
    big = cv2.resize(m.astype(np.uint8), None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    c = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(float)
    return [((c + 0.5) / 4.0).ravel().tolist()]


def test_box_labels_in_coco_yolo_and_voc_give_the_same_score(
    real_dir: Path, tmp_path: Path
) -> None:
    folders = write_formats(real_dir, tmp_path, boxes_only=True)
    synthetic = squares()
    scores = {k: score(p, synthetic) for k, p in folders.items()}
    for k, s in scores.items():
        assert s.mask_from == "box", k
        assert s.overall.n_real == 36, k
    values = {k: round(s.auc, 9) for k, s in scores.items()}
    assert len(set(values.values())) == 1, values


def test_mask_labels_in_every_format_give_the_same_score(real_dir: Path, tmp_path: Path) -> None:
    folders = write_formats(real_dir, tmp_path, boxes_only=False)
    synthetic = squares()
    scores = {k: score(p, synthetic) for k, p in folders.items()}
    for k, s in scores.items():
        assert s.mask_from == "label", k
        # a binary mask file cannot say which pieces are one defect: far-apart pieces of a
        # faded scratch, or a scratch and its micro-scratches, count as several there
        assert s.overall.n_real == 36 or (k == "masks" and 36 <= s.overall.n_real <= 45), k
    values = [s.auc for s in scores.values()]
    assert max(values) - min(values) <= 0.02, {k: s.auc for k, s in scores.items()}


# -- errors ----------------------------------------------------------------------------------------


def test_an_empty_or_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(RealismError, match="empty"):
        (tmp_path / "empty").mkdir()
        read_defects(tmp_path / "empty")
    with pytest.raises(RealismError, match="nowhere"):
        read_defects(tmp_path / "nowhere")
    res = CliRunner().invoke(cli, ["score", str(tmp_path / "empty"), str(tmp_path)])
    assert res.exit_code == 2 and "empty" in res.output, res.output


def test_too_few_real_defects_are_an_error_naming_the_folder(
    real_dir: Path, tmp_path: Path
) -> None:
    few = tmp_path / "few"
    (few / "images").mkdir(parents=True)
    (few / "masks").mkdir()
    data, images = _coco(real_dir)
    for im in data["images"][:3]:
        shutil.copy(images / im["file_name"], few / "images" / im["file_name"])
    for fn, _, _, m in _masks_of(real_dir)[:3]:
        cv2.imwrite(str(few / "masks" / f"{Path(fn).stem}.png"), m.astype(np.uint8) * 255)
    with pytest.raises(RealismError, match=r"3 real defects from 3 image\(s\) in .*few"):
        score(few, squares())


def test_real_labels_that_cannot_be_read_are_counted_and_named_by_score_and_fit(
    real_dir: Path, tmp_path: Path
) -> None:
    """A label whose image is missing leaves its defect out: score and fit say so, with
    the file, instead of scoring on fewer defects in silence."""
    gappy = tmp_path / "gappy"
    shutil.copytree(real_dir, gappy)
    data, images = _coco(gappy)
    gone = data["images"][0]["file_name"]
    (images / gone).unlink()
    s = score(gappy, squares())
    (w,) = [w for w in s.warnings if "could not be read" in w]
    assert w.startswith("1 real label(s)") and gone in w, w
    assert s.overall.n_real == 35
    res = CliRunner().invoke(cli, ["score", str(gappy), str(real_dir)])
    assert res.exit_code == 0 and "warning: 1 real label(s)" in res.output, res.output
    result = fit(gappy, IMAGES, product_mask=MASKS, mapping={"scratch": "scratch"}, rounds=0,
                 folds=2)
    assert any(gone in w and "could not be read" in w for w in result.warnings), result.warnings


def test_a_category_too_small_to_fit_is_named_and_left_to_transplants(
    real_dir: Path, tmp_path: Path
) -> None:
    few = tmp_path / "mixed"
    shutil.copytree(real_dir, few)
    (js,) = (few / "annotations").glob("instances_*.json")
    data = json.loads(js.read_text())
    data["categories"].append({"id": 99, "name": "chip"})
    data["annotations"][0]["category_id"] = 99
    js.write_text(json.dumps(data))
    result = fit(few, IMAGES, product_mask=MASKS, mapping={"scratch": "scratch"}, rounds=0,
                 folds=2)
    assert result.per_category["chip"].generator is None
    assert any("'chip'" in w and "1 real defect" in w for w in result.warnings), result.warnings
    entries = result.recipe.data["defects"]
    assert [e["generator"] for e in entries] == ["scratch", "transplant"]


def test_a_category_no_generator_approaches_is_warned(tmp_path: Path) -> None:
    """White squares on the fixtures as the 'real' defects; only cracks to fit them."""
    folder = tmp_path / "squares"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    made = squares()
    for i, c in enumerate(made.crops[:24]):
        img = np.clip(c.pixels * 255 + 0.5, 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / "images" / f"s{i}.png"), img)
        assert c.mask is not None
        cv2.imwrite(str(folder / "masks" / f"s{i}.png"), c.mask.astype(np.uint8) * 255)
    result = fit(folder, IMAGES, product_mask=MASKS, generators=["crack"], rounds=0, folds=2)
    # an images/ + masks/ folder is a transplant source too: transplants carry it
    assert [d["generator"] for d in result.recipe.data["defects"]] == ["crack", "transplant"]
    cf = result.per_category["defect"]
    assert cf.generator == "crack"
    assert cf.score_after >= 0.9
    assert any("'defect'" in w and "no generator approaches" in w for w in result.warnings)


def test_unknown_generator_and_map_category_are_named(real_dir: Path) -> None:
    from defectsynth.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="scrach"):
        fit(real_dir, IMAGES, generators=["scrach"], rounds=0)
    with pytest.raises(RealismError, match="no category 'scratches'.*scratch"):
        fit(real_dir, IMAGES, mapping={"scratches": "scratch"}, rounds=0)


# -- recovery ----------------------------------------------------------------------------------


def _overlap(a: list[float], b: list[float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


@pytest.mark.slow
def test_fit_recovers_secret_ranges_and_the_held_out_score_falls(
    real_dir: Path, tmp_path: Path
) -> None:
    """Fitted from the defaults on 36 stand-in defects, scored on 36 others of the same
    secret ranges that the fit never saw (another seed of the same recipe)."""
    held_out = tmp_path / "held_out"
    res = CliRunner().invoke(cli, ["generate", str(STAND_IN), "-o", str(held_out), "--seed",
                                   "6", "--no-progress"])
    assert res.exit_code == 0, res.output
    result = fit(real_dir, IMAGES, product_mask=MASKS, mapping={"scratch": "scratch"},
                 rounds=3, seed=0)
    cf = result.per_category["scratch"]
    for name in ("width", "angle", "length", "depth"):
        assert _overlap(cf.params[name], SECRET[name]), (name, cf.params[name])
    assert cf.score_before >= 0.85 and cf.score_after < cf.score_before - 0.15, result.summary()

    def recipe(params: dict[str, Any]) -> Path:
        path = tmp_path / f"r{len(list(tmp_path.glob('r*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump({
            "inputs": {"images": str(IMAGES), "product_mask": MASKS}, "instances": 1,
            "defects": [{"generator": "scratch", "params": params}]}))
        return path

    before = score(held_out, recipe({}), samples=120, host=None)
    after = score(held_out, recipe(cf.params), samples=120)
    assert before.auc >= 0.85, str(before)
    assert after.auc <= 0.65, str(after)
    ticks: list[tuple[int, int]] = []
    again = fit(real_dir, IMAGES, product_mask=MASKS, mapping={"scratch": "scratch"},
                rounds=3, seed=0, workers=2, progress=lambda _, i, n: ticks.append((i, n)))
    assert again.recipe.text == result.recipe.text, "same seed, same recipe, any workers"
    # the bar reaches its end with the folds in worker processes too, never going back
    assert ticks[-1][0] == ticks[-1][1] and ticks == sorted(ticks)
    assert len(ticks) == ticks[-1][1]


# -- end to end ----------------------------------------------------------------------------------


def test_fit_then_generate_then_validate_from_the_cli(real_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "fitted.yaml"
    res = CliRunner().invoke(cli, [
        "fit", "--real", str(real_dir), "--clean", str(IMAGES), "--product-mask", MASKS,
        "-o", str(out), "--generators", "scratch,dent", "--rounds", "1", "--folds", "2",
        "--no-progress",
    ])
    assert res.exit_code == 0, res.output
    assert "held-out score" in res.output and "scratch" in res.output
    text = out.read_text()
    assert text.startswith("# fitted by `defectsynth fit`")
    assert "scratch:" in text and "->" in text
    page = out.with_suffix(".html").read_text()
    assert "data:image/png;base64," in page and "fitted ranges" in page
    recipe = yaml.safe_load(text)
    assert [d["generator"] for d in recipe["defects"]] == ["scratch", "transplant"]
    assert math.isclose(sum(d["weight"] for d in recipe["defects"]), 1.0, abs_tol=1e-3)
    ds = tmp_path / "ds"
    res = CliRunner().invoke(cli, ["--allow-path", "/", "generate", str(out), "-o", str(ds),
                                   "--no-progress", "--limit", "12"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["validate", str(ds)])
    assert res.exit_code == 0, res.output
    cats = {c["name"] for c in json.loads(next((ds / "annotations").glob("*.json")).read_text())
            ["categories"]}
    assert cats == {"scratch"}


class GreySquare(WhiteSquare):
    """A square whose grey level stays at its default unless a recipe says otherwise."""

    name = "grey_square"

    @dataclass(frozen=True)
    class Params:
        size: int = param(14, lo=4, hi=64, vary=(10, 20), doc="side in px")
        level: float = param(0.0, lo=0.0, hi=1.0, doc="grey level, fixed unless told")


def test_a_field_fixed_by_default_is_searched_over_all_it_allows() -> None:
    """A field a generator keeps at its default unless told (``level``): fit's broad
    first round must still draw it from all it allows, or a real defect far from the
    default could never be reached; later rounds grow ranges by a share of their width."""
    from defectsynth.realism.space import Proposal

    p = Proposal(GreySquare)
    assert p.spec()["level"] == [0.0, 0.0]
    assert p.widened(1.5)["level"] == [0.0, 1.0]
    assert p.widened(0.5)["level"][1] <= 0.1
    # a field with a default range grows by its width, not to everything it allows
    lo, hi = p.widened(1.5)["size"]  # (allowed 4..64, default 10..20)
    assert 4 <= lo < 10 and 20 < hi < 64


def test_when_every_default_is_told_apart_the_nearest_generator_still_gets_a_trial(
    real_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every generator's defaults far off, the classifier's score saturates at 1 and
    no longer ranks them; the generator whose features are nearest the real ones (here
    the one the stand-in was drawn with) must still get its trial round, and win it."""
    import defectsynth.realism.fit as fit_mod

    real_auc = fit_mod._fast_auc
    screened: list[int] = []

    def saturated(real_x: Any, groups: Any, syn_x: Any, syn_groups: Any, seed: int) -> float:
        if len(screened) < 3:  # the screening of the three candidates' defaults
            screened.append(1)
            return 1.0
        return real_auc(real_x, groups, syn_x, syn_groups, seed)

    monkeypatch.setattr(fit_mod, "_fast_auc", saturated)
    monkeypatch.setattr(fit_mod, "FINALISTS", 1)
    monkeypatch.setattr(fit_mod, "DRAWS", 120)  # smaller search rounds: a quicker test
    monkeypatch.setattr(fit_mod, "CORRECTIONS", 0)
    # (stain, not pit: since scratch draws some bright grooves by default, the dark pits'
    # medians are nearer these dark stand-in scratches than its defaults are)
    result = fit(real_dir, IMAGES, product_mask=MASKS, generators=["dent", "stain", "scratch"],
                 rounds=1, folds=2)
    cf = result.per_category["scratch"]
    assert set(cf.candidates) == {"dent", "stain", "scratch"}
    # "dent" is first of the tied scores (by name); "scratch" is nearest by features
    assert set(cf.candidates_fitted) == {"dent", "scratch"}, cf.candidates_fitted
    assert cf.generator == "scratch"


def test_a_mask_folder_is_fitted_and_transplanted_too(real_dir: Path, tmp_path: Path) -> None:
    """An images/ + masks/ folder (the MVTec-style layout many users have) gets its
    transplant entry like a COCO folder, and the recipe generates."""
    folder = write_formats(real_dir, tmp_path / "formats", boxes_only=False)["masks"]
    result = fit(folder, IMAGES, product_mask=MASKS, mapping={"defect": "scratch"}, rounds=0,
                 folds=2, recipe_dir=tmp_path, fmt="masks")
    entries = result.recipe.data["defects"]
    assert [e["generator"] for e in entries] == ["scratch", "transplant"], result.warnings
    assert entries[1]["params"]["format"] == "masks"  # the labels fit read
    path = tmp_path / "fitted.yaml"
    result.recipe.save(path)
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["generate", str(path), "-o", str(out), "--no-progress",
                                   "--limit", "6"])
    assert res.exit_code == 0, res.output
    made = {(a["generator"], a["category"])
            for line in (out / "manifest.jsonl").read_text().splitlines()
            for a in json.loads(line).get("annotations", [])}
    assert ("transplant", "defect") in made, made


def test_fold_choices_reach_the_recipe_only_by_majority() -> None:
    from defectsynth.realism.fit import _combine

    specs = [
        {"copper": ["auto", "dark", "light"], "width": [1.0, 3.0]},
        {"copper": "auto", "width": [2.0, 4.0]},
        {"copper": ["auto", "dark"], "width": [3.0, 5.0]},
    ]
    out = _combine(specs)
    assert out["copper"] == ["auto", "dark"]  # "light": one fold of three
    assert out["width"] == [2.0, 4.0]
    # no majority anywhere: what was kept most often (here, by each of two folds)
    assert _combine([{"c": "a"}, {"c": "b"}])["c"] == ["a", "b"]
    assert _combine([{"c": "a"}, {"c": "a"}, {"c": "b"}])["c"] == "a"


def test_ranges_that_score_worse_on_held_out_defects_leave_the_defaults(
    real_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A search that lands somewhere worse than where it started (here forced: hair-thin,
    faint, short scratches against the stand-in's wide, deep, long ones) must not reach
    the recipe: fit keeps the default ranges and says what the fitted ones scored."""
    import defectsynth.realism.fit as fit_mod
    from defectsynth.plugins import get_host
    from defectsynth.realism.space import Proposal

    bad = {"width": [0.5, 0.6], "depth": [0.05, 0.1], "length": [8.0, 12.0]}

    def search(proposal: Any, *args: Any, **kwargs: Any) -> tuple[dict[str, Any], float, int]:
        return dict(proposal.spec(), **bad), 0.5, 1

    monkeypatch.setattr(fit_mod, "_search", search)
    result = fit(real_dir, IMAGES, product_mask=MASKS, mapping={"scratch": "scratch"},
                 rounds=1, folds=2)
    cf = result.per_category["scratch"]
    assert cf.kept_defaults
    assert cf.score_fitted > cf.score_before == cf.score_after
    assert cf.params == Proposal(get_host().generator("scratch")).spec()
    assert "keeps the defaults" in " ".join(cf.notes)
    assert f"defaults kept: the fitted ranges scored {cf.score_fitted:.2f}" in result.summary()
    entry = next(d for d in result.recipe.data["defects"] if d["generator"] == "scratch")
    assert entry["params"]["width"] != bad["width"]
    assert "default ranges kept" in result.recipe.text
