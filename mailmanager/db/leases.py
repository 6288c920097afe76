"""Who holds a lease on a row, and whether that holder is still alive.

A worker takes a lease on a row (a mailbox to sync, an outbox email to send) by writing its
owner string and an expiry into the row. The owner string starts with "host:pid": the sync
engine writes `WORKER_ID` itself, the outbox adds a nonce per flush ("host:pid:nonce").
An expired lease is free to take. A lease whose holder ran on this host and no longer exists
(a worker killed with -9) is free at once, so it does not block its row until it expires;
`owner_is_dead` tells. A holder on another host is never judged dead: only expiry frees it.
"""

from __future__ import annotations

import os
import socket

HOST = socket.gethostname()
WORKER_ID = f"{HOST}:{os.getpid()}"  # this process, as the sync engine's lease owner


def owner_is_dead(owner: str | None) -> bool:
    """True when `owner` ("host:pid" or "host:pid:nonce") names a process of this host
    that no longer exists.

    False when the owner is empty, of another host, unreadable, this very process, or a
    process that exists (even one we may not signal: `kill` answers EPERM for it).
    """
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != HOST or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: only checks that the process exists (kill(2))
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
