"""``defectsynth report``: one self-contained HTML page about a dataset ``generate`` wrote.

Everything comes from ``manifest.jsonl`` (and ``dataset.json`` / ``report.json`` beside
it) and the dataset's images; every picture is embedded as a PNG data URI, so the page
is one file that can be mailed or attached to an experiment. A JSON block
(``<script type="application/json" id="report-data">``) holds the numbers the plots show.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..writing import atomic_write_text
from . import plots
from .preview import category_colors, zoom_pair
from .real import RealStats
from .stats import DatasetStats, Instance, dataset_stats, rle_crop

EXAMPLES = 8  # zoomed examples per category
ZOOM = 150  # px of each before / after crop

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1280px;
       padding: 0 24px 48px; color: #1d1d1f; }
h1 { margin-top: 24px; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
td, th { border: 1px solid #ccc; padding: 3px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 6px;
          vertical-align: -1px; border: 1px solid #555; }
.plot { max-width: 100%; }
.examples { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; font-size: 12px; color: #444; }
.short { color: #b00020; font-weight: 600; } .met { color: #1b7a1b; }
.note { color: #666; }
pre { background: #f5f5f5; padding: 10px; overflow-x: auto; }
"""


@dataclass
class PageInputs:
    """What a page is made from (see :func:`write_report`)."""

    out: Path
    stats: DatasetStats
    real: RealStats | None = None
    real_error: str | None = None
    score_text: str | None = None
    sources: Path | None = None
    host: Any = None


def _esc(text: object) -> str:
    return html.escape(str(text))


def _hex(bgr: tuple[int, int, int]) -> str:
    b, g, r = bgr
    return f"#{r:02x}{g:02x}{b:02x}"


def counts_table(stats: DatasetStats, colors: Mapping[str, tuple[int, int, int]]) -> str:
    """Instances / images holding them, per category and split, with totals."""
    head = "".join(f"<th>{_esc(s)}</th>" for s in stats.splits)
    rows = []
    for cat in stats.categories:
        cells = "".join(
            f"<td>{stats.count(cat, s)} / {stats.images(cat, s)}</td>" for s in stats.splits
        )
        sw = f'<span class="swatch" style="background:{_hex(colors[cat])}"></span>'
        rows.append(
            f'<tr data-category="{_esc(cat)}"><td>{sw}{_esc(cat)}</td>{cells}'
            f"<td><b>{stats.count(cat)} / {stats.images(cat)}</b></td></tr>"
        )
    return (
        f"<table id='counts'><tr><th>category</th>{head}<th>all</th></tr>{''.join(rows)}"
        "</table><p class='note'>instances / images that contain them</p>"
    )


def quota_table(stats: DatasetStats) -> str:
    if not stats.quotas:
        return ""
    rows = []
    for cat, want in stats.quotas.items():
        have = stats.count(cat)
        cls, word = ("met", "met") if have >= want else ("short", "short")
        rows.append(f"<tr><td>{_esc(cat)}</td><td>{want}</td><td>{have}</td>"
                    f"<td class='{cls}'>{word}</td></tr>")
    return ("<h3>Quotas</h3><table id='quotas'><tr><th>category</th><th>quota</th>"
            f"<th>instances</th><th></th></tr>{''.join(rows)}</table>")


def dropped_section(stats: DatasetStats) -> str:
    d = stats.dropped
    parts = [
        "<table id='dropped'><tr><th>instances dropped because</th><th>count</th></tr>",
        f"<tr><td>too faint or too small (visibility gate)</td><td>{d['visibility']}</td></tr>",
        f"<tr><td>too much overlap with another defect</td><td>{d['overlap']}</td></tr>",
        f"<tr><td>no room on the product</td><td>{d['no_room']}</td></tr></table>",
        f"<p>{stats.all_dropped} sample(s) lost every defect they were meant to have "
        f"(written as defect-free images); {stats.negatives} negative(s) by design.</p>",
    ]
    if stats.skipped_sources:
        rows = "".join(
            f"<tr><td>{_esc(s.get('source'))}</td><td>{_esc(s.get('reason'))}</td>"
            f"<td>{_esc(s.get('tasks'))}</td></tr>"
            for s in stats.skipped_sources
        )
        parts.append("<table id='skipped'><tr><th>skipped source</th><th>reason</th>"
                     f"<th>samples</th></tr>{rows}</table>")
    else:
        parts.append("<p>No source image was skipped.</p>")
    return "".join(parts)


