"""The admin pages over a real `mailmanager web` process: every route answers an admin, and
refuses a salesperson (403, nothing changed), a signed-out visitor (sign-in page) and a POST
without its CSRF token (403, nothing changed). Then what each page does: the mailbox test's
steps, "sync now" (once at a time), the quarantine's raw download, outbox retry, and the CRM
import's dry run then apply."""

from __future__ import annotations

import hashlib
import html
import re
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa

from mailmanager.db import models
from tests.web.support import NOW, WebServer, csrf_of

MAILBOX = "alice-archive"
RAW = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1 an Outlook .msg file, not a message"


@pytest.fixture(scope="module")
def seeded(web_server: WebServer) -> Iterator[dict[str, int]]:
    """A quarantined item and a failed (dead) email in the server's database."""
    with web_server.session() as s, s.begin():
        folder = s.scalars(
            sa.select(models.Folder.id)
            .join(models.Mailbox, models.Mailbox.id == models.Folder.mailbox_id)
            .where(models.Mailbox.name == MAILBOX)
            .order_by(models.Folder.id)
        ).first()
        assert folder is not None
        item = models.Quarantine(
            folder_id=folder,
            provider_id="cur/1700000000.M1.host:2,S",
            reason="outlook_msg_ole2",
            sha256=hashlib.sha256(RAW).hexdigest(),
            size=len(RAW),
            data=RAW,
            created_at=NOW - timedelta(days=2),
        )
        dead = models.OutboxEmail(
            idempotency_key="admin-test-dead",
            message_id_header="<admin-test-dead@example.com>",
            recipient="retry-me@client.test",  # no other test waits for its mail
            subject="Relances du jour",
            body_text="x",
            status="dead",
            attempts=8,
            last_error="550 mailbox unavailable",
            created_at=NOW - timedelta(days=1),
        )
        s.add_all([item, dead])
        s.flush()
        ids = {"quarantine": item.id, "outbox": dead.id}
    yield ids


@pytest.fixture(scope="module")
def admin(web_server: WebServer) -> Iterator[httpx.Client]:
    client = web_server.sign_in("dave@example.com")
    yield client
    client.close()


@pytest.fixture(scope="module")
def seller(web_server: WebServer) -> Iterator[httpx.Client]:
    client = web_server.sign_in("alice@example.com")
    yield client
    client.close()


def _gets(ids: dict[str, int]) -> list[str]:
    return [
        "/admin",
        "/admin/users",
        "/admin/quarantine",
        f"/admin/quarantine?mailbox={MAILBOX}",
        f"/admin/quarantine/{ids['quarantine']}/raw",
        "/admin/outbox",
        "/admin/import",
    ]


def _posts(ids: dict[str, int]) -> list[str]:
    return [
        f"/admin/mailboxes/{MAILBOX}/test",
        f"/admin/mailboxes/{MAILBOX}/sync",
        f"/admin/outbox/{ids['outbox']}/retry",
        "/admin/import",
        "/admin/import/" + "A" * 32 + "/apply",
        "/admin/import/" + "A" * 32 + "/discard",
    ]


def _outbox_state(server: WebServer, row_id: int) -> tuple[str, int]:
    with server.session() as s:
        row = s.get(models.OutboxEmail, row_id)
        assert row is not None
        return row.status, row.attempts


def _sync_runs(server: WebServer) -> int:
    with server.session() as s:
        return int(s.scalar(sa.select(sa.func.count()).select_from(models.SyncRun)) or 0)


def test_every_admin_page_answers_an_admin(admin: httpx.Client, seeded: dict[str, int]) -> None:
    for path in _gets(seeded):
        reply = admin.get(path)
        assert reply.status_code == 200, (path, reply.text[:500])
    home = admin.get("/admin").text
    assert 'href="/admin"' in home and "Administration" in home  # the nav item, for admins


