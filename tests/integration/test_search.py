"""Search (`services.search`, issue #14) on SQLite and PostgreSQL: words (accents folded),
person, company, date range, paging; what each viewer may find (`services.access`); the
index kept current by sync, edits, erasure and retention."""

from __future__ import annotations

import dataclasses
import mailbox
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager.db import models
from mailmanager.services import privacy
from mailmanager.services.search import Position, SearchQuery, SearchResult, search
from mailmanager.sync import engine as sync
from tests import recordworld as rw
from tests.mailgen import day, make


@pytest.fixture
def world(tmp_path: Path, db_url: str, factory: sessionmaker[Session]) -> rw.World:
    return rw.build(tmp_path, db_url, factory)


def find(world: rw.World, who: str, **kw: object) -> SearchResult:
    with world.factory() as s:
        return search(s, world.cfg, world.viewer(who), SearchQuery(**kw))  # type: ignore[arg-type]


def subjects(result: SearchResult) -> list[str]:
    return [h.subject for h in result.hits]


def test_words_person_company_and_dates_find_the_owners_mail(world: rw.World) -> None:
    assert subjects(find(world, rw.ALICE, words="devis")) == ["RE: Devis portes", "Devis portes"]
    assert subjects(find(world, rw.ALICE, words="DEVIS voici")) == ["Devis portes"]  # body too
    assert subjects(find(world, rw.ALICE, words="dev")) == ["RE: Devis portes", "Devis portes"]
    # Bob's "Catalogue 2027" is on Acme's record: Alice finds its metadata
    jane = ["Salon", "Catalogue 2027", "RE: Devis portes", "Devis portes"]
    assert subjects(find(world, rw.ALICE, person="jane@acme.fr")) == jane
    assert subjects(find(world, rw.ALICE, person="Jane Doe")) == subjects(
        find(world, rw.ALICE, person="jane@ACME.fr")
    )
    assert subjects(find(world, rw.ALICE, person="friends.example")) == ["Perso"]
    assert subjects(find(world, rw.ALICE, person="nobody@acme.fr")) == []
    by_name = subjects(find(world, rw.ALICE, company="acm"))
    assert by_name == jane
    assert subjects(find(world, rw.ALICE, company="acme.fr")) == by_name
    assert subjects(find(world, rw.ALICE, company="Initech")) == []
    since, until = day(1).date(), day(2).date()
    dated = subjects(find(world, rw.ALICE, since=since, until=until))
    assert dated[0] == "Catalogue 2027" and sorted(dated[1:]) == ["Perso", "RE: Devis portes"]
    combined = find(world, rw.ALICE, words="devis", company="Acme", since=day(1).date())
    assert subjects(combined) == ["RE: Devis portes"]
    hit = combined.hits[0]
    assert hit.thread_id == world.ids["thread:a1@acme.fr"] and hit.level == "content"
    assert hit.snippet and "Merci Jane" in hit.snippet
    assert any("alice@example.com" in p for p in hit.participants)
    assert find(world, rw.ALICE).hits == ()  # an empty search finds nothing
    assert subjects(find(world, rw.ALICE, since=date(2030, 1, 1))) == []


def test_accents_are_folded_both_ways_and_edits_are_indexed(world: rw.World) -> None:
    with world.factory.begin() as s:
        s.execute(
            sa.update(models.Message)
            .where(models.Message.id == world.ids["msg:p1@friends.example"])
            .values(subject="Équipement du chalet", snippet="Dîner samedi à Noël ?")
        )
    assert subjects(find(world, rw.ALICE, words="equipement")) == ["Équipement du chalet"]
    assert subjects(find(world, rw.ALICE, words="ÉQUIPÉMENT diner noel")) == [
        "Équipement du chalet"
    ]
    assert subjects(find(world, rw.ALICE, words="perso")) == []  # the old subject is gone


def test_paging_goes_through_every_hit_once(world: rw.World) -> None:
    pages = [find(world, rw.ALICE, person="jane@acme.fr", limit=2, offset=o) for o in (0, 2, 4)]
    assert [subjects(p) for p in pages] == [
        ["Salon", "Catalogue 2027"],
        ["RE: Devis portes", "Devis portes"],
        [],
    ]
    assert [p.more for p in pages] == [True, False, False]


def test_pages_from_the_last_or_first_hit_shown_match_the_offsets(world: rw.World) -> None:
    """Keyset pages (`before` the last hit: next; `after` the first: previous) are the
    offset pages, and the previous page of page 2 is page 1 again."""
    by_offset = [find(world, rw.ALICE, person="jane@acme.fr", limit=1, offset=o) for o in range(4)]
    assert all(len(p.hits) == 1 for p in by_offset)
    page = by_offset[0]
    for o in range(1, 4):
        last = page.hits[-1]
        assert last.sent_at is not None
        at = Position(last.sent_at, last.message_id)
        assert Position.parse(at.token) == at
        page = find(world, rw.ALICE, person="jane@acme.fr", limit=1, offset=o, before=at)
        assert subjects(page) == subjects(by_offset[o]) and page.offset == o
    assert page.more is False
    first = page.hits[0]
    assert first.sent_at is not None
    back = find(
        world,
        rw.ALICE,
        person="jane@acme.fr",
        limit=2,
        offset=1,
        after=Position(first.sent_at, first.message_id),
    )
    assert subjects(back) == ["Catalogue 2027", "RE: Devis portes"] and back.more
    assert Position.parse("2026-11-25T09:00:00~3") is None  # no time zone: by offset


