"""Webhook delivery against real receivers on 127.0.0.1 (SQLite and PostgreSQL): signed per
Standard Webhooks (checked by `standardwebhooks`), retried with growing backoff, dead after
`max_attempts`, redelivered by hand, test events, a failing receiver not blocking the others,
and the SSRF refusals at subscription and at delivery time."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config
from mailmanager.db import tokens, webhookevents
from mailmanager.db.models import WebhookDelivery, WebhookEvent
from mailmanager.notify import webhooks as delivery
from mailmanager.notify import webhooktargets
from mailmanager.services import webhooks
from tests.conftest import ConfigWriter
from tests.integration.webhook_support import Receiver

T0 = datetime(2026, 11, 10, 8, 0, tzinfo=UTC)
LOCAL = '["127.0.0.0/8"]'


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = tokens.new_key()
    monkeypatch.setenv(tokens.ENV_KEY, key)
    return key


@pytest.fixture
def make_cfg(db_url: str, write_config: ConfigWriter) -> Callable[..., config.Config]:
    def make(allow: str = LOCAL, max_attempts: int = 4, extra: str = "") -> config.Config:
        text = f"""
            [webhooks]
            allow_private = {allow}
            retry_base = 10
            retry_max = 600
            max_attempts = {max_attempts}
            timeout = 3
            concurrency = 16
            {extra}
            """
        return config.load(write_config(db_url, "", text))

    return make


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.stop()


def _subscribe(
    factory: sessionmaker[Session], cfg: config.Config, receiver: Receiver, types: list[str]
) -> int:
    with factory() as s, s.begin():
        made = webhooks.create(s, cfg, receiver.url, types, "test:admin")
    receiver.secret = made.secret
    return made.subscription.id


def _emit(factory: sessionmaker[Session], n: int, kind: str = "reminder.due") -> list[str]:
    with factory() as s, s.begin():
        return webhookevents.record(
            s, [webhookevents.NewEvent(kind, {"n": i}, f"t:{kind}:{i}") for i in range(n)], T0
        )


def _rows(factory: sessionmaker[Session]) -> list[WebhookDelivery]:
    with factory() as s:
        return list(s.scalars(sa.select(WebhookDelivery).order_by(WebhookDelivery.id)))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def test_signed_deliveries_retried_with_growing_backoff_then_each_delivered_once(
    factory: sessionmaker[Session], make_cfg: Callable[..., config.Config],
    receivers: list[Receiver],
) -> None:  # fmt: skip
    cfg = make_cfg()
    flaky = Receiver(fail_first=2).start()
    receivers.append(flaky)
    _subscribe(factory, cfg, flaky, ["reminder.due", "message.linked"])
    ids = _emit(factory, 5)
    clock = Clock()
    first = delivery.deliver(cfg, factory, clock)
    assert len(first.retried) == 5 and not first.delivered
    waits = {r.id: r.next_attempt_at - T0 for r in _rows(factory) if r.next_attempt_at}
    assert set(waits.values()) == {timedelta(seconds=10)}
    assert delivery.deliver(cfg, factory, clock).delivered == []  # not due yet: nothing tried
    clock.now = T0 + timedelta(seconds=10)
    second = delivery.deliver(cfg, factory, clock)
    assert len(second.retried) == 5
    rows = _rows(factory)
    assert {r.next_attempt_at - clock.now for r in rows if r.next_attempt_at} == {
        timedelta(seconds=20)  # the backoff doubled
    }
    assert {r.last_status_code for r in rows} == {500}
    clock.now += timedelta(seconds=20)
    third = delivery.deliver(cfg, factory, clock)
    assert len(third.delivered) == 5
    assert flaky.bad_signatures == 0
    assert flaky.snapshot() == dict.fromkeys(ids, 1)  # every event, none twice
    assert {r.status for r in _rows(factory)} == {"delivered"}
    assert all(r.attempts == 3 and r.latency_ms is not None for r in _rows(factory))
    assert flaky.types() == {"reminder.due": 5}
    assert delivery.deliver(cfg, factory, clock).delivered == []  # nothing sent again
    assert flaky.snapshot() == dict.fromkeys(ids, 1)


def test_dead_after_max_attempts_then_redelivered_by_hand(
    factory: sessionmaker[Session], make_cfg: Callable[..., config.Config],
    receivers: list[Receiver],
) -> None:  # fmt: skip
    cfg = make_cfg(max_attempts=2)
    down = Receiver(fail_first=2).start()
    receivers.append(down)
    _subscribe(factory, cfg, down, ["reminder.due"])
    [wid] = _emit(factory, 1)
    clock = Clock()
    delivery.deliver(cfg, factory, clock)
    clock.now += timedelta(hours=1)
    report = delivery.deliver(cfg, factory, clock)
    [row] = _rows(factory)
    assert report.dead == [row.id] and row.status == "dead" and row.attempts == 2
    assert row.last_error == "HTTP 500" and row.next_attempt_at is None
    clock.now += timedelta(days=1)
    assert delivery.deliver(cfg, factory, clock).delivered == []  # dead stays dead
    with factory() as s, s.begin():
        with pytest.raises(webhooks.WebhookError):
            webhooks.redeliver(s, row.id + 1000, "test:admin")
        webhooks.redeliver(s, row.id, "test:admin")
    assert delivery.deliver(cfg, factory, clock).delivered == [row.id]
    assert down.snapshot() == {wid: 1}
    with factory() as s, s.begin(), pytest.raises(webhooks.WebhookError, match="only a dead one"):
        webhooks.redeliver(s, row.id, "test:admin")


def test_test_event_reaches_one_subscription_and_a_dead_receiver_blocks_no_one(
    factory: sessionmaker[Session], make_cfg: Callable[..., config.Config],
    receivers: list[Receiver],
) -> None:  # fmt: skip
    cfg = make_cfg()
    good, bad = Receiver().start(), Receiver(fail_always=True).start()
    receivers.extend([good, bad])
    good_id = _subscribe(factory, cfg, good, ["reminder.due"])
    _subscribe(factory, cfg, bad, ["reminder.due"])
    with socket.socket() as sock:  # a port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/x"
    with factory() as s, s.begin():
        webhooks.create(s, cfg, closed, ["reminder.due"], "test:admin")
    ids = _emit(factory, 40)
    with factory() as s, s.begin():
        test_id = webhooks.send_test(s, good_id, "test:admin")
    report = delivery.deliver(cfg, factory, Clock())
    assert good.snapshot() == dict.fromkeys([*ids, test_id], 1)
    assert good.bodies[test_id]["type"] == "webhook.test"
    assert not bad.accepted and test_id not in bad.attempts
    # Each failing receiver was tried at most one batch (`concurrency` rows) in this pass.
    assert 0 < sum(bad.attempts.values()) <= cfg.webhooks.concurrency
    assert len(report.retried) <= 2 * cfg.webhooks.concurrency
    with factory() as s:
        listed = {x.id: x for x in webhooks.list_subscriptions(s)}
        last = webhooks.deliveries(s, good_id, limit=5)
    assert listed[good_id].pending == 0 and len(last) == 5
    assert {d.status for d in last} == {"delivered"} and last[0].event_type == "webhook.test"


def test_ssrf_targets_refused_when_subscribing_and_again_when_delivering(
    factory: sessionmaker[Session], make_cfg: Callable[..., config.Config],
    receivers: list[Receiver],
) -> None:  # fmt: skip
    strict = make_cfg(allow="[]")
    for url in (
        "http://127.0.0.1/hook",
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://localhost:8443/hook",
        "https://0.0.0.0/hook",
        "https://224.0.0.1/hook",
        "https://192.168.1.1/hook",
        "ftp://example.com/hook",
        "https://user:pw@example.com/hook",
    ):
        with factory() as s, s.begin(), pytest.raises(webhooks.WebhookError):
            webhooks.create(s, strict, url, ["reminder.due"], "test:admin")
    with factory() as s, s.begin(), pytest.raises(webhooks.WebhookError, match="event type"):
        webhooks.create(s, make_cfg(), "http://127.0.0.1/x", ["nope"], "test:admin")
    with factory() as s:
        assert webhooks.list_subscriptions(s) == []
    # Allowed when subscribing, refused at delivery once the allow-list no longer has it
    # (as a name that resolved elsewhere by then): dead at once, nothing sent.
    receiver = Receiver().start()
    receivers.append(receiver)
    _subscribe(factory, make_cfg(), receiver, ["reminder.due"])
    _emit(factory, 1)
    report = delivery.deliver(strict, factory, Clock())
    [row] = _rows(factory)
    assert report.dead == [row.id] and row.status == "dead"
    assert row.last_error is not None and row.last_error.startswith("target refused")
    assert receiver.attempts == {}


def _fake_dns(answers: dict[str, list[str]]) -> Any:
    def resolve(host: str, port: int, **_: Any) -> list[Any]:
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, 1, 6, "", (a, port))
                for a in answers[host]]  # fmt: skip

    return resolve


def test_target_rules() -> None:
    public = _fake_dns({"hooks.example.com": ["93.184.216.34"]})
    target = webhooktargets.check("https://hooks.example.com/in?x=1", [], public)
    assert target.url == "https://93.184.216.34:443/in?x=1"  # the checked address is used
    assert (target.host_header, target.server_name) == ("hooks.example.com", "hooks.example.com")
    with pytest.raises(webhooktargets.TargetError, match="https"):
        webhooktargets.check("http://hooks.example.com/in", [], public)
    # One private address among the answers is enough to refuse (rebinding tricks).
    mixed = _fake_dns({"evil.example.com": ["93.184.216.34", "127.0.0.1"]})
    with pytest.raises(webhooktargets.TargetError, match=r"127\.0\.0\.1"):
        webhooktargets.check("https://evil.example.com/", [], mixed)
    mapped = _fake_dns({"m.example.com": ["::ffff:10.0.0.1"]})
    with pytest.raises(webhooktargets.TargetError):
        webhooktargets.check("https://m.example.com/", [], mapped)
    allowed = webhooktargets.check("https://m.example.com/", ["10.0.0.0/8"], mapped)
    assert ipaddress.ip_address(allowed.address).ipv4_mapped == ipaddress.ip_address("10.0.0.1")
    v6 = webhooktargets.check("http://[::1]:9000/h", ["::1/128"])
    assert (v6.url, v6.host_header) == ("http://[::1]:9000/h", "[::1]:9000")
    with pytest.raises(webhooktargets.TargetError) as info:
        webhooktargets.check("https://no-such-host.invalid/", [])
    assert not info.value.permanent  # DNS failures are retried, not dead at once


def test_redirects_are_not_followed(
    factory: sessionmaker[Session], make_cfg: Callable[..., config.Config],
    receivers: list[Receiver],
) -> None:  # fmt: skip
    cfg = make_cfg()
    elsewhere = Receiver().start()
    mover = Receiver(redirect_to=elsewhere.url).start()
    receivers.extend([elsewhere, mover])
    _subscribe(factory, cfg, mover, ["reminder.due"])
    elsewhere.secret = mover.secret
    _emit(factory, 1)
    report = delivery.deliver(cfg, factory, Clock())
    [row] = _rows(factory)
    assert report.retried == [row.id] and row.last_status_code == 307
    assert row.last_error is not None and "redirects are not followed" in row.last_error
    assert elsewhere.attempts == {}


def test_old_events_are_pruned_once_done_never_while_a_delivery_is_open(
    factory: sessionmaker[Session], make_cfg: Callable[..., config.Config],
    receivers: list[Receiver],
) -> None:  # fmt: skip
    cfg = make_cfg()
    good, down = Receiver().start(), Receiver(fail_always=True).start()
    receivers.extend([good, down])
    _subscribe(factory, cfg, good, ["reminder.due"])
    _emit(factory, 2)
    _subscribe(factory, cfg, down, ["link.changed"])
    [waiting] = _emit(factory, 1, "link.changed")
    delivery.deliver(cfg, factory, Clock())
    assert {r.status for r in _rows(factory)} == {"delivered", "pending"}
    with factory() as s, s.begin():
        assert webhooks.prune(s, T0 + timedelta(days=29), 30) == 0
        assert webhooks.prune(s, T0 + timedelta(days=31), 30) == 2
    with factory() as s:
        left = s.scalars(sa.select(WebhookEvent.event_id)).all()
    assert left == [waiting] and [r.status for r in _rows(factory)] == ["pending"]
