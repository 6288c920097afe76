"""Hygiene for a forked child of a sync (the fetch worker, `fetching`): it dies with its
parent and never holds the parent's connections.

A `kill -9` of a worker must not leave its fetch child alive, holding the worker's
PostgreSQL transaction ("idle in transaction") and IMAP connections through the sockets it
inherited: `die_with` makes the kernel kill the child with its parent, and
`drop_inherited_sockets` points the inherited sockets at /dev/null so that the parent's
connections close at the server when the parent goes, child or no child.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import stat
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with(parent: int) -> None:
    """End this process when `parent` ends: PR_SET_PDEATHSIG on Linux (the kernel's
    SIGKILL when the forking thread exits), else a thread polling the parent pid."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent:  # the parent died before the prctl took effect
                os._exit(1)
            return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def drop_inherited_sockets(keep: int) -> None:
    """Point every socket this process inherited (but fd `keep` and stdio) at /dev/null:
    the parent's database and IMAP connections stay the parent's alone, and close at the
    server when it dies. The descriptor numbers stay taken, so the objects still naming
    them (never used here) cannot close a descriptor this process opens later."""
    fd_dir = "/proc/self/fd"
    if not os.path.isdir(fd_dir):
        return
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for name in os.listdir(fd_dir):
            fd = int(name)
            if fd <= 2 or fd in (keep, null):
                continue
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.fstat(fd).st_mode):
                    os.dup2(null, fd)
    finally:
        os.close(null)
