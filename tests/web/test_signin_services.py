"""The services behind sign-in and My follow-ups, in process on SQLite and PostgreSQL, at fixed
instants: one-time links (once, expiry, races), rate limits, sessions (idle, absolute, revoked,
user gone), and the follow-ups' permission rule and single-use digest links."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config
from mailmanager.db import configrows, models, store
from mailmanager.notify import actionlinks
from mailmanager.services import followups, signin
from mailmanager.services.access import viewer_for

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


@pytest.fixture
def cfg(db_url: str, tmp_path: Path) -> config.Config:
    text = textwrap.dedent(
        f"""
        [database]
        url = "{db_url}"
        [organization]
        domains = ["example.com"]
        [[users]]
        email = "alice@example.com"
        name = "Alice"
        locale = "fr"
        manager = "carol@example.com"
        aliases = ["a.martin@example.com"]
        [[users]]
        email = "bob@example.com"
        name = "Bob"
        [[users]]
        email = "carol@example.com"
        name = "Carol"
        role = "manager"
        [web]
        login_limit_per_address = 2
        login_limit_per_ip = 3
        login_limit_minutes = 10
        session_idle_minutes = 30
        session_max_hours = 8
        secret_file = "web.key"
        """
    )
    return config.loads(text, base_dir=str(tmp_path))


@pytest.fixture
def s(cfg: config.Config, factory: sessionmaker[Session]) -> Iterator[Session]:
    with store.session_scope(factory) as session:
        configrows.ensure_config_rows(session, cfg)
        yield session


def _reminder(s: Session, email: str, status: str = "pending") -> int:
    thread = models.Thread(subject=f"for {email}", last_at=NOW - timedelta(days=3))
    s.add(thread)
    s.flush()
    uid = s.scalars(sa.select(models.User.id).where(models.User.email == email)).one()
    r = models.Reminder(
        thread_id=thread.id,
        user_id=uid,
        kind="awaiting_reply",
        cycle=thread.id,
        due_at=NOW - timedelta(hours=1),
        status=status,
        contact_email="client@customer.test",
        waiting_since=NOW - timedelta(days=3),
    )
    s.add(r)
    s.flush()
    return r.id


def test_a_link_works_once_within_15_minutes(s: Session, cfg: config.Config) -> None:
    found = signin.request_link(s, cfg, "A.Martin@example.com", "10.0.0.1", NOW)
    assert found is not None
    email, token = found
    assert email == "alice@example.com"  # an alias signs its user in
    assert signin.peek_link(s, token, NOW + timedelta(minutes=14)) == email
    assert signin.peek_link(s, token, NOW + timedelta(minutes=15)) is None
    assert signin.consume_link(s, cfg, token, NOW + timedelta(minutes=15)) is None
    assert signin.consume_link(s, cfg, token, NOW + timedelta(minutes=1)) == email
    assert signin.consume_link(s, cfg, token, NOW + timedelta(minutes=2)) is None
    assert signin.consume_link(s, cfg, "forged", NOW) is None
    assert signin.request_link(s, cfg, "stranger@example.com", "10.0.0.1", NOW) is None


def test_rate_limits_count_unknown_addresses_too(s: Session, cfg: config.Config) -> None:
    for _ in range(2):
        signin.request_link(s, cfg, "ghost@example.com", "10.0.0.1", NOW)
    with pytest.raises(signin.RateLimited) as address:
        signin.request_link(s, cfg, "GHOST@example.com", "10.0.0.2", NOW)
    assert address.value.scope == "address"
    signin.request_link(s, cfg, "bob@example.com", "10.0.0.1", NOW)
    with pytest.raises(signin.RateLimited) as ip:
        signin.request_link(s, cfg, "carol@example.com", "10.0.0.1", NOW)
    assert ip.value.scope == "ip"
    later = NOW + timedelta(minutes=10)  # the window has passed
    assert signin.request_link(s, cfg, "carol@example.com", "10.0.0.1", later) is not None


def test_sessions_expire_and_are_revoked(s: Session, cfg: config.Config) -> None:
    token, info = signin.start_session(s, cfg, "bob@example.com", NOW)
    seen = signin.session_for(s, cfg, token, NOW + timedelta(minutes=29))
    assert seen is not None and (seen.id, seen.email, seen.csrf) == (info.id, info.email, info.csrf)
    assert seen.stale and not info.stale
    # Each request restarts the idle time (`touch`), up to the absolute limit.
    at = NOW
    for _ in range(15):
        at += timedelta(minutes=29)
        if at >= NOW + timedelta(hours=8):
            break
        seen = signin.session_for(s, cfg, token, at)
        assert seen is not None
        signin.touch(s, seen.id, at)
    assert signin.session_for(s, cfg, token, NOW + timedelta(hours=8)) is None
    idle, _ = signin.start_session(s, cfg, "bob@example.com", NOW)
    assert signin.session_for(s, cfg, idle, NOW + timedelta(minutes=30)) is None
    ended, _ = signin.start_session(s, cfg, "bob@example.com", NOW)
    signin.end_session(s, ended, NOW)
    assert signin.session_for(s, cfg, ended, NOW) is None
    all_of, _ = signin.start_session(s, cfg, "carol@example.com", NOW)
    assert signin.end_sessions_of(s, "carol@example.com", NOW) == 1
    assert signin.session_for(s, cfg, all_of, NOW) is None
    gone, _ = signin.start_session(s, cfg, "nobody@example.com", NOW)
    assert signin.session_for(s, cfg, gone, NOW) is None
    assert signin.session_for(s, cfg, "", NOW) is None
    with s.begin_nested():
        stored = s.scalars(sa.select(models.WebSession.token_hash)).all()
    assert token not in stored and signin.digest(token) in stored


def test_follow_ups_belong_to_their_user_and_managers(s: Session, cfg: config.Config) -> None:
    alice, bob = _reminder(s, "alice@example.com"), _reminder(s, "bob@example.com")
    assert viewer_for(cfg, "stranger@example.com") is None
    va, vb, vc = (viewer_for(cfg, f"{n}@example.com") for n in ("alice", "bob", "carol"))
    assert va and vb and vc
    assert [f.id for f in followups.list_followups(s, cfg, va, NOW)] == [alice]
    assert [f.id for f in followups.list_followups(s, cfg, vc, NOW)] == [alice]
    # waiting since Sunday 10:00 in Paris: Monday and Tuesday have passed
    assert followups.list_followups(s, cfg, va, NOW)[0].business_days_waiting == 2
    with pytest.raises(followups.NotFound):
        followups.close(s, va, [alice, bob], "done")
    with pytest.raises(followups.NotFound):
        followups.snooze(s, cfg, vc, [bob], "3d", NOW)
    assert s.get(models.Reminder, alice).status == "pending"  # type: ignore[union-attr]
    followups.close(s, vc, [alice], "dismissed")
    assert s.get(models.Reminder, alice).status == "dismissed"  # type: ignore[union-attr]


def test_a_digest_link_acts_once(s: Session, cfg: config.Config, tmp_path: Path) -> None:
    rid = _reminder(s, "alice@example.com")
    key = actionlinks.load_key(cfg.web.secret_file)
    token = actionlinks.sign(key, "alice@example.com", rid, "snooze", NOW)
    claim = actionlinks.verify(key, token, NOW)
    followups.act_by_link(s, cfg, claim, actionlinks.token_hash(token), NOW)
    r = s.get(models.Reminder, rid)
    assert r is not None and r.status == "snoozed"
    assert r.snoozed_until == NOW + timedelta(days=3)
    with pytest.raises(followups.LinkRefused, match="used"):
        followups.act_by_link(s, cfg, claim, actionlinks.token_hash(token), NOW)
    other = actionlinks.sign(key, "alice@example.com", rid, "done", NOW)
    followups.act_by_link(
        s, cfg, actionlinks.verify(key, other, NOW), actionlinks.token_hash(other), NOW
    )
    late = actionlinks.sign(key, "alice@example.com", rid, "dismiss", NOW)
    with pytest.raises(followups.LinkRefused, match="closed"):
        followups.act_by_link(
            s, cfg, actionlinks.verify(key, late, NOW), actionlinks.token_hash(late), NOW
        )
    bobs = _reminder(s, "bob@example.com")
    forged = actionlinks.sign(key, "alice@example.com", bobs, "done", NOW)
    with pytest.raises(followups.LinkRefused, match="gone"):
        followups.act_by_link(
            s, cfg, actionlinks.verify(key, forged, NOW), actionlinks.token_hash(forged), NOW
        )
    assert s.get(models.Reminder, bobs).status == "pending"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('base_url = "ftp://crm.example.com"', "web.base_url"),
        ('base_url = "https://crm.example.com/?x=1"', "web.base_url"),
        ('visibility = "everything"', "web.visibility"),
        ('sign_in_links = "pigeon"', "web.sign_in_links"),
        ("session_idle_minutes = 0", "web.session_idle_minutes"),
        ("port = 0", "web.port"),
    ],
)
def test_web_settings_are_checked(tmp_path: Path, line: str, problem: str) -> None:
    text = f'[[users]]\nemail = "a@example.com"\nname = "A"\n[web]\n{line}\n'
    with pytest.raises(config.ConfigFileError, match=problem.replace(".", r"\.")):
        config.loads(text, base_dir=str(tmp_path))


def test_web_defaults(tmp_path: Path) -> None:
    cfg = config.loads('[[users]]\nemail = "a@example.com"\nname = "A"\n', base_dir=str(tmp_path))
    web = cfg.web
    assert (web.base_url, web.url, web.visibility) == ("", "http://127.0.0.1:8080", "metadata")
    assert web.secret_file == str(tmp_path / "mailmanager-web.key")
    assert web.print_sign_in_links and web.email_sign_in_links and not web.secure_cookies


def test_sent_sign_in_emails_lose_their_link_and_old_rows_go(
    s: Session, cfg: config.Config
) -> None:
    found = signin.request_link(s, cfg, "bob@example.com", "10.0.0.9", NOW)
    assert found is not None
    url = f"http://127.0.0.1:8080/signin/{found[1]}"
    signin.send_link(s, cfg, "bob@example.com", url, NOW)
    row = s.scalars(sa.select(models.OutboxEmail)).one()
    assert url in row.body_text and url in row.body_html and "Your sign-in link" in row.subject
    assert signin.scrub_sent_links(s) == 0  # not sent yet: it still needs its link
    row.status = "sent"
    s.flush()
    assert signin.scrub_sent_links(s) == 1
    s.refresh(row)
    assert url not in row.body_text + row.body_html
    # Two days later, the request is deleted with the next one.
    later = NOW + signin.KEEP + timedelta(minutes=1)
    signin.request_link(s, cfg, "bob@example.com", "10.0.0.9", later)
    count = s.scalar(sa.select(sa.func.count()).select_from(models.WebSignInRequest))
    assert count == 1
