"""`services.apitokens` in process on SQLite and PostgreSQL, at fixed instants: tokens shown
once and stored hashed, scopes (admin for admins only), expiry, revocation, a user who left,
and the last use recorded at most once a minute."""

from __future__ import annotations

import hashlib
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config
from mailmanager.db import models, store
from mailmanager.services import apitokens

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
USERS = """
    [[users]]
    email = "alice@example.com"
    name = "Alice"
    aliases = ["a.martin@example.com"]
    [[users]]
    email = "dave@example.com"
    name = "Dave"
    role = "{dave_role}"
    """


def make_cfg(
    db_url: str, tmp_path: Path, dave_role: str = "admin", users: str = USERS
) -> config.Config:
    text = f'[database]\nurl = "{db_url}"\n[organization]\ndomains = ["example.com"]\n'
    return config.loads(
        text + textwrap.dedent(users.format(dave_role=dave_role)), base_dir=str(tmp_path)
    )


@pytest.fixture
def cfg(db_url: str, tmp_path: Path) -> config.Config:
    return make_cfg(db_url, tmp_path)


@pytest.fixture
def s(factory: sessionmaker[Session]) -> Iterator[Session]:
    with store.session_scope(factory) as session:
        yield session


def test_a_token_is_shown_once_and_stored_hashed(s: Session, cfg: config.Config) -> None:
    info, token = apitokens.create(s, cfg, "a.martin@example.com", " CRM ", [], NOW)
    assert token.startswith("mm_") and len(token) >= 3 + 43
    assert (info.user, info.name, info.scopes) == ("alice@example.com", "CRM", ("read",))
    assert info.expires_at is None and info.state(NOW) == "active"
    stored = s.execute(sa.select(models.ApiToken.__table__)).one()
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert not any(token[3:] in str(value) for value in stored)
    other = apitokens.create(s, cfg, "alice@example.com", "CRM", ["read"], NOW)[1]
    assert other != token
    caller = apitokens.authenticate(s, cfg, token, NOW)
    assert caller is not None and caller.viewer.email == "alice@example.com"
    assert caller.scopes == {"read"} and caller.token.id == info.id
    assert apitokens.authenticate(s, cfg, token + "x", NOW) is None
    assert apitokens.authenticate(s, cfg, token[3:], NOW) is None


@pytest.mark.parametrize(
    ("user", "scopes", "message"),
    [
        ("nobody@example.com", ["read"], "no user"),
        ("alice@example.com", ["admin"], "admins only"),
        ("alice@example.com", ["root"], "unknown scope"),
    ],
)
def test_refused_at_creation(
    s: Session, cfg: config.Config, user: str, scopes: list[str], message: str
) -> None:
    with pytest.raises(apitokens.TokenError, match=message):
        apitokens.create(s, cfg, user, "CRM", scopes, NOW)
    assert apitokens.list_tokens(s) == []


def test_expiry_revocation_and_a_user_who_left(
    s: Session, cfg: config.Config, db_url: str, tmp_path: Path
) -> None:
    expiring = apitokens.create(s, cfg, "alice@example.com", "a", ["read"], NOW, 2)[1]
    revoked_info, revoked = apitokens.create(s, cfg, "alice@example.com", "b", ["read"], NOW)
    davids = apitokens.create(s, cfg, "dave@example.com", "c", ["read", "admin"], NOW)[1]
    end = NOW + timedelta(days=2)
    assert apitokens.authenticate(s, cfg, expiring, end - timedelta(seconds=1)) is not None
    assert apitokens.authenticate(s, cfg, expiring, end) is None

    first = apitokens.revoke(s, revoked_info.id, NOW + timedelta(hours=1))
    again = apitokens.revoke(s, revoked_info.id, NOW + timedelta(hours=2))
    assert first.revoked_at == again.revoked_at == NOW + timedelta(hours=1)
    assert apitokens.authenticate(s, cfg, revoked, NOW + timedelta(hours=1)) is None
    with pytest.raises(apitokens.TokenError, match="no API token"):
        apitokens.revoke(s, 10**12, NOW)

    admin = apitokens.authenticate(s, cfg, davids, NOW)
    assert admin is not None and admin.scopes == {"read", "admin"}
    demoted = make_cfg(db_url, tmp_path, dave_role="salesperson")
    as_salesperson = apitokens.authenticate(s, demoted, davids, NOW)
    assert as_salesperson is not None and as_salesperson.scopes == {"read"}
    gone = make_cfg(db_url, tmp_path, users=USERS.split('[[users]]\n    email = "dave')[0])
    assert gone.user("dave@example.com") is None
    assert apitokens.authenticate(s, gone, davids, NOW) is None

    states = {t.name: t.state(end) for t in apitokens.list_tokens(s)}
    assert states == {"a": "expired", "b": "revoked", "c": "active"}
    assert [t.name for t in apitokens.list_tokens(s, "dave@example.com")] == ["c"]


def test_last_use_is_recorded_at_most_once_a_minute(s: Session, cfg: config.Config) -> None:
    info, token = apitokens.create(s, cfg, "alice@example.com", "CRM", ["read"], NOW)

    def last_used() -> datetime | None:
        return s.scalars(
            sa.select(models.ApiToken.last_used_at).where(models.ApiToken.id == info.id)
        ).one()

    assert last_used() is None
    for seconds, expected in ((0, 0), (30, 0), (59, 0), (60, 60), (100, 60), (121, 121)):
        caller = apitokens.authenticate(s, cfg, token, NOW + timedelta(seconds=seconds))
        assert caller is not None
        assert caller.touch_due == (seconds == expected)
        apitokens.touch(s, caller.token.id, NOW + timedelta(seconds=seconds))
        assert last_used() == NOW + timedelta(seconds=expected)


def test_a_user_revokes_only_their_own_tokens(s: Session, cfg: config.Config) -> None:
    info, token = apitokens.create(s, cfg, "alice@example.com", "a", ["read"], NOW)
    with pytest.raises(apitokens.TokenError, match=f"no API token {info.id}"):
        apitokens.revoke(s, info.id, NOW, owner="dave@example.com")
    assert apitokens.authenticate(s, cfg, token, NOW) is not None
    mine = apitokens.revoke(s, info.id, NOW, owner="alice@example.com")
    assert mine.state(NOW) == "revoked"
    assert apitokens.authenticate(s, cfg, token, NOW) is None
