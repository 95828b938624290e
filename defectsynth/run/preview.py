"""The contact sheet of ``defectsynth preview``: samples made in memory, nothing written
(the tiles are drawn by :mod:`defectsynth.report.preview`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import GeneratorFailure, InputImageError
from ..recipe import Recipe
from .plan import Plan, Task
from .worker import TaskRunner, WorkerSpec

# -- preview ----------------------------------------------------------------------------------

if TYPE_CHECKING:
    from ..plugins import PluginHost


def preview_tasks(plan: Plan, n: int) -> list[Task]:
    """``n`` tasks spread over the sources first, then over variants."""
    n_src = len(plan.sources)
    variants = plan.recipe.variants
    out: list[Task] = []
    for i in range(n_src * variants):
        if len(out) >= n:
            break
        si, v = i % n_src, i // n_src
        if v < plan.count(si):
            out.append(plan.task(si * variants + v))
    return out


def contact_sheet(
    recipe: Recipe, n: int = 16, *, host: PluginHost | None = None, cell: int = 384
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """A legend over a grid of ``n`` synthesized samples (nothing written): each tile
    shows the whole image with boxes in its category's colour, says whether it is a
    negative or had every instance dropped, and zooms into each instance before and
    after, labelled with its category (:mod:`defectsynth.report.preview`).

    Returns the 8-bit BGR sheet and the (source, reason) pairs of skipped sources and of
    rejected instances.
    """
    from ..plugins import PluginHost
    from ..report.preview import TileInput, assemble, category_colors, sample_tile

    if host is None:
        host = PluginHost([str(p) for p in recipe.plugin_paths()])
    plan = Plan.build(recipe)
    runner = TaskRunner(WorkerSpec(recipe=recipe, out_dir="."), host=host)
    colors = category_colors(runner.synth.categories)
    tiles: list[np.ndarray] = []
    skipped: list[tuple[str, str]] = []
    for task in preview_tasks(plan, n):
        try:
            sample, _ = runner.sample(task)
            before, _ = runner.read(task.source)
        except (InputImageError, GeneratorFailure) as exc:
            skipped.append((task.rel, str(exc)))
            continue
        for _name, error in sample.render_log:
            if error is not None:  # the instance was rejected; say so, as generate does
                skipped.append((task.rel, f"an instance was rejected: {error}"))
        item = TileInput(
            task.name, before, sample.image, sample.annotations, task.negative,
            int(sample.stats.get("requested", 0)),
        )
        tiles.append(sample_tile(item, cell, colors))
    if not tiles:
        return np.zeros((cell, cell, 3), np.uint8), skipped
    return assemble(tiles, colors, cell), skipped
