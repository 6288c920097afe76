"""Connect to a mailbox step by step and say which step fails: the one check behind
`mailmanager mailbox test NAME`, `config check --connect` and the admin page's "Test" button.

The connector is built as a sync builds it (so a wrong setting fails here the same way), its
own `check()` runs (reach, TLS, login, folders...), then each stored folder cursor is tried
once (at most one message read, nothing saved).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config as config_mod
from mailmanager import spi
from mailmanager.db import store, tokens
from mailmanager.services import queries

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MailboxCheck:
    """The outcome of testing one mailbox: its steps in order, and whether all passed."""

    mailbox: str
    steps: tuple[spi.CheckStep, ...]

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)


def connection_steps(
    cfg: config_mod.Config,
    mb: config_mod.MailboxConfig,
    factory: sessionmaker[Session] | None,
    note: str = "",
) -> list[spi.CheckStep]:
    """`mailbox test`, for `mailbox test` and `config check --connect`: build the connector
    as a sync does (raises `ConfigFileError` / `spi.ConfigError` when the settings are
    wrong), run its step-by-step `check()`, then try each stored cursor when `factory` is
    given and `note` is empty (else one "cursors" step saying why they were not tried)."""
    store_ = tokens.DbTokenStore(factory, mb.name) if factory is not None else None
    connector = mb.build_connector(cfg.base_dir, store_)
    try:
        steps = list(connector.check())
        if all(s.ok for s in steps):
            if factory is not None and not note:
                steps += _cursor_steps(connector, factory, mb.name)
            else:
                steps.append(spi.CheckStep("cursors", True, note or "skipped: no database"))
    finally:
        connector.close()
    return steps


def check_mailbox(
    cfg: config_mod.Config, name: str, factory: sessionmaker[Session] | None
) -> MailboxCheck:
    """Test mailbox `name` against a database whose schema is current; never raises for a
    wrong setting: it becomes a failed "configuration" step naming the key and its fix.
    Raises `spi.ConfigError` when no mailbox has that name."""
    mb = cfg.mailbox(name)
    try:
        steps = connection_steps(cfg, mb, factory)
    except (spi.ConfigError, config_mod.ConfigFileError) as exc:
        steps = [spi.CheckStep("configuration", False, str(exc))]
    result = MailboxCheck(mb.name, tuple(steps))
    failed = next((s.step for s in steps if not s.ok), None)
    log.info(
        "mailbox tested",
        extra={"action": "mailbox_test", "mailbox": mb.name, "ok": result.ok, "failed": failed},
    )
    return result


def _cursor_steps(
    connector: spi.Connector, factory: sessionmaker[Session], mailbox: str
) -> list[spi.CheckStep]:
    """Try each folder's stored cursor once (at most one message read, nothing saved)."""
    with store.session_scope(factory) as s:
        folders = queries.folder_cursors(s, mailbox)
    steps = []
    for f in folders:
        remote = spi.RemoteFolder(f.remote_id, f.name, spi.FolderRole(f.role))
        try:
            connector.fetch_changes(remote, f.cursor, 1)
            steps.append(spi.CheckStep(f"cursor {f.name}", True, "still valid"))
        except spi.CursorExpiredError as exc:
            detail = f"expired ({exc}); the next sync rescans this folder, keeping links"
            steps.append(spi.CheckStep(f"cursor {f.name}", True, detail))
        except spi.ConnectorError as exc:
            steps.append(spi.CheckStep(f"cursor {f.name}", False, str(exc)))
    return steps
