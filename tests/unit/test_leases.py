"""Lease owners: the sync engine's "host:pid" and the outbox's "host:pid:nonce" read alike."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mailmanager.db import leases


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_worker_id_is_this_host_and_process() -> None:
    assert f"{leases.HOST}:{os.getpid()}" == leases.WORKER_ID
    assert not leases.owner_is_dead(leases.WORKER_ID)


@pytest.mark.parametrize("suffix", ["", ":deadbeef"])
def test_a_gone_process_of_this_host_is_dead_in_both_forms(suffix: str) -> None:
    assert leases.owner_is_dead(f"{leases.HOST}:{_dead_pid()}{suffix}")


@pytest.mark.parametrize(
    "owner",
    [
        None,
        "",
        "elsewhere.example:{dead}",  # another host: only the lease's expiry frees it
        "{host}:1",  # pid 1 exists (we may not be allowed to signal it: EPERM)
        "{host}:{me}:nonce",
        "{host}:not-a-pid",
        "{host}",
    ],
)
def test_owners_that_are_not_dead(owner: str | None) -> None:
    if owner is not None:
        owner = owner.format(host=leases.HOST, me=os.getpid(), dead=_dead_pid())
    assert not leases.owner_is_dead(owner)
