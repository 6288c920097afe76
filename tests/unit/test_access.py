"""Who reads what: each rule proved by trying to read what must be refused (SQLite and
PostgreSQL), over a team's mail synced through the real engine (`tests.recordworld`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager.db import models
from mailmanager.services import access, curation, records, reviewqueue, threadview
from mailmanager.services.access import AccessError
from tests import recordworld as rw
from tests.recordworld import ALICE, BOB, CAROL, DAVE, SECRET


@pytest.fixture
def world(tmp_path: Path, db_url: str, factory: sessionmaker[Session]) -> rw.World:
    return rw.build(tmp_path, db_url, factory)


@pytest.fixture
def s(world: rw.World) -> Iterator[Session]:
    with world.factory() as session:
        yield session
        session.rollback()


def _refused(s: Session, w: rw.World, who: str, message_id: int) -> list[bool]:
    """For each way to read a message's content: True when it was refused with AccessError."""
    v = w.viewer(who)
    calls = [
        lambda: threadview.message(s, w.cfg, v, message_id),
        lambda: threadview.html_body(s, w.cfg, v, message_id, allow_remote=True),
        lambda: threadview.attachment(s, w.cfg, v, message_id, 1),
        lambda: threadview.headers(s, w.cfg, v, message_id),
        lambda: threadview.raw(s, w.cfg, v, message_id),
    ]
    out = []
    for call in calls:
        try:
            call()
        except AccessError:
            out.append(True)
        else:
            out.append(False)
    return out


def test_the_rule_itself() -> None:
    v = access.Viewer(ALICE, "A", "salesperson", "en", "UTC", frozenset({ALICE}))
    assert access.level(v, {ALICE, BOB}, False, "none") == "content"
    assert access.level(v, {BOB}, False, "full") == "none"  # on no record: nothing
    assert access.level(v, {BOB}, True, "full") == "content"
    assert access.level(v, {BOB}, True, "metadata") == "metadata"
    assert access.level(v, {BOB}, True, "none") == "none"
    assert access.level(v, {ALICE}, True, "full", private_owner=BOB) == "none"
    assert access.level(v, {BOB}, True, "none", private_owner=ALICE) == "content"


def test_content_goes_to_owners_and_their_manager_only(s: Session, world: rw.World) -> None:
    bobs = world.ids["msg:b1@acme.fr"]
    assert _refused(s, world, ALICE, bobs) == [True] * 5
    assert _refused(s, world, DAVE, bobs) == [True] * 5  # admins get no content rights
    assert _refused(s, world, BOB, bobs) == [False] * 5
    assert _refused(s, world, CAROL, bobs) == [False] * 5  # Bob's manager
    # Refused as "exists" (403) when the viewer may see its metadata, as not found when not.
    with pytest.raises(AccessError) as refused:
        threadview.message(s, world.cfg, world.viewer(ALICE), bobs)
    assert refused.value.exists and SECRET not in str(refused.value)
    private = world.ids["msg:p1@friends.example"]  # on no record: Bob may not know of it
    with pytest.raises(AccessError) as hidden:
        threadview.raw(s, world.cfg, world.viewer(BOB), private)
    assert not hidden.value.exists
    with pytest.raises(AccessError):
        threadview.thread(s, world.cfg, world.viewer(BOB), world.ids["thread:p1@friends.example"])
    # A message in both mailboxes is read by both owners.
    shared = world.ids["msg:s1@acme.fr"]
    assert _refused(s, world, ALICE, shared)[0:1] == [False]
    assert _refused(s, world, BOB, shared)[0:1] == [False]


