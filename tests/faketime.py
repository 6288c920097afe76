"""Run a program whose clock starts at a fixed instant, with libfaketime loaded directly.

The `faketime` wrapper is not used. It creates a POSIX semaphore named after its own pid and
removes it only when it exits normally; a wrapper stopped by a signal (as a test stops a web
server) leaves it behind, and a later wrapper that gets the same pid fails with
"faketime: sem_open: File exists". That failed CI. `LD_PRELOAD` with `FAKETIME` needs no
semaphore: each process's clock starts at the instant when it starts, and then runs on.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping

import pytest

from tests.conftest import IN_CI

_PLACES = (
    "/usr/lib/*/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
    "/usr/lib64/faketime/libfaketime.so.1",
)


def library() -> str | None:
    """The path of libfaketime.so.1, or None when it is not installed."""
    for place in _PLACES:
        found = sorted(glob.glob(place))
        if found:
            return found[0]
    return None


def require() -> str:
    """libfaketime's path; fail in CI and skip elsewhere when it is not installed."""
    lib = library()
    if lib is None:
        if IN_CI:
            pytest.fail("libfaketime is required in CI (apt-get install faketime)")
        pytest.skip("libfaketime is not installed (apt-get install faketime)")
    return lib


def environ(start: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with the clock starting at `start`
    ("YYYY-MM-DD HH:MM:SS", read in the environment's TZ) in every program run with it."""
    env = dict(os.environ if base is None else base)
    lib = require()
    preload = env.get("LD_PRELOAD", "")
    env["LD_PRELOAD"] = f"{lib} {preload}".strip() if lib not in preload else preload
    env["FAKETIME"] = f"@{start}"
    env.pop("FAKETIME_SHARED", None)
    return env
