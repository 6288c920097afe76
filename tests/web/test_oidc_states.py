"""OpenID Connect login states live in the database (`oidc_states`), not in a web process.

Over HTTP, against real `mailmanager web` processes and the loopback provider
(`testing.fakes.oidc_server`): a callback replayed after a server restart, or to another
process over the same database, is refused before the provider is asked again; a state
started in one browser is refused in another (and stays usable by its own); an expired state
is refused. What the database keeps holds no state, browser key, nonce or verifier in clear.
In process, at fixed instants, on SQLite and PostgreSQL: expiry, purge, and the single use
that two racing callbacks cannot both win.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager.db import models, store
from mailmanager.services import oidc, signin
from mailmanager.testing.fakes.oidc_server import Identity, OidcFake
from tests.integration.notify_support import Sink, free_port
from tests.web.support import NOW, Template, WebServer, start_server

ALICE = "alice@example.com"
CALLBACK = "/signin/oidc/testidp/callback"


@dataclass
class Setup:
    server: WebServer
    idp: OidcFake


@pytest.fixture(scope="module")
def idp_web(
    tmp_path_factory: pytest.TempPathFactory, web_template: Template, web_sink: Sink
) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("web-oidc-states")
    secret = root / "client-secret"
    secret.write_text("test-client-secret\n")
    os.chmod(secret, 0o600)
    started = time.monotonic()  # wall clock: the provider's clock follows the server's faketime
    idp = OidcFake(Identity(ALICE), clock=lambda: NOW.timestamp() + time.monotonic() - started)
    section = f"""