def test_client_record_per_visibility(s: Session, world: rw.World) -> None:
    acme = world.ids["acme"]

    def seen(w: rw.World, who: str) -> dict[str, list[tuple[str, str]]]:
        rec = records.record(s, w.cfg, w.viewer(who), "company", acme)
        return {t.subject: [(m.level, m.snippet) for m in t.messages] for t in rec.threads}

    # metadata (the default): Alice lists Bob's thread, without its content.
    got = seen(world, ALICE)
    assert set(got) == {"Devis portes", "Salon", "Catalogue 2027"}
    assert got["Catalogue 2027"] == [("metadata", "")]
    assert got["Devis portes"][0][0] == "content" and "devis" in got["Devis portes"][0][1]
    rec = records.record(s, world.cfg, world.viewer(ALICE), "company", acme)
    [bobs] = [t for t in rec.threads if t.subject == "Catalogue 2027"]
    assert {p.email for p in bobs.messages[0].parties} >= {"jane@acme.fr", BOB}
    assert not bobs.readable
    assert SECRET not in repr(rec)
    # none: not listed at all; full: listed with content, and readable by direct call.
    assert "Catalogue 2027" not in seen(world.with_visibility("none"), ALICE)
    full = world.with_visibility("full")
    assert seen(full, ALICE)["Catalogue 2027"][0][0] == "content"
    assert _refused(s, full, ALICE, world.ids["msg:b1@acme.fr"]) == [False] * 5
    # ... but even `full` opens no mail that is on no client record.
    assert _refused(s, full, BOB, world.ids["msg:p1@friends.example"]) == [True] * 5
    # The manager reads everything of their reports.
    assert seen(world, CAROL)["Catalogue 2027"][0][0] == "content"


def test_thread_view_lists_what_may_be_seen(s: Session, world: rw.World) -> None:
    devis = world.ids["thread:a1@acme.fr"]
    mine = threadview.thread(s, world.cfg, world.viewer(ALICE), devis)
    assert [m.level for m in mine.messages] == ["content", "content"] and mine.may_curate
    assert "Merci Jane." in mine.texts[world.ids["msg:a2@example.com"]]
    theirs = threadview.thread(s, world.cfg, world.viewer(BOB), devis)
    assert [m.snippet for m in theirs.messages] == ["", ""] and not theirs.may_curate
    assert dict(theirs.texts) == {}
    with pytest.raises(AccessError):
        threadview.thread(s, world.with_visibility("none").cfg, world.viewer(BOB), devis)
    bobs = threadview.thread(s, world.cfg, world.viewer(ALICE), world.ids["thread:b1@acme.fr"])
    assert SECRET not in repr(bobs)


def test_a_thread_marked_private_is_for_its_owner_alone(s: Session, world: rw.World) -> None:
    devis = world.ids["thread:a1@acme.fr"]
    thread = s.get(models.Thread, devis)
    assert thread is not None
    thread.private_owner = ALICE
    s.flush()
    assert set(access.thread_levels(s, world.cfg, world.viewer(ALICE), devis).values()) == {
        "content"
    }
    for who in (BOB, CAROL, DAVE):
        assert set(access.thread_levels(s, world.cfg, world.viewer(who), devis).values()) == {
            "none"
        }
    rec = records.record(s, world.cfg, world.viewer(CAROL), "company", world.ids["acme"])
    assert "Devis portes" not in {t.subject for t in rec.threads}


def test_the_lists_one_query_judges_as_levels_does(s: Session, world: rw.World) -> None:
    """`thread_levels_of` (the API's thread list: one query for a page) gives each message
    the level `levels` gives it, for every user and visibility, a private thread included."""
    thread = s.get(models.Thread, world.ids["thread:a1@acme.fr"])
    assert thread is not None
    thread.private_owner = ALICE
    s.flush()
    tids = list(s.scalars(sa.select(models.Thread.id)))
    mids = list(s.scalars(sa.select(models.Message.id).where(models.Message.thread_id.in_(tids))))
    kinds = set()
    for shown in ("full", "metadata", "none"):
        w = world.with_visibility(shown)
        for who in (ALICE, BOB, CAROL, DAVE):
            v = w.viewer(who)
            one = {x.id: x.level for x in access.thread_levels_of(s, w.cfg, v, tids)}
            assert one == access.levels(s, w.cfg, v, mids), (shown, who)
            kinds |= set(one.values())
    assert kinds == {"none", "metadata", "content"}


