"""The fixed clock the web and CLI tests start programs with (`tests/faketime.py`).

CI failed when those programs were started through the `faketime` wrapper: a wrapper stopped
by a signal leaves its pid-named semaphore in /dev/shm, and a later wrapper given the same pid
exits with "faketime: sem_open: File exists" before running anything. Started with
libfaketime preloaded, a program runs whatever /dev/shm holds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import faketime

SHM = Path("/dev/shm")
# The child runs under libfaketime: the clock it prints is the one given to it.
PRINT_NOW = "import datetime; print(datetime.datetime.now().isoformat())"  # wall clock: faked


@pytest.fixture
def stale_semaphores() -> Iterator[None]:
    """Semaphores as stopped wrappers leave them, for the next few hundred pids."""
    if not SHM.is_dir():
        pytest.skip("no /dev/shm here")
    probe = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    start = int(probe.stdout)
    made = []
    for pid in range(start + 1, start + 400):
        for name in (f"sem.faketime_sem_{pid}", f"faketime_shm_{pid}"):
            path = SHM / name
            if not path.exists():
                path.write_bytes(b"\0" * 32)
                made.append(path)
    yield
    for path in made:
        path.unlink(missing_ok=True)


def test_a_program_started_at_an_instant_reads_that_instant(stale_semaphores: None) -> None:
    env = faketime.environ("2027-07-14 07:00:00", {**os.environ, "TZ": "UTC"})
    out = subprocess.run(
        [sys.executable, "-c", PRINT_NOW], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("2027-07-14T07:00:0")
