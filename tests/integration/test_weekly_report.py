"""The weekly activity report (`services.weekly`): exactly once per ISO week through the
outbox, opted-in users only, in their language, on SQLite and PostgreSQL (the world of
`test_kpis`: alice and carol opted in, bob not)."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config, daemon
from mailmanager.db import configrows, models
from mailmanager.notify import outbox
from mailmanager.services import access, kpis, weekly
from tests.integration.test_kpis import world, write_team_config

MONDAY_0830_PARIS = datetime(2026, 11, 30, 7, 30, tzinfo=UTC)
MONDAY_0700_PARIS = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
NEXT_MONDAY = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def rows(s: Session) -> list[models.OutboxEmail]:
    s.rollback()  # a new snapshot: the job committed in its own sessions
    return list(s.scalars(sa.select(models.OutboxEmail).order_by(models.OutboxEmail.id)))


def test_exactly_once_per_week(tmp_path: Path, db_url: str, factory: sessionmaker[Session]) -> None:
    cfg = write_team_config(tmp_path, db_url)
    with factory() as s:
        configrows.ensure_config_rows(s, cfg)
        s.commit()
        world(s)

        assert weekly.send_weekly_reports(factory, cfg, MONDAY_0700_PARIS).sent == []
        assert rows(s) == []

        first = weekly.send_weekly_reports(factory, cfg, MONDAY_0830_PARIS)
        assert first.sent == [
            "weekly:alice@example.com:2026-W48",
            "weekly:carol@example.com:2026-W48",
        ]
        again = weekly.send_weekly_reports(factory, cfg, MONDAY_0830_PARIS.replace(hour=15))
        assert again.sent == [] and again.skipped == ["alice@example.com", "carol@example.com"]
        found = rows(s)
        assert [r.recipient for r in found] == ["alice@example.com", "carol@example.com"]
        assert all(r.status == "pending" for r in found)

        alice, carol = found
        assert alice.subject == "Activité de la semaine 2026-W48"
        assert "Délai médian de réponse à un client : 4,0 h" in alice.body_text
        assert "Messages reçus : 2 ; envoyés : 1" in alice.body_text
        assert "Relances faites" in alice.body_html and "<script" not in alice.body_html
        assert "Par personne" not in alice.body_text
        assert "bob@example.com" not in alice.body_text
        assert carol.subject == "Weekly activity, 2026-W48"
        assert "Median time to answer a client: 4.0 h" in carol.body_text
        assert "Messages received: 2; sent: 1" in carol.body_text
        assert "- Bob Smith: — / 0 / 0 / 1 / 0 / 1 / 0" in carol.body_text
        assert "Alice Martin" in carol.body_html
        assert (
            "Bob Smith"
            not in weekly.render(
                cfg, cfg.users[0], _dashboard_of(s, cfg, "alice@example.com"), "2026-W48"
            ).text
        )

        second = weekly.send_weekly_reports(factory, cfg, NEXT_MONDAY)
        assert second.sent == [
            "weekly:alice@example.com:2026-W49",
            "weekly:carol@example.com:2026-W49",
        ]
        assert len(rows(s)) == 4
        assert not any(r.recipient == "bob@example.com" for r in rows(s))


def test_another_worker_took_it(
    tmp_path: Path, db_url: str, factory: sessionmaker[Session]
) -> None:
    """A report enqueued by another worker (same key) is not enqueued again."""
    cfg = write_team_config(tmp_path, db_url)
    with factory() as s:
        configrows.ensure_config_rows(s, cfg)
        key = "weekly:alice@example.com:2026-W48"
        outbox.enqueue(
            s,
            key=key,
            message_id_header="<x@example.com>",
            recipient="alice@example.com",
            recipient_name="Alice",
            subject="s",
            body_text="t",
            body_html="h",
            now=MONDAY_0830_PARIS,
        )
        s.commit()
        report = weekly.send_weekly_reports(factory, cfg, MONDAY_0830_PARIS)
        assert report.sent == ["weekly:carol@example.com:2026-W48"]
        assert [r.idempotency_key for r in rows(s)] == [key, "weekly:carol@example.com:2026-W48"]


def _dashboard_of(s: Session, cfg: config.Config, email: str) -> kpis.Dashboard:
    viewer = access.viewer_for(cfg, email)
    assert viewer is not None
    return kpis.dashboard(s, cfg, viewer, MONDAY_0830_PARIS, 1, full_weeks=True)


class _Scheduler:
    """Collects the jobs the embedded daemon declares (APScheduler's `add_job`)."""

    def __init__(self) -> None:
        self.jobs: dict[str, tuple[object, int]] = {}

    def add_job(self, func: object, trigger: str, **kw: object) -> None:
        self.jobs[str(kw["id"])] = (func, int(str(kw["seconds"])))


def test_daemon_runs_it_hourly(tmp_path: Path, db_url: str, factory: sessionmaker[Session]) -> None:
    cfg = write_team_config(tmp_path, db_url)
    scheduler = _Scheduler()
    daemon._add_notification_jobs(scheduler, cfg, factory, threading.Event(), MONDAY_0830_PARIS)
    assert scheduler.jobs["notify:weekly"] == (daemon.weekly_job, 3600)
    with factory() as s:
        configrows.ensure_config_rows(s, cfg)
        s.commit()
        daemon.weekly_job(cfg, factory)  # wall clock inside: whatever the day, no error
    nobody = dataclasses.replace(
        cfg, users=tuple(dataclasses.replace(u, weekly_report=False) for u in cfg.users)
    )
    scheduler = _Scheduler()
    daemon._add_notification_jobs(scheduler, nobody, factory, threading.Event(), MONDAY_0830_PARIS)
    assert "notify:weekly" not in scheduler.jobs
