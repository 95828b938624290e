"""Preloaded into the worker processes of ``--dask-local`` (dask's ``preload`` hook).

Those workers share the terminal's process group, so Ctrl-C reaches them as well as the
driver. They ignore it, as the local pool's workers do: the driver stops handing out
chunks and waits for the ones in flight, so every sample they make is recorded and
``--resume`` has nothing to redo. Not meant for ``dask worker --preload`` on a real cluster,
where Ctrl-C should stop the worker.
"""

from __future__ import annotations

import signal
import threading
from typing import Any


def dask_setup(worker: Any) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
