"""Who holds a lease on a row, and whether that holder is still alive.

A worker takes a lease on a row (a mailbox to sync, an outbox email to send) by writing its
owner string and an expiry into the row. The owner string is "host:pid:nonce" (`new_owner`,
one per sync or flush): the holder renews and releases its lease only where the row still
names it (compare-and-set), so a stalled worker never clears or takes back a successor's.
An expired lease is free to take. A lease whose holder ran on this host and no longer exists
(a worker killed with -9) is free at once, so it does not block its row until it expires;
`owner_is_dead` tells. A holder on another host is never judged dead: only expiry frees it.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager.db import models
from mailmanager.errors import MailmanagerError

HOST = socket.gethostname()
WORKER_ID = f"{HOST}:{os.getpid()}"  # this process: sync runs record it


def new_owner() -> str:
    """A lease owner string for one holding ("host:pid:nonce"): two syncs of this process
    (or a stalled one and its successor) never mistake each other's lease for their own."""
    return f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


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


# --- the mailbox sync lease -------------------------------------------------------------------

SYNC_LEASE = timedelta(minutes=10)  # renewed at every batch


class LeaseLostError(MailmanagerError):
    """Raised in a sync whose lease another worker took over (this one stalled past its
    expiry): the batch in hand is rolled back and the sync stops."""


def _table(model: type[models.Base]) -> sa.Table:
    t = model.__table__
    assert isinstance(t, sa.Table)
    return t


def take_sync_lease(
    session: Session, mailbox_id: int, now: datetime, owner: str, takeover: bool = False
) -> bool:
    """Take the mailbox's sync lease for `owner` with one atomic UPDATE; False if held.

    Free: no holder, an expired lease, a holder of this host that is dead, or any holder
    with `takeover`."""
    t = _table(models.Mailbox)
    holder = session.execute(sa.select(t.c.lease_owner).where(t.c.id == mailbox_id)).scalar()
    free = [t.c.lease_until.is_(None), t.c.lease_until < now, t.c.lease_owner == owner]
    if takeover:
        free.append(sa.true())
    if holder and owner_is_dead(holder):
        free.append(t.c.lease_owner == holder)
    res = session.execute(
        sa.update(t)
        .where(t.c.id == mailbox_id, sa.or_(*free))
        .values(lease_owner=owner, lease_until=now + SYNC_LEASE)
    )
    return bool(res.rowcount)  # type: ignore[attr-defined]


def renew_sync_lease(session: Session, mailbox_id: int, now: datetime, owner: str) -> None:
    """Extend the lease `owner` holds (compare-and-set); LeaseLostError when it no longer
    holds it."""
    t = _table(models.Mailbox)
    res = session.execute(
        sa.update(t)
        .where(t.c.id == mailbox_id, t.c.lease_owner == owner)
        .values(lease_until=now + SYNC_LEASE)
    )
    if not res.rowcount:  # type: ignore[attr-defined]
        raise LeaseLostError("another worker took over this mailbox's sync lease")


def release_sync_lease(session: Session, mailbox_id: int, owner: str) -> bool:
    """Clear the lease only if `owner` still holds it; True when it did."""
    t = _table(models.Mailbox)
    res = session.execute(
        sa.update(t)
        .where(t.c.id == mailbox_id, t.c.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
    )
    return bool(res.rowcount)  # type: ignore[attr-defined]


def abandon_runs(session: Session, mailbox_id: int, now: datetime) -> None:
    """Close the runs still "running" for the mailbox whose lease was just taken: their
    worker died or lost the lease, so they will never finish."""
    t = _table(models.SyncRun)
    session.execute(
        sa.update(t)
        .where(t.c.mailbox_id == mailbox_id, t.c.status == "running")
        .values(status="abandoned", finished_at=now)
    )
