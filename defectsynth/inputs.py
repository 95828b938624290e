"""Finding input images: one implementation for ``defectsynth generate`` (a recipe's
``inputs``) and :class:`~defectsynth.integrations.dataset.DefectDataset`.

A folder is searched recursively for files with an image extension; a glob uses ``**``
for any depth; hidden files and folders, symbolic links to folders, a run's output folder
and any folder holding a defectsynth dataset (``manifest.jsonl``) are skipped. A product
mask pattern names each image's mask by the fields of its path (:data:`MASK_FIELDS`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterator
from pathlib import Path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MASK_FIELDS = ("stem", "name", "ext", "parent", "relstem")
GLOB_CHARS = re.compile(r"[*?\[]")


def mask_fields(rel: str) -> dict[str, str]:
    """The values a product mask pattern may use for an image at POSIX path ``rel``
    (relative to the input root): ``{stem}``, ``{name}``, ``{ext}``, ``{parent}``,
    ``{relstem}``."""
    r = Path(rel)
    return {
        "stem": r.stem,
        "name": r.name,
        "ext": r.suffix.lstrip("."),
        "parent": r.parent.as_posix(),
        "relstem": r.with_suffix("").as_posix(),
    }


DATASET_MARKER = "manifest.jsonl"


def walk_files(
    root: Path, outputs: Collection[str] = (), skipped: list[str] | None = None
) -> Iterator[str]:
    """Files under ``root``, sorted, without hidden ones, without the folders in
    ``outputs`` (real paths) or holding a ``manifest.jsonl`` (each appended to ``skipped``)."""
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        if DATASET_MARKER in files or (outputs and os.path.realpath(dirpath) in outputs):
            dirs[:] = []
            if skipped is not None and dirpath not in skipped:
                skipped.append(dirpath)
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            if not f.startswith("."):
                yield os.path.join(dirpath, f)


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex for a POSIX glob relative path: ``**/`` any folders, ``*`` and ``?`` within
    one path part, ``[...]`` a character class."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def expand_input(
    path: Path, outputs: Collection[str] = (), skipped: list[str] | None = None
) -> tuple[Path, list[str]]:
    """A file, a folder (searched recursively for image files) or a glob (``**`` for any
    depth) -> (the folder paths are relative to, the files). Hidden files and folders are
    skipped, symbolic links to folders are not followed, and so are the folders in
    ``outputs`` and those holding a dataset (see :func:`walk_files`)."""
    text = path.as_posix()
    if not GLOB_CHARS.search(text):
        if path.is_file():
            return path.parent, [str(path)]
        if path.is_dir():
            files = [
                f
                for f in walk_files(path, outputs, skipped)
                if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
            ]
            return path, files
        return path, []
    parts = path.parts
    k = next(i for i, p in enumerate(parts) if GLOB_CHARS.search(p))
    root = Path(*parts[:k]) if k else Path(".")
    rx = glob_regex("/".join(parts[k:]))
    if not root.is_dir():
        return root, []
    files = [
        f
        for f in walk_files(root, outputs, skipped)
        if rx.match(Path(os.path.relpath(f, root)).as_posix())
    ]
    return root, files
