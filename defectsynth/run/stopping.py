"""Stopping a run cleanly: a signal, a full disk or a dead worker process.

Whatever stops a run, the samples in the manifest are complete and ``--resume``
finishes the dataset.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import RunError, RunStopped
from ..writing import TMP_MARK
from .manifest import (
    MANIFEST,
)
from .plan import Task

# -- stopping cleanly ---------------------------------------------------------------------------


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by SIGINT (Ctrl-C) or SIGTERM after the samples in flight were written
    and recorded: every sample in the manifest is complete, and ``--resume`` finishes the
    dataset. A second signal stops at once (still safe: ``--resume`` redoes what was not
    recorded)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


class Stop:
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


def until_stopped(tasks: Iterable[Task], stop: Stop) -> Iterator[Task]:
    """The tasks, until a stop is requested: backends consume tasks lazily, so the ones
    already handed out finish and are recorded, and no new one starts."""
    for task in tasks:
        if stop.requested:
            return
        yield task


@contextlib.contextmanager
def graceful_signals(stop: Stop) -> Iterator[None]:
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
def worker_deaths(stop: Stop, out: Path) -> Iterator[None]:
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


def stopped_error(what: str, err: Any) -> RunStopped:
    cause = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is used up",
        errno.EROFS: "the output file system is read-only",
    }.get(err if isinstance(err, int) else -1, "a file could not be written")
    return RunStopped(f"{cause}: {what}")


def shown_file(name: Any, out: Path) -> str:
    """A file an OSError names, relative to the dataset, without the temporary mark."""
    if not name:
        return "a file"
    p = Path(os.fsdecode(name))
    if TMP_MARK in p.name:
        p = p.with_name(p.name.split(TMP_MARK)[0].lstrip("."))
    with contextlib.suppress(ValueError):
        return p.relative_to(out.absolute()).as_posix()
    return str(p)


