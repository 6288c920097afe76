"""Acceptance fault suite of issue #15: three procrastinate workers (`mailmanager run`
subprocesses on PostgreSQL), 20 IMAP mailboxes on a private real Dovecot, an aiosmtpd sink,
mail arriving during the run (some messages delivered to two mailboxes), and faults:

1. `kill -9` of a worker mid-digest: it runs alone with the outbox's `after_smtp` test
   pause (the sink has accepted the digest, the row is not marked sent), then dies;
2. `kill -9` of a worker mid-sync (its process only: its fetch child must die with it);
3. SMTP down then up (the sink stopped while digests are due, then started again);
4. Dovecot down then up (mail delivered into the Maildirs meanwhile);
5. SIGTERM of every worker under load: each exits within 10 s.

The sink delivers what it accepts into the recipient's Maildir (as a real mail server
would), so the digest interrupted by the kill is found in the synced mail and marked sent
instead of sent again. The PostgreSQL restart has its own test, on a private cluster
(`pg_cluster`: restarting the shared server would disturb every other test), with the
workers started at once on its empty database.

Kept short without skipping a fault: heartbeats every second and death after 8 silent ones
(a live worker on a busy machine is not taken for dead: its sync and the takeover would
overlap), the periodic ticks kicked when the test provokes them (`Cluster.kick`) instead of
awaited, conditions awaited instead of sleeps, Dovecot's files in memory (/dev/shm) and the
private PostgreSQL without disk flushes.

Checked at the end: no two sync runs of one mailbox overlap; every delivered message is
stored once with exactly the locations of the mailboxes it was delivered to; nothing is
quarantined; every digest reached the sink exactly once (by Message-ID) and is marked sent;
every run is finished (ok, error, interrupted or abandoned); no process of the workers'
process groups is left.
"""

from __future__ import annotations

import collections
import contextlib
import shutil
import signal
import tempfile
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mailmanager import config
from mailmanager.db import models, store
from mailmanager.notify import outbox
from mailmanager.testing.dovecot import DovecotServer, dovecot_binary
from mailmanager.workers import tasks
from tests.conftest import ConfigWriter, new_pg_database
from tests.integration import faults_support
from tests.integration.conftest import IN_CI
from tests.integration.faults_support import (
    Cluster,
    ForwardingSink,
    Run,
    check_invariants,
    group_members,
    wait,
)
from tests.integration.notify_support import free_port
from tests.integration.pg_cluster import FAST, pg_bin, private_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.dovecot]

BOXES = 20
OUTBOX_TICK = "mailmanager.outbox"  # the outbox's periodic task (`tasks.build_app`)
# What a worker logs when it loses the database: its LISTEN connection (procrastinate), its
# pool (psycopg), its restart (`runner`).
OUTAGE = (b"listener error", b"error connecting", b"cannot reach the database", b"ended without")


@pytest.fixture
def server() -> Iterator[DovecotServer]:
    """A Dovecot of this test alone: stopping it must not disturb the other tests."""
    if dovecot_binary() is None:
        reason = "Dovecot is not installed (apt-get install dovecot-imapd dovecot-lmtpd)"
        if IN_CI:
            pytest.fail(f"CI is set but {reason}")
        pytest.skip(reason)
    shm = Path("/dev/shm")  # mail and indexes in memory: no waits on a busy disk
    root = Path(tempfile.mkdtemp(prefix="mm-dovecot-", dir=shm)) if shm.is_dir() else None
    try:
        with DovecotServer(root) as dovecot:
            yield dovecot
    finally:
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url() -> Iterator[str]:
    with new_pg_database("mm_faults") as url:
        yield url


def _enqueue_digests(cfg: config.Config, url: str, users: list[str], tag: str) -> set[str]:
    """One digest-like outbox email per user (the outbox is the digests' delivery path)."""
    ids = set()
    with store.open_database(url, create=True) as factory, factory.begin() as s:
        for user in users:
            key = f"digest:{tag}:{user}@example.com"
            header = outbox.message_id(key, outbox.default_sender(cfg))
            outbox.enqueue(
                s, key=key, message_id_header=header, recipient=f"{user}@example.com",
                recipient_name=user, subject=f"Relances {tag}", body_text="2 relances",
                body_html="", now=models.utcnow(),  # wall clock: due at once for the workers
            )  # fmt: skip
            ids.add(header.strip("<>"))
    return ids


