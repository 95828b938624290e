"""The output folder: its lock, and what ``--overwrite`` and ``--resume`` may do with it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

from ..errors import RunError
from .manifest import (
    DATASET,
    MANIFEST,
)
from .stopping import (
    os_reason,
)


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

