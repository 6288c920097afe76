"""Stopping the `mailmanager` processes that tests and benchmarks start."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterable
from typing import Any


def terminate(procs: Iterable[subprocess.Popen[Any]], timeout: float = 15) -> float:
    """SIGTERM every process still running, wait up to `timeout` s for each, kill the ones
    that did not stop; the seconds from the signal until all had exited (a clean stop
    must be quick: callers assert on it)."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    sent = time.monotonic()  # wall clock: how long the processes took to stop
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return time.monotonic() - sent  # wall clock: see above
