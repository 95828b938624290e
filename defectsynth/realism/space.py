"""A generator's parameter ranges, as ``fit`` moves them towards real defects.

Every numeric field with a declared ``lo`` and ``hi`` is a range; every field with
choices (and every boolean) is a list of choices; paths and fields without bounds keep
the generator's defaults. A field stays a *range*, not a point, so fitted defects keep
the variety of real ones.

:meth:`Proposal.widened` is what a search step draws from: each range grown by half its
width on both sides (on a log scale when the field spans 20x or more; clipped to the
allowed values) and every allowed choice. :meth:`Proposal.estimate` then learns the way
back, from a defect's measurements to the parameters that drew it (extremely randomised
trees, trained on the drawn defects), and applies it to the real defects: a field's new
range is the uniform one with the mean and spread of the values predicted for them (the
spread divided by sqrt(R^2), as a prediction keeps only that share of the variance), a
choice keeps the values predicted for 10 % of them or more. A field the defects do not
show (R^2 below 0.25 on held-back draws) keeps its range, so it cannot drift.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..generator import DefectGenerator, _field_kind, param_info

LOG_SPAN = 20.0
MIN_CHOICE = 0.10
GROW = 0.5
MIN_R2 = 0.25  # a field predicted worse than this from the defects is not shown by them
MIN_GAIN = 0.10  # a choice predicted no better than this above chance is not shown either
MIN_HALF = 0.02


@dataclass(frozen=True)
class Axis:
    """One searched numeric field: allowed ``lo``..``hi`` and the current range."""

    name: str
    kind: type
    lo: float
    hi: float
    log: bool
    cur: tuple[float, float]

    def unit(self, v: float) -> float:
        if self.log:
            return (math.log(v) - math.log(self.lo)) / (math.log(self.hi) - math.log(self.lo))
        return (v - self.lo) / (self.hi - self.lo)

    def value(self, u: float) -> float:
        u = min(1.0, max(0.0, u))
        if self.log:
            return math.exp(math.log(self.lo) + u * (math.log(self.hi) - math.log(self.lo)))
        return self.lo + u * (self.hi - self.lo)

    def spec(self, rng: tuple[float, float] | None = None) -> list[Any]:
        a, b = rng or self.cur
        if self.kind is int:
            ia, ib = int(math.floor(a + 0.5)), int(math.floor(b + 0.5))
            return [ia, max(ia, ib)]
        return [_round(a), _round(max(a, b))]


@dataclass(frozen=True)
class Choice:
    """One searched enumeration: every allowed value and the current ones."""

    name: str
    allowed: tuple[Any, ...]
    cur: tuple[Any, ...]


class Proposal:
    """The searched fields of one generator and their current ranges and choices."""

    def __init__(self, generator: type[DefectGenerator]) -> None:
        self.generator = generator
        self._learned: tuple[Any, np.ndarray, dict[str, float]] | None = None
        self.axes: list[Axis] = []
        self.choices: list[Choice] = []
        paths = set(getattr(generator, "path_params", ()))
        for f in dataclasses.fields(generator.Params):
            kind = _field_kind(f)
            info = param_info(f)
            if f.name in paths:
                continue
            if kind is bool or info.choices is not None:
                allowed = (False, True) if kind is bool else tuple(info.choices or ())
                cur = tuple(info.vary) if info.vary is not None else (f.default,)
                if len(allowed) > 1:
                    self.choices.append(Choice(f.name, allowed, cur))
                continue
            if kind not in (int, float) or info.lo is None or info.hi is None:
                continue
            lo, hi = float(info.lo), float(info.hi)
            if hi <= lo:
                continue
            log = lo > 0 and hi / lo >= LOG_SPAN
            if info.vary is not None and len(info.vary) == 2:
                cur = (float(info.vary[0]), float(info.vary[1]))
            else:
                cur = (float(f.default), float(f.default))  # type: ignore[arg-type]
            self.axes.append(Axis(f.name, kind, lo, hi, log, cur))

    def spec(self) -> dict[str, Any]:
        """Recipe params of the current ranges and choices."""
        out: dict[str, Any] = {a.name: a.spec() for a in self.axes}
        for c in self.choices:
            out[c.name] = list(c.cur) if len(c.cur) > 1 else c.cur[0]
        return out

    def widened(self, factor: float = GROW) -> dict[str, Any]:
        """Recipe params to draw a search round from: each range grown by ``factor`` of its
        width on both sides (at least 5 % of the scale; a fixed field's whole allowed range
        when ``factor`` is 1 or more, as in ``fit``'s first round), every allowed choice."""
        out: dict[str, Any] = {}
        for a in self.axes:
            u0, u1 = a.unit(a.cur[0]), a.unit(a.cur[1])
            grow = max(factor * (u1 - u0), 0.05)
            if u1 - u0 < 1e-9 and factor >= 1.0:
                # a field the generator keeps fixed unless told (scratch's burnish): a
                # broad round tries all it allows, else it could never leave its default
                grow = 1.0
            out[a.name] = a.spec((a.value(u0 - grow), a.value(u1 + grow)))
        for c in self.choices:
            out[c.name] = list(c.allowed)
        return out

    def estimate(
        self,
        drawn: Sequence[Mapping[str, Any]],
        syn_x: np.ndarray,
        real_x: np.ndarray,
        seed: int = 0,
    ) -> dict[str, float]:
        """Move every field to what the real defects say (see the module docs); returns
        each field's R^2 (numeric) or accuracy gain (choices) on held-back draws."""
        from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor

        n = len(drawn)
        if n < 20:
            return {}
        x = np.nan_to_num(syn_x)
        xr = np.nan_to_num(real_x)
        rng = np.random.default_rng(seed)
        test = rng.permutation(n)[: max(5, n // 5)]
        train = np.setdiff1d(np.arange(n), test)
        quality: dict[str, float] = {}
        if self.axes:
            y = np.array([[a.unit(min(max(float(d[a.name]), a.lo), a.hi)) for a in self.axes]
                          for d in drawn])
            reg = ExtraTreesRegressor(n_estimators=80, min_samples_leaf=3, random_state=seed,
                                      n_jobs=1)
            reg.fit(x[train], y[train])
            pred_test = reg.predict(x[test]).reshape(len(test), -1)
            reg.fit(x, y)
            pred_real = reg.predict(xr).reshape(len(xr), -1)
            self._learned = (reg, pred_real, quality)
            for i, a in enumerate(self.axes):
                var = float(y[test, i].var())
                r2 = 1.0 - float(((pred_test[:, i] - y[test, i]) ** 2).mean()) / max(var, 1e-12)
                quality[a.name] = r2
                if r2 < MIN_R2:
                    continue  # the defects do not show this field: keep its range
                m = float(pred_real[:, i].mean())
                sd = float(pred_real[:, i].std()) / math.sqrt(r2)
                half = max(math.sqrt(3.0) * sd, MIN_HALF)
                self.axes[i] = dataclasses.replace(a, cur=(a.value(m - half), a.value(m + half)))
        for i, c in enumerate(self.choices):
            labels = np.array([c.allowed.index(d[c.name]) if d[c.name] in c.allowed else 0
                               for d in drawn])
            if len(set(labels[train].tolist())) < 2:
                continue
            clf = ExtraTreesClassifier(n_estimators=80, min_samples_leaf=3, random_state=seed,
                                       n_jobs=1)
            clf.fit(x[train], labels[train])
            acc = float((clf.predict(x[test]) == labels[test]).mean())
            chance = float(np.bincount(labels[test]).max() / len(test))
            quality[c.name] = acc - chance
            if acc - chance < MIN_GAIN:
                continue
            clf.fit(x, labels)
            share = clf.predict_proba(xr).mean(axis=0)
            keep = tuple(c.allowed[int(k)] for k, p in zip(clf.classes_, share, strict=True)
                         if p >= MIN_CHOICE)
            if keep:
                self.choices[i] = dataclasses.replace(c, cur=keep)
        return quality

    def correct(self, syn_x: np.ndarray) -> bool:
        """Indirect inference: predict the parameters of defects drawn from the current
        ranges with the map :meth:`estimate` learned, and shift each shown field's range
        by what separates those predictions from the real defects' (its spread scaled
        alike, 0.5x..2x), which cancels the map's pull towards the middle of what it was
        trained on. False when there was nothing to correct with."""
        if self._learned is None or len(syn_x) < 8:
            return False
        reg, pred_real, quality = self._learned
        pred = reg.predict(np.nan_to_num(syn_x)).reshape(len(syn_x), -1)
        for i, a in enumerate(self.axes):
            if quality.get(a.name, 0.0) < MIN_R2:
                continue
            u0, u1 = a.unit(a.cur[0]), a.unit(a.cur[1])
            # predictions move less than the parameters do (by about R^2 for a
            # regression's shrinkage): scale the step back up, within a quarter of the scale
            r2 = max(quality[a.name], 0.3)
            shift = float(np.clip((pred_real[:, i].mean() - pred[:, i].mean()) / r2, -0.25, 0.25))
            ratio = float(np.clip((pred_real[:, i].std() + 1e-6) / (pred[:, i].std() + 1e-6),
                                  0.5, 2.0))
            c, half = (u0 + u1) / 2 + shift, max((u1 - u0) / 2 * ratio, MIN_HALF)
            self.axes[i] = dataclasses.replace(a, cur=(a.value(c - half), a.value(c + half)))
        return True


def _round(v: float) -> float:
    """Four significant digits: enough for a recipe, short to read."""
    if v == 0:
        return 0.0
    return float(f"{v:.4g}")