def test_a_salesperson_finds_no_colleagues_mail_off_records_nor_its_content(
    world: rw.World,
) -> None:
    # Alice's friend mail is on no record: Bob finds it by no field
    for kw in ({"words": "perso"}, {"words": "diner"}, {"person": "max@friends.example"}):
        assert find(world, rw.BOB, **kw).hits == ()
    # Alice's client thread: Bob sees its metadata ("metadata" visibility) without a snippet,
    # and a word of its body alone does not find it
    found = find(world, rw.BOB, words="devis")
    assert subjects(found) == ["RE: Devis portes", "Devis portes"]
    assert all(h.snippet is None and h.level == "metadata" for h in found.hits)
    assert find(world, rw.BOB, words="voici").hits == ()
    assert find(world, rw.BOB, words="merci jane").hits == ()
    # Bob's own confidential mail: Alice cannot find it by its body, Bob and Carol can
    secret = "confidentiel"
    assert find(world, rw.ALICE, words=secret).hits == ()
    assert find(world, rw.DAVE, words=secret).hits == ()  # an admin reads no more
    for who in (rw.BOB, rw.CAROL):
        hits = find(world, who, words=secret).hits
        assert [h.subject for h in hits] == ["Catalogue 2027"]
        assert hits[0].snippet and secret in hits[0].snippet.lower()
    # org visibility "full": the content of client threads is shown to colleagues
    full = world.with_visibility("full")
    assert subjects(find(full, rw.ALICE, words=secret)) == ["Catalogue 2027"]
    assert find(full, rw.BOB, words="perso").hits == ()  # still on no record
    # "none": colleagues' threads are not found at all
    hidden = world.with_visibility("none")
    assert find(hidden, rw.BOB, words="devis").hits == ()
    assert subjects(find(hidden, rw.BOB, words="salon")) == ["Salon"]  # his own copy


def test_a_private_thread_is_found_by_its_owner_only(world: rw.World) -> None:
    thread = world.ids["thread:a1@acme.fr"]
    with world.factory.begin() as s:
        privacy.set_private(s, world.cfg, thread, rw.ALICE, True, "test")
    assert subjects(find(world, rw.ALICE, words="devis")) == ["RE: Devis portes", "Devis portes"]
    for who in (rw.BOB, rw.CAROL, rw.DAVE):
        assert find(world, who, words="devis").hits == ()
        assert find(world, who, company="acme").hits == () or all(
            h.thread_id != thread for h in find(world, who, company="acme").hits
        )


def test_the_index_follows_sync_erasure_and_retention(world: rw.World, tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "mail" / "alice", create=False)
    box.add(make(rw.JANE, rw.ALICE, "Livraison des portes", body="Camion prévu lundi.\n",
                 msgid="l1@acme.fr", at=day(4)))  # fmt: skip
    assert sync.Syncer(world.cfg, world.factory).sync("alice-inbox").status == "ok"
    assert subjects(find(world, rw.ALICE, words="camion prevu")) == ["Livraison des portes"]
    with world.factory() as s:
        privacy.erase(s, world.cfg, "cli:test", address="max@friends.example")
        s.commit()
    assert find(world, rw.ALICE, words="diner").hits == ()
    assert find(world, rw.ALICE, words="perso").hits == ()
    retention = dataclasses.replace(
        world.cfg, retention=dataclasses.replace(world.cfg.retention, messages_days=30)
    )
    with world.factory() as s:
        privacy.apply_retention(s, retention, day(33.5))  # day 0..3 are older than 30 days
        s.commit()
    assert subjects(find(world, rw.ALICE, words="portes")) == ["Livraison des portes"]
    with world.factory() as s:
        if s.get_bind().dialect.name == "sqlite":  # nothing left in the index of the gone
            gone = s.execute(
                sa.text("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'devis'")
            ).scalar()
            assert gone == 0


def test_erased_words_leave_the_sqlite_index(world: rw.World) -> None:
    with world.factory() as s:
        if s.get_bind().dialect.name != "sqlite":
            pytest.skip("FTS5 segments are SQLite's")
        privacy.erase(s, world.cfg, "cli:test", address="max@friends.example")
        s.commit()
        blobs = b"".join(
            bytes(b)
            for t in ("messages_fts_data", "participants_fts_data")
            for (b,) in s.execute(sa.text(f"SELECT block FROM {t}"))
        )
    assert b"diner" not in blobs.lower() and b"friends.example" not in blobs
