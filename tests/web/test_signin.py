"""Sign-in by emailed link over a real `mailmanager web` process: the link works once, within
15 minutes, only through its confirmation POST; no user enumeration; rate limits; sessions
(sign-out, idle and absolute expiry, user removed from the configuration); CSRF refusals;
security headers and cookie flags."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa

from mailmanager.db import models, store
from mailmanager.services import signin
from tests.web.support import NOW, WebServer, csrf_of, link_in


def test_sign_in_by_emailed_link_in_the_users_language(web_server: WebServer) -> None:
    with web_server.client() as client:
        assert client.get("/followups").headers["location"] == "/signin?next=/followups"
        assert client.get("/").headers["location"] == "/signin"
        web_server.sign_in("alice@example.com", client)
        page = client.get("/followups")
        assert page.status_code == 200
        assert "Mes relances" in page.text and "Connecté : Alice Martin" in page.text
        assert client.get("/").headers["location"] == "/followups"
    fr = web_server.mails_to("alice@example.com")[-1]
    assert fr["Subject"] == "[mailmanager] Votre lien de connexion"
    deadline = time.monotonic() + 20
    while True:  # once sent (and the server's outbox thread is done), no usable link is kept
        with web_server.session() as s:
            bodies = s.scalars(
                sa.select(models.OutboxEmail.body_text).where(
                    models.OutboxEmail.idempotency_key.like("signin:%"),
                    models.OutboxEmail.status == "sent",
                )
            ).all()
        if (bodies and all("/signin/" not in b for b in bodies)) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert bodies and all("/signin/" not in b for b in bodies)
    bob = web_server.sign_in("bob@example.com")
    assert "My follow-ups" in bob.get("/followups").text
    bob.close()
    en = web_server.mails_to("bob@example.com")[-1]
    assert en["Subject"] == "[mailmanager] Your sign-in link"
    assert "/signin/" in en.get_body(("html",)).get_content()  # type: ignore[union-attr]


def test_the_link_works_once_and_only_by_its_post(web_server: WebServer) -> None:
    with web_server.client() as client:
        link = web_server.request_link(client, "alice@example.com")
        first = client.get(link)
        again = client.get(link)  # a mail scanner's prefetch changes nothing
        assert first.status_code == again.status_code == 200
        assert "alice@example.com" in first.text and 'method="post"' in first.text
        assert client.get("/followups").status_code == 303  # not signed in by the GETs
        url = link.split("?")[0]
        used = client.post(url, data={"csrf": csrf_of(again.text)})
        assert used.status_code == 303
        assert used.headers["location"] == "/followups"
        with web_server.client() as other:
            page = other.get("/signin")
            replay = other.post(url, data={"csrf": csrf_of(page.text)})
            assert replay.status_code == 410
            assert "no longer works" in replay.text or "plus valable" in replay.text
            assert other.get(link).status_code == 410
            assert other.get("/followups").status_code == 303


def test_an_expired_link_is_refused(web_server: WebServer) -> None:
    with web_server.client() as client:
        link = web_server.request_link(client, "bob@example.com")
        token = link.split("/signin/")[1].split("?")[0]
        with web_server.session() as s, s.begin():
            # The server may be marking the email sent: read after taking the write lock.
            store.write_first(s)
            row = s.scalars(
                sa.select(models.WebSignInRequest).where(
                    models.WebSignInRequest.token_hash == signin.digest(token)
                )
            ).one()
            assert row.expires_at is not None
            assert row.expires_at - row.created_at == timedelta(minutes=15)
            assert token not in (row.token_hash or "")  # only the hash is stored
            row.expires_at = NOW - timedelta(minutes=1)
        page = client.get(link)
        assert page.status_code == 410
        assert "expired (15 minutes)" in page.text
        token_field = csrf_of(client.get("/signin").text)
        refused = client.post(link.split("?")[0], data={"csrf": token_field})
        assert refused.status_code == 410
        assert client.get("/followups").status_code == 303


def test_same_answer_for_unknown_addresses_and_no_email(web_server: WebServer) -> None:
    with web_server.client() as client:
        form = client.get("/signin")
        answers = {}
        for email in ("bob@example.com", "nobody@example.com"):
            reply = client.post("/signin", data={"email": email, "csrf": csrf_of(form.text)})
            answers[email] = (reply.status_code, reply.text.replace(email, "ADDRESS"))
        web_server.wait_mail("bob@example.com", len(web_server.mails_to("bob@example.com")) - 1)
        assert answers["bob@example.com"] == answers["nobody@example.com"]
        assert answers["bob@example.com"][0] == 200
        assert not web_server.mails_to("nobody@example.com")
        bad = client.post("/signin", data={"email": "not an address", "csrf": csrf_of(form.text)})
        assert bad.status_code == 400


def test_next_never_leaves_the_site(web_server: WebServer) -> None:
    with web_server.client() as client:
        link = web_server.request_link(client, "bob@example.com")
        page = client.get(link)
        done = client.post(
            link.split("?")[0], data={"csrf": csrf_of(page.text), "next": "//evil.example/x"}
        )
        assert done.headers["location"] == "/followups"
        assert client.get("/signin?next=https://evil.example").text.count("evil") == 0


def test_rate_limits_per_address_and_per_ip(
    start_web_server: Callable[..., WebServer],
) -> None:
    server = start_web_server("login_limit_per_address = 2\nlogin_limit_per_ip = 4\n")
    with server.client() as client:
        token = csrf_of(client.get("/signin").text)

        def ask(email: str) -> httpx.Response:
            return client.post("/signin", data={"email": email, "csrf": token})

        assert [ask("alice@example.com").status_code for _ in range(3)] == [200, 200, 429]
        limited = ask("alice@example.com")
        assert limited.status_code == 429
        assert "Try again in 15 minutes" in limited.text
        # An unknown address is limited the same way (nothing tells it apart).
        assert [ask("ghost@example.com").status_code for _ in range(2)] == [200, 200]
        # 4 requests recorded from this IP: any further address is refused.
        assert ask("bob@example.com").status_code == 429
        with server.session() as s:
            recorded = s.scalar(sa.select(sa.func.count()).select_from(models.WebSignInRequest))
        assert recorded == 4


def test_sign_out_revokes_the_session(web_server: WebServer) -> None:
    client = web_server.sign_in("alice@example.com")
    cookie = client.cookies[signin_cookie()]
    page = client.get("/followups")
    assert client.post("/signout", data={}).status_code == 403  # no CSRF token: refused
    assert client.get("/followups").status_code == 200
    out = client.post("/signout", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303 and out.headers["location"].startswith("/signin")
    with web_server.client(cookies={signin_cookie(): cookie}) as stolen:
        assert stolen.get("/followups").status_code == 303
    client.close()


def signin_cookie() -> str:
    return "mm_session"


def test_idle_and_absolute_expiry(web_server: WebServer) -> None:
    for column, value in (
        ("last_seen_at", NOW - timedelta(minutes=121)),
        ("expires_at", NOW - timedelta(seconds=1)),
    ):
        client = web_server.sign_in("bob@example.com")
        assert client.get("/followups").status_code == 200
        digest = signin.digest(client.cookies[signin_cookie()])
        with web_server.session() as s, s.begin():
            t = models.WebSession.__table__
            s.execute(sa.update(t).where(t.c.token_hash == digest).values({column: value}))
        assert client.get("/followups").status_code == 303, column
        client.close()


def test_a_user_removed_from_the_configuration_is_refused(
    start_web_server: Callable[..., WebServer],
) -> None:
    server = start_web_server()
    client = server.sign_in("bob@example.com")
    assert client.get("/followups").status_code == 200
    bob = (
        '[[users]]\nemail = "bob@example.com"\nname = "Bob Smith"\nlocale = "en"\n'
        'timezone = "Europe/Paris"\n'
    )
    server.restart(lambda text: text.replace(bob, ""))
    assert client.get("/followups").status_code == 303
    with server.client() as other:  # and cannot sign in again: no email is sent
        before = len(server.mails_to("bob@example.com"))
        form = other.get("/signin")
        reply = other.post("/signin", data={"email": "bob@example.com", "csrf": csrf_of(form.text)})
        assert reply.status_code == 200
    assert len(server.mails_to("bob@example.com")) == before
    client.close()


def test_csrf_is_required_on_every_post(web_server: WebServer) -> None:
    with web_server.client() as client:
        client.get("/signin")
        assert client.post("/signin", data={"email": "bob@example.com"}).status_code == 403
        wrong = client.post("/signin", data={"email": "bob@example.com", "csrf": "x" * 43})
        assert wrong.status_code == 403
    with web_server.client() as fresh:  # no csrf cookie at all
        assert fresh.post("/signin", data={"email": "a@b.c", "csrf": "abc"}).status_code == 403


def test_security_headers_and_cookie_flags(web_server: WebServer) -> None:
    with web_server.client() as client:
        page = client.get("/signin")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "same-origin"
        assert "<script" not in page.text and "style=" not in page.text
        link = web_server.request_link(client, "bob@example.com")
        confirm = client.get(link)
        done = client.post(link.split("?")[0], data={"csrf": csrf_of(confirm.text)})
        cookie = done.headers["set-cookie"].lower()
        assert "mm_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
        assert "secure" not in cookie  # http://127.0.0.1: a Secure cookie would never come back


def _https(text: str) -> str:
    assert text.count('base_url = "http://127.0.0.1:') == 1
    return text.replace('base_url = "http://', 'base_url = "https://')


def test_secure_cookie_behind_https(start_web_server: Callable[..., WebServer]) -> None:
    server = start_web_server(edit=_https)  # a proxy would end TLS: the server speaks http
    port = server.url.rsplit(":", 1)[1]
    with server.client() as client:
        before = len(server.mails_to("bob@example.com"))
        form = client.get("/signin")
        assert "secure" in form.headers["set-cookie"].lower()  # the csrf cookie too
        # httpx keeps Secure cookies for https only: give it back by hand over http.
        jar = {"mm_csrf": form.cookies["mm_csrf"]}
        client.cookies.clear()
        client.cookies.update(jar)
        reply = client.post(
            "/signin", data={"email": "bob@example.com", "csrf": csrf_of(form.text)}
        )
        assert reply.status_code == 200
        link = link_in(server.wait_mail("bob@example.com", before))
        assert link.startswith(f"https://127.0.0.1:{port}/signin/")
        local = link.replace("https://", "http://").split("?")[0]
        confirm = client.get(local)
        client.cookies.update(jar)
        done = client.post(local, data={"csrf": csrf_of(confirm.text)})
        assert done.status_code == 303
        assert "secure" in done.headers["set-cookie"].lower()


def _printed_link(server: WebServer, email: str) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = re.findall(
            rf"Sign-in link for {re.escape(email)} \(valid 15 minutes\): (\S+)", server.output()
        )
        if found:
            return str(found[-1])
        time.sleep(0.05)
    raise AssertionError(f"no sign-in link printed:\n{server.output()}")


@pytest.mark.parametrize("mode", ["terminal", "auto"])
def test_sign_in_links_printed_where_the_server_runs(
    start_web_server: Callable[..., WebServer], mode: str
) -> None:
    server = start_web_server(f'sign_in_links = "{mode}"\n')
    assert f"mailmanager web: open {server.url}/ in your browser" in server.output()
    before = len(server.mails_to("bob@example.com"))
    with server.client() as client:
        form = client.get("/signin")
        client.post("/signin", data={"email": "bob@example.com", "csrf": csrf_of(form.text)})
        link = _printed_link(server, "bob@example.com")
        page = client.get(link)
        assert client.post(link.split("?")[0], data={"csrf": csrf_of(page.text)}).status_code == 303
        assert client.get("/followups").status_code == 200
    with server.session() as s:
        queued = s.scalar(
            sa.select(sa.func.count())
            .select_from(models.OutboxEmail)
            .where(models.OutboxEmail.idempotency_key.like("signin:%"))
        )
    if mode == "terminal":  # no email at all
        assert queued == 0 and len(server.mails_to("bob@example.com")) == before
    else:  # "auto" on 127.0.0.1: printed, and emailed too
        assert queued == 1
        assert link_in(server.wait_mail("bob@example.com", before)) == link


def test_back_to_the_page_asked_for_after_signing_in(web_server: WebServer) -> None:
    with web_server.client() as client:
        target = "/followups?user=alice@example.com&ok=x"
        to_signin = client.get(target).headers["location"]
        assert (
            to_signin
            == "/signin?next=%2Ffollowups%3Fuser%3Dalice%40example.com%26ok%3Dx".replace("%2F", "/")
        )
        form = client.get(to_signin)
        assert f'name="next" value="{target.replace("&", "&amp;")}"' in form.text
        before = len(web_server.mails_to("alice@example.com"))
        client.post(
            "/signin",
            data={"email": "alice@example.com", "csrf": csrf_of(form.text), "next": target},
        )
        link = link_in(web_server.wait_mail("alice@example.com", before))
        page = client.get(link)
        done = client.post(link.split("?")[0], data={"csrf": csrf_of(page.text), "next": target})
        assert done.headers["location"] == target