def test_three_workers_survive_kills_outages_and_sigterm(
    server: DovecotServer, pg_url: str, write_config: ConfigWriter, tmp_path: Path
) -> None:
    users = [f"box{i:02d}" for i in range(BOXES)]
    received: list[Any] = []
    smtp_port = free_port()
    mailboxes = faults_support.imap_mailboxes(server.imap_port, users)
    extra = f"""
        [sync]
        interval = 10
        batch_size = 20
        [workers]
        concurrency = 4
        heartbeat = 1
        stalled_after = 8
        [reminders]
        enabled = false
        [smtp]
        host = "127.0.0.1"
        port = {smtp_port}
        security = "none"
        timeout = 5
        [notifications]
        flush_interval = 5
        retry_base = 1
        retry_max = 2
        max_attempts = 50
        """
    cfg_path = write_config(pg_url, mailboxes, extra)
    cfg = config.load(cfg_path)
    cluster = Cluster(cfg_path, tmp_path, server, pg_url)
    for i in range(0, BOXES, 2):  # mail before the start, one message in two mailboxes each
        cluster.deliver([users[i]], 10)
        cluster.deliver([users[i + 1]], 10)
        cluster.deliver([users[i], users[i + 1]], 1)
    digests = _enqueue_digests(cfg, pg_url, users[:3], "first")
    sink = ForwardingSink(server, smtp_port, received).start()
    try:
        # 1. kill -9 mid-digest: a worker alone, paused after the sink accepted a digest.
        paused = cluster.start({outbox.PAUSE_ENV: "after_smtp"})
        wait(
            lambda: "PAUSED after_smtp" in Path(cluster.files[0].name).read_text(),
            "the first worker pauses after the SMTP server accepted a digest",
            30,
            cluster,
        )
        paused.send_signal(signal.SIGKILL)
        paused.wait(10)
        assert len(received) == 1
        for _ in range(3):
            cluster.start()
        cluster.deliver([users[0]], 5, via_lmtp=True)  # mail arrives during the run
        cluster.deliver([users[4], users[7]], 2, via_lmtp=True)

        # 2. kill -9 mid-sync (the worker only: its fetch child must die with it).
        victim: Run | None = None
        for _attempt in range(4):
            known = len(cluster.runs())
            cluster.deliver([users[5]], 300)
            cluster.kick(tasks.SYNC_TICK)

            def running(start: int = known) -> Run | None:
                runs = cluster.runs()[start:]
                return next((r for r in runs if r[0] == users[5] and r[1] == "running"), None)

            wait(lambda: running() is not None, "box05 syncs", 30, cluster)
            caught = running()
            pid = int(caught[4].rpartition(":")[2]) if caught and caught[4] else 0
            killed = next((w for w in cluster.alive() if w.pid == pid), None)
            if killed is not None:
                killed.send_signal(signal.SIGKILL)
                killed.wait(10)
                if running() == caught:  # it died in the middle, not after the end
                    victim = caught
                    break
        assert victim is not None, "could not kill a worker in the middle of box05's sync"
        killed_at = models.utcnow()  # wall clock: measures the takeover
        cluster.start()  # the operator replaces it: three workers again
        wait(
            lambda: group_members({pid}) == [],
            "the killed worker's fetch child dies with it",
            10,
            cluster,
        )

        # 3. SMTP down then up, digests due meanwhile.
        sink.stop()
        digests |= _enqueue_digests(cfg, pg_url, users[10:14], "second")
        cluster.kick(OUTBOX_TICK)

        def failed_attempts() -> bool:
            with cluster.engine.connect() as conn:
                errors = conn.execute(
                    sa.select(sa.func.count(models.OutboxEmail.id)).where(
                        models.OutboxEmail.attempts > 0, models.OutboxEmail.status == "pending"
                    )
                ).scalar()
            return bool(errors)

        wait(failed_attempts, "a digest fails to reach the stopped SMTP server", 20, cluster)
        sink = ForwardingSink(server, smtp_port, received).start()

        # 4. Dovecot down then up, mail arriving meanwhile (written into the Maildirs).
        down_at = models.utcnow()  # wall clock: the runs after the outage began
        server.stop()
        cluster.deliver([users[8]], 3)
        cluster.deliver([users[2], users[9]], 1)
        cluster.kick(tasks.SYNC_TICK)
        wait(
            lambda: any(r[1] == "error" and r[2] > down_at for r in cluster.runs()),
            "a sync fails while Dovecot is down",
            20,
            cluster,
        )
        server.start()
        cluster.kick(tasks.SYNC_TICK)

        # Everything converges: the taken-over mailbox, the mail, the digests.
        def converged() -> bool:
            stored = cluster.stored()
            every = all(sorted(stored.get(m, [])) == sorted(b) for m, b in cluster.expected.items())
            sent = set(cluster.outbox_statuses()) == {"sent"}
            at_sink = {m.strip("<>") for m in digests} <= set(stored)
            return every and sent and at_sink

        took = wait(converged, "every message and digest is stored and sent", 60, cluster)
        print(f"converged {took:.1f} s after Dovecot came back")
        takeover = min(
            started - killed_at
            for n, status, started, _, _ in cluster.runs()
            if n == users[5] and started > victim[2]
        )
        print(f"box05's next sync started {takeover.total_seconds():.1f} s after the kill")
        assert takeover.total_seconds() <= 60

        expected = {msgid: set(boxes) for msgid, boxes in cluster.expected.items()}
        # 5. SIGTERM under load: every worker stops within 10 s.
        known = len(cluster.runs())
        for user in users[::3]:
            cluster.deliver([user], 100)
        cluster.kick(tasks.SYNC_TICK)
        wait(
            lambda: sum(r[1] == "running" for r in cluster.runs()[known:]) >= 2,
            "syncs are running",
            20,
            cluster,
        )
        stop_time = cluster.terminate()
    finally:
        for w in cluster.alive():
            w.kill()
        sink.stop()
    tails = cluster.tails()
    assert stop_time <= 10, f"the workers took {stop_time:.1f} s to stop\n{tails}"
    codes = sorted(w.returncode for w in cluster.workers)
    assert codes == [-signal.SIGKILL] * 2 + [0] * 3, tails

    check_invariants(cluster, users, expected)
    at_sink = collections.Counter(
        message_from_bytes(raw, policy=policy.default)["Message-ID"].strip("<>")
        for _, _, raw in received
    )
    assert set(at_sink) == digests
    assert set(at_sink.values()) == {1}, at_sink
    assert set(cluster.outbox_statuses()) == {"sent"}
    cluster.engine.dispose()


