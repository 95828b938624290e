"""``defectsynth report``: the page's numbers against the manifest computed here another
way (pycocotools for masks, OpenCV moments for orientation), the page in a real headless
Chromium (no broken image, no console error, every category), and the readable preview."""

from __future__ import annotations

import json
import math
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from defectsynth.build import load_recipe
from defectsynth.cli import cli
from defectsynth.plugins import PluginHost
from defectsynth.run import generate

ROOT = Path(__file__).parents[1]
DEMO = ROOT / "fixtures" / "recipes" / "demo.yaml"
REAL = ROOT / "fixtures" / "defects" / "coco"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(autouse=True)
def _needs_matplotlib(request: pytest.FixtureRequest) -> None:
    """The report extra is optional: its tests skip, saying so, where it is missing."""
    if request.node.get_closest_marker("report"):
        pytest.importorskip("matplotlib", reason="the report extra: pip install -e '.[report]'")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo recipe's dataset (24 samples, six categories)."""
    host = PluginHost()
    out = tmp_path_factory.mktemp("demo") / "ds"
    generate(load_recipe(DEMO, host=host), out, host=host, workers=1)
    return out


def _records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def _page_data(html: str) -> dict[str, Any]:
    m = re.search(r"<script type='application/json' id='report-data'>(.*?)</script>", html, re.S)
    assert m is not None
    return json.loads(m.group(1).replace("<\\/", "</"))


def _angle(mask: np.ndarray) -> float | None:
    """Orientation by OpenCV's moments (y up), as the report defines it."""
    m = cv2.moments(mask.astype(np.uint8), binaryImage=True)
    mu20, mu02, mu11 = m["mu20"], m["mu02"], -m["mu11"]  # y flipped: the picture's up
    if mu20 + mu02 == 0 or math.hypot(mu20 - mu02, 2 * mu11) <= 0.05 * (mu20 + mu02):
        return None
    return math.degrees(0.5 * math.atan2(2 * mu11, mu20 - mu02)) % 180.0


@pytest.mark.report
def test_report_numbers_equal_the_manifest(demo: Path, tmp_path: Path) -> None:
    from pycocotools import mask as coco_mask

    from defectsynth.report.page import write_report

    path, data = write_report(demo, tmp_path / "r.html", sources=ROOT / "fixtures" / "images")
    assert _page_data(path.read_text(encoding="utf-8")) == json.loads(json.dumps(data))
    recs = _records(demo)
    assert data["samples"] == len(recs)
    assert data["negatives"] == sum(r["negative"] for r in recs)
    inst: Counter[tuple[str, str]] = Counter()
    imgs: Counter[tuple[str, str]] = Counter()
    per: dict[str, dict[str, list[float]]] = {}
    centres: dict[str, list[tuple[float, float]]] = {}
    for r in recs:
        for cat in {a["category"] for a in r["annotations"]}:
            imgs[cat, r["split"]] += 1
        for a in r["annotations"]:
            inst[a["category"], r["split"]] += 1
            x1, y1, x2, y2 = a["box"]
            full = coco_mask.decode(coco_mask.frPyObjects(a["mask_rle"], *a["mask_rle"]["size"]))
            v = per.setdefault(a["category"], {})
            v.setdefault("width", []).append(x2 - x1)
            v.setdefault("height", []).append(y2 - y1)
            v.setdefault("area", []).append(float(full.sum()))
            v.setdefault("aspect", []).append(max(x2 - x1, y2 - y1) / min(x2 - x1, y2 - y1))
            angle = _angle(full[y1:y2, x1:x2])
            if angle is not None:
                v.setdefault("orientation", []).append(angle)
            v.setdefault("contrast", []).append(a["visibility"] / 255)
            centres.setdefault(a["category"], []).append(
                ((x1 + x2) / 2 / r["width"], (y1 + y2) / 2 / r["height"])
            )
    assert set(data["categories"]) == set(per) and len(per) == 6
    for cat in data["categories"]:
        for split in data["splits"]:
            assert data["instances"][cat][split] == inst[cat, split]
            assert data["images"][cat][split] == imgs[cat, split]
        for measure, hist in data["histograms"][cat].items():
            expected, _ = np.histogram(per[cat].get(measure, []), bins=np.array(hist["edges"]))
            assert hist["counts"] == expected.tolist(), (cat, measure)
        assert data["contrast"][cat]["median"] == pytest.approx(np.median(per[cat]["contrast"]))
        xs, ys = zip(*centres[cat])
        grid, _, _ = np.histogram2d(ys, xs, bins=[np.linspace(0, 1, 13)] * 2)
        assert data["locations"][cat] == grid.astype(int).tolist()
    drops = Counter()
    for r in recs:
        for key in ("visibility", "overlap", "no_room"):
            drops[key] += r["stats"][f"dropped_{key}"]
    assert data["dropped"] == dict(drops)
    # parameter coverage: every drawn value counted once
    scratch_widths = [a["params"]["width"] for r in recs for a in r["annotations"]
                      if a["generator"] == "scratch"]
    assert sum(data["params"]["scratch"]["width"]["counts"]) == len(scratch_widths)
    kinds = Counter(a["params"]["kind"] for r in recs for a in r["annotations"]
                    if a["generator"] == "discoloration")
    drawn = data["params"]["discoloration"]["kind"]
    assert dict(zip(drawn["choices"], drawn["counts"])) == {
        c: kinds.get(c, 0) for c in drawn["choices"]
    }


