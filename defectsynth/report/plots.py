"""The report's plots, drawn with matplotlib (the ``report`` extra) into PNG data URIs.

matplotlib is the plotting library most Python users already read and trust; its
object API (``Figure`` + the Agg canvas, no ``pyplot``) keeps no global state, so a
report can be drawn inside a long-lived process or a worker. Each function takes the
numbers of :mod:`.stats` and returns the numbers it drew, so the page's data block
shows exactly what the pictures show.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .real import RealStats
from .stats import MEASURES, DatasetStats, histogram, shared_edges

GRID = 12  # location heatmap cells per side


def _matplotlib() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - the extra is missing
        raise ImportError(
            "the report's plots need matplotlib: pip install 'defectsynth[report]'"
        ) from None
    return Figure


def rgb(bgr: tuple[int, int, int]) -> tuple[float, float, float]:
    b, g, r = bgr
    return r / 255, g / 255, b / 255


def data_uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def distributions(
    stats: DatasetStats, real: RealStats | None, colors: Mapping[str, tuple[int, int, int]]
) -> tuple[str, dict[str, Any]]:
    """A row per category, a histogram per measure; real defects as a black step line
    scaled to the synthetic count. Returns the picture and the counts drawn."""
    figure_cls = _matplotlib()
    cats = [c for c in stats.categories if stats.count(c)]
    fig = figure_cls(figsize=(3.0 * len(MEASURES), 2.3 * max(1, len(cats))), layout="tight")
    drawn: dict[str, Any] = {}
    for r, cat in enumerate(cats):
        drawn[cat] = {}
        # with real defects both sides are shown as shares, so sizes compare
        shares = real is not None and real.count(cat) > 0
        for c, (name, label) in enumerate(MEASURES.items()):
            ax = fig.add_subplot(len(cats), len(MEASURES), r * len(MEASURES) + c + 1)
            syn = stats.values(cat, name)
            ref = real.values(cat, name) if real is not None else np.zeros(0)
            edges = shared_edges(syn, ref, log=name == "area")
            if name == "orientation":
                edges = np.linspace(0, 180, 13)
            counts = histogram(syn, edges)
            entry: dict[str, Any] = {"edges": edges.tolist(), "counts": counts.tolist()}
            share = 1.0 / max(1, syn.size) if shares else 1.0
            ax.stairs(counts * share, edges, fill=True, color=rgb(colors[cat]), alpha=0.85,
                      label=f"synthetic ({syn.size})")
            if ref.size:
                rc = histogram(ref, edges)
                ax.stairs(rc / ref.size, edges, color="black", linewidth=1.5,
                          label=f"real ({ref.size})")
                entry["real_counts"] = rc.tolist()
            if name == "area":
                _log_axis(ax)
            ax.set_xlabel(label, fontsize=8)
            ax.tick_params(labelsize=7)
            if c == 0:
                what = "share" if shares else "instances"
                ax.set_ylabel(f"{cat}\n{what}", fontsize=10, fontweight="bold")
                ax.legend(fontsize=6, loc="upper right")
            drawn[cat][name] = entry
    return data_uri(fig), drawn


def _log_axis(ax: Any) -> None:
    """A log x axis labelled at 1, 2, 5 x 10^k in plain numbers (no overlapping powers)."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=()))
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))


def locations(
    stats: DatasetStats, real: RealStats | None
) -> tuple[str, dict[str, list[list[int]]]]:
    """A heatmap of box centres per category over the normalised image (x right, y
    down, as the images are seen); real defects as white crosses."""
    figure_cls = _matplotlib()
    cats = [c for c in stats.categories if stats.count(c)]
    cols = min(4, max(1, len(cats)))
    rows = math.ceil(len(cats) / cols) or 1
    fig = figure_cls(figsize=(3.2 * cols, 3.0 * rows), layout="tight")
    edges = np.linspace(0, 1, GRID + 1)
    drawn: dict[str, list[list[int]]] = {}
    for i, cat in enumerate(cats):
        ax = fig.add_subplot(rows, cols, i + 1)
        xs = np.array([a.cx for a in stats.instances if a.category == cat])
        ys = np.array([a.cy for a in stats.instances if a.category == cat])
        grid, _, _ = np.histogram2d(ys, xs, bins=[edges, edges])
        ax.imshow(grid, extent=(0, 1, 1, 0), cmap="magma", vmin=0, interpolation="nearest")
        where = real.locations.get(cat, []) if real is not None else []
        if where:
            ax.scatter([p[0] for p in where], [p[1] for p in where], marker="x", s=18,
                       color="white", linewidths=1, label=f"real ({len(where)})")
            ax.legend(fontsize=6, loc="upper right")
        ax.set_title(f"{cat} ({xs.size})", fontsize=9)
        ax.tick_params(labelsize=7)
        drawn[cat] = grid.astype(int).tolist()
    return data_uri(fig), drawn


