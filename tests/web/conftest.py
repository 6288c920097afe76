"""Fixtures of the web tests (see `tests/web/support.py` for what they start).

- `web_server` (one per test module): a running `mailmanager web` over a synced copy of the
  sample mailbox; `web_server.sign_in(email)` returns an httpx client signed in through the
  emailed link; `web_server.url`, `.sink` (emails), `.session()` (the database), `.cli(...)`.
- `signed_in(email)`: the same, on `web_server`, closed after the test.
- `web_server_pg` (one per module): the same over PostgreSQL.
- `start_web_server(web_extra="", edit=...)`: another server (e.g. with other `[web]` keys,
  or its configuration's text changed by `edit` before it starts), stopped after the test.
- `chromium` (the session's browser) and `watch` (one per test): see `tests/web/browser.py`.
- `web_template`: the synced database the servers copy; `.bob_reminder` is bob's reminder id,
  `.alice_reminders` alice's open ones.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import faketime
from tests.conftest import new_pg_database
from tests.integration.notify_support import Sink
from tests.web import browser
from tests.web.support import (
    Template,
    WebServer,
    build_template,
    start_pg_server,
    start_server,
)


@pytest.fixture(scope="session")
def web_sink() -> Iterator[Sink]:
    sink = Sink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def web_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    faketime.require()
    return build_template(tmp_path_factory.mktemp("web-template"))


@pytest.fixture(scope="module")
def web_server(
    tmp_path_factory: pytest.TempPathFactory, web_template: Template, web_sink: Sink
) -> Iterator[WebServer]:
    server = start_server(tmp_path_factory.mktemp("web"), web_template, web_sink)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def web_server_pg(tmp_path_factory: pytest.TempPathFactory, web_sink: Sink) -> Iterator[WebServer]:
    """Like `web_server`, over PostgreSQL (skipped when absent, failed in CI)."""
    faketime.require()
    with new_pg_database("mm_web") as url:
        server = start_pg_server(tmp_path_factory.mktemp("web-pg"), url, web_sink)
        yield server
        server.stop()


@pytest.fixture
def start_web_server(
    tmp_path_factory: pytest.TempPathFactory, web_template: Template, web_sink: Sink
) -> Iterator[Callable[..., WebServer]]:
    started: list[WebServer] = []

    def start(web_extra: str = "", edit: Callable[[str], str] = lambda text: text) -> WebServer:
        root = tmp_path_factory.mktemp("web")
        server = start_server(root, web_template, web_sink, web_extra, edit=edit)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def signed_in(web_server: WebServer) -> Iterator[Callable[[str], httpx.Client]]:
    clients: list[httpx.Client] = []

    def sign_in(email: str) -> httpx.Client:
        client = web_server.sign_in(email)
        clients.append(client)
        return client

    yield sign_in
    for client in clients:
        client.close()


@pytest.fixture(scope="session", autouse=True)
def _stop_chromium() -> Iterator[None]:
    """Stop the session's Chromium (`browser.shared`), if a test started it, at the end."""
    yield
    browser.stop_shared()


@pytest.fixture
def chromium() -> Iterator[Any]:
    """The session's headless Chromium (see `tests/web/browser.py`)."""
    with browser.launch() as started:
        yield started


@pytest.fixture
def watch(artifacts_dir: Path) -> Iterator[browser.Watch]:
    """A `browser.Watch` saving under `artifacts_dir`; its pages' contexts are closed after
    the test, so the next test meets a browser with nothing open."""
    watching = browser.Watch(artifacts_dir)
    yield watching
    watching.close()


@pytest.fixture
def artifacts_dir(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """Where browser tests save screenshots (printed by each test): under
    $MAILMANAGER_WEB_ARTIFACTS/<test name> when set (CI keeps them), else a pytest tmp dir."""
    root = os.environ.get("MAILMANAGER_WEB_ARTIFACTS")
    if root:
        path = Path(root) / request.node.name
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("web-artifacts")
