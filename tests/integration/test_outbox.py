"""The outbox against a real SMTP server (aiosmtpd on 127.0.0.1), on SQLite and PostgreSQL:
retries with backoff while the server is down, dead letters, permanent refusals, TLS
verification, crash recovery by Message-ID, and concurrent workers on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config
from mailmanager.db import leases, models
from mailmanager.notify import outbox
from tests.conftest import ConfigWriter
from tests.integration.notify_support import Sink, free_port, outbox_rows

T0 = datetime(2026, 11, 10, 8, 0, tzinfo=UTC)
SENDER = "mailmanager@example.com"

MakeConfig = Callable[..., config.Config]


@pytest.fixture
def make_cfg(db_url: str, write_config: ConfigWriter) -> MakeConfig:
    def make(port: int, smtp: str = 'security = "none"', notifications: str = "") -> config.Config:
        extra = f"""
            [smtp]
            host = "127.0.0.1"
            port = {port}
            from = "Mailmanager <{SENDER}>"
            {smtp}
            [notifications]
            retry_base = 60
            retry_max = 600
            {notifications}
            """
        return config.load(write_config(db_url, "", extra))

    return make


def enqueue(factory: sessionmaker[Session], n: int = 1, to: str = "alice@example.com") -> list[int]:
    ids = []
    with factory() as s, s.begin():
        for i in range(n):
            key = f"test:{i}:{to}"
            row = outbox.enqueue(
                s,
                key=key,
                message_id_header=outbox.message_id(key, SENDER),
                recipient=to,
                recipient_name="Alice Martin",
                subject=f"[mailmanager] test {i}",
                body_text="Bonjour, relance n°1.\n",
                body_html="<p>Bonjour, relance n°1.</p>",
                now=T0,
            )
            ids.append(row.id)
    return ids


def row(factory: sessionmaker[Session], row_id: int) -> models.OutboxEmail:
    with factory() as s:
        found = s.get(models.OutboxEmail, row_id)
        assert found is not None
        return found


def at(t: datetime) -> Callable[[], datetime]:
    return lambda: t


def test_server_down_is_retried_with_backoff_then_delivered_once(
    factory: sessionmaker[Session], make_cfg: MakeConfig
) -> None:
    port = free_port()  # nothing listens there yet
    cfg = make_cfg(port)
    (rid,) = enqueue(factory)
    first = outbox.flush(cfg, factory, clock=at(T0))
    assert first.retried == [rid] and first.error and "cannot connect" in first.error
    r = row(factory, rid)
    assert (r.status, r.attempts, r.next_attempt_at) == ("pending", 1, T0 + timedelta(seconds=60))
    # Not due yet: nothing is attempted; the report says what waits, until when, and why.
    early = outbox.flush(cfg, factory, clock=at(T0 + timedelta(seconds=30)))
    assert early.as_dict() == outbox.FlushReport().as_dict() | {
        "retry_later": 1,
        "next_retry_at": (T0 + timedelta(seconds=60)).isoformat(),
        "next_retry_error": r.last_error,
    }
    second = T0 + timedelta(seconds=61)
    assert outbox.flush(cfg, factory, clock=at(second)).retried == [rid]
    assert row(factory, rid).next_attempt_at == second + timedelta(seconds=120)  # doubled
    sink = Sink(port=port).start()
    try:
        done = outbox.flush(cfg, factory, clock=at(second + timedelta(seconds=121)))
        assert done.sent == [rid] and done.error is None
        assert outbox.flush(cfg, factory, clock=at(second + timedelta(hours=1))).sent == []
    finally:
        sink.stop()
    assert len(sink.received) == 1
    r = row(factory, rid)
    assert (r.status, r.attempts, r.lease_owner) == ("sent", 3, None)


def test_dead_letter_after_max_attempts_then_retry(
    factory: sessionmaker[Session], make_cfg: MakeConfig
) -> None:
    port = free_port()
    cfg = make_cfg(port, notifications="max_attempts = 3")
    (rid,) = enqueue(factory)
    t = T0
    for _ in range(3):
        outbox.flush(cfg, factory, clock=at(t))
        t += timedelta(hours=1)
    r = row(factory, rid)
    assert (r.status, r.attempts, r.next_attempt_at) == ("dead", 3, None)
    assert r.last_error and "cannot connect" in r.last_error
    sink = Sink(port=port).start()
    try:
        assert outbox.flush(cfg, factory, clock=at(t)).sent == []  # dead stays dead
        with factory() as s, s.begin():
            outbox.retry(s, rid, t)
            with pytest.raises(outbox.OutboxError):
                outbox.retry(s, 999999, t)
        assert outbox.flush(cfg, factory, clock=at(t)).sent == [rid]
        with factory() as s, pytest.raises(outbox.OutboxError, match="sent"):
            outbox.retry(s, rid, t)
    finally:
        sink.stop()
    assert len(sink.received) == 1


@pytest.mark.parametrize(("reply", "status"), [("550 5.1.1 no such user", "dead"),
                                               ("452 4.2.2 mailbox full", "pending")])  # fmt: skip
def test_permanent_refusal_is_dead_at_once_temporary_is_retried(
    factory: sessionmaker[Session], make_cfg: MakeConfig, reply: str, status: str
) -> None:
    sink = Sink(reject_rcpt=reply).start()
    try:
        cfg = make_cfg(sink.port)
        a, b = enqueue(factory, 2)
        report = outbox.flush(cfg, factory, clock=at(T0))
    finally:
        sink.stop()
    # A refusal is per message: the connection stays usable for the next one.
    assert report.error is None
    assert (report.dead if status == "dead" else report.retried) == [a, b]
    r = row(factory, a)
    assert r.status == status and r.last_error and reply.split()[0] in r.last_error
    assert sink.received == []


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)  # wall clock: certificate valid from now
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_starttls_self_signed_refused_by_default_accepted_with_ca_file(
    factory: sessionmaker[Session],
    make_cfg: MakeConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sink = Sink(tls=context, user="mm", password="s3cret").start()
    monkeypatch.setenv("MM_SMTP_PASSWORD", "s3cret")
    login = 'security = "starttls"\nusername = "mm"\npassword_env = "MM_SMTP_PASSWORD"'
    try:
        (rid,) = enqueue(factory)
        refused = outbox.flush(cfg := make_cfg(sink.port, smtp=login), factory, clock=at(T0))
        assert refused.retried == [rid]
        assert refused.error and "CERTIFICATE_VERIFY_FAILED" in refused.error
        assert sink.logins == []  # the password never crossed an unverified channel
        trusted = make_cfg(sink.port, smtp=f'{login}\nssl_ca_file = "{cert}"')
        assert cfg.smtp.ssl_ca_file is None and trusted.smtp.ssl_ca_file == str(cert)
        later = T0 + timedelta(minutes=5)
        assert outbox.flush(trusted, factory, clock=at(later)).sent == [rid]
    finally:
        sink.stop()
    assert sink.logins == ["mm"] and len(sink.received) == 1


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _crashed_row(factory: sessionmaker[Session], rid: int, attempt: datetime) -> None:
    """What a worker killed between the server's 250 and its commit leaves behind."""
    with factory() as s, s.begin():
        r = s.get(models.OutboxEmail, rid)
        assert r is not None
        r.status, r.attempts, r.last_attempt_at = "sending", 1, attempt
        r.lease_owner = f"{leases.HOST}:{_dead_pid()}:deadbeef"
        r.lease_until = attempt + timedelta(hours=1)  # not expired: the owner is dead


