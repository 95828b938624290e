"""Dataset runs: recipe -> tasks -> backend -> manifest -> writers.

A task is one (source image, variant) pair; tasks are numbered in a fixed order (sources
sorted by their path relative to the input root, then variants), and everything about a
task (its split, whether it is a negative, its random stream) is a pure function of the
recipe, the seed and the source's relative path. A worker reads the source, runs the
synthesizer with ``SeedSequence([seed, source_id(rel), variant])``, writes the image and
its instance masks atomically and returns a JSON-able record. The driver appends each
record to ``manifest.jsonl`` (after the files exist) in task order, and at the end the
writers turn the manifest into their index files. ``--resume`` skips the tasks the
manifest holds; because every file depends only on the task or on the (sorted) manifest,
the result is byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from . import __version__
from .errors import GeneratorFailure, InputImageError, RunError, RunStopped
from .imagefile import (
    DEFAULT_MAX_PIXELS,
    UnexpectedInputError,
    read_image_file,
    read_mask_file,
    unexpected_input_error,
)
from .placement import resolve_product_mask
from .recipe import Recipe, SourceImage
from .sample import Annotation, Sample
from .synthesizer import source_id
from .writing import (
    TMP_MARK,
    WriteContext,
    atomic_write_bytes,
    atomic_write_text,
    remove_temp_files,
)

MANIFEST = "manifest.jsonl"
DATASET = "dataset.json"
REPORT = "report.json"
DATASET_FORMAT = 1
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


# -- the worker ------------------------------------------------------------------------------


def read_image(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, str]:
    """Decode an input image and its sha256 (see :mod:`defectsynth.imagefile`).

    The header is checked before decoding: the format must be PNG, JPEG, BMP, TIFF or WebP,
    the file complete, and its size at most ``max_pixels``. JPEGs are decoded with their
    EXIF orientation applied, so pixels and labels agree with what viewers show; other
    formats keep alpha and 16 bits. Raises InputImageError with the reason.
    """
    return read_image_file(path, max_pixels)


def read_product_mask(
    path: str, shape: tuple[int, int], shown: str, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    return read_mask_file(path, shape, shown, max_pixels)


def encode_image(image: np.ndarray, fmt: str, quality: int) -> bytes:
    if fmt == "jpg":
        img = image
        if img.dtype == np.uint16:
            img = (img >> 8).astype(np.uint8)
        if img.ndim == 3 and img.shape[2] == 4:
            img = np.ascontiguousarray(img[:, :, :3])
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    else:
        ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise RunError(f"OpenCV could not encode a {fmt} image of shape {image.shape}")
    return buf.tobytes()


def encode_mask(crop: np.ndarray, box: Any, shape: tuple[int, int]) -> bytes:
    """A full-size 1-bit PNG of an instance mask given by its crop (reads back as 0/255)."""
    x1, y1, x2, y2 = box
    full = np.zeros(shape, np.uint8)
    full[y1:y2, x1:x2] = crop.view(np.uint8) * np.uint8(255)
    ok, buf = cv2.imencode(".png", full, [cv2.IMWRITE_PNG_BILEVEL, 1])
    if not ok:
        raise RunError("OpenCV could not encode a mask")
    return buf.tobytes()


def crop_rle(crop: np.ndarray, box: Any, shape: tuple[int, int]) -> dict[str, Any]:
    """COCO uncompressed RLE of a full-size mask given by its crop and box; the same
    counts as ``rle.encode_rle(full_mask)`` at a cost proportional to the box's columns
    rather than the whole image."""
    h, w = shape
    x1, y1, x2, y2 = (int(v) for v in box)
    cols = np.zeros((h, x2 - x1), dtype=bool)
    cols[y1:y2] = crop
    flat = cols.ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate(([0], change, [flat.size]))
    counts = [int(c) for c in np.diff(edges)]
    if flat[0]:
        counts.insert(0, 0)
    counts[0] += x1 * h
    tail = (w - x2) * h
    if tail:
        if flat[-1]:
            counts.append(tail)
        else:
            counts[-1] += tail
    return {"size": [int(h), int(w)], "counts": counts}


def annotation_record(a: Annotation, mask_rel: str) -> dict[str, Any]:
    """The manifest form of an annotation (``Annotation.to_dict()`` plus the mask file)."""
    return {
        "category": a.category,
        "generator": a.generator,
        "generator_version": a.generator_version,
        "box": list(a.box),
        "area": a.area,
        "mask_rle": crop_rle(a.mask_crop, a.box, a.image_shape),
        "polygons": a.polygons,
        "params": a.params,
        "seed": a.seed,
        "visibility": round(float(a.visibility), 4),
        "center": list(a.center),
        "mask": mask_rel,
    }


def image_path(split: str, name: str, fmt: str) -> str:
    return f"images/{split}/{name}.{fmt}"


def mask_path(split: str, name: str, k: int) -> str:
    return f"masks/{split}/{name}_{k:02d}.png"


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs to build its TaskRunner (picklable)."""

    recipe: Recipe
    out_dir: str
    plugin_dirs: tuple[str, ...] = ()


