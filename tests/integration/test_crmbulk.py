"""`services.crmbulk` in process on SQLite and PostgreSQL: a bulk upsert of 1,000 contacts is
set-based (a bounded number of SQL statements, whatever the batch size), idempotent, all or
nothing, keyed by (source, external_id), and keeps `updated_at` to the instant of the
change; `services.crmapi` lists them in (updated_at, id) keyset pages."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config
from mailmanager.db import configrows, models, store
from mailmanager.services import crmapi, crmbulk
from mailmanager.services.access import viewer_for

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


@pytest.fixture
def cfg(db_url: str, tmp_path: Path) -> config.Config:
    text = f"""
        [database]
        url = "{db_url}"
        [organization]
        domains = ["example.com"]
        [[users]]
        email = "alice@example.com"
        name = "Alice"
        """
    return config.loads(textwrap.dedent(text), base_dir=str(tmp_path))


@pytest.fixture
def s(factory: sessionmaker[Session], cfg: config.Config) -> Iterator[Session]:
    with store.session_scope(factory) as session:
        configrows.ensure_config_rows(session, cfg)
        session.add(models.Company(name="Acme", source="crm", external_id="ACME"))
        session.flush()
        yield session


def items(n: int, start: int = 0, **extra: Any) -> list[crmbulk.ContactItem]:
    return [
        crmbulk.ContactItem(
            source="crm",
            external_id=f"E{k}",
            emails=(f"p{k}@acme-bulk.test",),
            first_name=f"P{k}",
            owner="alice@example.com",
            company_external_id="ACME",
            **extra,
        )
        for k in range(start, start + n)
    ]


def count_statements(s: Session) -> tuple[list[str], Any]:
    seen: list[str] = []

    def before(*args: Any) -> None:
        seen.append(str(args[2]))

    engine = s.get_bind()
    sa.event.listen(engine, "before_cursor_execute", before)
    return seen, lambda: sa.event.remove(engine, "before_cursor_execute", before)


def test_a_bulk_of_a_thousand_is_a_few_statements(s: Session, cfg: config.Config) -> None:
    viewer = viewer_for(cfg, "alice@example.com")
    assert viewer is not None
    seen, stop = count_statements(s)
    try:
        done = crmbulk.upsert_contacts(s, cfg, viewer, items(1000), NOW)
    finally:
        stop()
    assert (done.created, done.updated, done.unchanged) == (1000, 0, 0)
    writes = [q for q in seen if q.lstrip().upper().startswith(("INSERT", "UPDATE"))]
    # SQLAlchemy's "insertmanyvalues" sends a multi-row INSERT per batch of rows; the
    # retro-linking and the audit entry add a few more: nowhere near one per contact.
    assert len(seen) < 80, [q[:40] for q in seen]
    assert len(writes) < 30, [q[:40] for q in writes]
    again = crmbulk.upsert_contacts(s, cfg, viewer, items(1000), NOW + timedelta(hours=1))
    assert (again.created, again.updated, again.unchanged, again.ids) == (0, 0, 1000, done.ids)
    row = s.get_one(models.Contact, done.ids[5])
    assert row.updated_at == NOW and row.owner_id is not None and row.company_id is not None


def test_one_refused_item_writes_nothing(s: Session, cfg: config.Config) -> None:
    viewer = viewer_for(cfg, "alice@example.com")
    assert viewer is not None
    first = crmbulk.upsert_contacts(s, cfg, viewer, items(3), NOW)
    later = NOW + timedelta(minutes=5)
    changed = crmbulk.ContactItem("crm", "E0", title="Buyer")
    bad = crmbulk.ContactItem("crm", "E9", emails=("alice@example.com",))  # ours
    with pytest.raises(crmbulk.BulkError) as refused:
        crmbulk.upsert_contacts(s, cfg, viewer, [changed, bad, *items(1, start=3)], later)
    assert [(e.index, e.field) for e in refused.value.errors] == [(1, "emails")]
    assert s.get_one(models.Contact, first.ids[0]).title == ""
    done = crmbulk.upsert_contacts(s, cfg, viewer, [changed], later)
    assert (done.updated, done.ids) == (1, first.ids[:1])
    # the list by (updated_at, id): the changed one last, after the cursor of the others
    pages = crmapi.list_records(s, cfg, "contacts", crmapi.Filters(source="crm"), 2, None)
    assert [p.id for p in pages] == first.ids[1:]
    last = pages[-1]
    rest = crmapi.list_records(s, cfg, "contacts", crmapi.Filters(), 10, (last.updated_at, last.id))
    assert [p.id for p in rest] == first.ids[:1]
    twice = crmbulk.ContactItem(
        "crm", "E7", emails=("Twice@acme-bulk.test", "twice@ACME-bulk.test")
    )
    assert crmbulk.upsert_contacts(s, cfg, viewer, [twice], NOW).created == 1
    since = crmapi.Filters(updated_since=later)
    assert [p.id for p in crmapi.list_records(s, cfg, "contacts", since, 10, None)] == first.ids[:1]


def test_insert_many_fills_the_defaults_in_one_statement(s: Session) -> None:
    """`store.insert_many`: what the rows leave out gets the columns' Python defaults
    (status "prospect", the instant of `utcnow`); on PostgreSQL it is one INSERT of
    arrays, a column with one value for every row being one parameter."""
    company = s.scalar(sa.select(models.Company.id).where(models.Company.external_id == "ACME"))
    rows = [
        {"source": "many", "external_id": f"M{k}", "first_name": f"F{k}", "company_id": company}
        for k in range(3)
    ]
    seen, stop = count_statements(s)
    try:
        store.insert_many(s, models.Contact, rows)
    finally:
        stop()
    assert len(seen) == 1, seen
    if s.get_bind().dialect.name == "postgresql":
        assert "unnest" in seen[0], seen[0]
    got = s.execute(
        sa.select(
            models.Contact.external_id,
            models.Contact.first_name,
            models.Contact.status,
            models.Contact.phone,
            models.Contact.company_id,
            models.Contact.created_at,
        )
        .where(models.Contact.source == "many")
        .order_by(models.Contact.external_id)
    ).all()
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in got] == [
        (f"M{k}", f"F{k}", "prospect", "", company) for k in range(3)
    ]
    assert all(r[5] is not None and r[5].tzinfo is not None for r in got)