def _alice_mailbox(factory: sessionmaker[Session], synced_until: datetime | None) -> None:
    with factory() as s, s.begin():
        user = models.User(email="alice@example.com", name="Alice")
        s.add(user)
        s.flush()
        s.add(
            models.Mailbox(
                name="alice", connector="memory", owner_id=user.id, synced_until=synced_until
            )
        )


def test_crash_after_smtp_accept_is_settled_by_message_id_never_resent(
    factory: sessionmaker[Session], make_cfg: MakeConfig
) -> None:
    sink = Sink().start()
    try:
        cfg = make_cfg(sink.port)
        found, resent, waiting = enqueue(factory, 3)
        for rid in (found, resent, waiting):
            _crashed_row(factory, rid, T0)
        _alice_mailbox(factory, synced_until=T0 + timedelta(minutes=10))
        with factory() as s, s.begin():  # the daemon synced the digest into Alice's inbox
            mid = row(factory, found).message_id_header.strip("<>")
            s.add(models.Message(key=mid, message_id=mid, sha256="0" * 64))
        report = outbox.flush(cfg, factory, clock=at(T0 + timedelta(minutes=11)))
    finally:
        sink.stop()
    assert report.reconciled == [found]
    # Alice's mailbox was synced past the attempt and the others are not in it: resend.
    assert sorted(report.possible_duplicates) == [resent, waiting]
    assert sorted(report.sent) == [resent, waiting]
    assert len(sink.received) == 2
    assert row(factory, found).status == "sent" and not row(factory, found).possible_duplicate
    assert row(factory, resent).possible_duplicate


