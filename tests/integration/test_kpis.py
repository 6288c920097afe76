"""The dashboard's figures (`services.kpis`) over a small hand-made world, on SQLite and
PostgreSQL: two salespeople (alice, bob) and their manager (carol), every figure checked
against values computed by hand (see `world`)."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config
from mailmanager.db import configrows, models
from mailmanager.services import access, kpis
from mailmanager.services.access import AccessError
from mailmanager.web import charts

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # Wednesday of ISO week 2026-W48

USERS = """
[[users]]
email = "alice@example.com"
name = "Alice Martin"
locale = "fr"
timezone = "Europe/Paris"
manager = "carol@example.com"
weekly_report = true
[[users]]
email = "bob@example.com"
name = "Bob Smith"
timezone = "Europe/Paris"
manager = "carol@example.com"
[[users]]
email = "carol@example.com"
name = "Carol Chef"
timezone = "Europe/Paris"
role = "manager"
weekly_report = true
[[users]]
email = "dave@example.com"
name = "Dave Admin"
timezone = "Europe/Paris"
role = "admin"
"""


def write_team_config(tmp_path: Path, db_url: str) -> config.Config:
    path = tmp_path / "team.toml"
    path.write_text(
        f'[database]\nurl = "{db_url}"\n[organization]\ndomains = ["example.com"]\n' + USERS
    )
    return config.load(path)


def at(day: int, hour: int, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, 0, tzinfo=UTC)


class World:
    """Builds rows directly (no sync): mailboxes with an INBOX and a Sent folder each."""

    def __init__(self, s: Session) -> None:
        self.s = s
        self.ids = {u.email: u.id for u in s.scalars(sa.select(models.User))}
        self.folders: dict[str, int] = {}
        self.seq = itertools.count(1)

    def mailbox(self, owner: str) -> None:
        box = models.Mailbox(name=f"{owner}-box", connector="imap", owner_id=self.ids[owner])
        self.s.add(box)
        self.s.flush()
        folder = models.Folder(mailbox_id=box.id, remote_id="INBOX", name="INBOX")
        self.s.add(folder)
        self.s.flush()
        self.folders[owner] = folder.id

    def company(self, name: str) -> int:
        row = models.Company(name=name)
        self.s.add(row)
        self.s.flush()
        return row.id

    def thread(self) -> int:
        row = models.Thread(subject="t")
        self.s.add(row)
        self.s.flush()
        return row.id

    def message(
        self,
        owners: list[str],
        thread: int,
        sent: datetime,
        direction: str,
        company: int | None = None,
        bulk: bool = False,
    ) -> int:
        n = next(self.seq)
        row = models.Message(
            key=f"k{n}",
            message_id=f"<m{n}@example.com>",
            thread_id=thread,
            sent_at=sent,
            direction=direction,
            from_email="x@client.example",
            is_bulk=bulk,
            sha256=hashlib.sha256(str(n).encode()).hexdigest(),
        )
        self.s.add(row)
        self.s.flush()
        for owner in owners:
            self.s.add(
                models.MessageLocation(
                    folder_id=self.folders[owner], provider_id=str(n), message_id=row.id
                )
            )
        if company is not None:
            self.s.add(
                models.Link(
                    message_id=row.id,
                    thread_id=thread,
                    target_kind="company",
                    target_id=company,
                    method="domain",
                )
            )
        self.s.flush()
        return row.id

    def reminder(
        self, user: str, thread: int, kind: str, status: str, due: datetime, updated: datetime
    ) -> None:
        self.s.add(
            models.Reminder(
                user_id=self.ids[user],
                thread_id=thread,
                kind=kind,
                cycle=next(self.seq),
                status=status,
                due_at=due,
                created_at=due,
                updated_at=updated,
            )
        )
        self.s.flush()


def world(s: Session) -> None:
    """alice: ACME thread answered in 2 h (W47) then 4 h (W48); Globex asked on W48 (also
    in bob's mailbox), unanswered; a newsletter (not counted); Old Corp last wrote on 1 Aug.
    bob: Globex answered in 24 h (W47); a thread on no record (answered, not measured)."""
    w = World(s)
    w.mailbox("alice@example.com")
    w.mailbox("bob@example.com")
    acme, globex, old = w.company("ACME"), w.company("Globex"), w.company("Old Corp")
    a, b = ["alice@example.com"], ["bob@example.com"]
    t1, t2, t3, t6, t4, t5 = (w.thread() for _ in range(6))
    w.message(a, t1, at(17, 10), "inbound", acme)
    w.message(a, t1, at(17, 12), "outbound", acme)
    w.message(a, t1, at(24, 9), "inbound", acme)
    w.message(a, t1, at(24, 13), "outbound", acme)
    w.message(a + b, t2, at(24, 10), "inbound", globex)
    w.message(a, t3, at(24, 11), "inbound", bulk=True)
    w.message(a, t6, at(1, 9, month=8), "inbound", old)
    w.message(a, t6, at(10, 9), "inbound")  # before the period
    w.message(b, t4, at(18, 9), "inbound", globex)
    w.message(b, t4, at(19, 9), "outbound", globex)
    w.message(b, t5, at(20, 8), "inbound")
    w.message(b, t5, at(20, 9), "outbound")
    w.reminder("alice@example.com", t2, "needs_response", "pending", at(25, 8), at(24, 10))
    w.reminder("alice@example.com", t1, "awaiting_reply", "done", at(19, 9), at(20, 9))
    w.reminder("alice@example.com", t1, "awaiting_reply", "answered", at(5, 9), at(10, 9))
    w.reminder("bob@example.com", t4, "awaiting_reply", "sent", at(21, 9), at(21, 9))
    w.reminder("bob@example.com", t4, "awaiting_reply", "snoozed", at(30, 9), at(22, 9))
    w.reminder("bob@example.com", t5, "awaiting_reply", "dismissed", at(19, 9), at(22, 9))
    s.commit()


@pytest.fixture
def team(
    tmp_path: Path, db_url: str, factory: sessionmaker[Session]
) -> Iterator[tuple[config.Config, Session]]:
    cfg = write_team_config(tmp_path, db_url)
    with factory() as s:
        configrows.ensure_config_rows(s, cfg)
        s.commit()
        world(s)
        yield cfg, s


def viewer(cfg: config.Config, email: str) -> access.Viewer:
    found = access.viewer_for(cfg, email)
    assert found is not None
    return found


def weeks(f: kpis.Figures) -> list[tuple[str, int, int]]:
    return [(w.label, w.inbound, w.outbound) for w in f.weeks]


def test_salesperson_sees_own_figures(team: tuple[config.Config, Session]) -> None:
    cfg, s = team
    d = kpis.dashboard(s, cfg, viewer(cfg, "alice@example.com"), NOW, weeks=2)
    assert d.people == ()
    assert d.start == datetime(2026, 11, 15, 23, 0, tzinfo=UTC)  # Monday 16 Nov, Paris
    assert d.end == NOW
    f = d.total
    assert f.median_answer == timedelta(hours=3)  # 2 h and 4 h
    assert (f.unanswered, f.followups_done, f.followups_overdue) == (1, 1, 1)
    assert f.churn == 1 and [q.name for q in f.quiet] == ["Old Corp"]
    assert dict(f.segments) == {"vip": 0, "active": 2, "at_risk": 1, "dormant": 0}
    assert weeks(f) == [("2026-W47", 1, 1), ("2026-W48", 2, 1)]
    assert f.weeks[0].monday == date(2026, 11, 16)

    bob = kpis.dashboard(s, cfg, viewer(cfg, "bob@example.com"), NOW, weeks=2).total
    assert bob.median_answer == timedelta(hours=24)
    assert (bob.unanswered, bob.followups_done, bob.followups_overdue) == (0, 0, 1)
    assert bob.churn == 0
    assert dict(bob.segments) == {"vip": 0, "active": 1, "at_risk": 0, "dormant": 0}
    assert weeks(bob) == [("2026-W47", 2, 2), ("2026-W48", 1, 0)]


def test_manager_sees_team_with_breakdown(team: tuple[config.Config, Session]) -> None:
    cfg, s = team
    d = kpis.dashboard(s, cfg, viewer(cfg, "carol@example.com"), NOW, weeks=2)
    f = d.total
    assert f.median_answer == timedelta(hours=4)  # 2, 4 and 24 h
    assert (f.unanswered, f.followups_done, f.followups_overdue) == (1, 1, 2)
    assert f.churn == 1
    assert dict(f.segments) == {"vip": 0, "active": 2, "at_risk": 1, "dormant": 0}
    # The Globex message held by both alice and bob counts once for the team.
    assert weeks(f) == [("2026-W47", 3, 3), ("2026-W48", 2, 1)]
    people = {p.email: p for p in d.people}
    assert sorted(people) == ["alice@example.com", "bob@example.com", "carol@example.com"]
    assert people["alice@example.com"].median_answer == timedelta(hours=3)
    assert weeks(people["bob@example.com"]) == [("2026-W47", 2, 2), ("2026-W48", 1, 0)]
    assert people["carol@example.com"].median_answer is None


def test_full_weeks_and_person_access(team: tuple[config.Config, Session]) -> None:
    cfg, s = team
    monday = datetime(2026, 11, 30, 7, 30, tzinfo=UTC)
    d = kpis.dashboard(s, cfg, viewer(cfg, "alice@example.com"), monday, 1, full_weeks=True)
    assert (d.start, d.end) == (at(22, 23), at(29, 23))
    assert weeks(d.total) == [("2026-W48", 2, 1)]
    assert d.total.median_answer == timedelta(hours=4)

    carol = viewer(cfg, "carol@example.com")
    assert kpis.person(s, cfg, carol, "bob@example.com", NOW, 2).followups_overdue == 1
    with pytest.raises(AccessError) as refused:
        kpis.person(s, cfg, viewer(cfg, "alice@example.com"), "bob@example.com", NOW, 2)
    assert refused.value.exists is False


@pytest.mark.parametrize("one_pass", [0, 10_000])
def test_company_figures_by_one_pass_or_by_anchors_agree(
    team: tuple[config.Config, Session], monkeypatch: pytest.MonkeyPatch, one_pass: int
) -> None:
    """`company_stats` reads a few companies through the anchors' index and many in one
    grouped pass: both give the figures checked above."""
    cfg, s = team
    monkeypatch.setattr(kpis, "ONE_PASS", one_pass)
    f = kpis.dashboard(s, cfg, viewer(cfg, "carol@example.com"), NOW, weeks=2).total
    assert f.churn == 1 and [q.name for q in f.quiet] == ["Old Corp"]
    assert dict(f.segments) == {"vip": 0, "active": 2, "at_risk": 1, "dormant": 0}
    ids = sorted(s.scalars(sa.select(models.Company.id)))
    monkeypatch.setattr(kpis, "ONE_PASS", 10_000)
    by_anchor = kpis.company_stats(s, ids, NOW)
    monkeypatch.setattr(kpis, "ONE_PASS", 0)
    assert kpis.company_stats(s, ids, NOW) == by_anchor
    assert any(last is not None for last, _, _ in by_anchor.values())


def test_charts_are_wellformed_svg() -> None:
    svg = charts.weekly_bars(
        [("2026-W47", 3, 3), ("2026-W48", 2, 1)], "Messages & <weeks>", "In", "Out"
    )
    root = ElementTree.fromstring(str(svg))
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg" and root.get("aria-label") == "Messages & <weeks>"
    assert "style" not in str(svg)
    titles = [t.text for t in root.iter(f"{ns}title")]
    assert "2026-W47: In 3" in titles and "2026-W48: Out 1" in titles
    assert [t.text for t in root.iter(f"{ns}text") if t.text in ("6", "3")] == ["6", "6", "3"]
    bar = charts.segment_bar([("vip", "VIP", 0), ("active", "Active", 2)], "Segments")
    seg = ElementTree.fromstring(str(bar))
    assert "Active: 2" in [t.text for t in seg.iter(f"{ns}title")]
    empty = ElementTree.fromstring(str(charts.segment_bar([], "None")))
    assert empty.get("aria-label") == "None"
