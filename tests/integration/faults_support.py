"""Shared by the fault suite (`test_faults.py`): the worker processes of a cluster, the SMTP
sink that delivers into Dovecot, and the invariants checked at the end of each scenario."""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import procrastinate
import sqlalchemy as sa
from procrastinate import exceptions as pq_exceptions

from mailmanager.db import models
from mailmanager.notify import outbox
from mailmanager.testing import processes
from mailmanager.testing.dovecot import PASSWORD, DovecotServer
from mailmanager.workers import tasks
from tests.conftest import REPO
from tests.integration.notify_support import Sink
from tests.mailgen import day, make

CLIENT = "Jean Dupont <jean.dupont@acme-industrie.fr>"

Run = tuple[str, str, datetime, datetime | None, str | None]


class ForwardingSink(Sink):
    """The SMTP sink, delivering each accepted message into the recipient's Maildir (the
    recipient's local part is a Dovecot user). `received` is shared across restarts."""

    def __init__(self, server: DovecotServer, port: int, received: list[Any]) -> None:
        super().__init__(port=port)
        self.server = server
        self.received = received

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        data = bytes(envelope.original_content or envelope.content)
        for rcpt in envelope.rcpt_tos:
            self.server.write_maildir(rcpt.partition("@")[0], [data])
        return reply


class Cluster:
    """The workers (`mailmanager run` in their own process groups) and what was delivered."""

    def __init__(self, cfg_path: Path, logs: Path, server: DovecotServer, url: str) -> None:
        self.cfg_path, self.logs, self.server = cfg_path, logs, server
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        self.workers: list[subprocess.Popen[bytes]] = []
        self.pgids: set[int] = set()
        self.files: list[TextIO] = []
        self.expected: dict[str, set[str]] = collections.defaultdict(set)
        self.serial = itertools.count()

    def start(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.logs / f"worker{len(self.files)}.log").open("w")
        self.files.append(log)
        argv = [sys.executable, "-m", "mailmanager", "-c", str(self.cfg_path), "run"]
        environ = {**os.environ, "MM_IMAP_PASSWORD": PASSWORD}
        environ.pop(outbox.PAUSE_ENV, None)
        environ.update(env or {})
        proc = subprocess.Popen(
            argv, cwd=REPO, stdout=log, stderr=log, env=environ, start_new_session=True
        )
        self.workers.append(proc)
        self.pgids.add(proc.pid)
        return proc

    def kick(self, task: str) -> None:
        """Defer the periodic task `task` (`tasks.SYNC_TICK`, "mailmanager.outbox") now, as
        its cron would at its next tick, with the same queueing lock: the test waits for
        what it provokes, not for the clock. A tick already queued is enough."""
        app = procrastinate.App(
            connector=procrastinate.SyncPsycopgConnector(conninfo=tasks.conninfo(self.engine))
        )
        with app.open(), contextlib.suppress(pq_exceptions.AlreadyEnqueued):
            app.configure_task(name=task, queueing_lock=task).defer(
                timestamp=int(time.time())  # wall clock: the tick's stamp, as the cron's
            )

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [w for w in self.workers if w.poll() is None]

    def terminate(self) -> float:
        """SIGTERM to every live worker; the seconds until all had exited (or 15 s each)."""
        return processes.terminate(self.workers)

    def deliver(self, users: list[str], count: int, via_lmtp: bool = False) -> None:
        """`count` new messages to each of `users` (one message to all of them)."""
        for _ in range(count):
            n = next(self.serial)
            msgid = f"m{n}@acme-industrie.fr"
            raw = make(CLIENT, f"{users[0]}@example.com", f"Commande {n}", msgid=msgid, at=day(n))
            for user in users:
                if via_lmtp:
                    self.server.deliver(user, raw)
                else:
                    self.server.write_maildir(user, [raw])
                self.expected[msgid].add(user)

    def runs(self) -> list[Run]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    models.Mailbox.name,
                    models.SyncRun.status,
                    models.SyncRun.started_at,
                    models.SyncRun.finished_at,
                    models.SyncRun.worker,
                )
                .join(models.Mailbox, models.Mailbox.id == models.SyncRun.mailbox_id)
                .order_by(models.SyncRun.id)
            )
            return [tuple(r) for r in rows]  # type: ignore[misc]

    def stored(self) -> dict[str, list[str]]:
        """Message-ID -> the mailboxes of its locations (one entry per location)."""
        found: dict[str, list[str]] = collections.defaultdict(list)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(models.Message.message_id, models.Mailbox.name)
                .join(
                    models.MessageLocation, models.MessageLocation.message_id == models.Message.id
                )
                .join(models.Folder, models.Folder.id == models.MessageLocation.folder_id)
                .join(models.Mailbox, models.Mailbox.id == models.Folder.mailbox_id)
            )
            for msgid, box in rows:
                found[msgid].append(box)
        return found

    def count(self, column: Any) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count(column))).scalar() or 0)

    def outbox_statuses(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(models.OutboxEmail.status)).scalars())

    def tails(self) -> str:
        for f in self.files:
            f.flush()
        return "\n".join(
            f"--- {Path(f.name).name}\n{Path(f.name).read_text()[-2000:]}" for f in self.files
        )


