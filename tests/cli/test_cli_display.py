"""What the CLI shows is right (issue #17): message ids and the user's time zone in
`threads show`, addresses as written (not their match key), no bounced or mailing-list
address among the suggested contacts, and `outbox flush` saying that an email waits for
its retry."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from mailmanager.notify import outbox
from tests.cli.helpers import cli, cli_json
from tests.conftest import REPO, ConfigWriter
from tests.integration.notify_support import Sink
from tests.mailgen import make

SAMPLE = REPO / "examples" / "sample-mailbox"
LYON = "Demande de devis – équipement atelier de Lyon"


def _config(write_config: ConfigWriter, db_url: str, maildir: Path = SAMPLE) -> Path:
    return write_config(
        db_url,
        f"""
        [[mailboxes]]
        name = "alice-archive"
        connector = "maildir"
        path = "{maildir}"
        owner = "alice@example.com"
        """,
    )


def test_threads_show_gives_message_ids_and_local_times_with_their_zone(
    db_url: str, write_config: ConfigWriter
) -> None:
    cfg = _config(write_config, db_url)
    cli("sync", config=cfg)
    listed = cli_json("threads", "list", "--search", "atelier de Lyon", config=cfg)
    [thread] = [t for t in listed if t["subject"] == LYON]
    detail = cli_json("threads", "show", str(thread["id"]), config=cfg)
    first = detail["messages"][0]
    assert first["sent_at"] == "2026-10-05T07:12:00+00:00"  # JSON stays ISO 8601 with offset
    text = cli("threads", "show", str(thread["id"]), config=cfg).stdout
    for m in detail["messages"]:
        assert f"#{m['id']} " in text  # the id `explain` and `messages show` take
    # Alice (the mailbox owner) is in Europe/Paris: summer time in October, winter in November.
    assert f"#{first['id']:<6} 2026-10-05 09:12 CEST" in text
    assert "2026-11-09 10:15 CET" in text
    assert "T07:12" not in text
    utc = cli("threads", "show", str(thread["id"]), "--tz", "UTC", config=cfg).stdout
    assert "2026-10-05 07:12 UTC" in utc
    shown = cli("messages", "show", str(first["id"]), config=cfg).stdout
    assert "sent_at: 2026-10-05 09:12 CEST" in shown
    wrong = cli("threads", "show", str(thread["id"]), "--tz", "Paris", config=cfg, check=False)
    assert wrong.returncode == 2 and "Europe/Paris" in wrong.stderr and not wrong.stdout


def _sample_with_a_mailing_list(root: Path) -> Path:
    """The sample mailbox, plus a post to a discussion list and Alice's answer to the list."""
    maildir = root / "mail"
    shutil.copytree(SAMPLE, maildir)
    post = make(
        "Jean Morin <jean.morin@client-pme.fr>",
        "Club achats PME <club-achats@lists.cci-lyon.fr>",
        "Retour du salon",
        msgid="post1@lists.cci-lyon.fr",
        at=datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
        headers={
            "List-Id": "Club achats PME <club-achats.lists.cci-lyon.fr>",
            "List-Post": "<mailto:club-achats@lists.cci-lyon.fr>",
        },
    )
    answer = make(
        "Alice Martin <alice@example.com>",
        "Club achats PME <club-achats@lists.cci-lyon.fr>",
        "Re: Retour du salon",
        body="Bonjour à tous,\nPouvez-vous partager vos contacts de transporteurs ?\n",
        msgid="answer1@example.com",
        reply_to="post1@lists.cci-lyon.fr",
        at=datetime(2026, 11, 2, 10, 0, tzinfo=UTC),
    )
    (maildir / "INBOX" / "cur" / "1793610000.list1.host:2,S").write_bytes(post)
    (maildir / "Sent" / "cur" / "1793613600.list2.host:2,S").write_bytes(answer)
    return maildir


