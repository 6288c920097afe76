"""CRM records service on a real database (SQLite and PostgreSQL): companies, contacts,
opportunities, duplicate detection and merging."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config
from mailmanager.crm import dedupe, opportunities
from mailmanager.crm import records as crm
from mailmanager.crm import views as crmviews
from mailmanager.db import configrows, models
from mailmanager.db.models import Contact, ContactEmail, Link, Participant
from mailmanager.sync import engine as sync
from tests.conftest import ConfigWriter


@pytest.fixture
def cfg(db_url: str, write_config: ConfigWriter) -> config.Config:
    return config.load(write_config(db_url, ""))


@pytest.fixture
def s(cfg: config.Config, factory: sessionmaker[Session]) -> Iterator[Session]:
    with factory() as session:
        configrows.ensure_config_rows(session, cfg)
        session.flush()
        yield session
        session.rollback()


def emails_of(s: Session, contact: Contact) -> list[tuple[str, str]]:
    return [(e.email, e.display) for e in crm.contact_emails(s, contact.id)]


# --- companies -------------------------------------------------------------------------------


def test_company_domains_are_normalized_unique_and_never_free_mail_or_ours(
    s: Session, cfg: config.Config
) -> None:
    acme = crm.create_company(
        s, cfg, "ACME Industrie", ["ACME-industrie.FR", "https://www.acme.de/contact", "münchen.de"]
    )
    assert crm.company_domains(s, acme.id) == ["acme-industrie.fr", "acme.de", "xn--mnchen-3ya.de"]
    with pytest.raises(crm.CrmError, match=r"acme.de already belongs to ACME Industrie"):
        crm.create_company(s, cfg, "Other", ["acme.de"])
    refused = {
        "gmail.com": "free-mail",
        "orange.fr": "free-mail",
        "mail.free.fr": "free-mail",
        "example.com": "organization",
        "sales.example.com": "organization",
        "co.uk": "public suffix",
        "gouv.fr": "public suffix",
        "not a domain": "not a domain",
    }
    for domain, reason in refused.items():
        with pytest.raises(crm.CrmError, match=reason) as info:
            crm.create_company(s, cfg, f"Co {domain}", [domain])
        assert info.value.field == "domains"
    with pytest.raises(crm.CrmError, match="already exists"):
        crm.create_company(s, cfg, "acme industrie")
    # a refused domain left no half-made company behind in this session's view of names
    assert crm.find_company(s, "acme industrie").id == acme.id
    assert crm.find_company(s, "acme.de").id == acme.id
    assert crm.find_company(s, str(acme.id)).id == acme.id
    with pytest.raises(crm.NotFoundError):
        crm.find_company(s, "Nobody")


def test_update_company_adds_and_removes_domains(s: Session, cfg: config.Config) -> None:
    acme = crm.create_company(s, cfg, "Acme", ["acme.fr"])
    assert crm.update_company(s, cfg, acme, add_domains=["acme.com"], remove_domains=["acme.fr"])
    assert crm.company_domains(s, acme.id) == ["acme.com"]
    assert not crm.update_company(s, cfg, acme, name="Acme", add_domains=["ACME.com"])
    with pytest.raises(crm.CrmError, match="has no domain"):
        crm.update_company(s, cfg, acme, remove_domains=["acme.fr"])
    view = crmviews.companies(s, search="acme.c")[0]
    assert (view.name, view.domains, view.contacts) == ("Acme", ("acme.com",), 0)


# --- contacts --------------------------------------------------------------------------------


def test_contact_addresses_are_stored_as_match_keys_with_display_form(
    s: Session, cfg: config.Config
) -> None:
    alice = crm.find_user(s, cfg, "ALICE@example.com")
    acme = crm.create_company(s, cfg, "Acme", ["acme.fr"])
    jean = crm.create_contact(
        s,
        cfg,
        ["Jean.Dupont+devis@GoogleMail.com", "jean.dupont@acme.fr"],
        "Jean",
        "Dupont",
        company=acme,
        owner=alice,
    )
    assert emails_of(s, jean) == [
        ("jeandupont@gmail.com", "Jean.Dupont+devis@GoogleMail.com"),
        ("jean.dupont@acme.fr", "jean.dupont@acme.fr"),
    ]
    assert crm.find_contact(s, cfg, "j.e.a.n.dupont@gmail.com").id == jean.id
    with pytest.raises(crm.CrmError, match="already belongs to contact"):
        crm.create_contact(s, cfg, ["jeandupont+x@gmail.com"])
    for address, reason in [
        ("bob@example.com", "organization"),
        ("noreply@acme.fr", "automated"),
        ("MAILER-DAEMON@acme.fr", "automated"),
        ("jean at acme", "not an e-mail"),
    ]:
        with pytest.raises(crm.CrmError, match=reason):
            crm.create_contact(s, cfg, [address])
    with pytest.raises(crm.NotFoundError, match="not a user"):
        crm.find_user(s, cfg, "carol@example.com")
    view = crmviews.contacts(s, search="dupont")[0]
    assert (view.name, view.company, view.owner) == ("Jean Dupont", "Acme", "alice@example.com")


def test_update_contact_fields_and_addresses(s: Session, cfg: config.Config) -> None:
    c = crm.create_contact(s, cfg, ["marie@client.fr"], "Marie")
    assert crm.update_contact(s, cfg, c, {"status": "Client", "phone": "+33 1 23 45 67 89"})
    assert (c.status, c.phone) == ("client", "+33 1 23 45 67 89")
    assert not crm.update_contact(s, cfg, c, {"status": "client"})
    crm.update_contact(
        s, cfg, c, {}, add_emails=["m.curie@client.fr"], remove_emails=["marie@client.fr"]
    )
    assert [e for e, _ in emails_of(s, c)] == ["m.curie@client.fr"]
    with pytest.raises(crm.CrmError, match="status"):
        crm.update_contact(s, cfg, c, {"status": "vip"})
    with pytest.raises(crm.CrmError, match="no field"):
        crm.update_contact(s, cfg, c, {"email": "x"})


# --- opportunities ---------------------------------------------------------------------------


def test_opportunity_references_stages_and_closing(s: Session, cfg: config.Config) -> None:
    acme = crm.create_company(s, cfg, "Acme", ["acme.fr"])
    jean = crm.create_contact(s, cfg, ["jean@acme.fr"], company=acme)
    first, _ = opportunities.save(s, cfg, None, {"title": "Portes", "company_id": acme.id}, [jean])
    second, _ = opportunities.save(s, cfg, None, {"title": "Fenêtres"})
    assert (first.reference, second.reference) == ("OPP-1001", "OPP-1002")
    own, _ = opportunities.save(
        s, cfg, None, {"title": "Audit", "reference": " opp-2041 ", "amount": Decimal("12500.5")}
    )
    assert (own.reference, own.amount) == ("OPP-2041", Decimal("12500.50"))
    assert opportunities.next_reference(s) == "OPP-2042"
    with pytest.raises(crm.CrmError, match="already used"):
        opportunities.save(s, cfg, None, {"title": "x", "reference": "OPP-2041"})
    for bad in ("2041", "OPP", "OPP 2041", "OPP-"):
        with pytest.raises(crm.CrmError, match="reference"):
            opportunities.save(s, cfg, None, {"title": "x", "reference": bad})
    with pytest.raises(crm.CrmError, match="stage"):
        opportunities.save(s, cfg, first, {"stage": "closed"})
    assert opportunities.find(s, "opp-1001").id == first.id

    assert opportunities.close(s, cfg, first, won=True, actor="test")
    assert first.stage == "won" and first.closed_at is not None
    assert not opportunities.close(s, cfg, first, won=True, actor="test")
    audit = s.scalars(
        sa.select(models.AuditLog).where(models.AuditLog.action == "opportunity.close")
    )
    rows = audit.all()
    assert len(rows) == 1 and json.loads(rows[0].detail) == {
        "from": "open",
        "to": "won",
        "reference": "OPP-1001",
    }
    opportunities.save(s, cfg, first, {"stage": "open"})
    assert first.closed_at is None
    view = crmviews.opportunities(s, stage="open", search="portes")[0]
    assert (view.reference, view.company, view.contacts) == ("OPP-1001", "Acme", ("jean@acme.fr",))


# --- duplicates and merging ------------------------------------------------------------------


def _message(s: Session, n: int) -> models.Message:
    m = models.Message(key=f"m{n}@test", message_id=f"m{n}@test", sha256=f"{n:064d}")
    s.add(m)
    s.flush()
    return m


def test_merge_moves_everything_and_is_audited(s: Session, cfg: config.Config) -> None:
    acme = crm.create_company(s, cfg, "Acme", ["acme.fr"])
    keep = crm.create_contact(s, cfg, ["jean@acme.fr"], "Jean", "", company=acme)
    other = crm.create_contact(
        s,
        cfg,
        ["j.dupont@gmail.com"],
        "",
        "Dupont",
        status="client",
        phone="0102",
        external_id="X1",
    )
    shared, only_other = (
        opportunities.save(s, cfg, None, {"title": t}, [keep, other])[0] if t == "a" else
        opportunities.save(s, cfg, None, {"title": t}, [other])[0]
        for t in ("a", "b")
    )  # fmt: skip
    m1, m2 = _message(s, 1), _message(s, 2)
    s.add_all(
        [
            Participant(
                message_id=m1.id, role="from", email="jdupont@gmail.com", contact_id=other.id
            ),
            Link(message_id=m1.id, target_kind="contact", target_id=other.id, method="address"),
            Link(message_id=m2.id, target_kind="contact", target_id=other.id, method="address"),
            Link(message_id=m2.id, target_kind="contact", target_id=keep.id, method="address"),
        ]
    )
    s.flush()
    other_id = other.id

    report = dedupe.merge_contacts(s, cfg, keep, other, actor="test")

    assert report == dedupe.MergeReport(
        kept=keep.id,
        removed=other_id,
        addresses=1,
        links=1,
        links_dropped=1,
        opportunities=1,
        participants=1,
        fields=("last_name", "phone", "status", "external_id"),
    )
    assert s.get(Contact, other_id) is None
    assert (keep.last_name, keep.status, keep.phone, keep.external_id) == (
        "Dupont",
        "client",
        "0102",
        "X1",
    )
    assert sorted(e for e, _ in emails_of(s, keep)) == ["jdupont@gmail.com", "jean@acme.fr"]
    assert opportunities.contact_ids(s, shared.id) == [keep.id]
    assert opportunities.contact_ids(s, only_other.id) == [keep.id]
    links = s.execute(sa.select(Link.message_id, Link.target_id).order_by(Link.message_id)).all()
    assert [tuple(r) for r in links] == [(m1.id, keep.id), (m2.id, keep.id)]
    assert s.scalar(sa.select(Participant.contact_id)) == keep.id
    audit = s.scalars(sa.select(models.AuditLog).where(models.AuditLog.action == "contact.merge"))
    entry = audit.one()
    assert entry.target == f"contact:{keep.id}"
    assert json.loads(entry.detail)["removed_contact"]["emails"] == ["jdupont@gmail.com"]
    with pytest.raises(crm.CrmError, match="itself"):
        dedupe.merge_contacts(s, cfg, keep, keep)


def test_duplicates_written_under_an_older_rule_are_found_and_rekeyed(
    s: Session, cfg: config.Config
) -> None:
    a = crm.create_contact(s, cfg, ["pierre@client.fr"], "Pierre")
    b = crm.create_contact(s, cfg, ["paul@client.fr"], "Paul")
    c = crm.create_contact(s, cfg, ["solo@client.fr"])
    # rows stored before Gmail dots were folded: unique as strings, one mailbox in fact
    s.add_all(
        [
            ContactEmail(contact_id=a.id, email="p.martin@gmail.com", display="p.martin@gmail.com"),
            ContactEmail(contact_id=b.id, email="pmartin+crm@gmail.com", display=""),
        ]
    )
    s.flush()
    assert dedupe.find_duplicate_contacts(s) == [(a.id, b.id)]
    assert dedupe.find_duplicate_contacts(s, strip_plus=False) == []
    dedupe.merge_contacts(s, cfg, a, b)
    keys = sorted(e for e, _ in emails_of(s, a))
    assert keys == ["paul@client.fr", "pierre@client.fr", "pmartin@gmail.com"]
    assert dedupe.find_duplicate_contacts(s) == []
    assert s.get(Contact, c.id) is not None


def test_creating_a_contact_links_its_past_mail(
    db_url: str, write_config: ConfigWriter, factory: sessionmaker[Session]
) -> None:
    """The retro-link hook: mail synced before the contact existed is linked to it."""
    from connectors.memory import MemoryConnector
    from mailmanager import spi
    from tests.mailgen import make

    acct = MemoryConnector.account("crm-relink")
    acct.add_folder("INBOX", spi.FolderRole.INBOX)
    try:
        acct.append(
            "INBOX",
            make("Jean <jean@acme-industrie.fr>", "alice@example.com", "Devis", msgid="d1@acme"),
        )
        cfg = config.load(
            write_config(
                db_url,
                """
                [[mailboxes]]
                name = "alice"
                connector = "memory"
                store = "crm-relink"
                owner = "alice@example.com"
                [sync]
                parse_workers = 0
                """,
            )
        )
        sync.Syncer(cfg, factory).sync("alice")
        with factory() as s:
            contact = crm.create_contact(s, cfg, ["Jean@Acme-Industrie.fr"], "Jean")
            s.commit()
            linked = s.scalars(
                sa.select(Link.target_id).where(
                    Link.target_kind == "contact", ~Link.tombstone, Link.message_id.is_not(None)
                )
            ).all()
        assert linked == [contact.id]
    finally:
        acct.clear()
