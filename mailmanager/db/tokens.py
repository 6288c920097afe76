"""The token store: connectors' OAuth tokens, encrypted at rest in the database.

`DbTokenStore` implements `spi.TokenStore` for one mailbox. Values are encrypted with
`cryptography.fernet.MultiFernet` (AES-128-CBC + HMAC-SHA256, https://cryptography.io/en/latest/fernet/):
the newest key encrypts, every listed key decrypts, so keys can be rotated without
downtime. Keys come from the environment, never from the config file or the database:

- `MAILMANAGER_SECRET_KEY`: one or more Fernet keys, comma-separated, newest first; or
- `MAILMANAGER_SECRET_KEY_FILE`: a file of one key per line, newest first, readable by its
  owner only (chmod 600), as for every secret file.

`mailmanager secrets new-key` prints a key. To rotate: put the new key first (keep the old
ones after it), run `mailmanager secrets rotate` (every token re-encrypted under the newest
key), then drop the old keys. A token is needed only when a connector saves or reads one: a
deployment without OAuth connectors needs no key.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
from collections.abc import Sequence

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config as config_mod
from mailmanager import spi
from mailmanager.db import models, store

log = logging.getLogger(__name__)

ENV_KEY = "MAILMANAGER_SECRET_KEY"
ENV_KEY_FILE = "MAILMANAGER_SECRET_KEY_FILE"
_HOW = f"generate one with `mailmanager secrets new-key`, then export {ENV_KEY}=<key>"


class SecretKeyError(spi.ConfigError):
    """Raised when no usable secret key is configured, a key is malformed, the key file is
    readable by group/others, or a stored token cannot be decrypted with any key."""


def new_key() -> str:
    """A fresh Fernet key (32 random bytes, urlsafe base64)."""
    return Fernet.generate_key().decode()


def _read_key_file(path: str) -> list[str]:
    try:
        mode = os.stat(path).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretKeyError(
                ENV_KEY_FILE, f"key file {path} is readable by group or others", f"chmod 600 {path}"
            )
        with open(path, encoding="ascii") as fh:
            return [line.strip() for line in fh if line.strip() and not line.startswith("#")]
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretKeyError(
            ENV_KEY_FILE, f"key file {path} not readable: {type(exc).__name__}", _HOW
        ) from exc


def load_keys() -> list[str]:
    """The configured keys, newest first; [] when none is configured.

    Raises `SecretKeyError` when the key file is unreadable or too open, or a key is not a
    Fernet key.
    """
    if os.environ.get(ENV_KEY):
        source, keys = ENV_KEY, [k.strip() for k in os.environ[ENV_KEY].split(",") if k.strip()]
    elif os.environ.get(ENV_KEY_FILE):
        source, keys = ENV_KEY_FILE, _read_key_file(os.environ[ENV_KEY_FILE])
    else:
        return []
    for index, key in enumerate(keys):
        try:
            Fernet(key)
        except ValueError as exc:
            raise SecretKeyError(
                source, f"key #{index + 1} is not a Fernet key (32 bytes, urlsafe base64)", _HOW
            ) from exc
    return keys


def cipher(keys: Sequence[str] | None = None) -> MultiFernet:
    """A MultiFernet over `keys` (default: `load_keys()`). Raises `SecretKeyError` when empty."""
    keys = load_keys() if keys is None else list(keys)
    if not keys:
        raise SecretKeyError(ENV_KEY, "no secret key is configured to encrypt tokens", _HOW)
    return MultiFernet([Fernet(k) for k in keys])


class DbTokenStore:
    """`spi.TokenStore` for one mailbox: rows of `models.OAuthToken`, Fernet-encrypted.

    Each call opens its own short session. `load` raises `SecretKeyError` when a token is
    stored but no configured key decrypts it; `save` when no key is configured.
    """

    def __init__(
        self, factory: sessionmaker[Session], mailbox: str, keys: Sequence[str] | None = None
    ) -> None:
        self.factory, self.mailbox = factory, mailbox
        self._keys = list(keys) if keys is not None else None

    def _cipher(self) -> MultiFernet:
        return cipher(self._keys)

    def load(self, key: str) -> str | None:
        with store.session_scope(self.factory) as s:
            row = s.scalars(
                sa.select(models.OAuthToken.ciphertext).where(
                    models.OAuthToken.mailbox == self.mailbox, models.OAuthToken.key == key
                )
            ).first()
        if row is None:
            return None
        try:
            return self._cipher().decrypt(row).decode()
        except InvalidToken as exc:
            raise SecretKeyError(
                ENV_KEY,
                f"the stored {key!r} of mailbox {self.mailbox!r} cannot be decrypted with the "
                "configured keys",
                "put back the key it was saved with (after the new one), or run "
                f"`mailmanager auth {self.mailbox}` again",
            ) from exc

    def save(self, key: str, value: str) -> None:
        data = self._cipher().encrypt(value.encode())
        with store.session_scope(self.factory) as s:
            store.upsert(
                s,
                store.table(models.OAuthToken),
                [{"mailbox": self.mailbox, "key": key, "ciphertext": data,
                  "updated_at": models.utcnow()}],
                keys=("mailbox", "key"),
                update=("ciphertext", "updated_at"),
            )  # fmt: skip
        log.info(
            "token saved", extra={"action": "token_saved", "mailbox": self.mailbox, "key": key}
        )


def rotate(factory: sessionmaker[Session], keys: Sequence[str] | None = None) -> int:
    """Re-encrypt every stored token (and webhook signing secret) under the newest key, in
    one transaction; return how many. Raises `SecretKeyError` (no key, or a token no
    configured key decrypts: nothing is changed then)."""
    multi = cipher(keys)
    with store.session_scope(factory) as s:
        rows = s.scalars(sa.select(models.OAuthToken)).all()
        for row in rows:
            try:
                row.ciphertext = multi.rotate(row.ciphertext)
            except InvalidToken as exc:
                raise SecretKeyError(
                    ENV_KEY,
                    f"the stored {row.key!r} of mailbox {row.mailbox!r} cannot be decrypted",
                    "list every key still in use (newest first), or remove that token",
                ) from exc
            row.updated_at = models.utcnow()
        hooks = s.scalars(sa.select(models.WebhookSubscription)).all()
        for hook in hooks:  # the webhooks' signing secrets are kept the same way
            try:
                hook.secret_ciphertext = multi.rotate(hook.secret_ciphertext)
            except InvalidToken as exc:
                raise SecretKeyError(
                    ENV_KEY,
                    f"the signing secret of webhook {hook.id} cannot be decrypted",
                    "list every key still in use (newest first), or remove that webhook",
                ) from exc
    log.info("tokens rotated", extra={"action": "tokens_rotated", "count": len(rows) + len(hooks)})
    return len(rows) + len(hooks)


def connector_config(
    cfg: config_mod.Config, mb: config_mod.MailboxConfig, factory: sessionmaker[Session]
) -> spi.ConnectorConfig:
    """The mailbox's connector config with its token store attached.

    Raises `config.ConfigFileError` as `MailboxConfig.connector_config` does.
    """
    cc = mb.connector_config(cfg.base_dir)
    return dataclasses.replace(cc, token_store=DbTokenStore(factory, mb.name))


def build_connector(
    cfg: config_mod.Config, mb: config_mod.MailboxConfig, factory: sessionmaker[Session]
) -> spi.Connector:
    """The mailbox's connector with its token store, built and checked as every sync builds
    it (`MailboxConfig.build_connector`), told `[sync] max_message_size`. Raises
    `config.ConfigFileError`."""
    token_store = DbTokenStore(factory, mb.name)
    return mb.build_connector(cfg.base_dir, token_store, cfg.sync.max_message_size)
