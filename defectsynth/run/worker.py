"""The worker: one task in, its files on disk and a typed result out.

A :class:`TaskRunner` is built once per worker process (plugins loaded, synthesizer
configured) from a picklable :class:`RunnerFactory`; each call reads the task's source,
synthesizes its sample, writes the image and the instance masks atomically and returns
one of :data:`WorkerResult`: :class:`Made` (with the manifest :class:`Record`),
:class:`Skipped` (a bad source), :class:`Failed` (a plugin misbehaved) or
:class:`WriteFailed` (the disk). Results are small picklable dataclasses: a backend moves
them between processes or machines without looking inside.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import cv2
import numpy as np

from ..errors import GeneratorFailure, InputImageError, RunError
from ..imagefile import (
    DEFAULT_MAX_PIXELS,
    UnexpectedInputError,
    mask_png,
    read_image_file,
    read_mask_file,
    unexpected_input_error,
)
from ..placement import resolve_product_mask
from ..recipe import Recipe
from ..sample import Sample
from ..synthesizer import Synthesizer, source_id
from ..writing import atomic_write_bytes
from .manifest import DATASET, AnnotationRecord, Record, annotation_record, image_path, mask_path
from .plan import Task, shown_path
from .stopping import os_reason

if TYPE_CHECKING:
    from ..plugins import PluginHost


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
    """A full-size 1-bit PNG of an instance mask given by its crop (reads back as 0/255),
    written at the cost of the crop (:func:`defectsynth.imagefile.mask_png`)."""
    return mask_png(crop, box, shape, bits=1)


class CallStats(TypedDict):
    """One generator's calls within a sample (see :func:`summarize_calls`)."""

    lead: int  # failures before the first success
    ok: bool  # whether any call succeeded
    trail: int  # failures after the last success
    most: int  # the longest run of failures
    failed: int  # all failures
    error: str  # the last error


#: generator name -> its calls in one sample
Calls = dict[str, CallStats]


@dataclass(frozen=True)
class Made:
    """A sample written: its files exist, ``record`` is its manifest line."""

    task: int
    record: Record
    calls: Calls = field(default_factory=dict)


@dataclass(frozen=True)
class Skipped:
    """A bad source (unreadable, too small, ...): nothing written. ``traceback`` is set
    when the reason was an unexpected error (a bug below; report.json keeps it)."""

    task: int
    source: str
    reason: str
    traceback: str | None = None


@dataclass(frozen=True)
class Failed:
    """A generator plugin misbehaved in a way that fails the whole sample."""

    task: int
    source: str
    error: str


@dataclass(frozen=True)
class WriteFailed:
    """A file could not be written (disk full, ...): nothing of the sample was kept."""

    task: int
    source: str
    error: str
    errno: int | None
    calls: Calls = field(default_factory=dict)


WorkerResult = Made | Skipped | Failed | WriteFailed


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs to build its TaskRunner (picklable)."""

    recipe: Recipe
    out_dir: str
    plugin_dirs: tuple[str, ...] = ()


class RunnerFactory:
    """Builds a worker's :class:`TaskRunner` (the backends' ``make_worker``).

    Picklable: a backend ships it to its worker processes, which build their runner from
    the spec, loading the plugins afresh. In this process (an in-process backend) the
    driver's own plugin host is used, so plugins registered by hand (tests, notebooks)
    work there; it is not pickled.
    """

    def __init__(self, spec: WorkerSpec, host: PluginHost | None = None) -> None:
        self.spec = spec
        self.host = host

    @property
    def probe_file(self) -> str:
        """The file the driver writes into the output folder before any task starts: a
        worker that cannot see it writes where the driver never looks (a backend on
        other machines checks, :class:`defectsynth.backends.SharedOutput`)."""
        return os.path.join(self.spec.out_dir, DATASET)

    def __call__(self) -> TaskRunner:
        return TaskRunner(self.spec, host=self.host)

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "host": None}


class TaskRunner:
    """Turns a Task into written files and a manifest record (runs in a worker)."""

    def __init__(self, spec: WorkerSpec, host: PluginHost | None = None) -> None:
        from ..plugins import PluginHost

        if host is None:
            host = PluginHost(spec.plugin_dirs)
        self.spec = spec
        self.recipe = spec.recipe
        self.out = Path(spec.out_dir)
        self.synth = Synthesizer.from_recipe(spec.recipe, host, on_failure="reject")
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
        shown = shown_path(path, self.recipe.base_dir)
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

    def __call__(self, task: Task) -> WorkerResult:
        try:
            sample, sha = self.sample(task)
        except UnexpectedInputError as exc:
            return Skipped(task.index, task.rel, str(exc), exc.traceback_text)
        except InputImageError as exc:
            return Skipped(task.index, task.rel, str(exc))
        except GeneratorFailure as exc:
            return Failed(task.index, task.rel, str(exc))
        calls = summarize_calls(sample.render_log)
        try:
            anns, generators = self._write(task, sample)
        except _WriteError as exc:
            return WriteFailed(task.index, task.rel, exc.message, exc.errno, calls)
        return Made(task.index, self._record(task, sample, sha, anns, generators), calls)

    def _write(
        self, task: Task, sample: Sample
    ) -> tuple[list[AnnotationRecord], dict[str, str]]:
        """Write the instance masks, then the image; on an OSError none of them stays
        (the manifest never saw them): no half sample."""
        r = self.recipe
        fmt = r.output.image_format
        img_rel = image_path(task.split, task.name, fmt)
        anns: list[AnnotationRecord] = []
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
            for done in written:
                with contextlib.suppress(OSError):
                    done.unlink()
            raise _WriteError(f"cannot write {rel}: {os_reason(exc)}", exc.errno) from exc
        return anns, generators

    def _record(
        self,
        task: Task,
        sample: Sample,
        sha: str,
        anns: list[AnnotationRecord],
        generators: dict[str, str],
    ) -> Record:
        r = self.recipe
        fmt = r.output.image_format
        h, w = sample.image.shape[:2]
        channels = 1 if sample.image.ndim == 2 else int(sample.image.shape[2])
        if fmt == "jpg":
            channels = min(channels, 3)
        return {
            "task": task.index,
            "name": task.name,
            "split": task.split,
            "image": image_path(task.split, task.name, fmt),
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
        }


class _WriteError(Exception):
    def __init__(self, message: str, errno: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.errno = errno


def summarize_calls(log: Iterable[tuple[str, str | None]]) -> Calls:
    """A sample's generator calls, per generator, as the driver needs them to count
    failures in a row (:class:`CallStats`)."""
    out: Calls = {}
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


def make_runner(spec: WorkerSpec) -> TaskRunner:
    return TaskRunner(spec)