class TaskRunner:
    """Turns a Task into written files and a manifest record (runs in a worker)."""

    def __init__(self, spec: WorkerSpec, host: Any = None) -> None:
        from .plugins import PluginHost

        if host is None:
            host = PluginHost(spec.plugin_dirs)
        self.spec = spec
        self.recipe = spec.recipe
        self.out = Path(spec.out_dir)
        self.synth = spec.recipe.synthesizer(host, on_failure="reject")
        self._cache: tuple[str, tuple[int, int, int], np.ndarray, str] | None = None
        self._mask_cache: tuple[str, tuple[int, ...], np.ndarray] | None = None

    @staticmethod
    def _signature(path: str) -> tuple[int, int, int]:
        try:
            st = os.stat(path)
            return st.st_size, st.st_mtime_ns, st.st_ino
        except OSError:
            return -1, -1, -1

    def read_mask(self, path: str, shape: tuple[int, int]) -> np.ndarray:
        """The decoded product mask of a source, kept like the source itself."""
        sig = (*self._signature(path), *shape)
        if self._mask_cache is not None and self._mask_cache[:2] == (path, sig):
            return self._mask_cache[2]
        shown = _shown_path(path, self.recipe.base_dir)
        mask = read_product_mask(path, shape, shown, self.recipe.inputs.max_pixels)
        mask.flags.writeable = False  # shared by the variants of a source
        self._mask_cache = (path, sig, mask)
        return mask

    def read(self, path: str) -> tuple[np.ndarray, str]:
        """The decoded source and its sha256; the last one is kept, since consecutive
        tasks are usually variants of the same source (the image is never modified)."""
        sig = self._signature(path)
        if self._cache is not None and self._cache[0] == path and self._cache[1] == sig:
            return self._cache[2], self._cache[3]
        image, sha = read_image(path, self.recipe.inputs.max_pixels)
        self._cache = (path, sig, image, sha)
        return image, sha

    def sample(self, task: Task) -> tuple[Sample, str]:
        """Read the task's source and synthesize its sample (nothing is written).

        Raises InputImageError (bad source) or GeneratorFailure (a plugin misbehaved).
        Anything else raised while the source is read, decoded, its product mask read or
        estimated, or its sample made is a bug somewhere below: it is raised as an
        :class:`~defectsynth.imagefile.UnexpectedInputError` (an InputImageError), so one
        bad file is skipped with that reason and never ends the run.
        Returns the sample and the sha256 of the source file.
        """
        r = self.recipe
        doing = "reading"
        try:
            image, sha = self.read(task.source)
            h, w = image.shape[:2]
            if min(h, w) < r.inputs.min_side:
                raise InputImageError(
                    f"is {w}x{h} px, smaller than inputs.min_side = {r.inputs.min_side}"
                )
            product: Any = None
            if task.mask is not None:
                doing = "reading the product mask"
                product = self.read_mask(task.mask, (h, w))
            elif not _whole_image(self.synth.product_mask):
                # estimated here rather than inside apply(), so that a failure of the
                # estimate is this source's, named as such (the same mask either way)
                doing = "estimating the product mask"
                colour = image[:, :, :3] if image.ndim == 3 and image.shape[2] == 4 else image
                product = resolve_product_mask(
                    self.synth.product_mask, np.ascontiguousarray(colour)
                )
            doing = "making its sample"
            sample = self.synth.apply(
                image,
                product_mask=product,
                seed=r.seed,
                source_id=source_id(task.rel),
                variant=task.variant,
                instances=0 if task.negative else None,
            )
        except (InputImageError, GeneratorFailure):
            raise
        except Exception as exc:  # the per-source boundary: see the docstring
            raise unexpected_input_error(exc, doing) from exc
        return sample, sha

    def __call__(self, task: Task) -> dict[str, Any]:
        r = self.recipe
        try:
            sample, sha = self.sample(task)
        except UnexpectedInputError as exc:
            return {
                "task": task.index,
                "source": task.rel,
                "skipped": str(exc),
                "traceback": exc.traceback_text,
            }
        except InputImageError as exc:
            return {"task": task.index, "source": task.rel, "skipped": str(exc)}
        except GeneratorFailure as exc:
            return {"task": task.index, "source": task.rel, "failed": str(exc)}
        calls = summarize_calls(sample.render_log)
        h, w = sample.image.shape[:2]
        fmt = r.output.image_format
        img_rel = image_path(task.split, task.name, fmt)
        anns = []
        generators: dict[str, str] = {}
        written: list[Path] = []
        rel = img_rel
        try:
            for k, a in enumerate(sample.annotations):
                rel = mask_path(task.split, task.name, k)
                data = encode_mask(a.mask_crop, a.box, a.image_shape)
                atomic_write_bytes(self.out / rel, data)
                written.append(self.out / rel)
                anns.append(annotation_record(a, rel))
                generators[a.generator] = a.generator_version
            rel = img_rel
            atomic_write_bytes(
                self.out / img_rel, encode_image(sample.image, fmt, r.output.jpg_quality)
            )
        except OSError as exc:
            # no half sample: the files written so far go too (the manifest never saw them)
            for done in written:
                with contextlib.suppress(OSError):
                    done.unlink()
            return {
                "task": task.index,
                "source": task.rel,
                "write_error": f"cannot write {rel}: {os_reason(exc)}",
                "errno": exc.errno,
                "calls": calls,
            }
        channels = 1 if sample.image.ndim == 2 else int(sample.image.shape[2])
        if fmt == "jpg":
            channels = min(channels, 3)
        return {
            "task": task.index,
            "record": {
                "task": task.index,
                "name": task.name,
                "split": task.split,
                "image": img_rel,
                "width": w,
                "height": h,
                "channels": channels,
                "source": task.rel,
                "source_sha256": sha,
                "source_id": source_id(task.rel),
                "seed": r.seed,
                "variant": task.variant,
                "negative": task.negative,
                "light": [round(v, 6) for v in sample.light],
                "generators": dict(sorted(generators.items())),
                "stats": dict(sample.stats),
                "annotations": anns,
            },
            "calls": calls,
        }


