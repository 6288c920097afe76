"""Acceptance on the shared corpus (real bounces, auto-replies, list mail and replies): synced
with the maildir connector, then evaluated after all of it, no reminder is ever about noise.

The corpus is nobody's sales mailbox, so its busiest correspondents are made users: the
addresses that receive the most bounces, auto-replies and list mail (a broken rule would
answer them with needs_response reminders) and those exchanging the most real mail (so
reminders do get created and the check is not vacuous).
"""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mailmanager import config
from mailmanager.db import configrows, store
from mailmanager.db.models import Message, Participant, Reminder
from mailmanager.mail import normalize
from mailmanager.reminders import evaluation as reminders
from mailmanager.sync import engine as sync

NOISE = Message.is_auto_reply | Message.is_bulk | Message.is_bounce


def _top(session: sa.orm.Session, stmt: sa.Select[Any], n: int) -> list[str]:
    return [a for a in session.scalars(stmt.limit(n * 3)) if a and "@" in a][:n]


def _users(session: sa.orm.Session) -> list[str]:
    by_count = sa.func.count().desc()
    noise_rcpt = (
        sa.select(Participant.email)
        .join(Message, Message.id == Participant.message_id)
        .where(Participant.role == "to", NOISE)
        .group_by(Participant.email)
        .order_by(by_count)
    )
    real_rcpt = (
        sa.select(Participant.email)
        .join(Message, Message.id == Participant.message_id)
        .where(Participant.role == "to", ~NOISE)
        .group_by(Participant.email)
        .order_by(by_count)
    )
    real_from = (
        sa.select(Message.from_email).where(~NOISE).group_by(Message.from_email).order_by(by_count)
    )
    found = _top(session, noise_rcpt, 15) + _top(session, real_rcpt, 8)
    found += _top(session, real_from, 8)
    return sorted(set(found))


def test_no_reminder_is_about_noise(corpus_dir: Path, db_url: str, tmp_path: Path) -> None:
    head = f'[database]\nurl = "{db_url}"\n'
    placeholder = head + textwrap.dedent(
        f"""
        [[users]]
        email = "corpus-owner@example.invalid"
        name = "Owner"
        [[mailboxes]]
        name = "corpus"
        connector = "maildir"
        path = "{corpus_dir}"
        owner = "corpus-owner@example.invalid"
        """
    )
    (tmp_path / "sync.toml").write_text(placeholder)
    engine = store.make_engine(db_url)
    factory = store.session_factory(engine)
    report = sync.Syncer(config.load(tmp_path / "sync.toml"), factory).sync("corpus")
    assert report.status == "ok" and report.total("new_messages") > 2000

    with factory() as s:
        users = _users(s)
        latest = s.scalar(sa.select(sa.func.max(Message.sent_at)))
    assert latest is not None
    text = placeholder + "".join(f'[[users]]\nemail = "{u}"\nname = "U"\n' for u in users)
    text += "[reminders]\nmax_age_days = 100000\n"
    (tmp_path / "eval.toml").write_text(text)
    cfg = config.load(tmp_path / "eval.toml")
    now = latest + timedelta(days=30)
    with store.session_scope(factory) as s:
        configrows.ensure_config_rows(s, cfg)
        s.flush()
        result = reminders.evaluate(s, cfg, now)
    assert result.threads > 1000

    with factory() as s:
        rows = s.execute(
            sa.select(Reminder.kind, Reminder.thread_id, Message).join(
                Message, Message.id == Reminder.message_id
            )
        ).all()
        # Threads whose last message is noise sent to a user: a broken rule reminds there.
        last = (
            sa.select(Message.thread_id, sa.func.max(Message.sent_at).label("at"))
            .group_by(Message.thread_id)
            .subquery()
        )
        noise_last = set(
            s.scalars(
                sa.select(Message.thread_id)
                .join(
                    last,
                    sa.and_(last.c.thread_id == Message.thread_id, last.c.at == Message.sent_at),
                )
                .join(Participant, Participant.message_id == Message.id)
                .where(NOISE, Participant.role == "to", Participant.email.in_(users))
            )
        )
        total = s.scalar(sa.select(sa.func.count()).select_from(Reminder))
    engine.dispose()

    kinds = {k for k, _, _ in rows}
    assert total == len(rows) > 10  # every reminder names its message; some were created
    assert "needs_response" in kinds, kinds
    assert len(noise_last) > 50
    for kind, thread_id, m in rows:
        assert not (m.is_auto_reply or m.is_bulk or m.is_bounce or m.is_out_of_office), (kind, m.id)
        assert m.list_id is None and m.thread_id == thread_id
        if kind == "needs_response":
            assert m.from_email not in users and not normalize.is_system_sender(m.from_email)
        elif kind == "awaiting_reply":
            assert m.from_email in users
    reminded = {t for _, t, _ in rows}
    # A thread ending in noise may carry a reminder only about an earlier real message.
    for kind, thread_id, m in rows:
        if thread_id in noise_last:
            assert m.sent_at is not None and kind in ("awaiting_reply", "needs_response")
    assert len(noise_last - reminded) > 50
    print(
        f"{len(rows)} reminders {sorted(kinds)}; {len(noise_last)} threads end in noise to a user"
    )
