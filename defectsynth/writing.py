"""The writer contract: an output format, fed from the dataset's manifest records.

Writers never render. The run writes each sample's image and instance masks once; a
writer turns the manifest records (one per written sample) into its own layout and
index files. Because writers read only records, a resumed or distributed run rewrites
them byte-identically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar


class DatasetWriter:
    """Base class of every output format, built-in or third-party.

    Subclasses set ``name`` (what a recipe lists under ``output.formats``) and implement
    :meth:`write`.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    version: ClassVar[str] = "1"

    def write(
        self, out_dir: Path, records: Sequence[dict[str, Any]], context: dict[str, Any]
    ) -> None:
        """Write this format's files under ``out_dir`` from the manifest ``records``.

        :param out_dir: the dataset folder.
        :param records: manifest records, in manifest order.
        :param context: dataset-wide facts (categories with stable ids, splits, recipe).
        """
        raise NotImplementedError


def validate_writer_class(cls: Any) -> None:
    if not (isinstance(cls, type) and issubclass(cls, DatasetWriter)):
        raise TypeError(f"{cls!r} is not a DatasetWriter subclass")
    if not isinstance(cls.name, str) or not cls.name:
        raise ValueError(f"{cls.__name__}.name must be a non-empty string")
    if cls.write is DatasetWriter.write:
        raise ValueError(f"{cls.__name__} does not implement write()")