@pytest.mark.report
def test_cli_report_and_generate_report(tmp_path: Path, demo: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["report", str(demo), "-o", str(tmp_path / "page.html")])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert "give <code>--sources DIR</code>" in page  # no before crops without sources
    res = runner.invoke(cli, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "no manifest.jsonl" in res.output
    res = runner.invoke(cli, ["--allow-path", str(ROOT), "generate", str(DEMO), "-o",
                              str(tmp_path / "ds"), "--limit", "6", "--report",
                              "--no-progress", "-j", "1"])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "ds" / "report.html").read_text(encoding="utf-8")
    assert "give <code>--sources DIR</code>" not in page  # generate knows the sources


@pytest.mark.report
def test_real_defects_are_overlaid_without_a_score(tmp_path: Path, demo: Path) -> None:
    from defectsynth.report.page import write_report

    path, data = write_report(demo, tmp_path / "r.html", real=REAL, score=False)
    scratch = data["histograms"]["scratch"]["width"]
    assert sum(scratch["real_counts"]) >= 1
    page = path.read_text(encoding="utf-8")
    assert "Real defects" in page and "not computed" in page
    bad = tmp_path / "empty"
    bad.mkdir()
    path, _ = write_report(demo, tmp_path / "r2.html", real=bad)
    assert "real defects not read" in path.read_text(encoding="utf-8")


@pytest.mark.report
@pytest.mark.fit
def test_real_defects_get_the_realism_score(tmp_path: Path, demo: Path) -> None:
    pytest.importorskip("sklearn")
    from defectsynth.report.page import write_report

    path, _ = write_report(demo, tmp_path / "r.html", real=REAL)
    score = re.search(r"<pre id='score'>(.*?)</pre>", path.read_text(encoding="utf-8"), re.S)
    assert score is not None and "realism score" in score.group(1)


def _chromium() -> Any:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip("needs Debian's chromium and chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,2000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)


@pytest.mark.report
@pytest.mark.browser
def test_report_page_in_headless_chromium(tmp_path: Path, demo: Path) -> None:
    from defectsynth.report.page import write_report

    path, data = write_report(demo, tmp_path / "report.html", real=REAL, score=False,
                              sources=ROOT / "fixtures" / "images")
    driver = _chromium()
    try:
        driver.get(path.resolve().as_uri())
        driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
        broken = driver.execute_script(
            "return Array.from(document.images).filter("
            "i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt)"
        )
        count = driver.execute_script("return document.images.length")
        text = driver.execute_script("return document.body.innerText")
        shown = driver.execute_script(
            "return Array.from(document.querySelectorAll('#counts tr[data-category]'))"
            ".map(r => r.dataset.category)"
        )
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(str(tmp_path / "report.png"))
        logs = driver.get_log("browser")
    finally:
        driver.quit()
    assert broken == [] and count >= 4 + len(data["categories"])
    assert [e for e in logs if e["level"] == "SEVERE"] == []
    assert shown == data["categories"]
    for cat in data["categories"]:
        assert cat in text
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_preview_tries_one_generator_on_a_fixture(tmp_path: Path) -> None:
    image = ROOT / "fixtures" / "images" / "brushed_metal.png"
    out = tmp_path / "try.jpg"
    res = CliRunner().invoke(cli, ["preview", "--generator", "scratch", "--param", "width=3",
                                   "--param", "length=[80, 120]", str(image), "-o", str(out),
                                   "-n", "4", "--cell", "200"])
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:3] == b"\xff\xd8\xff"  # the extension picked JPEG
    sheet = cv2.imread(str(out))
    assert sheet is not None and sheet.shape[1] == 400
    res = CliRunner().invoke(cli, ["preview", "--generator", "scratch", "--param", "widht=3",
                                   str(image), "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "widht" in res.output and "width" in res.output
    res = CliRunner().invoke(cli, ["preview", "--generator", "nope", str(image), "-o",
                                   str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "unknown generator 'nope'" in res.output


def test_preview_sheet_marks_negatives_and_has_a_legend(tmp_path: Path) -> None:
    from defectsynth.report.preview import TileInput, assemble, category_colors, sample_tile

    image = np.full((60, 80, 3), 128, np.uint8)
    colors = category_colors(["scratch", "dent"])
    tiles = [sample_tile(TileInput("neg", image, image, [], negative=True), 200, colors),
             sample_tile(TileInput("lost", image, image, [], requested=2), 200, colors)]
    sheet = assemble(tiles, colors, 200)
    assert sheet.shape[1] == 400
    # the legend's swatches carry each category's colour
    top = sheet[:30].reshape(-1, 3)
    for bgr in colors.values():
        assert (top == bgr).all(axis=1).any()
    # the captions are coloured by their mark: negative green, all dropped orange
    from defectsynth.report.preview import DROPPED_MARK, NEGATIVE_MARK

    body = sheet[30:].reshape(-1, 3)
    for mark in (NEGATIVE_MARK, DROPPED_MARK):
        assert (body == mark).all(axis=1).any()


def test_the_page_reads_only_below_the_dataset_and_the_sources(tmp_path: Path) -> None:
    """A manifest names files below its dataset; one that climbs out (or is absolute)
    is not embedded in a page meant to be sent to others."""
    from defectsynth.report.page import _inside

    out = tmp_path / "ds"
    (out / "images").mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(b"x")
    assert _inside(out, "images/a.png") == (out / "images" / "a.png").resolve()
    assert _inside(out, "../secret.png") is None
    assert _inside(out, str(tmp_path / "secret.png")) is None
    assert _inside(out, "images/../../secret.png") is None
