"""How far synthetic defects are from real ones: a classifier two-sample test.

Both sets are cut into crops the same way (:mod:`.crops`) and measured
(:mod:`.features`); a classifier learns to tell real from synthetic under group k-fold
cross-validation (folds never split a source image), and the score is the AUC of its
out-of-fold predictions: **0.5 means the two cannot be told apart, 1.0 that they are
trivially told apart**. The confidence interval is a bootstrap over source images. Each
category that both sides name is scored on its own, and the features that separate the
sets most are said in words.

The classifier is an average of a regularised logistic regression (steady with a dozen
real defects) and extremely randomised trees (they find what no single feature shows);
``fit``'s inner loop uses the regression alone (10x faster, and within 0.01 AUC of both on
the NEU-DET classes told apart pairwise). Both come from scikit-learn, in the ``fit``
extra.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .crops import Crop, DefectSet, RealismError, crops_from_samples, read_defects, to_common
from .features import FEATURES, describe_difference, feature_matrix

MIN_REAL = 4
FEW_REAL = 10

__all__ = ["CategoryScore", "Score", "compare", "score", "two_sample_auc"]


def _sklearn() -> Any:
    try:
        import sklearn  # noqa: F401
    except ImportError:  # pragma: no cover - the extra is missing
        raise RealismError(
            "scoring needs scikit-learn: pip install 'defectsynth[fit]'"
        ) from None
    return sklearn


@dataclass(frozen=True)
class CategoryScore:
    """The score of one category: AUC, its 95 % interval, how many defects were compared,
    and the differences that separate the two sides most, in words."""

    category: str
    auc: float
    ci: tuple[float, float]
    n_real: int
    n_synthetic: int
    differences: tuple[str, ...] = ()
    feature_auc: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "auc": round(self.auc, 4),
            "ci": [round(self.ci[0], 4), round(self.ci[1], 4)],
            "n_real": self.n_real,
            "n_synthetic": self.n_synthetic,
            "differences": list(self.differences),
        }


@dataclass(frozen=True)
class Score:
    """The realism score of a synthetic set against a real one.

    ``auc``: all real against all synthetic defects (0.5: indistinguishable, 1.0:
    trivially told apart); ``per_category``: the categories both sides have;
    ``mask_from``: ``label`` when every real defect has a mask, ``box`` when masks on
    both sides were estimated from boxes; ``warnings``: what makes the number less sure.
    """

    overall: CategoryScore
    per_category: dict[str, CategoryScore]
    mask_from: str
    gray: bool
    warnings: tuple[str, ...] = ()

    @property
    def auc(self) -> float:
        return self.overall.auc

    @property
    def ci(self) -> tuple[float, float]:
        return self.overall.ci

    def to_dict(self) -> dict[str, Any]:
        return {
            "auc": round(self.auc, 4),
            "ci": [round(self.ci[0], 4), round(self.ci[1], 4)],
            "overall": self.overall.to_dict(),
            "per_category": {k: v.to_dict() for k, v in self.per_category.items()},
            "mask_from": self.mask_from,
            "gray": self.gray,
            "warnings": list(self.warnings),
        }

    def __str__(self) -> str:
        lines = [
            "realism score (classifier AUC: 0.5 = real and synthetic cannot be told apart, "
            "1.0 = trivially)",
        ]

        def row(name: str, s: CategoryScore) -> None:
            lines.append(
                f"  {name:<20} {s.auc:5.2f}  [{s.ci[0]:.2f}, {s.ci[1]:.2f}]  "
                f"real {s.n_real}, synthetic {s.n_synthetic}"
            )
            for d in s.differences:
                lines.append(f"      - {d}")

        row("all", self.overall)
        for name, s in self.per_category.items():
            row(name, s)
        how = "the labels" if self.mask_from == "label" else "their boxes (as for the real ones)"
        lines.append(f"  masks from {how}; {'gray' if self.gray else 'colour'} comparison")
        for w in self.warnings:
            lines.append(f"  warning: {w}")
        return "\n".join(lines)


# -- the test ----------------------------------------------------------------------------------


def _classifiers(seed: int, fast: bool) -> list[Any]:
    _sklearn()
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import RobustScaler

    out = [
        make_pipeline(
            RobustScaler(quantile_range=(10.0, 90.0)),
            LogisticRegression(C=0.3, class_weight="balanced", max_iter=2000),
        )
    ]
    if not fast:
        out.append(
            ExtraTreesClassifier(
                n_estimators=80,
                min_samples_leaf=2,
                max_features="sqrt",
                class_weight="balanced_subsample",
                random_state=seed,
                n_jobs=1,
            )
        )
    return out


def auc_of(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC curve of scores ``s`` for labels ``y`` (1 = positive), by ranks
    (ties count a half)."""
    from scipy.stats import rankdata

    pos = y == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return 0.5
    r = rankdata(s)
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def two_sample_auc(
    real: np.ndarray,
    synthetic: np.ndarray,
    real_groups: Sequence[str],
    synthetic_groups: Sequence[str],
    *,
    seed: int = 0,
    folds: int = 5,
    fast: bool = False,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Out-of-fold AUC of real (0) against synthetic (1) feature rows; also the labels, the
    out-of-fold scores and the group of every row."""
    _sklearn()
    from sklearn.model_selection import StratifiedGroupKFold

    x = np.concatenate([real, synthetic])
    x = np.nan_to_num(x, nan=0.0, posinf=1e6, neginf=-1e6)
    y = np.concatenate([np.zeros(len(real), int), np.ones(len(synthetic), int)])
    # one image on both sides (defects rendered on the real photos) stays in one fold:
    # split apart, its surface alone would tell the sides apart in reverse
    groups = np.array(list(real_groups) + list(synthetic_groups))
    k = max(2, min(folds, len(set(real_groups)), len(set(synthetic_groups))))
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    scores = np.zeros(len(y))
    for train, test in cv.split(x, y, groups):
        if len(set(y[train].tolist())) < 2:
            scores[test] = 0.5
            continue
        preds = []
        for clf in _classifiers(seed, fast):
            clf.fit(x[train], y[train])
            preds.append(clf.predict_proba(x[test])[:, 1])
        scores[test] = np.mean(preds, axis=0)
    return auc_of(y, scores), y, scores, groups


def bootstrap_ci(
    y: np.ndarray, s: np.ndarray, groups: np.ndarray, seed: int = 0, n: int = 300
) -> tuple[float, float]:
    """95 % interval of the AUC, resampling source images (with replacement) on each side."""
    rng = np.random.default_rng(seed)
    side_groups = np.array([f"{int(label)}:{g}" for label, g in zip(y, groups, strict=True)])
    uniq = np.unique(side_groups)
    members = {g: np.flatnonzero(side_groups == g) for g in uniq}
    real_g = [g for g in uniq if g.startswith("0:")]
    syn_g = [g for g in uniq if g.startswith("1:")]
    vals = []
    for _ in range(n):
        pick = np.concatenate(
            [members[g] for side in (real_g, syn_g)
             for g in rng.choice(side, size=len(side), replace=True)]
        )
        vals.append(auc_of(y[pick], s[pick]))
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return float(lo), float(hi)


def feature_aucs(real: np.ndarray, synthetic: np.ndarray) -> dict[str, float]:
    """Per feature, the AUC of the feature alone (0.5: same distribution on both sides)."""
    y = np.concatenate([np.zeros(len(real), int), np.ones(len(synthetic), int)])
    out = {}
    for i, f in enumerate(FEATURES):
        col = np.concatenate([real[:, i], synthetic[:, i]])
        out[f.name] = auc_of(y, col)
    return out


def differences(
    real: np.ndarray, synthetic: np.ndarray, category: str, top: int = 3
) -> tuple[tuple[str, ...], dict[str, float]]:
    """The features that separate the two sides most (at least 0.15 from an AUC of 0.5),
    in words, and every feature's own AUC."""
    aucs = feature_aucs(real, synthetic)
    ranked = sorted(FEATURES, key=lambda f: -abs(aucs[f.name] - 0.5))
    words = []
    for f in ranked[:top]:
        if abs(aucs[f.name] - 0.5) < 0.15:
            break
        i = FEATURES.index(f)
        words.append(describe_difference(f, real[:, i], synthetic[:, i], category))
    return tuple(words), aucs


def compare(
    real: Sequence[Crop],
    synthetic: Sequence[Crop],
    category: str = "all",
    *,
    seed: int = 0,
    fast: bool = False,
    ci: bool = True,
    real_x: np.ndarray | None = None,
) -> CategoryScore:
    """Score synthetic crops against real crops that are already in a common form."""
    x_real = feature_matrix(list(real)) if real_x is None else real_x
    x_syn = feature_matrix(list(synthetic))
    auc, y, s, groups = two_sample_auc(
        x_real, x_syn, [c.group for c in real], [c.group for c in synthetic],
        seed=seed, fast=fast,
    )
    interval = bootstrap_ci(y, s, groups, seed) if ci else (math.nan, math.nan)
    noun = "defects" if category == "all" else category
    words, aucs = differences(x_real, x_syn, noun) if not fast else ((), {})
    return CategoryScore(category, auc, interval, len(real), len(synthetic), words, aucs)


# -- the two sides -----------------------------------------------------------------------------


def common_form(real: DefectSet, synthetic: DefectSet) -> tuple[list[Crop], list[Crop], bool, bool]:
    """Both sides in the same form: (real crops, synthetic crops, gray, masks from boxes)."""
    # gray when either side is all gray; else colour, gray crops repeated in 3 channels
    gray = all(c.channels == 1 for c in real.crops) or all(
        c.channels == 1 for c in synthetic.crops
    )
    box_only = not real.has_masks
    r = [to_common(c, gray, box_only) for c in real.crops]
    s = [to_common(c, gray, box_only) for c in synthetic.crops]
    return r, s, gray, box_only


def synthetic_set(
    synthetic: Any,
    *,
    clean: str | os.PathLike[str] | None = None,
    samples: int = 200,
    seed: int = 0,
    host: Any = None,
) -> DefectSet:
    """The synthetic side: a dataset folder written by ``generate`` (read like a real
    folder), a recipe file (rendered in memory over its inputs, or over ``clean``), a
    ``Recipe``, or an iterable of ``(group, Sample)`` pairs."""
    from ..build import load_recipe
    from ..recipe import Recipe

    if isinstance(synthetic, DefectSet):
        return synthetic
    if isinstance(synthetic, str | os.PathLike):
        p = Path(synthetic)
        if p.is_dir():
            return read_defects(p)
        if not p.is_file():
            raise RealismError(f"synthetic side {str(p)!r} is neither a folder nor a recipe")
        recipe = load_recipe(p, host=host)
        return render_recipe(recipe, clean=clean, samples=samples, seed=seed, host=host)
    if isinstance(synthetic, Recipe):
        return render_recipe(synthetic, clean=clean, samples=samples, seed=seed, host=host)
    return crops_from_samples(synthetic)


def render_recipe(
    recipe: Any,
    *,
    clean: str | os.PathLike[str] | None = None,
    samples: int = 200,
    seed: int = 0,
    host: Any = None,
) -> DefectSet:
    """Render a recipe in memory until ``samples`` defects are made (or ten times as many
    images were tried), over its inputs or the images of ``clean``."""
    from ..synthesizer import Synthesizer
    from .sources import CleanImages

    synth = Synthesizer.from_recipe(recipe, host, on_failure="reject")
    images = CleanImages.from_recipe(recipe) if clean is None else CleanImages(clean)
    return images.render(synth, samples, seed)


def score(
    real: str | os.PathLike[str] | DefectSet,
    synthetic: Any,
    *,
    clean: str | os.PathLike[str] | None = None,
    samples: int = 200,
    seed: int = 0,
    mapping: Mapping[str, str] | None = None,
    fmt: str = "auto",
    host: Any = None,
) -> Score:
    """How far ``synthetic`` defects are from ``real`` ones (see the module docs).

    :param real: a labeled folder (COCO, YOLO, VOC, or images + masks) or a DefectSet.
    :param synthetic: a ``generate`` dataset folder, a recipe file or ``Recipe``
        (rendered in memory: ``samples`` defects over its inputs, or over ``clean``), or
        ``(group, Sample)`` pairs.
    :param mapping: real category -> synthetic category, for names that differ.
    :raises RealismError: unreadable folders, or too few defects to compare.
    """
    real_set = real if isinstance(real, DefectSet) else read_defects(real, fmt)
    syn_set = synthetic_set(synthetic, clean=clean, samples=samples, seed=seed, host=host)
    return score_sets(real_set, syn_set, seed=seed, mapping=mapping)


def score_sets(
    real: DefectSet,
    synthetic: DefectSet,
    *,
    seed: int = 0,
    mapping: Mapping[str, str] | None = None,
) -> Score:
    warnings: list[str] = []
    if not synthetic.crops:
        raise RealismError(
            f"no synthetic defect to compare ({synthetic.source}): the generators placed "
            "none that passed the visibility gate"
        )
    _check_enough(real.crops, "real defects", real.source)
    for side, name in ((real, "real"), (synthetic, "synthetic")):
        if side.skipped:
            warnings.append(left_out(side, name))
    rename = dict(mapping or {})
    real_crops, syn_crops, gray, box_only = common_form(real, synthetic)
    real_crops = [_renamed(c, rename.get(c.category, c.category)) for c in real_crops]
    overall = compare(real_crops, syn_crops, "all", seed=seed)
    per: dict[str, CategoryScore] = {}
    syn_cats = {c.category for c in syn_crops}
    for cat in dict.fromkeys(c.category for c in real_crops):
        if cat not in syn_cats:
            continue
        r = [c for c in real_crops if c.category == cat]
        s = [c for c in syn_crops if c.category == cat]
        if len({c.group for c in r}) < 2 or len({c.group for c in s}) < 2:
            warnings.append(f"category {cat!r}: defects from fewer than 2 images; not scored")
            continue
        per[cat] = compare(r, s, cat, seed=seed)
    unmatched = [c for c in dict.fromkeys(x.category for x in real_crops) if c not in syn_cats]
    if unmatched and syn_cats:
        warnings.append(
            f"real categories without a synthetic one of the same name: {', '.join(unmatched)} "
            "(scored only in 'all'; name the match with --map REAL=SYNTHETIC)"
        )
    for cat, cs in per.items():
        if cs.n_real < FEW_REAL:
            warnings.append(
                f"category {cat!r} has only {cs.n_real} real defects: its score is unsure "
                f"(interval {cs.ci[0]:.2f}..{cs.ci[1]:.2f})"
            )
    return Score(overall, per, "box" if box_only else "label", gray, tuple(warnings))


def left_out(defects: DefectSet, side: str = "real") -> str:
    """A warning that says how many labels of a folder could not be read, and the first."""
    n = len(defects.skipped)
    return (f"{n} {side} label(s) in {defects.source!r} could not be read and were left "
            f"out (first: {defects.skipped[0]})")


def _check_enough(crops: Sequence[Crop], what: str, source: str) -> None:
    groups = {c.group for c in crops}
    if len(crops) < MIN_REAL or len(groups) < 2:
        raise RealismError(
            f"{len(crops)} {what} from {len(groups)} image(s) in {source!r}: at least "
            f"{MIN_REAL} defects from 2 or more images are needed to compare"
        )


def _renamed(c: Crop, category: str) -> Crop:
    return c if category == c.category else replace(c, category=category)
