"""The admin pages in a real Chromium, against a real `mailmanager web` process over the
synced sample mailbox: run "mailbox test" from the mailboxes page and read its steps, sync
now and see the result, look at the quarantine, users and outbox (retry a failed email),
upload a CSV file and see the dry-run report, then apply it. A screenshot per page, no
console error, axe-core finds no serious or critical violation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mailmanager.db import models
from tests.web import browser
from tests.web.support import NOW, WebServer

MAILBOX = "alice-archive"
CSV = "nom;domaines\nBrowser Industrie;browser-industrie.example\nSecond SA;second.example\n"


@pytest.fixture(scope="module")
def seeded(web_server: WebServer) -> dict[str, int]:
    with web_server.session() as s, s.begin():
        folder = s.scalars(
            sa.select(models.Folder.id)
            .join(models.Mailbox, models.Mailbox.id == models.Folder.mailbox_id)
            .where(models.Mailbox.name == MAILBOX)
        ).first()
        assert folder is not None
        item = models.Quarantine(
            folder_id=folder,
            provider_id="cur/1.M1.host:2,S",
            reason="no_header_block",
            sha256="0" * 64,
            size=12,
            data=b"not an email",
            created_at=NOW - timedelta(days=1),
        )
        dead = models.OutboxEmail(
            idempotency_key="browser-dead",
            message_id_header="<browser-dead@example.com>",
            recipient="retry-browser@client.test",
            subject="Vos relances",
            body_text="x",
            status="dead",
            attempts=8,
            last_error="421 try again later",
        )
        s.add_all([item, dead])
        s.flush()
        return {"quarantine": item.id, "outbox": dead.id}


@pytest.fixture
def admin_page(
    web_server: WebServer, chromium: Any, watch: browser.Watch
) -> Iterator[tuple[Any, Any]]:
    """A Chromium page signed in as dave (admin, French), and its watch."""
    client = web_server.sign_in("dave@example.com")
    token = client.cookies.get("mm_session")
    client.close()
    page = watch.page(chromium, locale="fr-FR")
    page.context.add_cookies([{"name": "mm_session", "value": token, "url": web_server.url}])
    yield page, watch
    watch.assert_no_console_errors()


def test_mailbox_test_and_sync_now_from_the_admin_page(
    web_server: WebServer, admin_page: tuple[Any, Any], seeded: dict[str, int]
) -> None:
    page, watch = admin_page
    with web_server.session() as s, s.begin():  # as a sync refused by the server leaves it
        s.execute(
            sa.update(models.Mailbox)
            .where(models.Mailbox.name == MAILBOX)
            .values(last_error="AuthError: [AUTHENTICATIONFAILED] Authentication failed.")
        )
    page.goto(web_server.url + "/admin")
    assert page.locator("h1").inner_text() == "Boîtes aux lettres"
    problem = page.locator(f"#mb-{MAILBOX} .problem")
    assert "refuse l'identifiant" in problem.inner_text()
    page.get_by_text("Message exact").click()
    assert "AUTHENTICATIONFAILED" in problem.inner_text()
    watch.check(page, "admin-mailboxes")
    page.get_by_role("button", name=f"Tester la connexion ({MAILBOX})").click()
    page.wait_for_url("**/admin/mailboxes/*/test")
    rows = page.locator("table.steps tbody tr")
    assert rows.count() >= 2
    for i in range(rows.count()):
        assert "réussie" in rows.nth(i).inner_text()
    assert page.get_by_role("status").inner_text() == "Toutes les étapes ont réussi."
    watch.check(page, "admin-mailbox-test")
    page.get_by_role("link", name="Retour aux boîtes").click()
    page.get_by_role("button", name=f"Synchroniser maintenant ({MAILBOX})").click()
    page.wait_for_url("**/admin?*")
    assert "lancée" in page.locator("p.notice").first.inner_text()
    deadline = time.monotonic() + 60  # wall clock: waits for the server's background sync
    while "synchronisée à" not in page.locator(f"#mb-{MAILBOX}").inner_text():
        assert time.monotonic() < deadline, "the sync did not end"  # wall clock: same wait
        time.sleep(0.3)
        page.goto(web_server.url + "/admin")
    assert not page.locator(f"#mb-{MAILBOX} .problem").count()  # the sync cleared it
    watch.check(page, "admin-mailboxes-synced")


def test_quarantine_users_and_outbox_pages(
    web_server: WebServer, admin_page: tuple[Any, Any], seeded: dict[str, int]
) -> None:
    page, watch = admin_page
    page.goto(web_server.url + "/admin/quarantine")
    assert "no header block" in page.locator("table").inner_text()
    with page.expect_download() as download:
        page.get_by_role("link", name=f"Télécharger n° {seeded['quarantine']}").click()
    assert Path(download.value.path()).read_bytes() == b"not an email"
    watch.check(page, "admin-quarantine")
    page.get_by_role("link", name="Utilisateurs et rôles").click()
    assert "Dave Admin" in page.locator("table").inner_text()
    watch.check(page, "admin-users")
    page.get_by_role("link", name="Boîte d'envoi").click()
    assert "421 try again later" in page.locator("table").inner_text()
    watch.check(page, "admin-outbox")
    page.get_by_role("button", name=f"Réessayer (N° {seeded['outbox']})").click()
    page.wait_for_url("**/admin/outbox?retried=*")
    assert "remis en file" in page.get_by_role("status").inner_text()
    watch.check(page, "admin-outbox-retried")


def test_import_a_csv_dry_run_then_apply(
    web_server: WebServer, admin_page: tuple[Any, Any], tmp_path: Path
) -> None:
    page, watch = admin_page
    source = tmp_path / "societes.csv"
    source.write_text(CSV, encoding="utf-8")
    page.goto(web_server.url + "/admin/import")
    watch.check(page, "admin-import")
    page.get_by_label("Type de fiches").select_option("companies")
    page.get_by_label("Fichier (CSV ou .xlsx").set_input_files(str(source))
    page.get_by_role("button", name="Vérifier le fichier").click()
    report = page.locator("section.import-report")
    assert "Rapport de l'essai : societes.csv" in report.inner_text()
    assert "2 lignes : 2 à créer" in report.inner_text()
    watch.check(page, "admin-import-dry-run")
    with web_server.session() as s:
        names = set(s.scalars(sa.select(models.Company.name)))
    assert "Browser Industrie" not in names
    page.get_by_role("button", name="Importer pour de vrai").click()
    assert "Import effectué" in page.locator("section.import-report").inner_text()
    assert "2 créées" in page.locator("section.import-report").inner_text()
    watch.check(page, "admin-import-applied")
    with web_server.session() as s:
        names = set(s.scalars(sa.select(models.Company.name)))
    assert {"Browser Industrie", "Second SA"} <= names