def wait(predicate: Callable[[], object], what: str, timeout: float, cluster: Cluster) -> float:
    started = time.monotonic()  # wall clock: bounds the waits on the worker processes
    while not predicate():
        elapsed = time.monotonic() - started  # wall clock: see above
        assert elapsed < timeout, f"timed out waiting until {what}\n{cluster.tails()}"
        time.sleep(0.1)
    return time.monotonic() - started  # wall clock: see above


def group_members(pgids: set[int]) -> list[int]:
    """PIDs of live (not zombie) processes in the process groups `pgids` (/proc scan)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            fields = stat.rpartition(")")[2].split()
            if fields[0] != "Z" and int(fields[2]) in pgids:
                members.append(int(entry.name))
    return members


def check_invariants(cluster: Cluster, users: list[str], expected: dict[str, set[str]]) -> None:
    """No process left, every run finished, no two runs of a mailbox overlap, every
    expected message stored once with exactly its mailboxes' locations, 0 quarantined."""
    wait(lambda: group_members(cluster.pgids) == [], "no process is left", 10, cluster)
    runs = cluster.runs()
    print(collections.Counter(status for _, status, *_ in runs))
    assert {status for _, status, *_ in runs} <= {"ok", "error", "abandoned", "interrupted"}
    assert all(finished is not None for _, _, _, finished, _ in runs)
    for user in users:
        spans = sorted((s, f) for n, _, s, f, _ in runs if n == user)
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end is not None and end <= start, f"two syncs of {user} overlapped"
    stored = cluster.stored()
    for msgid, boxes in expected.items():
        assert sorted(stored[msgid]) == sorted(boxes), msgid
    assert cluster.count(models.Quarantine.id) == 0
    with cluster.engine.connect() as conn:
        copies = conn.execute(
            sa.select(models.Message.message_id, sa.func.count(models.Message.id))
            .group_by(models.Message.message_id)
            .having(sa.func.count(models.Message.id) > 1)
        ).all()
    with cluster.engine.connect() as conn:  # what told the copies apart, if any
        rows = conn.execute(
            sa.select(
                models.Message.key,
                models.Message.sha256,
                models.Message.body_sha256,
                models.Message.from_email,
                models.Message.sent_at,
                models.Message.subject_normalized,
            ).where(models.Message.message_id.in_([m for m, _ in copies]))
        ).all()
    assert copies == [], rows


def imap_mailboxes(imap_port: int, users: list[str]) -> str:
    """TOML: one IMAP mailbox on the test Dovecot per user, and its owner as a user."""
    return "".join(
        f"""
        [[mailboxes]]
        name = "{user}"
        connector = "imap"
        host = "127.0.0.1"
        port = {imap_port}
        security = "none"
        username = "{user}"
        password_env = "MM_IMAP_PASSWORD"
        owner = "{user}@example.com"
        folders = ["INBOX"]
        idle = false
        [[users]]
        email = "{user}@example.com"
        name = "{user}"
        """
        for user in users
    )
