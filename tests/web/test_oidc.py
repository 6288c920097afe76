"""Sign-in with OpenID Connect against a loopback provider (`testing.fakes.oidc_server`) and a
real `mailmanager web` process: a verified email of a configured user opens the same session
as an emailed link; an unknown or unverified email, a wrong state, a replayed code, a
tampered signature and a wrong audience are refused. Also the app-wide body size limit:
an unauthenticated 30 MB POST gets 413 before its body is read, and the server stays up."""

from __future__ import annotations

import html
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from mailmanager import config
from mailmanager.testing.fakes.oidc_server import Identity, OidcFake
from tests.integration.notify_support import Sink
from tests.web import browser
from tests.web.support import NOW, Template, WebServer, start_server

ALICE = "alice@example.com"


@dataclass
class Setup:
    server: WebServer
    idp: OidcFake


def oidc_section(idp: OidcFake, secret_file: str) -> str:
    return f"""
[[oidc]]
name = "TestIdP"
issuer = "{idp.issuer}"
client_id = "{idp.client_id}"
client_secret_file = "{secret_file}"
"""


@pytest.fixture(scope="module")
def oidc_web(
    tmp_path_factory: pytest.TempPathFactory, web_template: Template, web_sink: Sink
) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("web-oidc")
    secret = root / "client-secret"
    secret.write_text("test-client-secret\n")
    os.chmod(secret, 0o600)
    started = time.monotonic()
    # The server's clock starts at NOW (faketime); the provider's follows it.
    idp = OidcFake(Identity(ALICE), clock=lambda: NOW.timestamp() + time.monotonic() - started)
    with idp:
        server = start_server(
            root / "server", web_template, web_sink, extra=oidc_section(idp, str(secret))
        )
        try:
            yield Setup(server, idp)
        finally:
            server.stop()


@pytest.fixture
def fresh(oidc_web: Setup) -> Iterator[Setup]:
    """The module's setup, with the provider's faults reset after the test."""
    yield oidc_web
    idp = oidc_web.idp
    idp.identity, idp.audience, idp.tamper_signature = Identity(ALICE), None, False


def to_provider(client: httpx.Client, path: str = "/signin/oidc/testidp") -> str:
    """Start a login; the provider's answer: the callback URL, with code and state."""
    start = client.get(path)
    assert start.status_code == 303, start.text
    authorize = httpx.get(start.headers["location"], follow_redirects=False)
    assert authorize.status_code == 302, authorize.text
    return authorize.headers["location"]


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(query)}"


def test_sign_in_page_has_the_provider_button(oidc_web: Setup) -> None:
    with oidc_web.server.client(headers={"Accept-Language": "fr-FR"}) as client:
        page = client.get("/signin?next=/clients")
    assert 'href="/signin/oidc/testidp?next=/clients"' in page.text
    assert "Se connecter avec TestIdP" in page.text


def test_verified_user_gets_a_session(fresh: Setup) -> None:
    with fresh.server.client() as client:
        callback = to_provider(client, "/signin/oidc/testidp?next=/followups%3Fx%3D1")
        parts = urlsplit(callback)
        assert parts.path == "/signin/oidc/testidp/callback"
        done = client.get(callback)
        assert done.status_code == 303, done.text
        assert done.headers["location"] == "/followups?x=1"
        assert "mm_session" in client.cookies
        page = client.get("/followups")
        assert page.status_code == 200
        assert "Mes relances" in page.text  # alice's language
    # PKCE and nonce went to the provider; the code was exchanged once.
    assert fresh.idp.calls["/token"] >= 1


def test_unknown_email_is_refused(fresh: Setup) -> None:
    fresh.idp.identity = Identity("stranger@example.org")
    with fresh.server.client(headers={"Accept-Language": "fr"}) as client:
        refused = client.get(to_provider(client))
        assert refused.status_code == 403
        assert "n'est pas celle d'un utilisateur" in html.unescape(refused.text)
        assert "mm_session" not in client.cookies
        assert client.get("/followups").status_code == 303  # to the sign-in page


def test_unverified_email_is_refused(fresh: Setup) -> None:
    fresh.idp.identity = Identity(ALICE, email_verified=False)
    with fresh.server.client() as client:
        refused = client.get(to_provider(client))
        assert refused.status_code == 403
        assert "has not verified your email" in refused.text
        assert "mm_session" not in client.cookies


def test_microsoft_domain_verified_email_stands_in(fresh: Setup) -> None:
    fresh.idp.identity = Identity(ALICE, email_verified=None, xms_edov=True)
    with fresh.server.client() as client:
        assert client.get(to_provider(client)).status_code == 303
        assert "mm_session" in client.cookies
    fresh.idp.identity = Identity(ALICE, email_verified=None)  # neither claim
    with fresh.server.client() as client:
        assert client.get(to_provider(client)).status_code == 403
        assert "mm_session" not in client.cookies
    fresh.idp.identity = Identity(ALICE, email_verified=False, xms_edov=True)
    with fresh.server.client() as client:  # an explicit "not verified" wins
        assert client.get(to_provider(client)).status_code == 403


def test_wrong_state_is_refused(fresh: Setup) -> None:
    with fresh.server.client() as client:
        callback = to_provider(client)
        refused = client.get(with_query(callback, state="not-the-state"))
        assert refused.status_code == 400
        assert "did not work" in refused.text
        assert "mm_session" not in client.cookies
    with fresh.server.client() as stranger:  # no pending login cookie at all
        assert stranger.get(callback).status_code == 400


