"""The encrypted token store (`mailmanager.tokens`) on SQLite and PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import spi
from mailmanager.db import models, tokens

SECRET = "1//0refresh-token-that-must-not-leak"


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    value = tokens.new_key()
    monkeypatch.setenv(tokens.ENV_KEY, value)
    monkeypatch.delenv(tokens.ENV_KEY_FILE, raising=False)
    return value


@pytest.fixture
def no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tokens.ENV_KEY, raising=False)
    monkeypatch.delenv(tokens.ENV_KEY_FILE, raising=False)


def stored(factory: sessionmaker[Session]) -> list[bytes]:
    with factory() as s:
        return list(s.scalars(sa.select(models.OAuthToken.ciphertext)))


def test_round_trip_is_encrypted_at_rest(factory: sessionmaker[Session], key: str) -> None:
    store = tokens.DbTokenStore(factory, "alice-gmail")
    assert isinstance(store, spi.TokenStore)
    assert store.load("refresh_token") is None
    store.save("refresh_token", SECRET)
    assert store.load("refresh_token") == SECRET
    [cipher] = stored(factory)
    assert SECRET.encode() not in cipher and b"refresh" not in cipher
    store.save("refresh_token", SECRET)  # same value again: a fresh ciphertext (random IV)
    [again] = stored(factory)
    assert again != cipher and store.load("refresh_token") == SECRET


def test_mailboxes_and_keys_are_separate(factory: sessionmaker[Session], key: str) -> None:
    alice, bob = tokens.DbTokenStore(factory, "alice"), tokens.DbTokenStore(factory, "bob")
    alice.save("refresh_token", "a1")
    bob.save("refresh_token", "b1")
    alice.save("access_token", "a2")
    alice.save("refresh_token", "a3")  # overwrites, never duplicates
    assert (alice.load("refresh_token"), alice.load("access_token")) == ("a3", "a2")
    assert (bob.load("refresh_token"), bob.load("access_token")) == ("b1", None)
    assert len(stored(factory)) == 3


def test_saving_without_a_key_says_how_to_make_one(
    factory: sessionmaker[Session], no_key: None
) -> None:
    store = tokens.DbTokenStore(factory, "alice")
    assert store.load("refresh_token") is None  # nothing stored: no key needed to say so
    with pytest.raises(tokens.SecretKeyError, match="secrets new-key") as info:
        store.save("refresh_token", SECRET)
    assert info.value.key == tokens.ENV_KEY and stored(factory) == []


def test_a_token_no_key_decrypts_is_a_clear_error(
    factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    tokens.DbTokenStore(factory, "alice").save("refresh_token", SECRET)
    monkeypatch.setenv(tokens.ENV_KEY, tokens.new_key())  # the old key was dropped
    with pytest.raises(tokens.SecretKeyError, match="cannot be decrypted"):
        tokens.DbTokenStore(factory, "alice").load("refresh_token")
    monkeypatch.delenv(tokens.ENV_KEY)
    with pytest.raises(tokens.SecretKeyError, match="no secret key"):
        tokens.DbTokenStore(factory, "alice").load("refresh_token")


def test_rotate_re_encrypts_under_the_newest_key(
    factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    old = key
    for name in ("alice", "bob"):
        tokens.DbTokenStore(factory, name).save("refresh_token", f"{name}-{SECRET}")
    before = stored(factory)
    new = tokens.new_key()
    monkeypatch.setenv(tokens.ENV_KEY, f"{new}, {old}")  # newest first, spaces tolerated
    assert tokens.rotate(factory) == 2
    assert set(stored(factory)).isdisjoint(before)
    only_new = tokens.DbTokenStore(factory, "alice", keys=[new])
    assert only_new.load("refresh_token") == f"alice-{SECRET}"
    with pytest.raises(tokens.SecretKeyError):
        tokens.DbTokenStore(factory, "bob", keys=[old]).load("refresh_token")


def test_rotate_without_the_old_key_changes_nothing(
    factory: sessionmaker[Session], key: str
) -> None:
    tokens.DbTokenStore(factory, "alice").save("refresh_token", SECRET)
    before = stored(factory)
    with pytest.raises(tokens.SecretKeyError, match="alice"):
        tokens.rotate(factory, keys=[tokens.new_key()])
    assert stored(factory) == before


def test_key_file_newest_first_and_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_key: None
) -> None:
    new, old = tokens.new_key(), tokens.new_key()
    path = tmp_path / "keys"
    path.write_text(f"# mailmanager token keys, newest first\n{new}\n\n{old}\n")
    os.chmod(path, 0o644)
    monkeypatch.setenv(tokens.ENV_KEY_FILE, str(path))
    with pytest.raises(tokens.SecretKeyError, match="readable by group or others") as info:
        tokens.load_keys()
    assert info.value.fix == f"chmod 600 {path}"
    os.chmod(path, 0o600)
    assert tokens.load_keys() == [new, old]
    token = tokens.cipher().encrypt(b"x")
    assert tokens.cipher([new]).decrypt(token) == b"x"  # encrypted under the first key


def test_malformed_keys_and_env_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_key: None
) -> None:
    monkeypatch.setenv(tokens.ENV_KEY, "not-a-fernet-key")
    with pytest.raises(tokens.SecretKeyError, match="#1 is not a Fernet key"):
        tokens.load_keys()
    env_key = tokens.new_key()
    monkeypatch.setenv(tokens.ENV_KEY, env_key)
    monkeypatch.setenv(tokens.ENV_KEY_FILE, str(tmp_path / "absent"))
    assert tokens.load_keys() == [env_key]  # the variable wins over the file
    monkeypatch.delenv(tokens.ENV_KEY)
    with pytest.raises(tokens.SecretKeyError, match="not readable"):
        tokens.load_keys()
    assert tokens.new_key() != tokens.new_key()
