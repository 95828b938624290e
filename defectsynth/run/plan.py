"""The plan: which tasks a run has, in which order, and everything fixed about each.

A task is one (source image, variant) pair. Its split, output name and whether it is a
negative are pure functions of the recipe, the seed and the source's relative path, so
any worker, backend or resumed run agrees on them.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..recipe import Recipe, SourceImage
from ..synthesizer import source_id

_NEGATIVE_STREAM = 0x6E65676174  # "negat": a separate random stream for the negative draw
# -- tasks ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """Everything a worker needs to make one sample (picklable, backend-neutral)."""

    index: int
    source: str  # absolute path
    rel: str  # POSIX path relative to the input root
    name: str  # output file stem
    split: str
    variant: int
    negative: bool
    mask: str | None = None  # absolute path of the product mask file, if a pattern is used


def assign_splits(rels: list[str], fractions: Iterable[tuple[str, float]]) -> list[str]:
    """Split sources (not samples) so no source leaks across splits.

    Sources are ranked by a hash of their relative path; the first ``round(n * train)``
    go to train, and so on (largest remainder, and every split with a non-zero fraction
    gets at least one source when there are enough). The ranking does not depend on the
    seed, so changing the seed re-draws defects but keeps the splits.
    """
    fr = [(s, f) for s, f in fractions]
    n = len(rels)
    exact = [f * n for _, f in fr]
    counts = [int(e) for e in exact]
    order = sorted(range(len(fr)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    wanted = [i for i, (_, f) in enumerate(fr) if f > 0]
    if n >= len(wanted):
        for i in wanted:
            if counts[i] == 0:
                donor = max(range(len(fr)), key=lambda j: (counts[j], -j))
                counts[donor] -= 1
                counts[i] += 1
    ranked = sorted(range(n), key=lambda k: hashlib.sha256(b"split:" + rels[k].encode()).digest())
    out = [""] * n
    pos = 0
    for (name, _), c in zip(fr, counts):
        for k in ranked[pos : pos + c]:
            out[k] = name
        pos += c
    return out


def samples_per_source(rels: list[str], total: int) -> list[int]:
    """``total`` samples spread evenly over the sources: ``total // n`` each, and one more
    for ``total % n`` of them, chosen by a hash of their relative path (not by the split
    ranking, so the extra ones fall in every split)."""
    n = len(rels)
    base, extra = divmod(total, n)
    ranked = sorted(range(n), key=lambda k: hashlib.sha256(b"samples:" + rels[k].encode()).digest())
    counts = [base] * n
    for k in ranked[:extra]:
        counts[k] += 1
    return counts


def is_negative(seed: int, sid: int, variant: int, fraction: float) -> bool:
    """Whether task (sid, variant) is a defect-free sample; its own random stream."""
    if fraction <= 0:
        return False
    if fraction >= 1:
        return True
    rng = np.random.default_rng(np.random.SeedSequence([seed, sid, variant, _NEGATIVE_STREAM]))
    return bool(rng.random() < fraction)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def output_names(rels: list[str]) -> list[str]:
    """File stems for the sources: the relative path without its extension, ``/`` -> ``__``,
    characters outside ``[A-Za-z0-9._-]`` -> ``_``. Where that changed the name or two
    sources would collide, a short hash of the relative path is appended."""
    flat: list[str] = []
    changed: list[bool] = []
    for rel in rels:
        stem = rel.rsplit(".", 1)[0] if "." in Path(rel).name else rel
        ascii_ = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
        name = _UNSAFE.sub("_", ascii_.replace("/", "__")).strip("._") or "image"
        flat.append(name)
        changed.append(name != stem)
    seen = Counter(flat)
    out = []
    for rel, name, ch in zip(rels, flat, changed):
        if ch or seen[name] > 1:
            name = f"{name}-{hashlib.sha256(rel.encode()).hexdigest()[:8]}"
        out.append(name)
    return out


@dataclass
class Plan:
    """The run's task list, derived from the recipe and the input folder."""

    recipe: Recipe
    sources: list[SourceImage]
    names: list[str]
    splits: list[str]
    ids: list[int]
    limit: int | None = None
    #: input folders left out because they hold a defectsynth dataset (Recipe.sources);
    #: the run's own output folder is left out too, without a mention
    skipped_folders: list[str] = field(default_factory=list)
    #: samples per source when the recipe gives ``samples`` (else ``variants`` each);
    #: task ``si * variants + v`` exists for ``v < counts[si]``
    counts: list[int] | None = None
    #: with quotas: the most tasks, taken in :meth:`quota_order`
    cap: int | None = None

    @classmethod
    def build(
        cls,
        recipe: Recipe,
        limit: int | None = None,
        exclude: Iterable[str | os.PathLike[str]] = (),
    ) -> Plan:
        """The plan; ``exclude``: folders never read as inputs (the run's output folder)."""
        skipped: list[str] = []
        exclude = list(exclude)
        sources = recipe.sources(exclude=exclude, skipped=skipped)
        # the run's own output folder goes unmentioned: a resumed run reports the same
        own = {os.path.realpath(p) for p in exclude}
        skipped = [d for d in skipped if os.path.realpath(d) not in own]
        rels = [s.rel for s in sources]
        counts = None
        cap = None
        if recipe.samples is not None and sources:
            counts = samples_per_source(rels, recipe.samples)
            recipe = replace(recipe, variants=max(counts))
        if recipe.quotas and sources:
            cap = recipe.quota_cap
            recipe = replace(recipe, variants=-(-cap // len(sources)))
        return cls(
            recipe=recipe,
            sources=sources,
            names=output_names(rels),
            splits=assign_splits(rels, recipe.split),
            ids=[source_id(r) for r in rels],
            limit=limit,
            skipped_folders=skipped,
            counts=counts,
            cap=cap,
        )

    def count(self, si: int) -> int:
        """Samples of source ``si``."""
        return self.counts[si] if self.counts is not None else self.recipe.variants

    def quota_order(self) -> Iterator[int]:
        """With quotas, the task order whose shortest prefix meeting them is the dataset:
        variant 0 of every source (sorted), then variant 1, ..., ``cap`` tasks in all, so
        any prefix is spread over the sources."""
        n = len(self.sources)
        for k in range(self.cap or 0):
            v, si = divmod(k, n)
            yield si * self.recipe.variants + v

    def position(self, index: int) -> int:
        """Where task ``index`` comes in :meth:`quota_order`."""
        si, v = divmod(index, self.recipe.variants)
        return v * len(self.sources) + si

    @property
    def total(self) -> int:
        if self.cap is not None:
            return self.cap
        n = sum(self.count(i) for i in range(len(self.sources)))
        return n if self.limit is None else min(n, self.limit)

    def limited(self) -> list[int] | None:
        """The task indices a ``limit`` keeps, sorted; None without a limit (every task).

        A limit is cut from every split in proportion to its share of the tasks (largest
        remainder; each split with tasks keeps at least one when the limit allows), and
        within a split spread over its sources (variant 0 of each, then variant 1, ...), so
        a quick look has every split and as many sources as it can. Only ``limit`` indices
        are ever listed, however many tasks the recipe has.
        """
        variants = self.recipe.variants
        n_all = (
            sum(self.counts) if self.counts is not None else len(self.sources) * variants
        )
        if self.limit is None or self.limit >= n_all:
            if self.counts is None:
                return None
            return [si * variants + v for si, c in enumerate(self.counts) for v in range(c)]
        members: dict[str, list[int]] = {}
        for si, split in enumerate(self.splits):
            members.setdefault(split, []).append(si)
        names = [s for s in self.recipe.splits if s in members]
        names += [s for s in members if s not in names]
        sizes = [sum(self.count(si) for si in members[s]) for s in names]
        exact = [self.limit * z / n_all for z in sizes]
        counts = [int(e) for e in exact]
        order = sorted(range(len(names)), key=lambda i: (-(exact[i] - counts[i]), i))
        for i in order[: self.limit - sum(counts)]:
            counts[i] += 1
        if self.limit >= len(names):
            for i in range(len(names)):
                if counts[i] == 0:
                    donor = max(range(len(names)), key=lambda j: (counts[j], -j))
                    counts[donor] -= 1
                    counts[i] += 1
        chosen: list[int] = []
        for name, k in zip(names, counts):
            srcs = members[name]
            if self.counts is None:
                for j in range(k):
                    v, pos = divmod(j, len(srcs))
                    chosen.append(srcs[pos] * variants + v)
                continue
            walk = (
                si * variants + v for v in range(variants) for si in srcs if v < self.count(si)
            )
            chosen.extend(next(walk) for _ in range(k))
        return sorted(chosen)

    def task(self, index: int) -> Task:
        r = self.recipe
        si, v = divmod(index, r.variants)
        src = self.sources[si]
        mask = r.mask_path(src)
        return Task(
            index=index,
            source=src.path,
            rel=src.rel,
            name=f"{self.names[si]}_{v:03d}",
            split=self.splits[si],
            variant=v,
            negative=is_negative(r.seed, self.ids[si], v, r.negatives),
            mask=str(mask) if mask is not None else None,
        )

    def indices(self) -> Iterable[int]:
        """The task indices of the run, in order (see :meth:`limited`, :meth:`quota_order`)."""
        if self.cap is not None:
            return self.quota_order()
        chosen = self.limited()
        return range(self.total) if chosen is None else chosen

    def tasks(self, skip: set[int] | frozenset[int] = frozenset()) -> Iterator[Task]:
        """Tasks in order, lazily, without those in ``skip``."""
        for i in self.indices():
            if i not in skip:
                yield self.task(i)



def shown_path(path: str, base: str) -> str:
    """``path`` as a user reads it: relative to ``base`` (the recipe's folder) if it can be."""
    try:
        return Path(os.path.relpath(path, base)).as_posix()
    except ValueError:
        return path