def test_a_salesperson_is_refused_everything(
    web_server: WebServer, seller: httpx.Client, seeded: dict[str, int]
) -> None:
    token = csrf_of(seller.get("/followups").text)
    assert 'href="/admin"' not in seller.get("/followups").text  # no nav item either
    for path in _gets(seeded):
        assert seller.get(path).status_code == 403, path
    before = (_outbox_state(web_server, seeded["outbox"]), _sync_runs(web_server))
    for path in _posts(seeded):
        reply = seller.post(path, data={"csrf": token, "kind": "companies"})
        assert reply.status_code == 403, path
    assert (_outbox_state(web_server, seeded["outbox"]), _sync_runs(web_server)) == before


def test_signed_out_visitors_go_to_sign_in(web_server: WebServer, seeded: dict[str, int]) -> None:
    before = (_outbox_state(web_server, seeded["outbox"]), _sync_runs(web_server))
    with web_server.client() as anon:
        for path in _gets(seeded):
            reply = anon.get(path)
            assert reply.status_code == 303, path
            assert reply.headers["location"].startswith("/signin?next=/admin"), path
        token = csrf_of(anon.get("/signin").text)  # a valid signed-out token: still refused
        for path in _posts(seeded):
            assert anon.post(path, data={"csrf": token}).status_code == 401, path
    assert (_outbox_state(web_server, seeded["outbox"]), _sync_runs(web_server)) == before


def test_posts_without_the_csrf_token_are_refused(
    web_server: WebServer, admin: httpx.Client, seeded: dict[str, int]
) -> None:
    before = (_outbox_state(web_server, seeded["outbox"]), _sync_runs(web_server))
    for path in _posts(seeded):
        for data in ({}, {"csrf": "forged"}):
            reply = admin.post(path, data=data)
            assert reply.status_code == 403, path
    upload = admin.post(
        "/admin/import",
        data={"kind": "companies"},
        files={"file": ("c.csv", b"name\nAcme\n", "text/csv")},
    )
    assert upload.status_code == 403
    assert (_outbox_state(web_server, seeded["outbox"]), _sync_runs(web_server)) == before


def test_mailbox_page_shows_state_last_sync_and_quarantine(
    admin: httpx.Client, seeded: dict[str, int]
) -> None:
    page = admin.get("/admin").text
    assert MAILBOX in page and "OK" in page
    assert "Dernière synchro" in page and "jamais" not in page.split(MAILBOX, 1)[1][:2000]
    assert f"/admin/quarantine?mailbox={MAILBOX}" in page  # 1 item, linked
    assert "Tester la connexion" in page and "Synchroniser maintenant" in page


def test_a_failing_mailbox_says_what_went_wrong_and_what_to_do(
    web_server: WebServer, admin: httpx.Client
) -> None:
    def set_error(error: str | None) -> None:
        with web_server.session() as s, s.begin():
            s.execute(
                sa.update(models.Mailbox)
                .where(models.Mailbox.name == MAILBOX)
                .values(last_error=error)
            )

    try:
        set_error("TransientError: connection to imap.example.com:993 timed out")
        page = html.unescape(admin.get("/admin").text)
        assert "En erreur" in page and "injoignable" in page and "la prochaine synchro" in page
        assert "imap.example.com:993 timed out" in page
        set_error("OperationalError: database is locked")
        page = html.unescape(admin.get("/admin").text)
        assert "erreur interne" in page and "journal du démon" in page
    finally:
        set_error(None)


def test_mailbox_test_shows_each_step(web_server: WebServer, admin: httpx.Client) -> None:
    token = csrf_of(admin.get("/admin").text)
    reply = admin.post(f"/admin/mailboxes/{MAILBOX}/test", data={"csrf": token})
    assert reply.status_code == 200
    cli = web_server.cli("mailbox", "test", MAILBOX).stdout.splitlines()
    steps = [re.match(r"\[(ok  |FAIL)\] ([^:]+)", line) for line in cli]
    assert steps and all(steps)
    for m in steps:
        assert m is not None and f'<th scope="row">{m[2]}</th>' in reply.text
    assert "Toutes les étapes ont réussi." in reply.text
    assert admin.post("/admin/mailboxes/nope/test", data={"csrf": token}).status_code == 404