def contrast(
    stats: DatasetStats, colors: Mapping[str, tuple[int, int, int]]
) -> tuple[str, dict[str, dict[str, float]]]:
    """The gate's visibility measure per instance, one box plot per category (points
    over it), the gate's threshold as a dashed line."""
    figure_cls = _matplotlib()
    cats = [c for c in stats.categories if stats.count(c)]
    fig = figure_cls(figsize=(9, 0.55 * len(cats) + 1.2), layout="tight")
    ax = fig.add_subplot(1, 1, 1)
    data = [stats.values(c, "contrast") for c in cats]
    drawn: dict[str, dict[str, float]] = {}
    rng = np.random.default_rng(0)  # jitter only, for legibility
    for i, (cat, v) in enumerate(zip(cats, data), 1):
        ax.scatter(v, i + rng.uniform(-0.2, 0.2, v.size), s=10, alpha=0.7,
                   color=rgb(colors[cat]))
        if v.size:
            q1, med, q3 = (float(q) for q in np.percentile(v, [25, 50, 75]))
            ax.hlines(i, q1, q3, color="black", linewidth=3)  # the middle half
            ax.plot([med], [i], marker="|", markersize=16, color="black")
            drawn[cat] = {"median": med, "min": float(v.min()), "max": float(v.max()),
                          "n": int(v.size)}
    ax.set_yticks(range(1, len(cats) + 1), cats)
    if stats.gate_contrast is not None:
        ax.axvline(stats.gate_contrast, color="red", linestyle="--", linewidth=1,
                   label=f"gate min_contrast {stats.gate_contrast}")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel("visible contrast (mean largest channel change over the mask, of full scale); "
                  "bar: middle half, tick: median")
    ax.invert_yaxis()
    return data_uri(fig), drawn


def _declared(host: Any, generator: str) -> dict[str, Any]:
    """param -> ParamInfo of the generator's Params, when the host has the generator."""
    from ..generator import param_fields, param_info

    try:
        cls = host.generator(generator)
    except Exception:  # noqa: BLE001 - a plugin not installed here: no declared ranges
        return {}
    return {f.name: param_info(f) for f in param_fields(cls.Params)}


def parameters(
    stats: DatasetStats, generator: str, recipe_params: Mapping[str, Any], host: Any
) -> tuple[str, dict[str, Any]]:
    """Histograms of each parameter's drawn values for one generator: the recipe's range
    shaded, the generator's declared limits dashed; choices as bars with their counts."""
    figure_cls = _matplotlib()
    drawn_values = stats.params(generator)
    names = sorted(drawn_values)
    cols = min(4, max(1, len(names)))
    rows = math.ceil(len(names) / cols) or 1
    fig = figure_cls(figsize=(3.4 * cols, 2.5 * rows), layout="tight")
    declared = _declared(host, generator)
    drawn: dict[str, Any] = {}
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        values = drawn_values[name]
        info = declared.get(name)
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            drawn[name] = _numeric(ax, np.array(values, np.float64), info,
                                   recipe_params.get(name))
        else:
            choices = list(info.choices) if info is not None and info.choices else []
            drawn[name] = _choices(ax, [str(v) for v in values], [str(c) for c in choices])
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    return data_uri(fig), drawn


def _numeric(ax: Any, values: np.ndarray, info: Any, given: Any) -> dict[str, Any]:
    lo = hi = None
    if info is not None:
        lo, hi = info.lo, info.hi
    edges = shared_edges(values, bins=15)
    if isinstance(given, Sequence) and not isinstance(given, str) and len(given) == 2:
        a, b = (float(v) for v in given)
        ax.axvspan(a, b, color="tab:green", alpha=0.15, label="recipe range")
        edges = shared_edges(values, np.array([a, b]), bins=15)
    counts = histogram(values, edges)
    ax.stairs(counts, edges, fill=True, color="tab:blue", alpha=0.8)
    for limit in (lo, hi):
        if limit is not None and edges[0] - (edges[-1] - edges[0]) <= limit <= edges[-1] + (
            edges[-1] - edges[0]
        ):
            ax.axvline(limit, color="gray", linestyle="--", linewidth=1)
    allowed = f"allowed [{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
    ax.set_xlabel(allowed, fontsize=7)
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def _choices(ax: Any, values: list[str], choices: list[str]) -> dict[str, Any]:
    labels = choices + sorted(set(values) - set(choices))
    counts = [values.count(c) for c in labels]
    ax.bar(range(len(labels)), counts, color="tab:blue")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
    ax.set_xlabel("choices (declared first)", fontsize=7)
    return {"choices": labels, "counts": counts}
