"""Real Dovecot servers for the IMAP tests, started once per session on loopback.

Three instances: `dovecot` advertises everything (QRESYNC mode), `dovecot_condstore` hides
QRESYNC (CONDSTORE mode), `dovecot_plain` hides both (UID-list diffs), and `dovecot_tls`
requires TLS with a self-signed certificate. A static passdb accepts any user, so each test
gets a fresh random user (`imap_account` and friends): tests never see each other's mail.

Without Dovecot the tests skip with the reason, except when CI is set: then they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy.orm import Session, sessionmaker

from connectors.imap.connector import ImapConnector
from mailmanager import config, spi
from mailmanager.db import configrows
from mailmanager.testing.dovecot import NO_CONDSTORE_CAPABILITY, DovecotServer, dovecot_binary
from tests.conftest import ConfigWriter

IN_CI = bool(os.environ.get("CI"))
CONDSTORE_ONLY_CAPABILITY = NO_CONDSTORE_CAPABILITY + " CONDSTORE"


def _server(**kwargs: object) -> Iterator[DovecotServer]:
    if dovecot_binary() is None:
        reason = "Dovecot is not installed (apt-get install dovecot-imapd dovecot-lmtpd)"
        if IN_CI:
            pytest.fail(f"CI is set but {reason}")
        pytest.skip(reason)
    server = DovecotServer(**kwargs)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    yield from _server()


@pytest.fixture(scope="session")
def dovecot_condstore() -> Iterator[DovecotServer]:
    yield from _server(imap_capability=CONDSTORE_ONLY_CAPABILITY)


@pytest.fixture(scope="session")
def dovecot_plain() -> Iterator[DovecotServer]:
    yield from _server(imap_capability=NO_CONDSTORE_CAPABILITY)


@pytest.fixture(scope="session")
def dovecot_tls() -> Iterator[DovecotServer]:
    yield from _server(tls=True)


@dataclass
class ImapAccount:
    """One fresh user on one server, and the connectors built for it."""

    server: DovecotServer
    user: str

    def __post_init__(self) -> None:
        self._connectors: list[ImapConnector] = []

    def connector(self, **options: object) -> ImapConnector:
        values = self.server.options(self.user, **options)
        conn = ImapConnector(spi.ConnectorConfig(mailbox=self.user, values=values))
        conn.retry_wait = 0.1  # keep reconnect backoff short in tests
        self._connectors.append(conn)
        return conn

    def folder(self, name: str = "INBOX") -> spi.RemoteFolder:
        role = spi.FolderRole.INBOX if name == "INBOX" else spi.FolderRole.OTHER
        return spi.RemoteFolder(name, name, role)

    def close(self) -> None:
        for conn in self._connectors:
            conn.close()


def _account(server: DovecotServer) -> Iterator[ImapAccount]:
    acc = ImapAccount(server, DovecotServer.new_user())
    try:
        yield acc
    finally:
        acc.close()


@pytest.fixture
def imap_account(dovecot: DovecotServer) -> Iterator[ImapAccount]:
    yield from _account(dovecot)


@pytest.fixture(params=["qresync", "condstore", "plain"])
def any_account(request: pytest.FixtureRequest) -> Iterator[ImapAccount]:
    """A fresh account on each server flavour (QRESYNC, CONDSTORE only, neither)."""
    name = {"qresync": "dovecot", "condstore": "dovecot_condstore", "plain": "dovecot_plain"}
    yield from _account(request.getfixturevalue(name[request.param]))


@pytest.fixture
def tls_account(dovecot_tls: DovecotServer) -> Iterator[ImapAccount]:
    yield from _account(dovecot_tls)


@pytest.fixture
def cfg(db_url: str, write_config: ConfigWriter) -> config.Config:
    """The test config (`write_config`) with no extra settings, loaded."""
    return config.load(write_config(db_url, ""))


@pytest.fixture
def s(cfg: config.Config, factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session over a database that holds the config's users and mailboxes (committed);
    what the test writes is rolled back at its end."""
    with factory() as session:
        configrows.ensure_config_rows(session, cfg)
        session.commit()
        yield session
        session.rollback()