def summarize_calls(log: Iterable[tuple[str, str | None]]) -> dict[str, dict[str, Any]]:
    """A sample's generator calls, per generator, as the driver needs them to count
    failures in a row: failures before the first success (``lead``), whether any call
    succeeded (``ok``), failures after the last success (``trail``), the longest run of
    failures (``most``), all failures (``failed``) and the last error."""
    out: dict[str, dict[str, Any]] = {}
    for name, error in log:
        s = out.setdefault(
            name, {"lead": 0, "ok": False, "trail": 0, "most": 0, "failed": 0, "error": ""}
        )
        if error is None:
            s["ok"] = True
            s["trail"] = 0
            continue
        s["failed"] += 1
        s["error"] = error
        if not s["ok"]:
            s["lead"] += 1
        s["trail"] += 1
        s["most"] = max(s["most"], s["trail"])
    return out


def _whole_image(spec: Any) -> bool:
    return spec is None or (isinstance(spec, str) and spec == "full")


def _shown_path(path: str, base: str) -> str:
    try:
        return Path(os.path.relpath(path, base)).as_posix()
    except ValueError:
        return path


def make_runner(spec: WorkerSpec) -> TaskRunner:
    return TaskRunner(spec)


# -- manifest ---------------------------------------------------------------------------------


def dump_record(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def read_manifest(out_dir: Path, repair: bool = False) -> list[int]:
    """Task indices in ``manifest.jsonl``, in file order. A torn last line (a run killed,
    or still busy, while appending) is ignored, and cut off when ``repair`` is set; a bad
    line elsewhere is an error. The file is read in one go, so a reader watching a live
    run sees a consistent snapshot rather than a line that grows while it is parsed."""
    path = out_dir / MANIFEST
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    tasks: list[int] = []
    for number, line in enumerate(lines, 1):
        try:
            tasks.append(int(json.loads(line)["task"]))
        except (ValueError, KeyError, TypeError):
            raise RunError(f"{path}: line {number} is not a valid record") from None
    if tail and repair:
        with open(path, "r+b") as fh:
            fh.truncate(len(data) - len(tail))
    return tasks


def iter_records(out_dir: Path) -> Iterator[dict[str, Any]]:
    """Manifest records in file order, one at a time."""
    path = out_dir / MANIFEST
    if not path.exists():
        return
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.endswith("\n"):
                yield json.loads(line)


def normalize_manifest(out_dir: Path) -> None:
    """Make the manifest sorted by task with one line per task (a no-op after an ordered
    run; needed after a backend that appends in completion order)."""
    path = out_dir / MANIFEST
    tasks = read_manifest(out_dir, repair=True)
    if all(a < b for a, b in zip(tasks, tasks[1:])):
        return
    lines: dict[int, str] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            lines.setdefault(int(json.loads(line)["task"]), line)
    atomic_write_text(path, "".join(lines[k] for k in sorted(lines)))


# -- stopping cleanly ---------------------------------------------------------------------------


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by SIGINT (Ctrl-C) or SIGTERM after the samples in flight were written
    and recorded: every sample in the manifest is complete, and ``--resume`` finishes the
    dataset. A second signal stops at once (still safe: ``--resume`` redoes what was not
    recorded)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


class _Stop:
    """Why the run stops early; the first error wins. Once set, no new task starts."""

    def __init__(self) -> None:
        self.error: RunError | None = None
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.error is not None or self.signum is not None

    def fail(self, error: RunError) -> None:
        if self.error is None:
            self.error = error


def _until_stopped(tasks: Iterable[Task], stop: _Stop) -> Iterator[Task]:
    """The tasks, until a stop is requested: backends consume tasks lazily, so the ones
    already handed out finish and are recorded, and no new one starts."""
    for task in tasks:
        if stop.requested:
            return
        yield task


@contextlib.contextmanager
def _graceful_signals(stop: _Stop) -> Iterator[None]:
    """SIGINT and SIGTERM request a stop after the samples in flight; a second one raises
    KeyboardInterrupt at once. Only in the main thread, and not where the signal is
    ignored (a background job)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.signum is not None:
            raise KeyboardInterrupt
        stop.signum = signum

    old: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        current = signal.getsignal(sig)
        if current is signal.SIG_IGN:
            continue
        old[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for signum, previous in old.items():
            signal.signal(signum, previous)


@contextlib.contextmanager
def _worker_deaths(stop: _Stop, out: Path) -> Iterator[None]:
    """A worker process killed from outside (the OOM killer, a signal meant for it) breaks
    a process pool. After a requested stop that is just the stop; else a RunError that
    says so. Either way the manifest holds only complete samples."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        yield
    except BrokenProcessPool:
        if stop.signum is not None or stop.error is not None:
            return
        raise RunError(
            "a worker process died abruptly (killed by a signal or the out-of-memory "
            f"killer?); the samples in {out / MANIFEST} are complete. Finish with --resume "
            "(fewer --workers if memory is short)"
        ) from None


def os_reason(exc: OSError) -> str:
    """``No space left on device (ENOSPC)``: the system's text and the errno name."""
    name = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or str(exc)
    return f"{text} ({name})" if name else text


def _stopped(what: str, err: Any) -> RunStopped:
    cause = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is used up",
        errno.EROFS: "the output file system is read-only",
    }.get(err if isinstance(err, int) else -1, "a file could not be written")
    return RunStopped(f"{cause}: {what}")