def test_suggestions_leave_out_bounced_and_mailing_list_addresses(
    db_url: str, write_config: ConfigWriter, tmp_path: Path
) -> None:
    cfg = _config(write_config, db_url, _sample_with_a_mailing_list(tmp_path))
    cli("sync", config=cfg)
    listed = cli_json("suggestions", "list", config=cfg)
    emails = {s["email"] for s in listed}
    # The sample's bounce says jp.durant@ does not exist; club-achats@ is a mailing list.
    assert "jp.durant@boulangeries-durand.fr" not in emails
    assert "club-achats@lists.cci-lyon.fr" not in emails
    assert "jp.durand@boulangeries-durand.fr" in emails  # the right address stays
    text = cli("suggestions", "list", config=cfg).stdout
    assert "jp.durant@" not in text and "club-achats@" not in text
    everything = cli_json("suggestions", "list", "--all", config=cfg)
    reasons = {s["email"]: s["excluded"] for s in everything if s["excluded"]}
    assert set(reasons.values()) <= {"bounced", "mailing list"}


def test_addresses_are_shown_as_written_not_as_their_match_key(
    db_url: str, write_config: ConfigWriter
) -> None:
    cfg = _config(write_config, db_url)
    cli("sync", config=cfg)
    listed = cli_json("suggestions", "list", config=cfg)
    # Marc writes his Gmail address with dots: shown so, though matched without them.
    marc = next(s for s in listed if s["name"] == "Marc Bonnet")
    assert (marc["email"], marc["key"]) == (
        "marc.bonnet.biscuits@gmail.com",
        "marcbonnetbiscuits@gmail.com",
    )
    text = cli("suggestions", "list", config=cfg).stdout
    assert "marc.bonnet.biscuits@gmail.com" in text and "marcbonnetbiscuits" not in text
    accepted = cli("suggestions", "accept", "marcbonnetbiscuits@gmail.com", config=cfg).stdout
    assert accepted.endswith("created: Marc Bonnet <marc.bonnet.biscuits@gmail.com>\n")
    [contact] = cli_json("contacts", "list", config=cfg)
    assert contact["emails"] == ["marc.bonnet.biscuits@gmail.com"]


def test_outbox_flush_says_an_email_waits_for_its_retry(
    db_url: str,
    factory: sessionmaker[Session],
    write_config: ConfigWriter,
) -> None:
    sink = Sink(reject_rcpt="451 4.3.0 Mailbox busy, try again later").start()
    try:
        cfg = write_config(
            db_url,
            "",
            f"""
            [smtp]
            host = "127.0.0.1"
            port = {sink.port}
            security = "none"
            from = "Mailmanager <mailmanager@example.com>"
            [notifications]
            retry_base = 60
            """,
        )
        with factory() as s, s.begin():
            outbox.enqueue(
                s,
                key="display:1",
                message_id_header=outbox.message_id("display:1", "mailmanager@example.com"),
                recipient="alice@example.com",
                recipient_name="Alice Martin",
                subject="[mailmanager] 1 relance à faire",
                body_text="Bonjour.\n",
                body_html="<p>Bonjour.</p>",
                now=datetime(2026, 11, 10, 7, 0, tzinfo=UTC),
            )
        now = "2026-11-10T08:00:00+00:00"
        failed = cli("outbox", "flush", "--now", now, config=cfg, check=False)
        assert failed.returncode == 1  # an email could not be sent
        # Retried one minute later (retry_base), shown in Alice's zone (Europe/Paris).
        line = "outbox: 0 sent; 1 waiting for retry at 2026-11-10 09:01 CET (last error: "
        assert line in failed.stdout and "451" in failed.stdout
        again = cli("outbox", "flush", "--now", now, config=cfg)  # nothing is due yet
        assert line in again.stdout
        report = json.loads(cli("outbox", "flush", "--now", now, "--json", config=cfg).stdout)
        assert report["sent"] == [] and report["retry_later"] == 1
        assert report["next_retry_at"] == "2026-11-10T08:01:00+00:00"
        assert "451" in report["next_retry_error"]
    finally:
        sink.stop()
    assert sink.received == []