[[oidc]]
name = "TestIdP"
issuer = "{idp.issuer}"
client_id = "{idp.client_id}"
client_secret_file = "{secret}"
"""
    with idp:
        server = start_server(root / "server", web_template, web_sink, extra=section)
        try:
            yield Setup(server, idp)
        finally:
            server.stop()


def callback_of(client: httpx.Client) -> str:
    """Start a login in `client` (a browser); the provider's answer as a path on our site:
    the callback with its code and state (the browser has not followed it yet)."""
    start = client.get("/signin/oidc/testidp")
    assert start.status_code == 303, start.text
    authorize = httpx.get(start.headers["location"], follow_redirects=False)
    assert authorize.status_code == 302, authorize.text
    parts = urlsplit(authorize.headers["location"])
    assert parts.path == CALLBACK
    return f"{parts.path}?{parts.query}"


def state_of(callback: str) -> str:
    return parse_qs(urlsplit(callback).query)["state"][0]


def copy_cookies(client: httpx.Client, into: httpx.Client) -> None:
    for cookie in client.cookies.jar:
        into.cookies.set(cookie.name, cookie.value or "", domain=cookie.domain, path=cookie.path)


def refused_here(setup: Setup, client: httpx.Client, callback: str) -> None:
    """`callback` is refused by the server itself: the provider's token endpoint is not
    asked (a provider that let a code work twice would not save us)."""
    before = setup.idp.calls["/token"]
    answer = client.get(callback)
    assert answer.status_code == 400, answer.text
    assert "did not work" in answer.text
    assert setup.idp.calls["/token"] == before
    assert "mm_session" not in client.cookies


def test_a_replayed_callback_is_refused_after_a_restart(idp_web: Setup) -> None:
    server = idp_web.server
    with server.client() as browser, server.client() as replay:
        callback = callback_of(browser)
        copy_cookies(browser, replay)  # the callback request as sent: its URL and cookie
        assert browser.get(callback).status_code == 303
        assert "mm_session" in browser.cookies
        server.restart()  # a process that never saw this state used
        with server.client() as again:
            copy_cookies(replay, again)
            assert "mm_oidc" in again.cookies
            refused_here(idp_web, again, callback)


def test_a_replayed_callback_is_refused_by_another_process(
    idp_web: Setup, tmp_path_factory: pytest.TempPathFactory
) -> None:
    first = idp_web.server
    root = tmp_path_factory.mktemp("web-oidc-second")
    shutil.copy(first.secret_file, root / "web.key")  # workers of one site share its key
    port, old = free_port(), first.url.rsplit(":", 1)[1]
    path = root / "web.toml"
    # The same site (base_url, the provider's redirect URI) served by another process.
    path.write_text(first.config.read_text().replace(f"port = {old}\n", f"port = {port}\n"))
    second = WebServer(root, path, f"http://127.0.0.1:{port}", first.sink, first.template)
    second.start()
    try:
        with first.client() as on_first, second.client() as on_second:
            callback = callback_of(on_first)  # started on the first process
            copy_cookies(on_first, on_second)
            assert on_second.get(callback).status_code == 303  # finished on the second
            refused_here(idp_web, on_first, callback)  # and replayed to the first
    finally:
        second.stop()


def test_a_state_from_another_browser_is_refused(idp_web: Setup) -> None:
    server = idp_web.server
    with server.client() as mine, server.client() as other, server.client() as bare:
        callback = callback_of(mine)
        callback_of(other)  # the other browser has a login of its own under way
        refused_here(idp_web, other, callback)
        refused_here(idp_web, bare, callback)  # no cookie at all
        bare.cookies.set("mm_oidc", "A" * 43, path="/signin/oidc")  # a made-up key
        refused_here(idp_web, bare, callback)
        # Those refusals did not use the state: its own browser still signs in with it.
        done = mine.get(callback)
        assert done.status_code == 303, done.text
        assert "mm_session" in mine.cookies


def test_an_expired_state_is_refused(idp_web: Setup) -> None:
    server = idp_web.server
    with server.client() as browser:
        callback = callback_of(browser)
        from_state = models.OidcState.state_hash == signin.digest(state_of(callback))
        with server.session() as s, s.begin():
            # Its expiry passes: the row's expiry is moved to the moment it was made.
            t = store.table(models.OidcState)
            s.execute(sa.update(t).where(from_state).values(expires_at=t.c.created_at))
        refused_here(idp_web, browser, callback)


def test_the_database_keeps_no_secret_in_clear(idp_web: Setup) -> None:
    server = idp_web.server
    with server.client() as browser:
        start = browser.get("/signin/oidc/testidp?next=/clients")
        query = parse_qs(urlsplit(start.headers["location"]).query)
        secrets = {
            "state": query["state"][0],
            "nonce": query["nonce"][0],
            "browser key": browser.cookies["mm_oidc"],
        }
        with server.session() as s:
            rows = s.execute(sa.select(store.table(models.OidcState))).all()
        kept = " ".join(str(value) for row in rows for value in row)
        assert "/clients" in kept  # where to go next is kept, in clear
        for name, secret in secrets.items():
            assert secret not in kept, name
        # The PKCE challenge went to the provider; its verifier is nowhere but in the server.
        assert query["code_challenge_method"] == ["S256"]


# --- in process, at fixed instants ---------------------------------------------------------

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
KEY = b"k" * 32


def _pending(provider: str, browser: str, at: datetime) -> oidc.Pending:
    """What `oidc.begin` makes, without asking the provider for its endpoints."""
    return oidc._pending(KEY, provider, browser, f"state-{at.timestamp()}", "/next", at)


def _remember(factory: sessionmaker[Session], browser: str, at: datetime) -> oidc.Pending:
    pending = _pending("testidp", browser, at + oidc.PENDING_LIFETIME)
    with store.session_scope(factory) as s:
        oidc.remember(s, pending, at)
    return pending


def _claim(
    factory: sessionmaker[Session], pending: oidc.Pending, at: datetime, browser: str = ""
) -> oidc.Pending | None:
    with store.session_scope(factory) as s:
        return oidc.claim(s, KEY, "testidp", pending.state, browser or pending.browser, at)


def test_claim_once_before_expiry_and_purge(factory: sessionmaker[Session]) -> None:
    browser = oidc.new_browser_key()
    pending = _remember(factory, browser, T0)
    late = _remember(factory, browser, T0 + timedelta(minutes=1))
    assert _claim(factory, pending, T0 + timedelta(minutes=5), browser="x" * 43) is None
    with store.session_scope(factory) as s:  # the wrong provider neither
        assert oidc.claim(s, KEY, "other", pending.state, browser, T0) is None
    claimed = _claim(factory, pending, T0 + timedelta(minutes=5))
    assert claimed == pending  # the same nonce and verifier, derived again
    assert _claim(factory, pending, T0 + timedelta(minutes=5)) is None  # once
    assert _claim(factory, late, T0 + timedelta(minutes=11)) is None  # expired
    # A new login purges the expired rows, used or not.
    _remember(factory, oidc.new_browser_key(), T0 + timedelta(minutes=20))
    with store.session_scope(factory) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(models.OidcState)) == 1


def test_nonce_and_verifier_depend_on_every_part() -> None:
    base = _pending("testidp", "b" * 43, T0)
    others = [
        _pending("other", "b" * 43, T0),
        _pending("testidp", "c" * 43, T0),
        _pending("testidp", "b" * 43, T0 + timedelta(seconds=1)),  # another state
    ]
    assert len(base.verifier) == 43 and base.verifier != base.nonce
    for other in others:
        assert other.verifier != base.verifier and other.nonce != base.nonce


def test_two_racing_callbacks_cannot_both_win(pg_database: str) -> None:
    """On PostgreSQL (SQLite runs one writer at a time: no race to lose there)."""
    engine = store.make_engine(pg_database)
    factory = store.session_factory(engine)
    try:
        pending = _remember(factory, oidc.new_browser_key(), T0)
        at = T0 + timedelta(minutes=1)
        results: list[oidc.Pending | None] = []
        with store.session_scope(factory) as first:
            results.append(oidc.claim(first, KEY, "testidp", pending.state, pending.browser, at))
            # The second claim waits for the first's row lock, then finds the state used.
            racer = threading.Thread(target=lambda: results.append(_claim(factory, pending, at)))
            racer.start()
            racer.join(0.5)
            assert racer.is_alive(), "the second claim did not wait for the first"
        racer.join(10)
        assert results == [pending, None]
    finally:
        engine.dispose()