def test_workers_started_at_once_survive_a_postgresql_restart(
    server: DovecotServer, write_config: ConfigWriter, tmp_path: Path
) -> None:
    binaries = pg_bin()
    if binaries is None:
        reason = "no initdb/pg_ctl under /usr/lib/postgresql (apt-get install postgresql)"
        if IN_CI:
            pytest.fail(f"CI is set but {reason}")
        pytest.skip(reason)
    users = [f"pg{i}" for i in range(4)]
    mailboxes = faults_support.imap_mailboxes(server.imap_port, users)
    extra = "[sync]\ninterval = 10\n[reminders]\nenabled = false\n"
    extra += "[workers]\nheartbeat = 1\nstalled_after = 8\n"
    with private_postgres(binaries, FAST) as pg:
        cluster = Cluster(write_config(pg.url, mailboxes, extra), tmp_path, server, pg.url)
        cluster.deliver(users[:2], 1)
        for user in users:
            cluster.deliver([user], 20)

        def all_stored() -> bool:
            with contextlib.suppress(sa.exc.DBAPIError):  # no schema yet, or the restart
                stored = cluster.stored()
                return all(sorted(stored[m]) == sorted(b) for m, b in cluster.expected.items())
            return False

        try:
            for _ in range(3):  # at once, on an empty database
                cluster.start()
            wait(all_stored, "the first syncs", 60, cluster)
            logs = {Path(f.name): Path(f.name).stat().st_size for f in cluster.files}
            pg.stop()
            cluster.deliver(users[1:3], 2)  # mail arrives while the database is down
            cluster.deliver([users[3]], 5)

            def met(log: Path, since: int) -> bool:  # logged the outage after the stop
                return any(line in log.read_bytes()[since:] for line in OUTAGE)

            wait(
                lambda: all(met(log, since) for log, since in logs.items()),
                "every worker meets the outage",
                20,
                cluster,
            )
            pg.start(FAST)
            took = wait(all_stored, "the mail after the restart", 60, cluster)
            print(f"stored {took:.1f} s after PostgreSQL came back")
            assert len(cluster.alive()) == 3, cluster.tails()
            stop_time = cluster.terminate()
        finally:
            for w in cluster.alive():
                w.kill()
        tails = cluster.tails()
        assert stop_time <= 10, f"the workers took {stop_time:.1f} s to stop\n{tails}"
        assert [w.returncode for w in cluster.workers] == [0, 0, 0], tails
        check_invariants(cluster, users, dict(cluster.expected))
        cluster.engine.dispose()
