"""The page ``fit`` writes beside its recipe: per category, real crops beside synthetic
crops with the default and the fitted ranges (mask outlined), and how each measurement
moved. One self-contained HTML file (pictures embedded as PNG)."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence

import cv2
import numpy as np

from ..writing import atomic_write_text
from .crops import Crop
from .features import FEATURES, feature_matrix
from .fit import FitResult
from .score import feature_aucs

TILE = 96
COLUMNS = 8


def crop_tile(c: Crop, size: int = TILE) -> np.ndarray:
    """A crop as a square uint8 BGR tile with its mask outlined in yellow (2 px out)."""
    px = c.pixels
    if px.shape[2] == 1:
        px = np.repeat(px, 3, axis=2)
    img = np.clip(px * 255.0 + 0.5, 0, 255).astype(np.uint8)
    h, w = img.shape[:2]
    f = size / max(h, w)
    nw, nh = max(1, round(w * f)), max(1, round(h * f))
    img = np.asarray(
        cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR),
        np.uint8,
    )
    if c.mask is not None:
        m = cv2.resize(c.mask.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST)
        # outlined 2 px outside the mask, so a thin defect stays visible under its outline
        m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
        contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(img, contours, -1, (0, 220, 255), 1)
    tile = np.full((size, size, 3), 40, np.uint8)
    y, x = (size - nh) // 2, (size - nw) // 2
    tile[y : y + nh, x : x + nw] = img
    return tile


def grid(crops: Sequence[Crop], n: int = COLUMNS) -> str:
    """An <img> of up to ``n`` crops side by side (a data URI)."""
    tiles = [crop_tile(c) for c in crops[:n]]
    if not tiles:
        return "<em>none</em>"
    gap = np.full((TILE, 4, 3), 255, np.uint8)
    row = np.concatenate([x for t in tiles for x in (t, gap)][:-1], axis=1)
    ok, buf = cv2.imencode(".png", row)
    data = base64.b64encode(buf.tobytes()).decode("ascii") if ok else ""
    return f'<img alt="crops" src="data:image/png;base64,{data}">'


def write_fit_report(result: FitResult, path: str | os.PathLike[str]) -> None:
    """Write the page (atomically)."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>defectsynth fit</title>",
        "<style>body{font:14px sans-serif;margin:24px;max-width:1100px}"
        "td,th{padding:2px 8px;text-align:right}th{background:#eee}"
        "td:first-child,th:first-child{text-align:left}.bad{color:#b00}.good{color:#070}"
        "img{image-rendering:pixelated}</style></head><body>",
        "<h1>defectsynth fit</h1>",
        "<p>Score: AUC of a classifier telling real from synthetic crops, on real defects "
        "the search did not see (0.5 = indistinguishable, 1.0 = trivially told apart).</p>",
        f"<pre>{e(result.summary())}</pre>",
    ]
    for cat, cf in result.per_category.items():
        parts.append(f"<h2>{e(cat)}</h2>")
        real = result.real_crops.get(cat, [])
        parts.append(f"<p>real ({cf.n_real})</p>{grid(real)}")
        if cat not in result.synthetic_crops:
            parts.append(f"<p>not fitted: {e('; '.join(cf.notes))}</p>")
            continue
        before, after = result.synthetic_crops[cat]
        carried = (
            f"default ranges kept: the fitted ones scored {cf.score_fitted:.2f} on held-out "
            "defects" if cf.kept_defaults else f"fitted ranges (score {cf.score_after:.2f})"
        )
        parts.append(
            f"<p>{e(str(cf.generator))}, default ranges (score {cf.score_before:.2f})</p>"
            f"{grid(before)}"
            f"<p>{e(str(cf.generator))}, {carried}</p>"
            f"{grid(after)}"
        )
        if cf.candidates:
            cands = ", ".join(f"{e(g)} {v:.2f}" for g, v in sorted(cf.candidates.items(),
                                                                   key=lambda kv: kv[1]))
            parts.append(f"<p>generators with default ranges: {cands}</p>")
        if cf.candidates_fitted:
            fitted = ", ".join(f"{e(g)} {v:.2f}" for g, v in sorted(
                cf.candidates_fitted.items(), key=lambda kv: kv[1]))
            parts.append(f"<p>finalists after one search round: {fitted}</p>")
        parts.append(_feature_table(real, before, after))
    parts.append("</body></html>")
    atomic_write_text(path, "\n".join(parts))


def _feature_table(real: list[Crop], before: list[Crop], after: list[Crop]) -> str:
    if not real or not before or not after:
        return ""
    xr, xb, xa = (feature_matrix(c) for c in (real, before, after))
    ab, aa = feature_aucs(xr, xb), feature_aucs(xr, xa)
    rows = ["<table><tr><th>measurement</th><th>real: median [10%, 90%]</th>"
            "<th>default</th><th>fitted</th><th>AUC default</th><th>AUC fitted</th></tr>"]

    def spread(x: np.ndarray) -> str:
        q = np.percentile(x, [50, 10, 90])
        return f"{q[0]:.3g} [{q[1]:.3g}, {q[2]:.3g}]"

    for i, f in enumerate(FEATURES):
        da, db = abs(aa[f.name] - 0.5), abs(ab[f.name] - 0.5)
        cls = "good" if da + 0.05 < db else ("bad" if da > db + 0.05 else "")
        rows.append(
            f"<tr><td>{html.escape(f.noun)} ({f.name})</td><td>{spread(xr[:, i])}</td>"
            f"<td>{spread(xb[:, i])}</td><td>{spread(xa[:, i])}</td>"
            f"<td>{ab[f.name]:.2f}</td><td class='{cls}'>{aa[f.name]:.2f}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)