class _Images:
    """Dataset images and, where they can be found and match their sha256, sources."""

    def __init__(self, out: Path, sources: Path | None) -> None:
        self.out, self.sources = out, sources
        self._cache: dict[str, np.ndarray | None] = {}

    def _read(self, path: Path, sha: str | None = None) -> np.ndarray | None:
        key = str(path)
        if key not in self._cache:
            img = None
            if path.is_file():
                data = path.read_bytes()
                if sha is None or _sha256(data) == sha:
                    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            self._cache[key] = img
        return self._cache[key]

    def after(self, a: Instance) -> np.ndarray | None:
        path = _inside(self.out, a.image)
        return None if path is None else self._read(path)

    def before(self, a: Instance, shape: tuple[int, ...] | None = None) -> np.ndarray | None:
        """The source of an instance, when it is found, matches its sha256 and has the
        dataset image's size (a recipe with ``scale`` resizes it)."""
        if self.sources is None or not a.source:
            return None
        path = _inside(self.sources, a.source)
        img = None if path is None else self._read(path, a.source_sha256 or None)
        if img is not None and shape is not None and img.shape[:2] != shape[:2]:
            return None
        return img


def _inside(root: Path, rel: str) -> Path | None:
    """``root / rel`` when it stays inside ``root`` (a manifest names files below its
    dataset, and sources below the sources folder; a path that climbs out, or an
    absolute one, is not read: a page is meant to be sent to others)."""
    base = root.resolve()
    path = (root / rel).resolve()
    return path if path == base or base in path.parents else None


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def examples_section(
    p: PageInputs, colors: Mapping[str, tuple[int, int, int]]
) -> tuple[str, int]:
    """Per category, the first instances of the manifest zoomed before | after with the
    mask outlined; returns the html and how many pairs had their source image."""
    images = _Images(p.out, p.sources)
    parts: list[str] = []
    with_before = 0
    for cat in p.stats.categories:
        chosen = [a for a in p.stats.instances if a.category == cat][:EXAMPLES]
        if not chosen:
            continue
        figs = []
        for a in chosen:
            after = images.after(a)
            if after is None or a.rle is None:
                continue
            before = images.before(a, after.shape)
            with_before += before is not None
            crop = rle_crop(a.rle, a.box)
            pair = zoom_pair(before, after, a.box, crop, colors[cat], ZOOM)
            ok, buf = cv2.imencode(".png", pair)
            if not ok:
                continue
            uri = "data:image/png;base64," + _b64(buf.tobytes())
            contrast = "" if a.contrast is None else f", contrast {a.contrast:.3f}"
            figs.append(
                f'<figure><img alt="{_esc(cat)} example" src="{uri}" width="{pair.shape[1]}"'
                f' height="{pair.shape[0]}"><figcaption>{_esc(Path(a.image).name)} '
                f"{a.width}x{a.height} px{contrast}</figcaption></figure>"
            )
        parts.append(f"<h3 data-category='{_esc(cat)}'>{_esc(cat)}</h3>"
                     f"<div class='examples'>{''.join(figs)}</div>")
    return "".join(parts), with_before


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


def realism_section(p: PageInputs) -> str:
    if p.real_error is not None:
        return f"<h2 id='real'>Real defects</h2><p class='short'>{_esc(p.real_error)}</p>"
    if p.real is None:
        return ""
    rows = "".join(
        f"<tr><td>{_esc(c)}</td><td>{p.real.count(c)}</td><td>{p.stats.count(c)}</td></tr>"
        for c in dict.fromkeys([*p.real.categories, *p.stats.categories])
    )
    score = p.score_text or "not computed"
    return (
        f"<h2 id='real'>Real defects ({_esc(p.real.source)})</h2>"
        "<p>Real distributions are drawn over the synthetic ones above (black lines, white "
        "crosses). The gate's contrast needs the clean surface under a defect, so real "
        "defects have none.</p>"
        f"<table id='real-counts'><tr><th>category</th><th>real</th><th>synthetic</th></tr>"
        f"{rows}</table><h3>Realism score</h3><p>0.5 = a classifier cannot tell real from "
        f"synthetic crops (<code>defectsynth score</code>, docs/fit.md).</p>"
        f"<pre id='score'>{_esc(score)}</pre>"
    )


