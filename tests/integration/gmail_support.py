"""Helpers of the Gmail tests: build the real connector against the loopback fake."""

from __future__ import annotations

import time
from collections.abc import Iterable

from connectors.gmail.connector import GmailConnector
from mailmanager import spi
from mailmanager.testing.fakes.gmail_server import READONLY, GmailFake
from tests.mailgen import make


class DictStore:
    """A `spi.TokenStore` kept in a dict (the core's encrypted store is tested on its own)."""

    def __init__(self, **values: str) -> None:
        self.values = dict(values)

    def load(self, key: str) -> str | None:
        return self.values.get(key)

    def save(self, key: str, value: str) -> None:
        self.values[key] = value


def oauth(fake: GmailFake, scopes: Iterable[str] = (READONLY,)) -> tuple[str, str]:
    """(client JSON, refresh token) of a fresh OAuth client of the fake."""
    client_id, _ = fake.register_client()
    return fake.client_json(client_id), fake.issue_refresh_token(client_id, scopes)


def gmail(
    fake: GmailFake,
    store: spi.TokenStore | None = None,
    mailbox: str = "alice-gmail",
    **options: object,
) -> GmailConnector:
    """The connector as the core builds it: declared defaults, then `options`."""
    values: dict[str, object] = {o.name: o.default for o in GmailConnector.options}
    values.update(api_endpoint=fake.url, max_retries=2, max_retry_wait=5)
    if "service_account" not in options and "client_secret" not in options:
        client_json, refresh = oauth(fake)
        values.update(client_secret=client_json, refresh_token=refresh)
    values.update(options)
    return GmailConnector(spi.ConnectorConfig(mailbox, values, token_store=store))


def msg(n: int, tag: str = "gm", body: str = "Bonjour,\nVoici notre devis.\n") -> bytes:
    return make(
        "Jean Dupont <jean@acme.fr>",
        "Alice <alice@example.com>",
        f"{tag} {n}",
        body=body,
        msgid=f"{tag}-{n}@acme.fr",
    )


def drain(
    conn: spi.Connector, folder: spi.RemoteFolder, cursor: str | None, limit: int = 100
) -> tuple[list[spi.ChangeBatch], str]:
    batches: list[spi.ChangeBatch] = []
    for _ in range(1000):
        batch = conn.fetch_changes(folder, cursor, limit)
        batches.append(batch)
        cursor = batch.cursor
        if not batch.more:
            return batches, cursor
    raise AssertionError("fetch_changes never answered more=False")


def folder(conn: spi.Connector, folder_id: str = "ALL") -> spi.RemoteFolder:
    return {f.id: f for f in conn.list_folders()}[folder_id]


class Clock:
    """Elapsed wall time of a block, for backoff assertions."""

    def __enter__(self) -> Clock:
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.monotonic() - self.start
