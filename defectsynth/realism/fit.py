"""Fit generator parameter ranges to a handful of real defects.

For each real category:

1. **Which generator.** Every candidate (all registered generators but ``transplant``,
   or the one ``mapping`` names) renders defects with its default ranges on the clean
   images; the two whose defects score closest to the real ones get one search round
   each (below), and the one that scores best after it is kept.
2. **Which ranges.** The classifier of the score is also a density-ratio estimator: its
   odds ``P(real | x) / P(synthetic | x)`` say how much more often a defect that looks
   like ``x`` occurs among the real ones. Each round draws defects from widened ranges
   (:meth:`.space.Proposal.widened`), weights every drawn defect's parameters by those
   odds (out-of-fold, logistic regression), and keeps, per field, the central 80 % of the
   weighted values (:meth:`.space.Proposal.update`): an iterated importance-sampling
   (cross-entropy) search whose result is a range per field, not a point, so fitted
   defects keep the real ones' variety. The round whose ranges score best is kept.
3. **Held out.** The real defects are split by source image into ``folds``; each fold's
   search sees only the other folds' defects, and the held-out score comes from those
   it did not see: a classifier trained on the fitted-to defects against the fold's
   synthetic defects predicts the held-out ones and fresh synthetic ones, pooled over
   the folds. The recipe's ranges span the folds' ranges' medians.

The recipe mixes the fitted generators (weights in proportion to the real defects of
each category) with a ``transplant`` entry of the same real defects
(``transplant_share`` of all defects; 0.5 by default).

Deterministic for a seed (renders use fixed seeds, the classifiers too); a time budget
(``budget_seconds``) stops the rounds early on a slow machine and then says so.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .crops import Crop, DefectSet, RealismError, is_gray, read_defects, to_common, to_float
from .features import feature_matrix
from .score import FEW_REAL, MIN_REAL, auc_of, left_out, two_sample_auc
from .sources import CleanImages
from .space import GROW, Proposal

log = logging.getLogger(__name__)

TRANSPLANT_SHARE = 0.5
DEFAULT_ROUNDS = 3
FINALISTS = 2  # generators that get a trial round before one is chosen
HOPELESS = 0.97  # a category whose best generator still scores this high is not approached
DRAWS = 300  # defects drawn per search round
CORRECTIONS = 2  # indirect-inference steps after each round's estimate
BROAD = 1.5  # the first round draws from each default range grown 1.5x its width each side

__all__ = ["CategoryFit", "FitResult", "FittedRecipe", "fit"]

Progress = Callable[[str, int, int], None]


@dataclass
class CategoryFit:
    """What ``fit`` found for one real category.

    ``score_before``: held-out score of the chosen generator with its default ranges;
    ``score_after``: held-out score of the ranges the recipe carries: the fitted ones, or
    the defaults again when the fitted ones scored no better on the held-out defects
    (``kept_defaults``; ``score_fitted`` is then what the fitted ones scored); ``candidates``: every
    generator's score with its defaults (against all of the category's real defects);
    ``candidates_fitted``: the finalists' scores after one search round.
    """

    category: str
    n_real: int
    generator: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    weight: float = 0.0
    score_before: float = math.nan
    score_after: float = math.nan
    score_fitted: float = math.nan
    kept_defaults: bool = False
    candidates: dict[str, float] = field(default_factory=dict)
    candidates_fitted: dict[str, float] = field(default_factory=dict)
    rounds: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def reliable(self) -> bool:
        return self.n_real >= FEW_REAL


@dataclass
class FittedRecipe:
    """The recipe ``fit`` writes: plain data (``data``) and its commented YAML (``text``)."""

    data: dict[str, Any]
    comments: list[str]

    @property
    def text(self) -> str:
        import yaml

        class Dumper(yaml.SafeDumper):
            pass

        def short_lists(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
            flow = all(not isinstance(v, dict | list) for v in data)
            return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)

        Dumper.add_representer(list, short_lists)
        head = "".join(f"# {c}\n" if c else "#\n" for c in self.comments)
        body = yaml.dump(self.data, Dumper=Dumper, sort_keys=False, width=100)
        return head + "\n" + body

    def save(self, path: str | os.PathLike[str]) -> Path:
        from ..writing import atomic_write_bytes

        p = Path(path)
        atomic_write_bytes(p, self.text.encode("utf-8"))
        return p


@dataclass
class FitResult:
    """The outcome of :func:`fit`: the recipe, and the held-out scores per category
    before (default ranges of the chosen generator) and after the fit."""

    recipe: FittedRecipe
    per_category: dict[str, CategoryFit]
    warnings: list[str]
    seed: int
    real_crops: dict[str, list[Crop]] = field(default_factory=dict, repr=False)
    synthetic_crops: dict[str, tuple[list[Crop], list[Crop]]] = field(
        default_factory=dict, repr=False
    )

    @property
    def score_before(self) -> float:
        return _weighted([(c.score_before, c.n_real) for c in self.per_category.values()])

    @property
    def score_after(self) -> float:
        return _weighted([(c.score_after, c.n_real) for c in self.per_category.values()])

    def summary(self) -> str:
        lines = ["held-out score (classifier AUC: 0.5 = indistinguishable), before -> after:"]
        for c in self.per_category.values():
            if c.generator is None:
                lines.append(f"  {c.category:<18} not fitted: {'; '.join(c.notes)}")
                continue
            kept = (f", defaults kept: the fitted ranges scored {c.score_fitted:.2f}"
                    if c.kept_defaults else "")
            lines.append(
                f"  {c.category:<18} {c.generator:<14} {c.score_before:.2f} -> "
                f"{c.score_after:.2f}  ({c.n_real} real, {c.rounds} rounds, {c.seconds:.0f} s"
                f"{kept})"
            )
        lines.append(f"  {'all':<18} {'':<14} {self.score_before:.2f} -> {self.score_after:.2f}")
        for w in self.warnings:
            lines.append(f"warning: {w}")
        return "\n".join(lines)


def _weighted(pairs: Sequence[tuple[float, int]]) -> float:
    ok = [(s, n) for s, n in pairs if not math.isnan(s)]
    if not ok:
        return math.nan
    return float(sum(s * n for s, n in ok) / sum(n for _, n in ok))


# -- one trial -----------------------------------------------------------------------------------


class _Trial:
    """Renders one generator with given ranges on the clean images and scores it."""

    def __init__(
        self,
        clean: CleanImages,
        host: Any,
        gray: bool,
        box_only: bool,
        defects: int,
        seed: int,
    ) -> None:
        self.clean = clean
        self.host = host
        self.gray = gray
        self.box_only = box_only
        self.defects = defects
        self.seed = seed

    def crops(
        self,
        generator: str,
        params: Mapping[str, Any],
        category: str,
        *,
        seed: int | None = None,
        defects: int | None = None,
    ) -> list[Crop]:
        from ..synthesizer import Synthesizer

        synth = Synthesizer(
            [{"generator": generator, "params": dict(params), "category": category}],
            instances=1,
            product_mask="full",
            host=self.host,
            on_failure="reject",
        )
        made = self.clean.render(
            synth, defects or self.defects, self.seed if seed is None else seed
        )
        return [to_common(c, self.gray, self.box_only) for c in made.crops]


def _fast_auc(
    real_x: np.ndarray, real_groups: list[str], syn_x: np.ndarray, syn_groups: list[str],
    seed: int,
) -> float:
    """The inner loop's score of synthetic feature rows against the real ones."""
    if len(syn_x) < 4:
        return 1.0  # the generator makes (almost) nothing visible here: as far as can be
    auc, *_ = two_sample_auc(real_x, syn_x, real_groups, syn_groups, seed=seed, fast=True)
    return auc