def _shown_file(name: Any, out: Path) -> str:
    """A file an OSError names, relative to the dataset, without the temporary mark."""
    if not name:
        return "a file"
    p = Path(os.fsdecode(name))
    if TMP_MARK in p.name:
        p = p.with_name(p.name.split(TMP_MARK)[0].lstrip("."))
    with contextlib.suppress(ValueError):
        return p.relative_to(out.absolute()).as_posix()
    return str(p)


def _append(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _discard_files(out: Path, record: dict[str, Any]) -> None:
    for rel in [record["image"], *(a["mask"] for a in record["annotations"])]:
        with contextlib.suppress(OSError):
            (out / rel).unlink()


def _labels_of(synth: Any) -> dict[str, list[str]]:
    """generator name -> the categories its entries label."""
    labels: dict[str, list[str]] = {}
    for p in getattr(synth, "_prepared", ()):
        names = labels.setdefault(type(p.generator).name, [])
        for label in p.labels.values():
            if label not in names:
                names.append(label)
    return labels


class _FailureWatch:
    """Counts each generator's failed calls in a row, in task order (so the stop point does
    not depend on the backend or the worker count)."""

    def __init__(self, limit: int, categories: dict[str, list[str]]) -> None:
        self.limit = limit
        self.categories = categories
        self.streak: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.last_error: dict[str, str] = {}

    def update(self, calls: dict[str, dict[str, Any]]) -> str | None:
        """Take one sample's call summary; return the stop message when a generator has
        now failed ``limit`` times in a row."""
        message = None
        for name, c in calls.items():
            if c["failed"]:
                self.failed[name] += int(c["failed"])
                self.last_error[name] = str(c["error"])
            if c["ok"]:
                peak = max(self.streak[name] + int(c["lead"]), int(c["most"]))
                self.streak[name] = int(c["trail"])
            else:
                self.streak[name] += int(c["failed"])
                peak = self.streak[name]
            if peak >= self.limit and message is None:
                cats = ", ".join(self.categories.get(name, [])) or name
                message = (
                    f"generator {name!r} failed {peak} times in a row "
                    f"(max_generator_failures = {self.limit}), so the run stopped rather "
                    f"than write a dataset without its category ({cats}). Last error: "
                    f"{self.last_error.get(name, '?')}. Fix or remove the plugin, then start "
                    "again with --overwrite"
                )
        return message

    def report(self) -> dict[str, dict[str, Any]]:
        return {
            name: {"rejected_instances": n, "last_error": self.last_error[name]}
            for name, n in sorted(self.failed.items())
            if n
        }


class _Quota:
    """Quotas kept in task order. Results may arrive in any order (dask) and beyond the
    point where the quotas are met (tasks in flight); the prefix grows only over
    contiguous positions of :meth:`Plan.quota_order`, so where it ends (``boundary``)
    depends on the tasks alone, never on the backend, the worker count or a resume."""

    def __init__(self, plan: Plan, quotas: Iterable[tuple[str, int]]) -> None:
        self.plan = plan
        self.want = dict(quotas)
        self.have: Counter[str] = Counter()
        self._waiting: dict[int, Counter[str]] = {}
        self._next = 0
        self.boundary: int | None = None  # the last position of the prefix
        #: skipped / failed results and generator-call summaries, by position: the
        #: report counts those inside the prefix only
        self.deferred: list[tuple[int, dict[str, Any]]] = []
        self.calls: list[tuple[int, dict[str, Any]]] = []

    @property
    def met(self) -> bool:
        return self.boundary is not None

    def add(self, index: int, categories: Iterable[str]) -> None:
        self._waiting[self.plan.position(index)] = Counter(categories)
        while self.boundary is None and self._next in self._waiting:
            self.have.update(self._waiting.pop(self._next))
            if all(self.have[c] >= n for c, n in self.want.items()):
                self.boundary = self._next
            self._next += 1

    def keeps(self, index: int) -> bool:
        return self.boundary is not None and self.plan.position(index) <= self.boundary

    def table(self) -> dict[str, dict[str, int]]:
        return {c: {"quota": n, "instances": self.have[c]} for c, n in self.want.items()}

    def shortfall(self) -> str:
        short = ", ".join(
            f"{c} {self.have[c]} of {n}" for c, n in self.want.items() if self.have[c] < n
        )
        return (
            f"the quotas cannot be met: after max_samples = {self.plan.total} samples the "
            f"run has {short}. A generator whose defects never pass the visibility gate "
            "on these images cannot fill its quota (check with defectsynth preview); "
            "raise max_samples, lower the quota or change the recipe, then start again "
            "with --overwrite"
        )


def _settle_quotas(out: Path, quota: _Quota, tally: _Tally, watch: _FailureWatch) -> None:
    """Keep the shortest prefix meeting the quotas: the manifest loses the records beyond
    it, and images/ and masks/ every file no kept record names (work done past the
    prefix, or left by a killed run). Skips, failures and generator failures are
    counted inside the prefix only."""
    if not quota.met:
        raise RunError(quota.shortfall())
    path = out / MANIFEST
    kept: list[str] = []
    names: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if quota.keeps(int(rec["task"])):
                kept.append(line)
                names.update([rec["image"], *(a["mask"] for a in rec["annotations"])])
    atomic_write_text(path, "".join(kept))
    for folder in ("images", "masks"):
        for f in sorted((out / folder).rglob("*")):
            if f.is_file() and f.relative_to(out).as_posix() not in names:
                f.unlink()
    for pos, result in sorted(quota.deferred, key=lambda x: x[0]):
        if quota.boundary is not None and pos <= quota.boundary:
            _tally_add(tally, result)
    for pos, calls in sorted(quota.calls, key=lambda x: x[0]):
        if quota.boundary is not None and pos <= quota.boundary:
            watch.update(calls)


def _tally_add(tally: _Tally, result: dict[str, Any]) -> None:
    if "skipped" in result:
        src = str(result["source"])
        tally.skipped.setdefault(src, str(result["skipped"]))
        if result.get("traceback"):
            tally.tracebacks.setdefault(src, str(result["traceback"]))
        tally.skipped_tasks[src] += 1
    else:
        tally.failed.append(
            {"task": result["task"], "source": result["source"], "error": result["failed"]}
        )


def _quota_of(plan: Plan, out: Path, limit: int | None) -> _Quota | None:
    """The run's quota keeper (None without quotas), given what the manifest holds."""
    if plan.cap is None:
        return None
    if limit is not None:
        raise RunError("--limit does not go with quotas; cap the run with max_samples")
    quota = _Quota(plan, plan.recipe.quotas)
    for rec in iter_records(out):
        quota.add(int(rec["task"]), (a["category"] for a in rec["annotations"]))
    return quota


def _quota_result(quota: _Quota, plan: Plan, result: dict[str, Any]) -> None:
    index = int(result["task"])
    pos = plan.position(index)
    if result.get("calls"):
        quota.calls.append((pos, result["calls"]))
    if "record" in result:
        quota.add(index, (a["category"] for a in result["record"]["annotations"]))
    elif "skipped" in result or "failed" in result:
        quota.deferred.append((pos, result))
        quota.add(index, ())


def _until_met(tasks: Iterable[Task], quota: _Quota | None) -> Iterator[Task]:
    """The tasks until the quotas are met (all of them without quotas)."""
    for task in tasks:
        if quota is not None and quota.met:
            return
        yield task


# -- the driver -------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What a run did; ``report`` is what ``report.json`` holds."""

    out_dir: Path
    report: dict[str, Any]
    new_samples: int = 0
    resumed: int = 0
    seconds: float = 0.0

    @property
    def samples(self) -> int:
        return int(self.report["samples"])


@dataclass
class _Tally:
    skipped: dict[str, str] = field(default_factory=dict)
    skipped_tasks: Counter[str] = field(default_factory=Counter)
    #: where an unexpected error came from, per source (report.json; a bug report)
    tracebacks: dict[str, str] = field(default_factory=dict)
    failed: list[dict[str, Any]] = field(default_factory=list)


def _is_empty_dir(p: Path) -> bool:
    return not p.exists() or (p.is_dir() and not any(c.name != LOCK for c in p.iterdir()))


LOCK = ".defectsynth.lock"


def _lock_owner(path: Path) -> tuple[int, str] | None:
    """(pid, host) written in a lock file, or None when it holds neither."""
    try:
        pid, host = path.read_text(encoding="utf-8").split()[:2]
        return int(pid), host
    except (OSError, ValueError):
        return None


def _alive(pid: int, host: str) -> bool:
    """Whether the lock's owner may still be running (a process on another machine is
    assumed to be)."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold ``OUT/.defectsynth.lock`` (the owner's pid and host) for the length of a run,
    so that a second run into the same folder fails with a clear message instead of both
    writing it. A lock whose process is gone (killed run) is stale and taken over."""
    path = out / LOCK
    try:
        if not out.exists():
            out.mkdir(parents=True)
        elif not out.is_dir():
            raise RunError(f"output {str(out)!r} exists and is not a folder")
        for _ in range(3):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner = _lock_owner(path)
                if owner is not None and _alive(*owner):
                    raise RunError(
                        f"another defectsynth run (pid {owner[0]} on {owner[1]}) is writing "
                        f"to {str(out)!r}; wait for it to finish, or stop it and finish "
                        "with --resume. If no run is going on, delete "
                        f"{str(path)!r}"
                    ) from None
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()  # stale: its run was killed
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(f"{os.getpid()} {socket.gethostname()}\n")
            break
        else:
            raise RunError(f"cannot take the lock {str(path)!r}; is another run starting?")
    except OSError as exc:
        raise RunError(
            f"cannot write to the output folder {str(out)!r}: {os_reason(exc)}"
        ) from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


def prepare_output(out: Path, *, resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise RunError("--resume and --overwrite exclude each other")
    if out.exists() and not out.is_dir():
        raise RunError(f"output {str(out)!r} exists and is not a folder")
    if _is_empty_dir(out) or resume:
        out.mkdir(parents=True, exist_ok=True)
        return
    if not overwrite:
        raise RunError(
            f"output folder {str(out)!r} is not empty; pass --resume to finish the dataset "
            "in it, or --overwrite to replace it"
        )
    if not ((out / DATASET).exists() or (out / MANIFEST).exists()):
        raise RunError(
            f"refusing to --overwrite {str(out)!r}: it is not empty and does not look like a "
            f"defectsynth dataset (no {DATASET} or {MANIFEST}); choose an empty folder"
        )
    for child in out.iterdir():
        if child.name == LOCK:
            continue  # this run's own
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def dataset_info(
    recipe: Recipe, host: Any, limit: int | None, categories: list[str]
) -> dict[str, Any]:
    def plugin_of(kind: str, name: str) -> dict[str, Any]:
        owner = host.provider(kind, name)
        cls = host.generator(name) if kind == "generator" else host.writer(name)
        source = None
        if owner is not None:
            source = owner.source if owner.source in ("builtin", "entry point") else "file"
        return {
            "name": name,
            "version": str(cls.version),
            "plugin": owner.name if owner else None,
            "plugin_version": owner.version if owner else None,
            "plugin_source": source,
        }

    gens = sorted({d.generator for d in recipe.defects})
    return {
        "defectsynth_version": __version__,
        "dataset_format": DATASET_FORMAT,
        "recipe_file": Path(recipe.file).name,
        "recipe": recipe.to_dict(),
        "limit": limit,
        "categories": categories,
        "splits": list(recipe.splits),
        "formats": list(recipe.output.formats),
        "image_format": recipe.output.image_format,
        "generators": [plugin_of("generator", g) for g in gens],
        "writers": [plugin_of("writer", w) for w in recipe.output.formats],
    }


_RUN_CONTROL = ("max_generator_failures",)


def _check_resume(out: Path, info: dict[str, Any]) -> None:
    path = out / DATASET
    if not path.exists():
        if (out / MANIFEST).exists():
            raise RunError(f"{path} is missing; cannot tell which recipe made this dataset")
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"{path} is unreadable ({exc}); use --overwrite to start again") from None
    # how many failures stop a run does not change a byte of the output
    before = {k: v for k, v in (old.get("recipe") or {}).items() if k not in _RUN_CONTROL}
    now = {k: v for k, v in info["recipe"].items() if k not in _RUN_CONTROL}
    if before != now:
        diff = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        raise RunError(
            f"cannot --resume {str(out)!r}: it was made from a different recipe or seed "
            f"(differs in: {', '.join(diff)}); use --overwrite or another output folder"
        )


def build_report(out: Path, plan: Plan, tally: _Tally, categories: list[str]) -> dict[str, Any]:
    samples = negatives = with_defects = 0
    inst: Counter[str] = Counter({c: 0 for c in categories})
    per_split: Counter[str] = Counter({s: 0 for s in plan.recipe.splits})
    dropped: Counter[str] = Counter({"visibility": 0, "overlap": 0, "no_room": 0})
    for rec in iter_records(out):
        samples += 1
        per_split[rec["split"]] += 1
        if rec["negative"]:
            negatives += 1
        if rec["annotations"]:
            with_defects += 1
        for a in rec["annotations"]:
            inst[a["category"]] += 1
        st = rec.get("stats", {})
        dropped["visibility"] += int(st.get("dropped_visibility", 0))
        dropped["overlap"] += int(st.get("dropped_overlap", 0))
        dropped["no_room"] += int(st.get("dropped_no_room", 0))
    return {
        "tasks": plan.total,
        "sources": len(plan.sources),
        "samples": samples,
        "samples_with_defects": with_defects,
        "negatives": negatives,
        "splits": dict(per_split),
        "instances": dict(inst),
        "dropped": dict(dropped),
        "skipped_sources": [
            {"source": s, "reason": tally.skipped[s], "tasks": tally.skipped_tasks[s]}
            | ({"traceback": tally.tracebacks[s]} if s in tally.tracebacks else {})
            for s in sorted(tally.skipped)
        ],
        "failed_tasks": sorted(tally.failed, key=lambda d: int(d["task"])),
    } | (
        {"skipped_input_folders": [_shown_path(d, plan.recipe.base_dir)
                                   for d in plan.skipped_folders]}
        if plan.skipped_folders else {}
    )


def finalize(
    out: Path, recipe: Recipe, host: Any, info: dict[str, Any], categories: list[str]
) -> None:
    """Write every format's files from the manifest (also used by resume and by backends)."""
    normalize_manifest(out)
    ctx = WriteContext(
        categories=tuple(categories),
        splits=recipe.splits,
        image_format=recipe.output.image_format,
        recipe=info["recipe"],
        version=__version__,
        source_root=str(recipe.input_root()),
    )
    for fmt in recipe.output.formats:
        writer = host.writer(fmt)()
        writer.write(out, iter_records(out), ctx)


def generate(
    recipe: Recipe,
    out_dir: str | os.PathLike[str],
    *,
    workers: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    limit: int | None = None,
    host: Any = None,
    backend: Any = None,
    progress: Callable[[int, int], Any] | None = None,
    extra_plugin_dirs: Iterable[str | os.PathLike[str]] = (),
) -> RunResult:
    """Write a labeled dataset for ``recipe`` into ``out_dir``.

    :param workers: processes for the local backend (default: the number of cores).
    :param resume: finish a dataset started with the same recipe and seed.
    :param overwrite: delete an existing dataset in ``out_dir`` first.
    :param limit: only ``limit`` tasks (source x variant), cut from every split in
        proportion and spread over the sources (:meth:`Plan.limited`).
    :param backend: a :class:`defectsynth.backends.Backend` (default: local).
    :param progress: called as ``progress(done_now, todo)`` after each task; return value
        ignored. ``todo`` is the number of tasks this call runs.
    :raises RunError: the output folder cannot be used (another run holds its lock,
        ``OUT/.defectsynth.lock``), or a generator failed
        ``recipe.max_generator_failures`` times in a row.
    :raises RunStopped: a file could not be written (disk full): the samples in the
        manifest are complete; ``resume=True`` finishes once the cause is fixed.
    :raises RunInterrupted: (a ``KeyboardInterrupt``) SIGINT or SIGTERM arrived; the
        samples in flight were finished and recorded first.

    With more than one worker the pool starts its processes from a fork server, which
    imports the calling script's main module: call ``generate`` under
    ``if __name__ == "__main__":`` in scripts, as with any ``multiprocessing`` code.
    """
    from .backends import local_backend
    from .plugins import PluginHost

    t0 = time.perf_counter()
    out = Path(out_dir)
    plugin_dirs = tuple(str(Path(d).absolute()) for d in extra_plugin_dirs) + tuple(
        str(p) for p in recipe.plugin_paths()
    )
    if host is None:
        host = PluginHost(plugin_dirs)
    synth = recipe.synthesizer(host)  # validates generators, params and formats
    categories = synth.categories
    for cat, _ in recipe.quotas:
        if cat not in categories:
            raise recipe.error(
                f"quotas.{cat}",
                f"no defect entry labels {cat!r}, so its quota could never be met; the "
                f"recipe's categories: {', '.join(categories)}",
            )
    plan = Plan.build(recipe, limit, exclude=[out])
    info = dataset_info(recipe, host, limit, categories)
    if resume and overwrite:
        raise RunError("--resume and --overwrite exclude each other")
    with output_lock(out):  # a second run into OUT fails here, clearly
        done: list[int] = []
        try:
            prepare_output(out, resume=resume, overwrite=overwrite)
            if resume:
                _check_resume(out, info)
                remove_temp_files(out)
                done = read_manifest(out, repair=True)
            atomic_write_text(out / DATASET, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
            fd = os.open(out / MANIFEST, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename and Path(exc.filename) != out else ""
            raise RunError(
                f"cannot write to the output folder {str(out)!r}{where}: {os_reason(exc)}"
            ) from None
        done_set = set(done)
        quota = _quota_of(plan, out, limit)
        chosen = plan.limited() if quota is None else None
        if quota is not None:
            todo = plan.total - len(done_set)
        elif chosen is None:
            todo = plan.total - sum(1 for i in done_set if i < plan.total)
        else:
            todo = sum(1 for i in chosen if i not in done_set)
        spec = WorkerSpec(recipe=recipe, out_dir=str(out.absolute()), plugin_dirs=plugin_dirs)
        if backend is None:
            backend = local_backend(
                workers, chunksize=max(1, min(plan.recipe.variants, 8))
            )
        if getattr(backend, "name", "") == "serial":
            runner = TaskRunner(spec, host=host)
            factory: Callable[[], Callable[[Task], dict[str, Any]]] = lambda: runner  # noqa: E731
        else:
            factory = partial(make_runner, spec)
        tally = _Tally()
        watch = _FailureWatch(recipe.max_generator_failures, categories=_labels_of(synth))
        stop = _Stop()
        new = 0
        try:
            manifest_size = os.fstat(fd).st_size
            tasks = _until_met(_until_stopped(plan.tasks(done_set), stop), quota)
            with _graceful_signals(stop), _worker_deaths(stop, out):
                for i, result in enumerate(backend.map(factory, tasks)):
                    if quota is not None:
                        _quota_result(quota, plan, result)
                    if "record" in result:
                        data = dump_record(result["record"]).encode("utf-8")
                        try:
                            _append(fd, data)
                            manifest_size += len(data)
                            new += 1
                        except OSError as exc:
                            # keep the manifest whole and the sample out of the dataset
                            with contextlib.suppress(OSError):
                                os.ftruncate(fd, manifest_size)
                            _discard_files(out, result["record"])
                            what = f"cannot append to {MANIFEST}: {os_reason(exc)}"
                            stop.fail(_stopped(what, exc.errno))
                    elif "write_error" in result:
                        stop.fail(_stopped(str(result["write_error"]), result.get("errno")))
                    elif quota is None:
                        _tally_add(tally, result)
                    stopper = watch.update(result.get("calls") or {})
                    if stopper is not None:
                        stop.fail(RunError(stopper))
                    if progress is not None:
                        progress(i + 1, todo)
        finally:
            os.close(fd)
        # a worker killed mid-write whose task a backend retried (dask) leaves temporary files
        for folder in ("images", "masks"):
            remove_temp_files(out / folder)
        if isinstance(stop.error, RunStopped):
            raise RunStopped(
                f"{stop.error}. The run stopped; the {len(done_set) + new} samples in {MANIFEST} "
                "are complete and nothing else was kept. Fix the cause (free some space), then "
                "finish with --resume"
            )
        if stop.error is not None:
            raise stop.error
        if stop.signum is not None:
            raise RunInterrupted(stop.signum)
        if quota is not None:
            watch = _FailureWatch(recipe.max_generator_failures, categories=_labels_of(synth))
            _settle_quotas(out, quota, tally, watch)
        try:
            finalize(out, recipe, host, info, categories)
            report = build_report(out, plan, tally, categories)
            report["generator_failures"] = watch.report()
            if quota is not None and quota.boundary is not None:
                report["tasks"] = quota.boundary + 1
                report["quotas"] = quota.table()
            atomic_write_text(out / REPORT, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        except OSError as exc:
            raise _stopped(
                f"cannot write the index files ({_shown_file(exc.filename, out)}): "
                f"{os_reason(exc)}. "
                f"Every sample in {MANIFEST} is complete; fix the cause (free some space), then "
                "write them with --resume",
                exc.errno,
            ) from None
        return RunResult(
            out_dir=out,
            report=report,
            new_samples=new,
            resumed=len(done_set),
            seconds=time.perf_counter() - t0,
        )


# -- preview ----------------------------------------------------------------------------------


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
    recipe: Recipe, n: int = 16, *, host: Any = None, cell: int = 384
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """A legend over a grid of ``n`` synthesized samples (nothing written): each tile
    shows the whole image with boxes in its category's colour, says whether it is a
    negative or had every instance dropped, and zooms into each instance before and
    after, labelled with its category (:mod:`defectsynth.report.preview`).

    Returns the 8-bit BGR sheet and the (source, reason) pairs of skipped sources and of
    rejected instances.
    """
    from .plugins import PluginHost
    from .report.preview import TileInput, assemble, category_colors, sample_tile

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