def test_link_and_unlink_need_a_reader(s: Session, world: rw.World) -> None:
    devis, opp = world.ids["thread:a1@acme.fr"], world.ids["opp1"]
    with pytest.raises(AccessError) as refused:
        records.link_thread(s, world.cfg, world.viewer(BOB), devis, "opportunity", str(opp))
    assert refused.value.exists
    records.link_thread(s, world.cfg, world.viewer(ALICE), devis, "opportunity", str(opp))
    rec = records.record(s, world.cfg, world.viewer(ALICE), "opportunity", opp)
    assert "Devis portes" in {t.subject for t in rec.threads}
    records.unlink_thread(s, world.cfg, world.viewer(CAROL), devis, "opportunity", str(opp))
    rec = records.record(s, world.cfg, world.viewer(ALICE), "opportunity", opp)
    assert "Devis portes" not in {t.subject for t in rec.threads}
    with pytest.raises(curation.CurationError):
        records.link_thread(s, world.cfg, world.viewer(ALICE), devis, "company", "999")
    records.link_thread(s, world.cfg, world.viewer(ALICE), devis, "opportunity", "opp-2")
    rec = records.record(s, world.cfg, world.viewer(ALICE), "opportunity", world.ids["opp2"])
    assert "Devis portes" in {t.subject for t in rec.threads}


def test_review_queue_needs_a_reader(s: Session, world: rw.World) -> None:
    opp = world.ids["opp1"]
    # Bob sees the items of his threads only, and may not act on Alice's.
    alices = {r.subject for r in reviewqueue.reviews(s, world.cfg, world.viewer(ALICE))}
    bobs = {r.subject: r for r in reviewqueue.reviews(s, world.cfg, world.viewer(BOB))}
    assert "Devis portes" in alices and "Devis portes" not in bobs
    [devis_item] = [r for r in reviewqueue.reviews(s, world.cfg, world.viewer(ALICE))
                    if r.subject == "Devis portes"]  # fmt: skip
    with pytest.raises(AccessError):
        reviewqueue.accept(s, world.cfg, world.viewer(BOB), devis_item.id, opp)
    with pytest.raises(curation.CurationError):
        reviewqueue.accept(s, world.cfg, world.viewer(BOB), bobs["Catalogue 2027"].id, 999)
    reviewqueue.accept(s, world.cfg, world.viewer(BOB), bobs["Catalogue 2027"].id, opp)
    reviewqueue.reject(s, world.cfg, world.viewer(ALICE), devis_item.id)
    status = dict(s.execute(sa.select(models.ReviewItem.id, models.ReviewItem.status)).all())
    assert status[devis_item.id] == "rejected"
    assert status[bobs["Catalogue 2027"].id] == "accepted"
    rec = records.record(s, world.cfg, world.viewer(BOB), "opportunity", opp)
    assert "Catalogue 2027" in {t.subject for t in rec.threads}
    with pytest.raises(curation.CurationError):  # one click: a second does nothing
        reviewqueue.reject(s, world.cfg, world.viewer(ALICE), devis_item.id)


def test_explain_and_lookup(s: Session, world: rw.World) -> None:
    why = records.explain(s, world.cfg, world.viewer(BOB), world.ids["msg:a1@acme.fr"])
    assert why.reason == "linked" and {x.kind for x in why.links} >= {"contact", "company"}
    with pytest.raises(AccessError):
        records.explain(s, world.cfg, world.viewer(BOB), world.ids["msg:p1@friends.example"])
    found = records.lookup(s, "acme")
    assert [c.name for c in found.companies] == ["Acme"]
    assert [c.name for c in records.lookup(s, "jane").contacts] == ["Jane Doe"]
    assert [o.reference for o in records.lookup(s, "opp-2").opportunities] == ["OPP-2"]


def test_record_threads_come_by_page_latest_first(
    s: Session, world: rw.World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records, "THREADS_PER_PAGE", 2)
    acme = world.ids["acme"]
    first = records.record(s, world.cfg, world.viewer(ALICE), "company", acme)
    second = records.record(s, world.cfg, world.viewer(ALICE), "company", acme, page=2)
    assert [t.subject for t in first.threads] == ["Salon", "Catalogue 2027"]
    assert [t.subject for t in second.threads] == ["Devis portes"]
    assert (first.thread_count, first.pages, second.page) == (3, 2, 2)
    hidden = records.record(
        s, world.with_visibility("none").cfg, world.viewer(ALICE), "company", acme
    )
    assert hidden.thread_count == 2  # Bob's thread is not even counted