def test_sync_now_runs_in_the_background_once(web_server: WebServer, admin: httpx.Client) -> None:
    token = csrf_of(admin.get("/admin").text)
    runs = _sync_runs(web_server)
    first = admin.post(f"/admin/mailboxes/{MAILBOX}/sync", data={"csrf": token})
    assert first.status_code == 303 and "notice=started" in first.headers["location"]
    second = admin.post(f"/admin/mailboxes/{MAILBOX}/sync", data={"csrf": token})
    assert second.status_code == 303
    # The first run may have ended already (the mailbox has nothing new): either the
    # second click was refused, or it started a run of its own after the first one ended.
    assert re.search(r"notice=(running|started)", second.headers["location"])
    deadline = time.monotonic() + 60  # wall clock: waits for the server's background thread
    while "en cours depuis" in (page := admin.get("/admin").text):
        assert time.monotonic() < deadline, "the sync did not end"  # wall clock: same wait
        time.sleep(0.2)
    assert f"« {MAILBOX} » synchronisée à" in page and "0 nouveaux messages" in page
    started = 2 if "notice=started" in second.headers["location"] else 1
    assert _sync_runs(web_server) == runs + started
    refused = admin.get(second.headers["location"]) if started == 1 else None
    if refused is not None:
        assert "déjà en cours de synchronisation" in refused.text


def test_sync_now_is_refused_while_another_worker_holds_the_lease(
    web_server: WebServer, admin: httpx.Client
) -> None:
    with web_server.session() as s, s.begin():
        s.execute(
            sa.update(models.Mailbox)
            .where(models.Mailbox.name == MAILBOX)
            .values(lease_owner="daemon-host:4242:abcd", lease_until=NOW + timedelta(days=3650))
        )
    try:
        page = admin.get("/admin").text
        assert "Synchronisation en cours" in page and "daemon-host:4242:abcd" in page
        runs = _sync_runs(web_server)
        reply = admin.post(f"/admin/mailboxes/{MAILBOX}/sync", data={"csrf": csrf_of(page)})
        assert "notice=leased" in reply.headers["location"]
        shown = admin.get(reply.headers["location"]).text
        assert "par un autre processus (daemon-host:4242:abcd)" in shown
        assert _sync_runs(web_server) == runs
    finally:
        with web_server.session() as s, s.begin():
            s.execute(
                sa.update(models.Mailbox)
                .where(models.Mailbox.name == MAILBOX)
                .values(lease_owner=None, lease_until=None)
            )


def test_quarantine_lists_reasons_and_downloads_the_raw_file(
    admin: httpx.Client, seeded: dict[str, int]
) -> None:
    page = admin.get("/admin/quarantine").text
    assert "an Outlook .msg file" in page and "outlook_msg_ole2" in page and MAILBOX in page
    raw = admin.get(f"/admin/quarantine/{seeded['quarantine']}/raw")
    assert raw.content == RAW
    assert raw.headers["content-type"] == "application/octet-stream"
    assert raw.headers["content-disposition"].startswith("attachment;")
    assert admin.get("/admin/quarantine/999999/raw").status_code == 404
    assert "1 élément(s)" in admin.get("/admin/quarantine?mailbox=nope").text  # all shown


def test_users_page_lists_roles_read_only(admin: httpx.Client) -> None:
    page = admin.get("/admin/users").text
    for text in ("Dave Admin", "Administrateur", "Carol Manager", "carol@example.com", MAILBOX):
        assert text in page
    assert "fichier de configuration" in page
    assert "<form" not in page.split("<main", 1)[1]  # nothing to change here


def test_outbox_lists_failed_mail_and_retries_it(
    web_server: WebServer, admin: httpx.Client, seeded: dict[str, int]
) -> None:
    page = admin.get("/admin/outbox").text
    assert "550 mailbox unavailable" in page and "en échec" in page
    reply = admin.post(f"/admin/outbox/{seeded['outbox']}/retry", data={"csrf": csrf_of(page)})
    assert reply.status_code == 303
    status, attempts = _outbox_state(web_server, seeded["outbox"])
    assert status in ("pending", "sending", "sent") and attempts in (0, 1)
    again = admin.post("/admin/outbox/999999/retry", data={"csrf": csrf_of(page)})
    assert again.status_code == 400 and "no outbox email 999999" in again.text