def test_replayed_code_or_callback_is_refused(fresh: Setup) -> None:
    with fresh.server.client() as first:
        callback = to_provider(first)
        assert first.get(callback).status_code == 303
        # the same callback again (same cookie, state, code): the state was used
        first.cookies.delete("mm_session")
        assert first.get(callback).status_code == 400
    code = parse_qs(urlsplit(callback).query)["code"][0]
    with fresh.server.client() as second:
        fresh_callback = to_provider(second)  # a new login, answered with the old code
        before = fresh.idp.calls["/token"]
        refused = second.get(with_query(fresh_callback, code=code))
        assert refused.status_code == 400
        assert fresh.idp.calls["/token"] == before + 1  # the provider refused it
        assert "mm_session" not in second.cookies


def test_tampered_signature_is_refused(fresh: Setup) -> None:
    fresh.idp.tamper_signature = True
    with fresh.server.client() as client:
        refused = client.get(to_provider(client))
        assert refused.status_code == 400
        assert "mm_session" not in client.cookies


def test_wrong_audience_is_refused(fresh: Setup) -> None:
    fresh.idp.audience = "another-client"
    with fresh.server.client() as client:
        refused = client.get(to_provider(client))
        assert refused.status_code == 400
        assert "mm_session" not in client.cookies


def test_unknown_provider_is_404(oidc_web: Setup) -> None:
    with oidc_web.server.client() as client:
        assert client.get("/signin/oidc/nobody").status_code == 404


def _raw_post(url: str, head: str, chunks: Iterator[bytes]) -> bytes:
    """Send a request by hand (the body may stop being read); the server's answer."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head.encode())
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: read what it said
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
        except ConnectionResetError:
            pass
    return answer


def test_oversized_body_is_refused_before_it_is_read(oidc_web: Setup) -> None:
    url = oidc_web.server.url
    size = 30 * 1024 * 1024
    head = (
        f"POST /admin/import HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: multipart/form-data; boundary=xyz\r\n"
        f"Content-Length: {size}\r\nConnection: close\r\n\r\n"
    )
    # Only 64 KB of the declared 30 MB are sent: the answer cannot wait for the body.
    answer = _raw_post(url, head, iter([b"--xyz\r\n" + b"x" * 65536]))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"max_upload_mb" in answer
    # Chunked: no length declared, refused once the bytes streamed pass the limit.
    head = (
        "POST /signin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: multipart/form-data; boundary=xyz\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    part = b'--xyz\r\nContent-Disposition: form-data; name="f"; filename="big.csv"\r\n\r\n'
    mb = b"a" * (1024 * 1024)
    chunks = (b"%x\r\n%s\r\n" % (len(c), c) for c in [part] + [mb] * 30)
    answer = _raw_post(url, head, chunks)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    with oidc_web.server.client() as client:  # still up
        assert client.get("/signin").status_code == 200
        small = client.post("/signin", data={"email": "x"})
        assert small.status_code == 403  # no csrf: refused as before, not 413


def test_oidc_config_is_checked(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = '[database]\nurl = "sqlite:///x.db"\n[[users]]\nemail = "a@example.com"\nname = "A"\n'
    ok = base + '[[oidc]]\nname = "Google"\nissuer = "https://accounts.google.com/"\n'
    ok += 'client_id = "id"\nclient_secret_env = "GOOGLE_SECRET"\n'
    cfg = config.loads(ok, base_dir=str(tmp_path_factory.mktemp("cfg")))
    (provider,) = cfg.oidc
    assert (provider.slug, provider.issuer) == ("google", "https://accounts.google.com")
    assert provider.scopes == ("openid", "email", "profile")
    monkeypatch.delenv("GOOGLE_SECRET", raising=False)
    with pytest.raises(config.ConfigFileError, match=r"oidc\[0\]\.client_secret_env"):
        cfg.check_run()  # what `mailmanager config check` runs
    monkeypatch.setenv("GOOGLE_SECRET", "s3cret")
    cfg.check_run()
    assert provider.client_secret() == "s3cret"
    bad = base + '[[oidc]]\nname = "X"\nissuer = "http://idp.example.com"\nclient_id = "id"\n'
    bad += 'client_secret = "written-here"\nscopes = ["email"]\n'
    with pytest.raises(config.ConfigFileError) as caught:
        config.loads(bad, base_dir=".")
    text = str(caught.value)
    assert "oidc[0].issuer" in text and "http only for 127.0.0.1" in text
    assert "oidc[0].client_secret" in text
    assert "oidc[0].scopes" in text
    assert "written-here" not in text


def test_sign_in_with_the_provider_in_chromium(
    fresh: Setup, chromium: Any, watch: browser.Watch, artifacts_dir: Path
) -> None:
    print(f"artifacts: {artifacts_dir}")
    page = watch.page(chromium, locale="en-US")
    page.goto(f"{fresh.server.url}/followups")
    assert page.url.endswith("/signin?next=/followups")
    watch.check(page, "signin-with-provider-en")
    page.get_by_role("link", name="Sign in with TestIdP").click()
    page.wait_for_url("**/followups")
    assert page.get_by_role("heading", level=1).inner_text() == "Mes relances"
    watch.check(page, "followups-after-oidc-fr")
    fresh.idp.identity = Identity("stranger@example.org")
    page.context.clear_cookies()
    page.goto(f"{fresh.server.url}/signin")
    page.get_by_role("link", name="Sign in with TestIdP").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", level=1).inner_text() == "Sign-in refused"
    watch.check(page, "oidc-refused-en")
    # The refusal page is a 403 navigation: Chromium logs its status, nothing else.
    watch.errors = [e for e in watch.errors if not ("/callback?" in e and "403" in e)]
    watch.assert_no_console_errors()
