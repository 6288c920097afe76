"""Live tests of the graph connector against a real Microsoft 365 mailbox (read-only).

Skipped unless tests/live/credentials.toml has a `[graph]` section: see tests/live/README.md.
They list, fetch and compare; they never send, move, flag or delete mail.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest

from connectors.graph.connector import GraphConnector
from mailmanager import spi

pytestmark = pytest.mark.live

CREDENTIALS = Path(__file__).with_name("credentials.toml")
README = Path(__file__).with_name("README.md")


def _section() -> dict[str, Any]:
    if not CREDENTIALS.is_file():
        pytest.skip(f"no {CREDENTIALS.name}: copy credentials.example.toml (see {README})")
    section = tomllib.loads(CREDENTIALS.read_text()).get("graph")
    if not section:
        pytest.skip(f"no [graph] section in {CREDENTIALS} (see the Graph part of {README})")
    return dict(section)


class FileTokenStore:
    """Tokens of the device code flow in a JSON file of mode 600 (the core encrypts its own)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _all(self) -> dict[str, str]:
        return json.loads(self.path.read_text()) if self.path.is_file() else {}

    def load(self, key: str) -> str | None:
        return self._all().get(key)

    def save(self, key: str, value: str) -> None:
        data = {**self._all(), key: value}
        self.path.touch(mode=0o600)
        self.path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def settings() -> dict[str, Any]:
    return _section()


def build(settings: dict[str, Any]) -> GraphConnector:
    values: dict[str, object] = {o.name: o.default for o in GraphConnector.options}
    values.update({k: v for k, v in settings.items() if k in values})
    env = settings.get("client_secret_env")
    if env:
        values["client_secret"] = os.environ.get(str(env))
    store = None
    if values.get("auth") == "device":
        store = FileTokenStore(Path(settings.get("token_file", CREDENTIALS.with_suffix(".tokens"))))
    return GraphConnector(
        spi.ConnectorConfig("live", values, str(CREDENTIALS.parent), token_store=store)
    )


@pytest.fixture(scope="module")
def conn(settings: dict[str, Any]) -> GraphConnector:
    connector = build(settings)
    if settings.get("auth") == "device" and not connector.tokens.store.load("msal_token_cache"):  # type: ignore[union-attr]
        connector.authorize(print)  # run pytest with -s to see the code to enter
    return connector


def test_check_passes(conn: GraphConnector) -> None:
    steps = conn.check()
    assert [s for s in steps if not s.ok] == [], steps


def test_inbox_scan_gives_parseable_messages_and_resumes(
    conn: GraphConnector, settings: dict[str, Any]
) -> None:
    inbox = next(f for f in conn.list_folders() if f.role is spi.FolderRole.INBOX)
    cap = int(settings.get("max_messages", 200))
    first = conn.fetch_changes(inbox, None, 20)
    assert first.reset
    seen = {m.provider_id for m in first.messages}
    cursor, total = first.cursor, len(first.messages)
    for m in first.messages:
        parsed = email.message_from_bytes(m.raw, policy=email.policy.default)
        assert parsed["From"] or parsed["Sender"], m.provider_id
    fresh = build(settings)  # another instance resumes from the cursor alone
    more = first.more
    while more and total < cap:
        batch = fresh.fetch_changes(inbox, cursor, 50)
        assert not batch.reset and len(batch.messages) <= 50
        assert not seen & {m.provider_id for m in batch.messages}
        seen |= {m.provider_id for m in batch.messages}
        cursor, total, more = batch.cursor, total + len(batch.messages), batch.more
    if not more:  # caught up: an immediate rerun finds nothing old again
        again = fresh.fetch_changes(inbox, cursor, 50)
        assert not again.reset and not seen & {m.provider_id for m in again.messages}
    fresh.close()
