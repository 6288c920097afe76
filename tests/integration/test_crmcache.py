"""The matcher's in-memory copy of the CRM is used only while the CRM is unchanged.

Real triggers on SQLite and PostgreSQL renew the token; these tests change the CRM the ways
the application and an administrator do (ORM, plain SQL, another connection, a rollback)
and check that the next batch sees the change.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager.db import models, store
from mailmanager.matching import cascade as matcher
from mailmanager.matching import crmcache

BIG = crmcache.WHOLE_ABOVE + 1  # a run big enough to load (and cache) the whole CRM


@pytest.fixture
def crm(factory: sessionmaker[Session]) -> Iterator[sessionmaker[Session]]:
    with factory.begin() as s:
        acme = models.Company(name="Acme")
        s.add(acme)
        s.flush()
        s.add(models.CompanyDomain(company_id=acme.id, domain="acme.fr"))
        jane = models.Contact(first_name="Jane", last_name="Doe", company_id=acme.id)
        s.add(jane)
        s.flush()
        s.add(models.ContactEmail(contact_id=jane.id, email="jane@acme.fr"))
        opp = models.Opportunity(reference="OPP-1", company_id=acme.id, stage="open")
        s.add(opp)
    yield factory
    crmcache.forget(factory.kw["bind"])


def _index(factory: sessionmaker[Session], threads: int = BIG) -> matcher.Index | None:
    with factory.begin() as s:
        return crmcache.whole_index(s, threads)


def _token(factory: sessionmaker[Session]) -> int | None:
    with factory() as s:
        return crmcache.token(s)


def test_the_copy_is_kept_while_nothing_changes(crm: sessionmaker[Session]) -> None:
    first = _index(crm)
    assert first is not None and set(first.contacts) == {"jane@acme.fr"}
    assert _index(crm) is first
    assert _index(crm, threads=1) is first  # small runs use it too, once it is there
    with crm.begin() as s:  # what matters to no decision keeps it
        s.execute(sa.update(models.Contact).values(phone="+33 1 23 45 67 89"))
        s.execute(sa.update(models.Opportunity).values(title="Big deal", amount=1000))
        stamp = models.utcnow()  # wall clock: any date changes the CRM
        s.execute(sa.update(models.Opportunity).values(last_activity_at=stamp))
    assert _index(crm) is first


@pytest.mark.parametrize(
    "change",
    [
        "INSERT INTO contact_emails (contact_id, email, display) "
        "SELECT id, 'jd@acme.fr', '' FROM contacts",
        "UPDATE contact_emails SET email = 'doe@acme.fr'",
        "DELETE FROM contact_emails",
        "UPDATE contacts SET company_id = NULL",
        "INSERT INTO company_domains (company_id, domain) SELECT id, 'acme.com' FROM companies",
        "DELETE FROM company_domains",
        "UPDATE opportunities SET stage = 'won'",
        "UPDATE opportunities SET reference = 'OPP-2'",
        "INSERT INTO opportunity_contacts (opportunity_id, contact_id) "
        "SELECT o.id, c.id FROM opportunities o, contacts c",
        "DELETE FROM opportunities",
    ],
)
def test_any_change_the_matcher_reads_renews_the_token(
    crm: sessionmaker[Session], change: str
) -> None:
    first = _index(crm)
    before = _token(crm)
    with crm.begin() as s:  # plain SQL, as an administrator would
        s.connection().exec_driver_sql(change)
    assert _token(crm) != before
    second = _index(crm)
    assert second is not None and second is not first


def test_last_activity_counts_only_for_a_closed_opportunity_without_a_closing_date(
    crm: sessionmaker[Session],
) -> None:
    with crm.begin() as s:
        s.execute(sa.update(models.Opportunity).values(stage="lost", closed_at=None))
    before = _token(crm)
    with crm.begin() as s:
        stamp = models.utcnow()  # wall clock: any date changes the CRM
        s.execute(sa.update(models.Opportunity).values(last_activity_at=stamp))
    assert _token(crm) != before  # it is where that opportunity ends now


def test_a_change_from_another_connection_is_seen_by_the_next_batch(
    crm: sessionmaker[Session], db_url: str
) -> None:
    first = _index(crm)
    assert first is not None and "new@acme.fr" not in first.contacts
    other = store.make_engine(db_url)  # another process's engine, as a CLI import would use
    with other.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO contact_emails (contact_id, email, display) "
            "SELECT id, 'new@acme.fr', '' FROM contacts"
        )
    other.dispose()
    second = _index(crm)
    assert second is not None and "new@acme.fr" in second.contacts


def test_a_copy_read_in_a_transaction_that_rolled_back_is_never_used(
    crm: sessionmaker[Session],
) -> None:
    with crm() as s:
        s.add(models.ContactEmail(contact_id=1, email="ghost@acme.fr"))
        s.flush()
        inside = crmcache.whole_index(s, BIG)
        assert inside is not None and "ghost@acme.fr" in inside.contacts
        s.rollback()
    after = _index(crm)
    assert after is not None and after is not inside and "ghost@acme.fr" not in after.contacts


def test_own_changes_keep_the_copy_current(crm: sessionmaker[Session]) -> None:
    index = _index(crm)
    assert index is not None
    with crm.begin() as s:
        assert crmcache.whole_index(s, BIG) is index
        with crmcache.own_changes(s, index):
            s.add(models.ContactEmail(contact_id=1, email="auto@acme.fr"))
            s.flush()
            index.contacts["auto@acme.fr"] = 1
    assert _index(crm) is index  # reused: its token is the one these writes left

    with crm() as s:  # the same, rolled back: the copy that knows "auto2" is dropped
        with crmcache.own_changes(s, index):
            s.add(models.ContactEmail(contact_id=1, email="auto2@acme.fr"))
            s.flush()
            index.contacts["auto2@acme.fr"] = 1
        s.rollback()
    fresh = _index(crm)
    assert fresh is not None and fresh is not index and "auto2@acme.fr" not in fresh.contacts


def test_a_dry_run_gets_a_copy_it_may_scribble_on(crm: sessionmaker[Session]) -> None:
    index = _index(crm)
    assert index is not None
    with crm() as s:
        dry = crmcache.whole_index(s, BIG, dry_run=True)
    assert dry is not None and dry is not index
    dry.contacts["placeholder@x.fr"] = -1
    assert "placeholder@x.fr" not in index.contacts
    assert _index(crm) is index


def test_small_runs_read_only_what_they_need_until_the_process_is_busy(
    crm: sessionmaker[Session],
) -> None:
    assert _index(crm, threads=10) is None
    assert _index(crm, threads=crmcache.WHOLE_ABOVE - 10) is None
    assert _index(crm, threads=20) is not None  # the process has matched enough by now