def test_crash_waits_for_the_recipient_sync_before_resending(
    factory: sessionmaker[Session], make_cfg: MakeConfig
) -> None:
    sink = Sink().start()
    try:
        cfg = make_cfg(sink.port, notifications="reconcile_wait = 600")
        (rid,) = enqueue(factory)
        _crashed_row(factory, rid, T0)
        _alice_mailbox(factory, synced_until=T0 - timedelta(minutes=5))  # not synced since
        early = outbox.flush(cfg, factory, clock=at(T0 + timedelta(minutes=1)))
        assert early.waiting == [rid] and early.sent == []
        assert row(factory, rid).status == "sending"
        # A live worker's unexpired lease is never taken over.
        late = outbox.flush(cfg, factory, clock=at(T0 + timedelta(minutes=11)))
        assert late.possible_duplicates == [rid] and late.sent == [rid]
    finally:
        sink.stop()
    assert len(sink.received) == 1


def test_a_live_lease_is_left_alone(factory: sessionmaker[Session], make_cfg: MakeConfig) -> None:
    cfg = make_cfg(free_port())
    (rid,) = enqueue(factory)
    with factory() as s, s.begin():
        r = s.get(models.OutboxEmail, rid)
        assert r is not None
        r.status, r.lease_owner = "sending", f"{leases.HOST}:1:live"  # pid 1 exists
        r.lease_until = T0 + timedelta(minutes=5)
    report = outbox.flush(cfg, factory, clock=at(T0 + timedelta(minutes=1)))
    assert report.as_dict() == outbox.FlushReport().as_dict()
    assert row(factory, rid).status == "sending"


@pytest.fixture
def pg_only(db_url: str) -> Iterator[None]:
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite is single-worker: concurrent flushes are a PostgreSQL feature")
    yield


def test_three_workers_deliver_each_email_exactly_once(
    pg_only: None, factory: sessionmaker[Session], make_cfg: MakeConfig
) -> None:
    sink = Sink().start()
    try:
        cfg = make_cfg(sink.port)
        ids = enqueue(factory, 90)
        reports: list[outbox.FlushReport] = []
        barrier = threading.Barrier(3)

        def work() -> None:
            barrier.wait()
            reports.append(outbox.flush(cfg, factory))

        workers = [threading.Thread(target=work) for _ in range(3)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
    finally:
        sink.stop()
    sent = [i for r in reports for i in r.sent]
    assert sorted(sent) == ids  # each row sent by exactly one worker
    assert sum(1 for r in reports if r.sent) >= 2  # they really ran side by side
    mids = [m["Message-ID"] for m in sink.messages()]
    assert len(mids) == 90 and len(set(mids)) == 90
    with factory() as s:
        statuses = s.scalars(sa.select(models.OutboxEmail.status).distinct()).all()
    assert statuses == ["sent"]
    assert all(r.lease_owner is None for r in outbox_rows(factory))


def test_xoauth2_login_with_a_token_file(
    factory: sessionmaker[Session], make_cfg: MakeConfig, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    token = tmp_path / "token"
    token.write_text("ya29.token\n")
    token.chmod(0o600)
    sink = Sink(tls=context, user="mm@example.com", token="ya29.token").start()
    smtp_keys = (
        f'security = "starttls"\nusername = "mm@example.com"\n'
        f'oauth2_token_file = "{token}"\nssl_ca_file = "{cert}"'
    )
    try:
        enqueue(factory)
        assert len(outbox.flush(make_cfg(sink.port, smtp=smtp_keys), factory).sent) == 1
    finally:
        sink.stop()
    assert sink.logins == ["xoauth2:mm@example.com"]
