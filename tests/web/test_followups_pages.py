"""My follow-ups a page at a time (`services.followups.list_followups` with `after`), on
SQLite and PostgreSQL at a fixed instant: the pages cover every open reminder of the user
once, soonest due first (ties on the due time ordered by id), closed ones and other users'
never; the totals; a manager's merged pages; and the per-user index that keeps a page's
cost independent of how many reminders the organization has."""

from __future__ import annotations

import random
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config
from mailmanager.db import configrows, models, store
from mailmanager.services import followups
from mailmanager.services.access import viewer_for

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
STATUSES = ("pending", "snoozed", "sent", "done", "dismissed")


@pytest.fixture
def cfg(db_url: str, tmp_path: Path) -> config.Config:
    text = textwrap.dedent(
        f"""
        [database]
        url = "{db_url}"
        [organization]
        domains = ["example.com"]
        [[users]]
        email = "alice@example.com"
        name = "Alice"
        manager = "carol@example.com"
        [[users]]
        email = "bob@example.com"
        name = "Bob"
        manager = "carol@example.com"
        [[users]]
        email = "carol@example.com"
        name = "Carol"
        role = "manager"
        [[users]]
        email = "dave@example.com"
        name = "Dave"
        """
    )
    return config.loads(text, base_dir=str(tmp_path))


@pytest.fixture
def s(cfg: config.Config, factory: sessionmaker[Session]) -> Iterator[Session]:
    with store.session_scope(factory) as session:
        configrows.ensure_config_rows(session, cfg)
        yield session


def _fill(s: Session, email: str, n: int, seed: int) -> list[models.Reminder]:
    """`n` reminders of `email` in every status, due from 20 days ago to 10 days ahead,
    many sharing their due time (ties)."""
    rng = random.Random(seed)
    uid = s.scalars(sa.select(models.User.id).where(models.User.email == email)).one()
    rows = [
        models.Reminder(
            user_id=uid,
            kind="awaiting_reply",
            cycle=seed * 10_000 + k,
            due_at=NOW + timedelta(days=rng.randint(-20, 10)),
            status=rng.choice(STATUSES),
            contact_email=f"c{k}@customer.test",
            waiting_since=NOW - timedelta(days=25),
        )
        for k in range(n)
    ]
    s.add_all(rows)
    s.flush()
    return rows


def _pages(s: Session, cfg: config.Config, email: str, size: int) -> list[list[int]]:
    viewer = viewer_for(cfg, email)
    assert viewer is not None
    pages: list[list[int]] = []
    after = None
    while True:
        found = followups.list_followups(s, cfg, viewer, NOW, limit=size, after=after)
        if not found:
            return pages
        pages.append([f.id for f in found])
        token = followups.After(found[-1].due_at, found[-1].id).token
        after = followups.After.parse(token)  # through its URL form, as the page does


def _open_in_order(rows: list[models.Reminder]) -> list[int]:
    shown = [r for r in rows if r.status in followups.OPEN]
    return [r.id for r in sorted(shown, key=lambda r: (r.due_at, r.id))]


def test_pages_cover_each_open_reminder_once_soonest_due_first(
    s: Session, cfg: config.Config
) -> None:
    alice = _fill(s, "alice@example.com", 130, 1)
    _fill(s, "bob@example.com", 40, 2)
    _fill(s, "dave@example.com", 40, 3)
    pages = _pages(s, cfg, "alice@example.com", 20)
    expected = _open_in_order(alice)
    assert len(expected) > 60  # several pages, with ties on the due time
    assert len({r.due_at for r in alice}) < len(alice)
    assert [rid for page in pages for rid in page] == expected
    assert all(len(page) == 20 for page in pages[:-1])
    viewer = viewer_for(cfg, "alice@example.com")
    assert viewer is not None
    due = [r for r in alice if r.status in followups.OPEN and r.due_at <= NOW]
    assert followups.count_followups(s, viewer, NOW) == (len(due), len(expected) - len(due))
    first = followups.list_followups(s, cfg, viewer, NOW, limit=20)
    assert [f.due for f in first] == [f.due_at <= NOW for f in first]
    assert first[0].due and first[0].user == "alice@example.com"


def test_a_manager_pages_through_the_whole_team_merged(s: Session, cfg: config.Config) -> None:
    team = _fill(s, "alice@example.com", 60, 4) + _fill(s, "bob@example.com", 60, 5)
    _fill(s, "dave@example.com", 30, 6)  # not carol's report
    pages = _pages(s, cfg, "carol@example.com", 25)
    assert [rid for page in pages for rid in page] == _open_in_order(team)
    carol = viewer_for(cfg, "carol@example.com")
    assert carol is not None
    only_bob = followups.list_followups(s, cfg, carol, NOW, user="bob@example.com", limit=500)
    assert {f.user for f in only_bob} == {"bob@example.com"}


def test_a_malformed_position_is_the_first_page() -> None:
    for token in ("", "yesterday~3", "2026-11-25T09:00:00~x", "2026-11-25T09:00:00~3"):
        assert followups.After.parse(token) is None  # the last one has no time zone
    after = followups.After(NOW, 7)
    assert followups.After.parse(after.token) == after


def test_one_users_page_reads_the_per_user_index(s: Session, cfg: config.Config) -> None:
    """The statements of a page are ranges of ix_reminders_user_status_due (schema 0018),
    not a walk of every pending reminder by (status, due_at)."""
    if s.get_bind().dialect.name != "sqlite":
        pytest.skip("the plan is checked on SQLite; PostgreSQL picks by statistics")
    _fill(s, "alice@example.com", 30, 7)
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "FROM reminders" in statement and "reminders.user_id = " in statement:
            seen.append((statement, params))

    engine = s.get_bind()
    event.listen(engine, "before_cursor_execute", record)
    try:
        viewer = viewer_for(cfg, "alice@example.com")
        assert viewer is not None
        followups.list_followups(s, cfg, viewer, NOW, after=followups.After(NOW, 1))
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(seen) == len(followups.OPEN)  # one range per open status
    for statement, params in seen:
        plan = s.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)
        assert "USING INDEX ix_reminders_user_status_due" in " ".join(r[-1] for r in plan)
