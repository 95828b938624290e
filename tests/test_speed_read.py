"""Reading a source reads the size stat gave (issue 19: asking for the size limit at
once made Python allocate it first), and still sees a file that grew meanwhile."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pytest


def test_read_file_bytes_reads_a_file_whole_and_one_that_grew(tmp_path: Path) -> None:
    from defectsynth.errors import InputImageError
    from defectsynth.imagefile import max_file_bytes, read_file_bytes

    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 1000)
    assert read_file_bytes(path, 10**6) == b"x" * 1000

    class Growing:  # stat said 1000 bytes; by the time it is read there are more
        def __init__(self, real: os.stat_result) -> None:
            self.real = real

        def __getattr__(self, name: str) -> object:
            return getattr(self.real, name)

    real_stat = os.stat(path)
    path.write_bytes(b"y" * 5000)
    with mock.patch("defectsynth.imagefile.os.stat", return_value=Growing(real_stat)):
        assert read_file_bytes(path, 10**6) == b"y" * 5000
        # and beyond the limit it is refused, as before
        limit = max_file_bytes(1)
        path.write_bytes(b"z" * (limit + 10))
        with pytest.raises(InputImageError, match="grew beyond"):
            read_file_bytes(path, 1)
