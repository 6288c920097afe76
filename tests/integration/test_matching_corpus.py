"""The whole shared corpus, synced then matched: no error, a verdict for every message.

SQLite only: the PostgreSQL path is covered by tests/cli/test_corpus_sync.py, whose sync
runs the matcher's per-batch hook over the same corpus.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from mailmanager import config
from mailmanager.db import models, store
from mailmanager.db.models import Link, MatchState, Message, Participant
from mailmanager.mail import normalize
from mailmanager.matching import cascade as matcher
from mailmanager.matching import run as linking
from mailmanager.sync import engine as sync
from tests.conftest import ConfigWriter


def test_whole_corpus_matches_without_error(
    corpus_dir: Path, sqlite_template: Path, tmp_path: Path, write_config: ConfigWriter
) -> None:
    db = tmp_path / "corpus.db"
    shutil.copy(sqlite_template, db)
    url = f"sqlite:///{db}"
    mailbox = f"""
        [[mailboxes]]
        name = "corpus"
        connector = "maildir"
        path = "{corpus_dir}"
        owner = "alice@example.com"
        [sync]
        parse_workers = 1
        """
    cfg = config.load(write_config(url, mailbox))
    engine = store.make_engine(url)
    factory = store.session_factory(engine)
    report = sync.Syncer(cfg, factory).sync("corpus")
    assert report.status == "ok", report.error

    with factory.begin() as s:
        total = s.scalar(sa.select(sa.func.count()).select_from(Message))
        verdicts = Counter(
            dict(
                s.execute(
                    sa.select(MatchState.reason, sa.func.count()).group_by(MatchState.reason)
                ).all()
            )
        )  # type: ignore[arg-type]
        assert sum(verdicts.values()) == total  # the sync hook gave every message a verdict
        assert set(verdicts) <= set(matcher.REASONS)
        assert verdicts["noise_bounce"] > 300 and verdicts["noise_bulk"] > 300
        # Make CRM records out of the corpus's real correspondents: the 40 most frequent
        # senders of real mail become contacts, their domains companies.
        senders = Counter(
            normalize.match_key(e)
            for (e,) in s.execute(
                sa.select(Participant.email)
                .join(MatchState, MatchState.message_id == Participant.message_id)
                .where(Participant.role == "from", MatchState.reason == "unknown")
            )
        )
        companies: dict[str, int] = {}
        for key, _ in senders.most_common(40):
            if key is None:
                continue
            domain = normalize.registrable_domain(key.rpartition("@")[2])
            company_id = None
            if not normalize.is_free_mail(domain):
                if domain not in companies:
                    c = models.Company(name=domain)
                    s.add(c)
                    s.flush()
                    s.add(models.CompanyDomain(company_id=c.id, domain=domain))
                    companies[domain] = c.id
                company_id = companies[domain]
            contact = models.Contact(first_name=key, company_id=company_id)
            s.add(contact)
            s.flush()
            s.add(models.ContactEmail(contact_id=contact.id, email=key, display=key))
        s.flush()
        first = linking.match_all(s, cfg)
    assert first.messages == total and first.added > 0
    assert first.reasons["unknown"] < verdicts["unknown"]
    with factory.begin() as s:
        linked = s.scalar(sa.select(sa.func.count(sa.distinct(Link.message_id))))
        assert linked == first.reasons["linked"]
        # Noise never links, even from known senders.
        noisy_links = s.scalar(
            sa.select(sa.func.count())
            .select_from(Link)
            .join(Message, Message.id == Link.message_id)
            .where(Message.is_bulk | Message.is_bounce | Message.is_auto_reply)
        )
        assert noisy_links == 0
        again = linking.match_all(s, cfg)
    assert (again.added, again.removed, again.changed) == (0, 0, 0)

    # Auto-creation over real mail: never free-mail, role or system addresses.
    text = Path(cfg.path or "").read_text() + '\n[matcher]\nauto_create = "sent_and_received"\n'
    eager = config.loads(text, base_dir=cfg.base_dir)
    with factory.begin() as s:
        created = linking.match_all(s, eager)
    assert created.contacts_created
    for key in created.contacts_created:
        domain = key.rpartition("@")[2]
        assert not normalize.is_free_mail(domain) and not normalize.is_role_address(key)
    engine.dispose()
