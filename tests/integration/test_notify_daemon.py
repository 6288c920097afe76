"""One smoke test of the daemon's notification timers: a queued email goes out through the
outbox job of `run_forever`, and the daemon stops cleanly when asked."""

from __future__ import annotations

import threading

from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config, daemon
from mailmanager.db import models
from mailmanager.notify import outbox
from tests.conftest import ConfigWriter
from tests.integration.notify_support import Sink, outbox_rows, wait_for


def test_daemon_flushes_the_outbox_and_stops(
    db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter
) -> None:
    sink = Sink().start()
    extra = f"""
        [smtp]
        host = "127.0.0.1"
        port = {sink.port}
        security = "none"
        [notifications]
        flush_interval = 5
        """
    cfg = config.load(write_config(db_url, "", extra))
    now = models.utcnow()  # wall clock: due by the daemon's real clock
    with factory() as s, s.begin():
        key = "manual:test:alice@example.com"
        outbox.enqueue(
            s, key=key, message_id_header=outbox.message_id(key, outbox.default_sender(cfg)),
            recipient="alice@example.com", recipient_name="Alice", subject="test",
            body_text="x", body_html="", now=now,
        )  # fmt: skip
    stop, ready = threading.Event(), threading.Event()
    runner = threading.Thread(target=daemon.run_forever, args=(cfg, factory, stop, ready.set))
    runner.start()
    try:
        assert ready.wait(10)
        wait_for(lambda: len(sink.received) == 1, timeout=20)
        wait_for(lambda: [r.status for r in outbox_rows(factory)] == ["sent"], timeout=10)
    finally:
        stop.set()
        runner.join(30)
        sink.stop()
    assert not runner.is_alive()
    assert sink.messages()[0]["From"].addresses[0].addr_spec == "mailmanager@example.com"