CSV = "nom;domaines\nAcme Admin;acme-admin.example\nGlobex Admin;globex-admin.example\n"
BAD = "first_name,last_name,email,owner\nAnn,Lee,ann@acme-admin.example,nobody@example.com\n"


def _companies(server: WebServer) -> set[str]:
    with server.session() as s:
        return set(s.scalars(sa.select(models.Company.name)))


def _upload(client: httpx.Client, kind: str, name: str, body: str | bytes) -> httpx.Response:
    token = csrf_of(client.get("/admin/import").text)
    data = body.encode() if isinstance(body, str) else body
    return client.post(
        "/admin/import",
        data={"csrf": token, "kind": kind, "sheet": ""},
        files={"file": (name, data, "text/csv")},
    )


def test_import_shows_the_dry_run_then_applies(web_server: WebServer, admin: httpx.Client) -> None:
    report = _upload(admin, "companies", "clients.csv", CSV)
    assert report.status_code == 200
    assert "Rapport de l'essai : clients.csv" in html.unescape(report.text)
    assert "2 lignes : 2 à créer" in report.text
    assert "Acme Admin" not in _companies(web_server)  # a dry run wrote nothing
    apply = re.search(r'action="(/admin/import/[A-Za-z0-9_-]+/apply)"', report.text)
    assert apply
    done = admin.post(apply[1], data={"csrf": csrf_of(report.text)})
    assert done.status_code == 200 and "Import effectué" in done.text
    assert {"Acme Admin", "Globex Admin"} <= _companies(web_server)
    replay = admin.post(apply[1], data={"csrf": csrf_of(report.text)})
    assert "upload the file again" in replay.text  # applied once only


def test_import_errors_are_line_numbered_and_block_the_apply(admin: httpx.Client) -> None:
    report = _upload(admin, "contacts", "contacts.csv", BAD)
    assert report.status_code == 200
    assert '<th scope="row">2</th>' in report.text and "nobody@example.com" in report.text
    assert "/apply" not in report.text and "Rien ne peut être importé" in report.text


def test_import_refusals_say_why(admin: httpx.Client) -> None:
    empty = _upload(admin, "companies", "e.csv", b"")
    assert "Fichier refusé" in empty.text and "empty" in empty.text
    xls = _upload(admin, "companies", "old.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600)
    assert "Fichier refusé" in xls.text and ".xlsx" in xls.text
    kind = _upload(admin, "deals", "c.csv", CSV)
    assert "unknown kind" in kind.text


def test_discard_forgets_the_upload(web_server: WebServer, admin: httpx.Client) -> None:
    report = _upload(admin, "companies", "later.csv", "name\nDiscarded Co\n")
    discard = re.search(r'action="(/admin/import/[A-Za-z0-9_-]+)/discard"', report.text)
    assert discard
    token = csrf_of(report.text)
    out = admin.post(f"{discard[1]}/discard", data={"csrf": token})
    assert out.status_code == 303 and out.headers["location"] == "/admin/import?discarded=1"
    late = admin.post(f"{discard[1]}/apply", data={"csrf": token})
    assert "upload the file again" in late.text
    assert "Discarded Co" not in _companies(web_server)


def _dave_in_english(text: str) -> str:
    fr, en = 'name = "Dave Admin"\nlocale = "fr"', 'name = "Dave Admin"\nlocale = "en"'
    assert fr in text
    return text.replace(fr, en)


def test_admin_pages_in_english(start_web_server: Callable[..., WebServer]) -> None:
    server = start_web_server(edit=_dave_in_english)
    client = server.sign_in("dave@example.com")
    try:
        assert "Test the connection" in client.get("/admin").text
        assert "Roles come from the configuration file" in client.get("/admin/users").text
        assert "Check the file" in client.get("/admin/import").text
        assert "What to do" not in client.get("/admin").text  # no failing mailbox
    finally:
        client.close()
