"""Live Gmail: the connector against a real account, read-only.

Skipped, with instructions, unless tests/live/credentials.toml has a [gmail] section (see
tests/live/README.md). Reads a handful of messages and the history since; changes nothing.
Run with `-m live` or plainly: `python -m pytest tests/live -p no:cacheprovider`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.gmail import changes as gmail_changes
from connectors.gmail.connector import GmailConnector
from mailmanager import spi
from mailmanager.mail import parsing

CREDENTIALS = Path(__file__).with_name("credentials.toml")
pytestmark = pytest.mark.live


def _section() -> dict[str, object]:
    if not CREDENTIALS.is_file():
        pytest.skip(
            f"live Gmail tests need {CREDENTIALS}: copy credentials.example.toml next to it "
            "and fill in [gmail] (instructions in tests/live/README.md)"
        )
    section = tomllib.loads(CREDENTIALS.read_text()).get("gmail")
    if not isinstance(section, dict) or not section:
        pytest.skip(f"no [gmail] section in {CREDENTIALS} (see tests/live/README.md)")
    return section


@pytest.fixture(scope="module")
def conn() -> Iterator[GmailConnector]:
    section = _section()
    if section.get("config"):  # built as the daemon builds it, with its token store
        from mailmanager import config
        from mailmanager.db import store, tokens

        cfg = config.load(str(section["config"]))
        engine = store.make_engine(cfg.database.url_with_secret())
        mb = cfg.mailbox(str(section["mailbox"]))
        yield GmailConnector(tokens.connector_config(cfg, mb, store.session_factory(engine)))
        engine.dispose()
        return
    values: dict[str, object] = {o.name: o.default for o in GmailConnector.options}
    for key in ("service_account", "client_secret"):
        if section.get(f"{key}_file"):
            values[key] = Path(str(section[f"{key}_file"])).expanduser().read_text()
    for key in ("delegated_user", "refresh_token", "privacy", "folders", "api_endpoint"):
        if key in section:
            values[key] = section[key]
    yield GmailConnector(spi.ConnectorConfig("live-gmail", values))


def test_check_passes(conn: GmailConnector) -> None:
    steps = conn.check()
    assert [(s.step, s.detail) for s in steps if not s.ok] == []


def test_first_page_parses_and_history_answers(conn: GmailConnector) -> None:
    folder = conn.list_folders()[0]
    batch = conn.fetch_changes(folder, None, 5)
    assert batch.reset and len(batch.messages) <= 5
    for message in batch.messages:
        parsed = parsing.parse(message.raw, message.internal_date)
        assert isinstance(parsed, parsing.ParsedMessage), message.provider_id
        assert message.thread_hint and message.internal_date is not None
    since_scan = gmail_changes.Cursor(gmail_changes.Cursor.decode(batch.cursor).history)
    changes = conn.fetch_changes(folder, since_scan.encode(), 50)
    assert not changes.reset
    gmail_changes.Cursor.decode(changes.cursor)
    conn.close()
