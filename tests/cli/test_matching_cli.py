"""The matching commands as a user runs them: real CLI subprocesses on a real database."""

from __future__ import annotations

import json
import mailbox
import shutil
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mailmanager.db import models, store
from tests.cli.helpers import cli, cli_json
from tests.conftest import ConfigWriter
from tests.mailgen import day, make

ALICE = "Alice Martin <alice@example.com>"
JANE = "Jane Doe <jane@acme.fr>"


def _seed(url: str) -> None:
    engine = store.make_engine(url)
    with store.session_factory(engine).begin() as s:
        acme = models.Company(name="Acme")
        s.add(acme)
        s.flush()
        s.add(models.CompanyDomain(company_id=acme.id, domain="acme.fr"))
        jane = models.Contact(first_name="Jane", last_name="Doe", company_id=acme.id)
        s.add(jane)
        s.flush()
        s.add(models.ContactEmail(contact_id=jane.id, email="jane@acme.fr", display="jane@acme.fr"))
        for ref in ("OPP-1", "OPP-2"):
            o = models.Opportunity(
                reference=ref, title=ref, company_id=acme.id, created_at=day(-90)
            )
            s.add(o)
            s.flush()
            s.add(models.OpportunityContact(opportunity_id=o.id, contact_id=jane.id))
    engine.dispose()


def _snapshot(url: str) -> dict[str, Any]:
    engine = store.make_engine(url)
    with engine.connect() as conn:
        out = {
            name: sorted(map(tuple, conn.execute(sa.select(model.__table__))))  # type: ignore[attr-defined]
            for name, model in (
                ("links", models.Link),
                ("states", models.MatchState),
                ("reviews", models.ReviewItem),
                ("suggestions", models.Suggestion),
            )
        }
    engine.dispose()
    return out


def test_match_explain_review_unlink_dry_run_timeline_export(
    tmp_path: Path, sqlite_template: Path, write_config: ConfigWriter
) -> None:
    # SQLite only: every CLI start costs a second; tests/integration/test_matching_scenario.py
    # runs the same code paths in-process on PostgreSQL too.
    shutil.copy(sqlite_template, tmp_path / "mm.db")
    db_url = f"sqlite:///{tmp_path / 'mm.db'}"
    box = mailbox.Maildir(tmp_path / "mail", create=True)
    box.add(make(ALICE, JANE, "Devis portes", msgid="q1@example.com", at=day(0)))
    box.add(make(JANE, ALICE, "RE: Devis portes", msgid="r1@acme.fr", reply_to="q1@example.com",
                 at=day(1)))  # fmt: skip
    box.add(make(JANE, ALICE, "Absence", msgid="ooo@acme.fr", at=day(1.5),
                 headers={"Auto-Submitted": "auto-replied"}))  # fmt: skip
    box.add(make("Paul <paul@acme.fr>", ALICE, "Catalogue", msgid="p1@acme.fr", at=day(2)))
    mailboxes = f"""
        [[mailboxes]]
        name = "alice"
        connector = "maildir"
        path = "{tmp_path / "mail"}"
        owner = "alice@example.com"
        """
    cfg = write_config(db_url, mailboxes)
    _seed(db_url)
    cli("sync", config=cfg)

    # explain: a linked message and a noise message, with their reasons.
    text = cli("explain", "r1@acme.fr", config=cfg).stdout
    assert "verdict: linked" in text
    assert "Jane Doe <jane@acme.fr>  address 0.90" in text
    assert "jane@acme.fr (from) is this contact's" in text
    noise = cli_json("explain", "ooo@acme.fr", config=cfg)
    assert noise["reason"] == "noise_auto_reply" and noise["links"] == []

    # Two open opportunities for Jane (and for Acme, where Paul writes from): each thread is
    # a review item; accepting one links its thread.
    items = cli_json("review", "list", config=cfg)
    assert sorted(i["subject"] for i in items) == ["Catalogue", "Devis portes"]
    [item] = [i for i in items if i["subject"] == "Devis portes"]
    assert {c["label"] for c in item["candidates"]} == {"OPP-1 OPP-1", "OPP-2 OPP-2"}
    cli("review", "accept", str(item["id"]), "--opportunity", "opp-2", config=cfg)
    assert sorted(r[5] for r in _snapshot(db_url)["reviews"]) == ["accepted", "pending"]

    # Unlink leaves a tombstone that survives a full re-match and a re-sync.
    cli("unlink", "r1@acme.fr", "company", "acme.fr", "--by", "alice", config=cfg)
    cli("match", "--all", config=cfg)
    box.add(make(ALICE, JANE, "RE: Devis portes", msgid="q2@example.com",
                 reply_to=["q1@example.com", "r1@acme.fr"], at=day(3)))  # fmt: skip
    cli("sync", config=cfg)
    r1 = cli_json("explain", "r1@acme.fr", config=cfg)
    assert "company" not in {x["kind"] for x in r1["links"]}
    assert [(x["kind"], x["created_by"]) for x in r1["unlinked"]] == [("company", "alice")]

    # A dry run under a new blocklist reports the changes and writes nothing.
    blocked = write_config(db_url, mailboxes, '[matcher]\nblocklist = ["@acme.fr"]\n', "b.toml")
    before = _snapshot(db_url)
    dry = cli_json("match", "--all", "--dry-run", config=blocked)
    assert dry["dry_run"] and dry["links_removed"] > 0 and dry["links_added"] == 0
    assert dry["reasons"]["blocklisted"] == 4
    assert {c["action"] for c in dry["changes"]} == {"remove"}
    assert _snapshot(db_url) == before

    # Timeline and engagement of the contact; export of every link.
    tl = cli_json("timeline", "contact", "jane@acme.fr", config=cfg)
    assert [i["message_id"] for i in tl["interactions"]] == [
        "q1@example.com",
        "r1@acme.fr",
        "q2@example.com",
    ]
    assert [i["direction"] for i in tl["interactions"]] == ["outbound", "inbound", "outbound"]
    assert tl["interactions"][0]["mailboxes"] == ["alice"]
    figures = tl["engagement"]
    assert figures["exchanges_365"] == 3 and figures["median_reply_theirs_hours"] == 24.0
    exported = json.loads(cli("links", "export", "--json", config=cfg).stdout)
    by_id = {e["message_id"]: e for e in exported}
    assert by_id["r1@acme.fr"]["contacts"] == [{"emails": ["jane@acme.fr"], "method": "address"}]
    # The accepted review linked the whole thread by hand, the later reply q2 included.
    for mid in ("q1@example.com", "r1@acme.fr", "q2@example.com"):
        assert by_id[mid]["opportunities"] == [{"reference": "OPP-2", "method": "manual"}]
    assert by_id["q2@example.com"]["companies"] == [{"name": "Acme", "method": "contact"}]
    assert by_id["r1@acme.fr"]["companies"] == []  # unlinked by hand
    assert by_id["p1@acme.fr"]["companies"] == [{"name": "Acme", "method": "domain"}]
    assert "ooo@acme.fr" not in by_id

    # A bad target fails with a clear message and exit code 1.
    bad = cli("link", "r1@acme.fr", "contact", "nobody@nowhere.fr", config=cfg, check=False)
    assert bad.returncode == 1 and "no contact" in bad.stderr
