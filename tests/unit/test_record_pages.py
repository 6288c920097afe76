"""A client record page made in SQL (`services.records`): the threads counted and paged by
the database are exactly those `access` lets the viewer see, whatever the visibility, the
private threads and the page; the engagement figures are those of `services.engagement`;
the client lookup filters in SQL. SQLite and PostgreSQL, over a team's mail synced through
the real engine (`tests.recordworld`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager.db import models, store
from mailmanager.services import access, engagement, records
from tests import recordworld as rw
from tests.mailgen import day
from tests.recordworld import ALICE, BOB, CAROL, DAVE

NOW = day(10)
RECORDS = ("acme", "jane", "opp1", "opp2")
KINDS = {"acme": "company", "jane": "contact", "opp1": "opportunity", "opp2": "opportunity"}


@pytest.fixture
def world(tmp_path: Path, db_url: str, factory: sessionmaker[Session]) -> rw.World:
    return rw.build(tmp_path, db_url, factory)


@pytest.fixture
def s(world: rw.World) -> Iterator[Session]:
    with world.factory() as session:
        yield session
        session.rollback()


def _private(s: Session, thread_id: int, owner: str | None) -> None:
    s.execute(
        sa.update(models.Thread).where(models.Thread.id == thread_id).values(private_owner=owner)
    )
    s.flush()


def _expected(s: Session, w: rw.World, who: str, name: str) -> dict[int, list[int]]:
    """Thread -> its messages on the record the viewer sees, by `access.levels` alone."""
    linked = engagement.linked_messages(s, KINDS[name], w.ids[name])
    found = access.levels(s, w.cfg, w.viewer(who), [m.id for m in linked], all_on_records=True)
    out: dict[int, list[int]] = {}
    for m in linked:
        if found[m.id] != "none" and m.thread_id is not None:
            out.setdefault(m.thread_id, []).append(m.id)
    return out


def _paged(s: Session, w: rw.World, who: str, name: str) -> tuple[dict[int, list[int]], int]:
    """Every thread listed on every page (one per page) with its messages, and the count
    the page gives."""
    first = records.record(s, w.cfg, w.viewer(who), KINDS[name], w.ids[name], now=NOW)
    listed = list(first.threads)
    for page in range(2, first.pages + 2):  # and one page past the end
        rec = records.record(s, w.cfg, w.viewer(who), KINDS[name], w.ids[name], page, now=NOW)
        assert rec.thread_count == first.thread_count
        listed += rec.threads
    assert len({t.id for t in listed}) == len(listed)
    assert all(t.message_count == len(t.messages) for t in listed)
    return {t.id: [m.id for m in t.messages] for t in listed}, first.thread_count


def test_pages_list_and_count_what_access_shows(
    s: Session, world: rw.World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records, "THREADS_PER_PAGE", 1)
    devis, catalogue = world.ids["thread:a1@acme.fr"], world.ids["thread:b1@acme.fr"]
    salon = world.ids["thread:s1@acme.fr"]
    privacy: list[tuple[int, str | None]] = [
        (devis, None),
        (catalogue, BOB),  # Bob's own thread, private: Alice and Carol must not learn of it
        (devis, ALICE),
        (salon, BOB),  # in both mailboxes, private to Bob: Alice's copy is hidden too
    ]
    checked = 0
    for thread_id, owner in privacy:
        _private(s, thread_id, owner)
        for visibility in ("metadata", "none", "full"):
            w = world.with_visibility(visibility)
            for who in (ALICE, BOB, CAROL, DAVE):
                for name in RECORDS:
                    listed, count = _paged(s, w, who, name)
                    expected = _expected(s, w, who, name)
                    assert listed == expected, (owner, visibility, who, name)
                    assert count == len(expected), (owner, visibility, who, name)
                    checked += bool(expected)
    assert checked > 50  # most cases list something: the comparison is not vacuous


def test_a_colleagues_private_thread_is_on_no_page_and_not_counted(
    s: Session, world: rw.World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records, "THREADS_PER_PAGE", 1)
    _private(s, world.ids["thread:b1@acme.fr"], BOB)
    listed, count = _paged(s, world, ALICE, "acme")
    assert count == 2 and len(listed) == 2
    assert world.ids["thread:b1@acme.fr"] not in listed
    listed, count = _paged(s, world, BOB, "acme")
    assert count == 3 and world.ids["thread:b1@acme.fr"] in listed


def test_figures_are_the_engagement_less_a_colleagues_private_thread(
    s: Session, world: rw.World
) -> None:
    for name in ("acme", "jane"):
        kind, rid = KINDS[name], world.ids[name]
        full = engagement.engagement(s, kind, [rid], NOW)[rid]
        figures = records.record(s, world.cfg, world.viewer(ALICE), kind, rid, now=NOW).engagement
        expected = {k: v for k, v in asdict(full).items() if k in asdict(figures)}
        assert asdict(figures) == expected, name
        assert figures.exchanges_365 >= 4 and figures.last_inbound is not None
    # Bob's "Catalogue 2027" (one message from Jane, the latest but "Salon") made private.
    acme = world.ids["acme"]
    before = records.record(s, world.cfg, world.viewer(ALICE), "company", acme, now=NOW)
    _private(s, world.ids["thread:b1@acme.fr"], BOB)
    after = records.record(s, world.cfg, world.viewer(ALICE), "company", acme, now=NOW)
    bobs = records.record(s, world.cfg, world.viewer(BOB), "company", acme, now=NOW)
    assert after.engagement.exchanges_365 == before.engagement.exchanges_365 - 1
    assert bobs.engagement == before.engagement


def test_lookup_filters_in_the_database(s: Session, world: rw.World) -> None:
    s.add(models.Company(name="Établissements Çelik"))
    helene = models.Contact(first_name="Hélène", last_name="Çelik")
    s.add(helene)
    s.flush()
    s.add(
        models.ContactEmail(
            contact_id=helene.id, email="h.celik@orange.fr", display="H.Celik@Orange.fr"
        )
    )
    s.add(models.Opportunity(reference="OPP-ÇE", title="Portail Çelik"))
    s.flush()
    for text in ("çelik", "ÇELIK", "Hélène Çelik", "h.celik@", "ORANGE.FR"):
        assert [c.name for c in records.lookup(s, text).contacts] == ["Hélène Çelik"], text
    assert [c.name for c in records.lookup(s, "jane doe").contacts] == ["Jane Doe"]
    assert [c.name for c in records.lookup(s, "éTablissements").companies] == [
        "Établissements Çelik"
    ]
    assert [o.title for o in records.lookup(s, "portail ç").opportunities] == ["Portail Çelik"]
    assert [o.reference for o in records.lookup(s, "opp-").opportunities] == [
        "OPP-1",
        "OPP-2",
        "OPP-ÇE",
    ]
    assert records.lookup(s, "100%").contacts == () and records.lookup(s, "_").contacts == ()
    assert len(records.lookup(s, "", limit=1).contacts) == 1


def test_a_long_thread_lists_its_latest_messages(
    s: Session, world: rw.World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records, "MESSAGES_PER_THREAD", 1)
    rec = records.record(s, world.cfg, world.viewer(ALICE), "company", world.ids["acme"])
    [devis] = [t for t in rec.threads if t.id == world.ids["thread:a1@acme.fr"]]
    assert devis.subject == "Devis portes"  # its first message's, though not listed
    assert [m.id for m in devis.messages] == [world.ids["msg:a2@example.com"]]
    assert (devis.message_count, devis.earlier) == (2, 1)
    bobs = records.record(s, world.cfg, world.viewer(BOB), "company", world.ids["acme"])
    [devis] = [t for t in bobs.threads if t.id == world.ids["thread:a1@acme.fr"]]
    assert devis.message_count == 2 and not devis.readable  # metadata of Alice's thread


def test_a_web_servers_sqlite_connections_keep_a_small_page_cache(tmp_path: Path) -> None:
    engine = store.make_engine(f"sqlite:///{tmp_path / 'pages.db'}")
    factory = store.session_factory(engine)

    def cache_size() -> int:
        with factory() as session:
            return int(session.scalar(sa.text("PRAGMA cache_size")) or 0)

    assert cache_size() == -32768  # a sync batch's
    store.for_pages(factory)
    assert cache_size() == -store.PAGE_CACHE_KIB  # the pooled connection too
    with engine.connect() as first, engine.connect() as second:  # and new ones
        for conn in (first, second):
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -store.PAGE_CACHE_KIB
    engine.dispose()
