"""Live Exchange (EWS): the connector against a real on-premises Exchange Server, read-only.

Skipped, with instructions, unless tests/live/credentials.toml has an [exchange] section (see
tests/live/README.md). Lists folders, reads the first page of the Inbox, asks for the changes
since, and parses what came back; changes nothing on the server (SyncFolderItems and GetItem
never mark mail read). Run with `python -m pytest tests/live -p no:cacheprovider`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.exchange.connector import ExchangeConnector
from mailmanager import spi
from mailmanager.mail import parsing

CREDENTIALS = Path(__file__).with_name("credentials.toml")
pytestmark = pytest.mark.live
_SECRETS = ("password", "client_secret")


def _section() -> dict[str, object]:
    if not CREDENTIALS.is_file():
        pytest.skip(
            f"live Exchange tests need {CREDENTIALS}: copy credentials.example.toml next to it "
            "and fill in [exchange] (instructions in tests/live/README.md)"
        )
    section = tomllib.loads(CREDENTIALS.read_text()).get("exchange")
    if not isinstance(section, dict) or not section:
        pytest.skip(f"no [exchange] section in {CREDENTIALS} (see tests/live/README.md)")
    return section


@pytest.fixture(scope="module")
def conn() -> Iterator[ExchangeConnector]:
    section = _section()
    values: dict[str, object] = {o.name: o.default for o in ExchangeConnector.options}
    for key, value in section.items():
        if key.endswith("_env") and key[:-4] in _SECRETS:
            if not os.environ.get(str(value)):
                pytest.skip(f"[exchange] {key} names {value}, which is not set")
            values[key[:-4]] = os.environ[str(value)]
        elif key.endswith("_file") and key[:-5] in _SECRETS:
            values[key[:-5]] = Path(str(value)).expanduser().read_text().strip()
        elif key != "max_messages":
            values[key] = value
    connector = ExchangeConnector(spi.ConnectorConfig("live-exchange", values))
    yield connector
    connector.close()


def test_check_passes(conn: ExchangeConnector) -> None:
    failed = [(s.step, s.detail) for s in conn.check() if not s.ok]
    assert failed == []


def test_inbox_first_page_parses_and_changes_since_answer(conn: ExchangeConnector) -> None:
    limit = int(str(_section().get("max_messages", 20)))
    folders = conn.list_folders()
    inbox = next(f for f in folders if f.role is spi.FolderRole.INBOX)
    batch = conn.fetch_changes(inbox, None, limit)
    assert batch.reset and len(batch.messages) <= limit
    for message in batch.messages:
        parsed = parsing.parse(message.raw, message.internal_date)
        assert isinstance(parsed, parsing.ParsedMessage), message.provider_id
        assert message.internal_date is not None
    again = conn.fetch_changes(inbox, batch.cursor, limit)
    assert not again.reset  # the SyncState was accepted