def build_page(p: PageInputs) -> tuple[str, dict[str, Any]]:
    """The page's html and the numbers it shows."""
    s = p.stats
    colors = category_colors(s.categories)
    dist_uri, dist = plots.distributions(s, p.real, colors)
    loc_uri, loc = plots.locations(s, p.real)
    con_uri, con = plots.contrast(s, colors)
    param_html, params = _parameters(p)
    examples, with_before = examples_section(p, colors)
    data = {
        "samples": s.samples, "negatives": s.negatives, "all_dropped": s.all_dropped,
        "categories": s.categories, "splits": s.splits,
        "instances": {c: {sp: s.count(c, sp) for sp in s.splits} for c in s.categories},
        "images": {c: {sp: s.images(c, sp) for sp in s.splits} for c in s.categories},
        "histograms": dist, "locations": loc, "contrast": con, "params": params,
        "dropped": s.dropped, "quotas": s.quotas,
    }
    no_before = "" if with_before else (
        "<p class='note'>Before crops need the source images: give <code>--sources DIR</code>"
        " (the recipe's input folder).</p>"
    )
    body = [
        f"<h1>Dataset report: {_esc(p.out.name or p.out)}</h1>",
        f"<p>{s.samples} samples ({s.samples - s.negatives - s.all_dropped} with defects, "
        f"{s.negatives} negatives, {s.all_dropped} with every defect dropped), "
        f"{len(s.instances)} instances in {len(s.categories)} categories.</p>",
        "<h2 id='counts-h'>Categories and splits</h2>", counts_table(s, colors), quota_table(s),
        "<h2 id='sizes'>Size, area, aspect and orientation</h2>",
        f'<img class="plot" alt="distributions" src="{dist_uri}">',
        "<h2 id='where'>Where defects fall</h2><p>Box centres over the image (x right, y "
        "down), per category.</p>",
        f'<img class="plot" alt="locations" src="{loc_uri}">',
        "<h2 id='subtle'>How subtle they are</h2><p>The visibility gate's own measure, per "
        "instance.</p>", f'<img class="plot" alt="contrast" src="{con_uri}">',
        "<h2 id='dropped-h'>Dropped and skipped</h2>", dropped_section(s),
        "<h2 id='params'>Parameter coverage</h2><p>Values actually drawn, per generator; "
        "green: the recipe's range, dashed: the generator's allowed limits.</p>", param_html,
        "<h2 id='examples'>Examples</h2><p>Before | after, zoomed, mask outlined.</p>",
        no_before, examples, realism_section(p),
    ]
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>defectsynth report: {_esc(p.out.name)}</title><style>{STYLE}</style>"
        "</head><body>" + "\n".join(body)
        + "<script type='application/json' id='report-data'>"
        + json.dumps(data).replace("</", "<\\/") + "</script></body></html>\n"
    )
    return page, data


def _parameters(p: PageInputs) -> tuple[str, dict[str, Any]]:
    parts: list[str] = []
    drawn: dict[str, Any] = {}
    for gen in p.stats.generators:
        given: dict[str, Any] = {}
        for entry in p.stats.defects:
            if entry.get("generator") == gen:
                given.update(entry.get("params") or {})
        if not p.stats.params(gen):
            continue
        uri, drawn[gen] = plots.parameters(p.stats, gen, given, p.host)
        parts.append(f"<h3>{_esc(gen)}</h3><img class='plot' alt='{_esc(gen)} parameters' "
                     f"src='{uri}'>")
    return "".join(parts), drawn


def write_report(
    out: str | os.PathLike[str],
    html_path: str | os.PathLike[str] | None = None,
    *,
    real: str | os.PathLike[str] | None = None,
    real_format: str = "auto",
    sources: str | os.PathLike[str] | None = None,
    score: bool = True,
    host: Any = None,
) -> tuple[Path, dict[str, Any]]:
    """Write the report page of the dataset in ``out`` (default ``OUT/report.html``).

    :param real: a folder of labeled real defects: their distributions are overlaid,
        and (with scikit-learn, the ``fit`` extra, and ``score``) the realism score shown.
    :param sources: the folder the manifest's ``source`` paths are relative to, for the
        examples' before crops (without it they show "no source").
    :returns: the page's path and the numbers it shows.
    :raises FileNotFoundError: ``out`` holds no manifest.
    :raises ImportError: matplotlib is missing (the ``report`` extra).
    """
    plots._matplotlib()
    root = Path(out)
    if host is None:
        from ..plugins import PluginHost

        host = PluginHost()
    inputs = PageInputs(root, dataset_stats(root), sources=Path(sources) if sources else None,
                        host=host)
    if real is not None:
        _add_real(inputs, real, real_format, score)
    page, data = build_page(inputs)
    target = Path(html_path) if html_path is not None else root / "report.html"
    atomic_write_text(target, page)
    return target, data


def _add_real(p: PageInputs, real: str | os.PathLike[str], fmt: str, score: bool) -> None:
    from ..realism.crops import RealismError
    from .real import real_stats

    try:
        p.real = real_stats(real, fmt)
    except RealismError as exc:
        p.real_error = f"real defects not read: {exc}"
        return
    if not score:
        return
    try:
        from ..realism.score import score as realism_score

        p.score_text = str(realism_score(real, str(p.out), fmt=fmt, host=p.host))
    except (RealismError, ImportError) as exc:
        p.score_text = f"no score: {exc}"
    except Exception as exc:  # noqa: BLE001 - the page is worth having without its score
        p.score_text = f"no score: the scoring failed ({type(exc).__name__}: {exc})"
