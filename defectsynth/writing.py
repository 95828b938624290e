"""The writer contract: an output format, fed from the dataset's manifest records.

Writers never render. The run writes each sample's image and instance masks once
(``images/{split}/``, ``masks/{split}/``); a writer turns the manifest records (one per
written sample, in manifest order) into its own layout and index files. Because writers
read only records, a resumed or distributed run rewrites them byte-identically.

This module also holds the file helpers every writer uses: atomic writes (temporary name
in the same folder, then ``os.replace``) and hard links with a copy fallback.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

TMP_MARK = ".dstmp-"
"""Temporary files are named ``.{name}.dstmp-{pid}-{random}``; ``--resume`` deletes leftovers.
The random part keeps two writers of one file apart when they share a pid on different
machines of a cluster (a retried task whose first worker was only presumed dead)."""

if TYPE_CHECKING:  # (the records' type only: a writer loads nothing of the run)
    from .run.manifest import Record


@dataclass(frozen=True)
class WriteContext:
    """Dataset-wide facts a writer needs besides the records.

    :param categories: category names; a category's id is its index here (COCO adds 1,
        YOLO uses it as is), identical across splits and formats.
    :param splits: the split names in use, in order (``train``, ``val``, ``test``).
    :param image_format: ``png`` or ``jpg``: the extension of every written image.
    :param recipe: the normalized recipe (as in ``dataset.json``).
    :param version: the defectsynth version that wrote the dataset.
    :param source_root: the input folder the records' ``source`` paths are relative to.
    """

    categories: tuple[str, ...]
    splits: tuple[str, ...]
    image_format: str = "png"
    recipe: dict[str, Any] = field(default_factory=dict)
    version: str = ""
    #: the folder a record's ``source`` is relative to (absolute), for formats that use
    #: the clean sources themselves (the anomaly layout's train/good); "" when unknown
    source_root: str = ""

    def category_index(self, name: str) -> int:
        return self.categories.index(name)


class DatasetWriter:
    """Base class of every output format, built-in or third-party.

    Subclasses set ``name`` (what a recipe lists under ``output.formats``) and implement
    :meth:`write`. ``paths`` lists the files and folders the format owns, relative to the
    dataset folder (documentation and ``--overwrite`` clean-up).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    paths: ClassVar[tuple[str, ...]] = ()

    def write(
        self, out_dir: Path, records: Iterable[Record], context: WriteContext
    ) -> None:
        """Write this format's files under ``out_dir`` from the manifest ``records``.

        :param out_dir: the dataset folder.
        :param records: manifest records in manifest order; a one-pass iterator, so a
            writer keeps only what it needs (memory stays flat as datasets grow).
        :param context: dataset-wide facts (categories with stable ids, splits, recipe).

        Every file must be written atomically (:func:`atomic_writer`, :func:`atomic_write_bytes`)
        and its bytes must depend only on the records and the context, so that a resumed
        run is byte-identical to an uninterrupted one.
        """
        raise NotImplementedError


def validate_writer_class(cls: Any) -> None:
    if not (isinstance(cls, type) and issubclass(cls, DatasetWriter)):
        raise TypeError(f"{cls!r} is not a DatasetWriter subclass")
    if not isinstance(cls.name, str) or not cls.name:
        raise ValueError(f"{cls.__name__}.name must be a non-empty string")
    if cls.write is DatasetWriter.write:
        raise ValueError(f"{cls.__name__} does not implement write()")


# -- file helpers -------------------------------------------------------------------------


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name and ``os.replace``.

    A crash leaves either the old file, the new one, or a stray temporary file (removed
    by ``--resume``), never a half-written ``path``. No fsync: this protects against a
    killed process, not against power loss.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(p)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[IO[str]]:
    """A text stream (UTF-8, ``\\n`` newlines) that becomes ``path`` only when the block ends
    without an error."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(p)
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            yield fh
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def link_or_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Make ``dst`` the same file as ``src``: a hard link, or a copy where links fail
    (another file system, or one without links). Atomic; a no-op when already linked."""
    s, d = Path(src), Path(dst)
    d.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        if d.exists() and os.path.samefile(s, d):
            return
    tmp = _tmp_path(d)
    with contextlib.suppress(OSError):
        tmp.unlink()
    try:
        try:
            os.link(s, tmp)
        except OSError:
            shutil.copyfile(s, tmp)
        os.replace(tmp, d)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def remove_temp_files(root: str | os.PathLike[str]) -> int:
    """Delete temporary files left by a killed run under ``root``; return how many."""
    n = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if TMP_MARK in f and f.startswith("."):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(dirpath, f))
                    n += 1
    return n


# -- record helpers (the manifest record format is documented in docs/formats.md) ---------


def record_file_name(record: Record | Mapping[str, Any]) -> str:
    """The image's file name (``{name}.{ext}``)."""
    return Path(str(record["image"])).name
