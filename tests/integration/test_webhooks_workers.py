"""Webhooks in production mode: two `mailmanager run` workers on PostgreSQL (`[workers]
engine = "procrastinate"`) take the delivery ticks from procrastinate, claim deliveries with
`SKIP LOCKED`, and a real receiver gets every event exactly once, signed."""

from __future__ import annotations

import signal
import time as clock
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config
from mailmanager.db import store
from tests.conftest import ConfigWriter, new_pg_database
from tests.integration import test_webhooks_kill as kill
from tests.integration.test_webhooks_kill import _run, _statuses, key, receiver  # noqa: F401
from tests.integration.webhook_support import Receiver

SETTINGS = kill.SETTINGS.replace('engine = "embedded"', 'engine = "procrastinate"')


@pytest.fixture
def pg_factory() -> Iterator[tuple[str, sessionmaker[Session]]]:
    with new_pg_database("mm_webhooks_workers") as url, store.open_database(url, create=True) as f:
        yield url, f


@pytest.mark.postgres
def test_two_procrastinate_workers_deliver_each_event_once(
    pg_factory: tuple[str, sessionmaker[Session]], write_config: ConfigWriter,
    key: str, receiver: Receiver,  # noqa: F811
) -> None:  # fmt: skip
    url, factory = pg_factory
    path: Path = write_config(url, "", SETTINGS)
    ids = kill.subscribe_and_record(factory, config.load(path), receiver, 40)
    workers = [_run(path, key), _run(path, key)]
    try:
        deadline = clock.monotonic() + 90
        while _statuses(factory) != {"delivered": len(ids)}:
            assert clock.monotonic() < deadline, _statuses(factory)
            assert all(w.poll() is None for w in workers), [w.returncode for w in workers]
            clock.sleep(0.2)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        errors = [w.communicate(timeout=60)[1].decode() for w in workers]
    assert [w.returncode for w in workers] == [0, 0], errors
    assert receiver.snapshot() == {i: 1 for i in ids}  # every event, none twice
    assert receiver.bad_signatures == 0
    with factory() as s:  # delivered by procrastinate's jobs, not by an embedded loop
        ran = s.scalar(
            sa.text(
                "SELECT count(*) FROM procrastinate_jobs "
                "WHERE task_name = 'mailmanager.webhooks' AND status = 'succeeded'"
            )
        )
    assert ran and ran >= 1