def _groups(crops: list[Crop]) -> list[str]:
    return [c.group for c in crops]


def _median_distance(real_x: np.ndarray, syn_x: np.ndarray) -> float:
    """How far synthetic defects are from the real ones feature by feature: the mean over
    features of the distance between the two medians in units of the real spread
    (interquartile range), each capped at 3. Unlike a classifier's AUC it keeps ranking
    generators that are all told apart easily."""
    if len(syn_x) < 4:
        return float("inf")
    rx = np.nan_to_num(real_x)
    sx = np.nan_to_num(syn_x)
    q1, med, q3 = np.percentile(rx, [25, 50, 75], axis=0)
    gap = np.abs(np.median(sx, axis=0) - med) / (q3 - q1 + 1e-6)
    return float(np.minimum(gap, 3.0).mean())


def _heldout_auc(
    fit_x: np.ndarray,
    test_x: np.ndarray,
    syn_train: list[Crop],
    syn_test: list[Crop],
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of held-out real rows and fresh synthetic rows from a classifier trained on
    the fitted-to real rows against the trial's synthetic ones: (labels, scores)."""
    from .score import _classifiers

    xs_train = feature_matrix(syn_train)
    xs_test = feature_matrix(syn_test)
    x = np.nan_to_num(np.concatenate([fit_x, xs_train]))
    y = np.r_[np.zeros(len(fit_x), int), np.ones(len(xs_train), int)]
    xt = np.nan_to_num(np.concatenate([test_x, xs_test]))
    yt = np.r_[np.zeros(len(test_x), int), np.ones(len(xs_test), int)]
    preds = []
    for clf in _classifiers(seed, fast=False):
        clf.fit(x, y)
        preds.append(clf.predict_proba(xt)[:, 1])
    return yt, np.mean(preds, axis=0)


# -- the search ----------------------------------------------------------------------------------


def _search(
    proposal: Proposal,
    trial: _Trial,
    generator: str,
    category: str,
    real_x: np.ndarray,
    real_groups: list[str],
    rounds: int,
    seed: int,
    deadline: float,
    tick: Callable[[], None],
) -> tuple[dict[str, Any], float, int]:
    """Rounds of the density-ratio search; the best ranges, their score and the rounds
    that ran."""
    best_spec = proposal.spec()
    syn = trial.crops(generator, best_spec, category)
    best = _fast_auc(real_x, real_groups, feature_matrix(syn), _groups(syn), seed)
    n = 0
    for r in range(rounds):
        if time.monotonic() > deadline:
            break
        drawn = trial.crops(generator, proposal.widened(BROAD if r == 0 else GROW), category,
                            seed=seed + 1009 * (r + 1), defects=DRAWS)
        n += 1
        tick()
        if len(drawn) < 8:
            break
        proposal.estimate([c.params or {} for c in drawn], feature_matrix(drawn), real_x,
                          seed=seed + r)
        for step in range(1 + CORRECTIONS):
            spec = proposal.spec()
            syn = trial.crops(generator, spec, category)
            syn_x = feature_matrix(syn)
            auc = _fast_auc(real_x, real_groups, syn_x, _groups(syn), seed)
            log.debug("%s %s round %d.%d: %.3f %s", category, generator, r, step, auc, spec)
            if auc < best:
                best, best_spec = auc, spec
            if step == CORRECTIONS or not proposal.correct(syn_x):
                break
    return best_spec, best, n


def _folds(crops: list[Crop], k: int, seed: int) -> list[list[int]]:
    """Indices of the crops in ``k`` folds by source image (seeded shuffle of images)."""
    groups = sorted({c.group for c in crops})
    rng = np.random.default_rng(seed)
    order = [groups[i] for i in rng.permutation(len(groups))]
    fold_of = {g: i % k for i, g in enumerate(order)}
    out: list[list[int]] = [[] for _ in range(k)]
    for i, c in enumerate(crops):
        out[fold_of[c.group]].append(i)
    return out


# (long on purpose: the docstring lists every argument; the body is one pass, read top
# to bottom: read, screen generators, fit each category, write the recipe)
def fit(
    real: str | os.PathLike[str] | DefectSet,
    clean: str | os.PathLike[str],
    *,
    generators: Sequence[str] | None = None,
    mapping: Mapping[str, str] | None = None,
    rounds: int = DEFAULT_ROUNDS,
    budget_seconds: float | None = None,
    seed: int = 0,
    product_mask: str = "full",
    folds: int = 3,
    transplant_share: float = TRANSPLANT_SHARE,
    fmt: str = "auto",
    host: Any = None,
    progress: Progress | None = None,
    recipe_dir: str | os.PathLike[str] | None = None,
    workers: int = 1,
) -> FitResult:
    """Fit generators to real defects (see the module docs).

    :param real: labeled real defects (COCO, YOLO, VOC or images + masks folder).
    :param clean: folder of clean product images to render on.
    :param generators: candidate generators (default: every registered one but transplant).
    :param mapping: real category -> the generator to use for it (no choice made).
    :param rounds: search rounds per category and fold.
    :param budget_seconds: also stop every search when this much time is spent in all.
    :param product_mask: ``full``, ``auto`` or a file pattern (``masks/{stem}.png``).
    :param recipe_dir: the folder the recipe will be saved in (its paths are relative
        to it); default: the working directory.
    :param workers: processes for the folds' searches (same result for any number).
    """
    from ..plugins import get_host

    host = host or get_host()
    started = time.monotonic()
    deadline = started + budget_seconds if budget_seconds else math.inf
    real_set = real if isinstance(real, DefectSet) else read_defects(real, fmt)
    images = CleanImages(clean, product_mask)
    warnings: list[str] = list(f"clean image skipped: {s}" for s in images.skipped[:5])
    if real_set.skipped:
        warnings.append(left_out(real_set))
    gray = all(c.channels == 1 for c in real_set.crops) or all(
        im.image.ndim == 2 or im.image.shape[2] == 1 or is_gray(to_float(im.image))
        for im in images.images
    )
    box_only = not real_set.has_masks
    candidates = list(generators) if generators else [
        g for g in sorted(host.generators) if g != "transplant"
    ]
    for g in candidates:
        host.generator(g)  # unknown names fail now, with a suggestion
    mapping = dict(mapping or {})
    for cat, g in mapping.items():
        if cat not in real_set.categories:
            raise RealismError(
                f"--map {cat}={g}: the real defects have no category {cat!r}; they have "
                f"{', '.join(real_set.categories)}"
            )
        host.generator(g)
    per: dict[str, CategoryFit] = {}
    result = FitResult(FittedRecipe({}, []), per, warnings, seed)
    cats = real_set.categories
    total = sum(len([c for c in real_set.crops if c.category == k]) for k in cats)
    for ci, cat in enumerate(cats):
        crops = [to_common(c, gray, box_only) for c in real_set.crops if c.category == cat]
        cf = CategoryFit(cat, len(crops))
        per[cat] = cf
        result.real_crops[cat] = crops
        n_groups = len({c.group for c in crops})
        if len(crops) < MIN_REAL or n_groups < 2:
            cf.notes.append(
                f"{len(crops)} real defect(s) from {n_groups} image(s); at least {MIN_REAL} "
                "from 2 or more images are needed (transplants still cover it)"
            )
            warnings.append(f"category {cat!r}: {cf.notes[-1]}")
            continue
        if not cf.reliable:
            warnings.append(
                f"category {cat!r} has only {len(crops)} real defects: the fit is unreliable "
                f"(10 or more are advised)"
            )
        t0 = time.monotonic()
        _fit_category(
            cf, crops, images, host, gray, box_only, candidates, mapping.get(cat),
            rounds, folds, seed + ci, deadline, progress, result, workers,
        )
        cf.seconds = time.monotonic() - t0
        cf.weight = (1.0 - transplant_share) * len(crops) / total
        if cf.generator is not None and cf.score_after >= HOPELESS:
            warnings.append(
                f"category {cat!r}: no generator approaches the real defects (best: "
                f"{cf.generator} at {cf.score_after:.2f}); transplants carry this category"
            )
    if time.monotonic() > deadline:
        warnings.append(
            f"the time budget ({budget_seconds:.0f} s) ended some searches early: the result "
            "depends on this machine's speed (leave --budget out for a reproducible fit)"
        )
    result.recipe = _recipe(result, real_set, images, transplant_share, seed, recipe_dir,
                            fmt)
    return result


# (long on purpose: one category's search is one loop over rounds and folds whose
# state (ranges, scores, time left) would only be passed around if it were split)
def _fit_category(
    cf: CategoryFit,
    crops: list[Crop],
    images: CleanImages,
    host: Any,
    gray: bool,
    box_only: bool,
    candidates: list[str],
    forced: str | None,
    rounds: int,
    folds: int,
    seed: int,
    deadline: float,
    progress: Progress | None,
    result: FitResult,
    workers: int = 1,
) -> None:
    cat = cf.category
    real_x = feature_matrix(crops)
    groups = [c.group for c in crops]
    n_syn = int(np.clip(3 * len(crops), 40, 120))
    trial = _Trial(images, host, gray, box_only, n_syn, seed)
    k = max(2, min(folds, len({*groups})))
    fold_idx = _folds(crops, k, seed)
    steps = (0 if forced else len(candidates) + 2 * FINALISTS) + k * rounds + 1
    done = 0

    def tick(what: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(f"{cat}: {what}", min(done, steps), steps)

    # 1. which generator
    if forced:
        chosen = forced
    else:
        near: dict[str, float] = {}
        for g in candidates:
            try:
                syn = trial.crops(g, {}, cat)
                syn_x = feature_matrix(syn)
                cf.candidates[g] = _fast_auc(real_x, groups, syn_x, _groups(syn), seed)
                near[g] = _median_distance(real_x, syn_x)
            except Exception as exc:  # noqa: BLE001 - a plugin that fails is not a candidate
                cf.notes.append(f"{g}: failed with defaults ({type(exc).__name__}: {exc})")
            tick(f"trying {g}")
        if not cf.candidates:
            cf.notes.append("no candidate generator rendered a visible defect")
            result.warnings.append(f"category {cat!r}: {cf.notes[-1]}")
            return
        ranked = sorted(cf.candidates, key=lambda g: (cf.candidates[g], g))
        chosen = ranked[0]
        if rounds > 0 and len(ranked) > 1:
            # a generator whose defaults are further off may fit better: the FINALISTS
            # best scored and the FINALISTS nearest in their features' medians (the score
            # saturates near 1 when every default is far off, and stops ranking them) get
            # one search round on every shot, and the best after it wins
            nearest = sorted((g for g in near if math.isfinite(near[g])),
                             key=lambda g: (near[g], g))
            finalists = list(dict.fromkeys(ranked[:FINALISTS] + nearest[:FINALISTS]))
            steps -= 2 * FINALISTS - len(finalists)
            after_one = {}
            for g in finalists:
                try:
                    _, after_one[g], _ = _search(
                        Proposal(host.generator(g)), trial, g, cat, real_x, groups, 1, seed,
                        deadline, lambda: None,
                    )
                except Exception as exc:  # noqa: BLE001 - as in the screening above
                    cf.notes.append(f"{g}: failed in its trial round ({type(exc).__name__}: "
                                    f"{exc})")
                tick(f"trying {g} fitted")
            cf.candidates_fitted = after_one
            if after_one:
                chosen = min(after_one, key=lambda g: (after_one[g], g))
        else:
            steps -= 2 * FINALISTS
    cf.generator = chosen
    gen_cls = host.generator(chosen)

    # 2 + 3. search per fold; held-out scores before and after
    solutions: list[dict[str, Any]] = []
    before: list[tuple[np.ndarray, np.ndarray]] = []
    after: list[tuple[np.ndarray, np.ndarray]] = []
    default_train = trial.crops(chosen, {}, cat)
    held_trial = _Trial(images, host, gray, box_only, n_syn, seed + 7919)
    default_test = held_trial.crops(chosen, {}, cat)
    def one_fold(f: int) -> tuple[dict[str, Any], int, _Pair, _Pair]:
        test = fold_idx[f]
        train = [i for j, idx in enumerate(fold_idx) if j != f for i in idx]
        fx, tx = real_x[train], real_x[test]
        quiet = _forks(workers, k)  # a worker process cannot move the parent's bar
        spec, _, n = _search(
            Proposal(gen_cls), trial, chosen, cat, fx, [groups[i] for i in train], rounds,
            seed * 31 + f, deadline, (lambda: None) if quiet else (lambda: tick("fitting")),
        )
        return (
            spec,
            n,
            _heldout_auc(fx, tx, default_train, default_test, seed),
            _heldout_auc(fx, tx, trial.crops(chosen, spec, cat),
                         held_trial.crops(chosen, spec, cat), seed),
        )

    def fold_done() -> None:  # a forked fold's rounds tick when it returns
        for _ in range(rounds):
            tick("fitting")

    for spec, n, b, a in _map_folds(one_fold, k, workers, fold_done):
        cf.rounds += n
        solutions.append(spec)
        before.append(b)
        after.append(a)
    cf.score_before = _pooled(before)
    cf.score_fitted = cf.score_after = _pooled(after)
    cf.params = _combine(solutions)
    if cf.score_fitted >= cf.score_before:
        # the search found nothing that holds on defects it did not see (few shots, or a
        # look the fields cannot reach): ranges that score worse are not a fit
        cf.kept_defaults = True
        cf.params = Proposal(gen_cls).spec()
        cf.score_after = cf.score_before
        cf.notes.append(
            f"the fitted ranges scored {cf.score_fitted:.2f} on held-out defects, the "
            f"defaults {cf.score_before:.2f}: the recipe keeps the defaults"
        )
    # (the defaults kept: their held-out crops are already drawn)
    final_test = default_test if cf.kept_defaults else held_trial.crops(chosen, cf.params, cat)
    result.synthetic_crops[cat] = (default_test, final_test)
    tick("done")


_Pair = tuple[np.ndarray, np.ndarray]
# what a forked worker of _map_folds runs: set in the parent just before the pool forks,
# read by the children (a closure cannot be pickled, and the plugin host cannot either)
_FORKED: dict[str, Callable[[int], Any]] = {}


def _run_forked(f: int) -> Any:
    return _FORKED["fold"](f)


def _forks(workers: int, k: int) -> bool:
    """Whether :func:`_map_folds` runs ``k`` folds in forked worker processes."""
    import multiprocessing

    return workers > 1 and k > 1 and "fork" in multiprocessing.get_all_start_methods()


def _map_folds(
    fn: Callable[[int], Any], k: int, workers: int, done: Callable[[], None]
) -> list[Any]:
    """``[fn(0), ..., fn(k - 1)]``, in up to ``workers`` forked processes (each fold's
    search is a pure function of its inputs, so the result is the same either way)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if not _forks(workers, k):
        return [fn(f) for f in range(k)]
    _FORKED["fold"] = fn
    try:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=min(workers, k), mp_context=ctx) as pool:
            futures = [pool.submit(_run_forked, f) for f in range(k)]
            out = []
            for fut in futures:
                out.append(fut.result())
                done()
            return out
    finally:
        _FORKED.pop("fold", None)


def _combine(specs: list[dict[str, Any]]) -> dict[str, Any]:
    """One set of ranges from the folds': per field the median of the lows to the median of
    the highs; the choices a majority of the folds kept (else those kept most often: one
    fold's stray choice, learned from a third of the shots, does not reach the recipe)."""
    out: dict[str, Any] = {}
    for name, first in specs[0].items():
        vals = [s[name] for s in specs]
        if isinstance(first, list) and len(first) == 2 and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in first
        ):
            lo = float(np.median([v[0] for v in vals]))
            hi = float(np.median([v[1] for v in vals]))
            if isinstance(first[0], int):
                out[name] = [int(round(lo)), max(int(round(lo)), int(round(hi)))]
            else:
                out[name] = [float(f"{lo:.4g}"), float(f"{max(lo, hi):.4g}")]
        else:
            count: dict[Any, int] = {}
            for v in vals:
                for c in dict.fromkeys(v if isinstance(v, list) else [v]):
                    count[c] = count.get(c, 0) + 1
            kept = [c for c, n in count.items() if 2 * n > len(specs)]
            if not kept:
                top = max(count.values())
                kept = [c for c, n in count.items() if n == top]
            out[name] = kept if len(kept) > 1 else kept[0]
    return out


def _pooled(parts: list[tuple[np.ndarray, np.ndarray]]) -> float:
    y = np.concatenate([p[0] for p in parts])
    s = np.concatenate([p[1] for p in parts])
    return auc_of(y, s)


# -- the recipe ----------------------------------------------------------------------------------


def _rel(path: str, base: Path) -> str:
    p = Path(path).absolute()
    try:
        return Path(os.path.relpath(p, base.absolute())).as_posix()
    except ValueError:  # another drive
        return p.as_posix()


def _transplantable(folder: str, fmt: str) -> bool:
    from ..transplant.sources import SourceError, read_source

    try:
        read_source(folder, fmt)
    except (SourceError, OSError):
        return False
    return True


def _recipe(
    result: FitResult,
    real: DefectSet,
    images: CleanImages,
    share: float,
    seed: int,
    recipe_dir: str | os.PathLike[str] | None,
    fmt: str = "auto",
) -> FittedRecipe:
    base = Path(recipe_dir) if recipe_dir is not None else Path.cwd()
    defects: list[dict[str, Any]] = []
    for cf in result.per_category.values():
        if cf.generator is None or cf.weight <= 0:
            continue
        defects.append(
            {
                "generator": cf.generator,
                "category": cf.category,
                "weight": round(cf.weight, 4),
                "params": cf.params,
            }
        )
    if share > 0 and not _transplantable(real.source, fmt):
        result.warnings.append(
            f"{real.source}: not a folder of labeled defects transplant can read; the "
            "recipe has no transplant entry"
        )
        share = 0.0
    if share > 0:
        defects.append(
            {"generator": "transplant", "weight": round(share, 4),
             # the labels fit read, also where the folder holds more than one kind
             "params": {"source": _rel(real.source, base),
                        **({"format": fmt} if fmt != "auto" else {})}}
        )
    if not defects:
        raise RealismError("nothing could be fitted, and transplants were turned off")
    mask = images.product_mask
    if mask not in ("auto", "full"):  # a pattern of the working directory: of the recipe now
        mask = _rel(mask, base)
    data: dict[str, Any] = {
        "seed": seed,
        "inputs": {"images": _rel(images.root, base), "product_mask": mask},
        "variants": 10,
        "instances": [1, 3],
        "defects": defects,
        "output": {"formats": ["coco", "yolo"]},
    }
    comments = [
        f"fitted by `defectsynth fit` from {real.source} ({len(real.crops)} real defects) "
        f"on the clean images of {images.root}, seed {seed}",
        "held-out score per category (classifier AUC: 0.5 = indistinguishable from the real",
        "defects, 1.0 = trivially told apart), default ranges -> fitted ranges:",
    ]
    for cf in result.per_category.values():
        if cf.generator is None:
            comments.append(f"  {cf.category}: not fitted ({'; '.join(cf.notes)})")
        else:
            flag = "" if cf.reliable else "  (few real defects: unreliable)"
            if cf.kept_defaults:
                flag += f"; default ranges kept (the fitted ones scored {cf.score_fitted:.2f})"
            comments.append(
                f"  {cf.category}: {cf.generator} {cf.score_before:.2f} -> "
                f"{cf.score_after:.2f}, {cf.n_real} real defects{flag}"
            )
    comments += [
        f"transplant: {share:.0%} of the defects are the real ones, varied (weight {share:g})"
        if share > 0 else "no transplant entry (see the warnings of the fit)",
        "paths are relative to this file; edit freely, `defectsynth validate` after generate",
    ]
    return FittedRecipe(data, comments)
