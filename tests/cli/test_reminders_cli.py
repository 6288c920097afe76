"""`mailmanager reminders ...` as a subprocess against a real database: a Maildir is synced
(the sync hook creates the reminders), then listed, snoozed, scanned (dry run first),
dismissed, marked done, and a thread's "expects a reply" overridden."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from tests.cli.helpers import cli, cli_json
from tests.conftest import ConfigWriter
from tests.mailgen import day, make

ALICE = "Alice Martin <alice@example.com>"
JEAN = "Jean Dupont <jean.dupont@acme-industrie.fr>"
PAUL = "Paul Martin <paul@client.fr>"


def _maildir(root: Path, messages: dict[str, bytes]) -> Path:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, (name, raw) in enumerate(messages.items()):
        (root / "cur" / f"{1762000000 + i}.{name}.host:2,S").write_bytes(raw)
    return root


def test_list_snooze_scan_dismiss_done_expect(
    tmp_path: Path, db_url: str, write_config: ConfigWriter
) -> None:
    maildir = _maildir(
        tmp_path / "mail",
        {
            "q1": make(
                ALICE,
                JEAN,
                "Devis",
                body="Pourriez-vous confirmer la commande ?",
                msgid="q1@example.com",
                at=day(0),
            ),
            "a1": make(
                JEAN,
                ALICE,
                "Tarif",
                body="Pouvez-vous m'envoyer le tarif ?",
                msgid="a1@acme-industrie.fr",
                at=day(0.1),
            ),
            "c1": make(
                ALICE,
                PAUL,
                "Merci",
                body="Merci, bonne journée !",
                msgid="c1@example.com",
                at=day(0.2),
            ),
        },
    )
    cfg = write_config(
        db_url,
        f"""
        [[mailboxes]]
        name = "alice"
        connector = "maildir"
        path = "{maildir}"
        owner = "alice@example.com"
        """,
        extra="[reminders]\nmax_age_days = 100000\n",
    )
    cli_json("sync", config=cfg)  # the sync hook creates the reminders
    lines = cli_json("reminders", "list", config=cfg)
    assert sorted(r["kind"] for r in lines) == ["awaiting_reply", "needs_response"]
    assert {r["user"] for r in lines} == {"alice@example.com"}
    awaiting = next(r for r in lines if r["kind"] == "awaiting_reply")
    answer = next(r for r in lines if r["kind"] == "needs_response")
    assert awaiting["contact_email"] == "jean.dupont@acme-industrie.fr"
    assert awaiting["subject"] == "Devis" and awaiting["status"] == "pending"

    out = cli("reminders", "snooze", str(awaiting["id"]), "1h", config=cfg).stdout
    until = datetime.fromisoformat(out.strip().rpartition(" ")[2])
    later = (until + timedelta(minutes=5)).isoformat()
    dry = cli_json("reminders", "scan", "--now", later, "--dry-run", config=cfg)
    assert dry["dry_run"] is True and dry["counts"] == {"unsnooze": 1}
    assert [a["reminder_id"] for a in dry["actions"]] == [awaiting["id"]]
    real = cli_json("reminders", "scan", "--now", later, config=cfg)
    assert real["counts"] == {"unsnooze": 1}  # so the dry run wrote nothing
    scan_text = cli("reminders", "scan", "--now", later, "--dry-run", config=cfg).stdout
    assert "would change: nothing" in scan_text

    assert "dismissed" in cli("reminders", "dismiss", str(answer["id"]), config=cfg).stdout
    assert "done" in cli("reminders", "done", str(awaiting["id"]), config=cfg).stdout
    statuses = {r["id"]: r["status"] for r in cli_json("reminders", "list", config=cfg)}
    assert statuses == {answer["id"]: "dismissed", awaiting["id"]: "done"}

    # The thank-you to Paul expects nothing... unless the user says so.
    threads = cli_json("threads", "list", config=cfg)
    merci = next(t["id"] for t in threads if t["subject"] == "Merci")
    assert "1 create" in cli("reminders", "expect", str(merci), "always", config=cfg).stdout
    assert "1 cancel" in cli("reminders", "expect", str(merci), "never", config=cfg).stdout
    text = cli("reminders", "list", "--user", "alice@example.com", config=cfg).stdout
    assert f"thread {merci}" in text and "cancelled" in text and "awaiting_reply" in text


def test_errors_exit_with_a_message(
    tmp_path: Path, db_url: str, write_config: ConfigWriter
) -> None:
    cfg = write_config(db_url, "")
    proc = cli("reminders", "snooze", "999", "2d", config=cfg, check=False)
    assert proc.returncode == 1 and "no reminder #999" in proc.stderr
    proc = cli("reminders", "expect", "999", "always", config=cfg, check=False)
    assert proc.returncode == 1 and "no thread #999" in proc.stderr
    proc = cli("reminders", "expect", "1", "sometimes", config=cfg, check=False)
    assert proc.returncode == 2
    proc = cli("reminders", "scan", "--now", "next tuesday", config=cfg, check=False)
    assert proc.returncode == 2 and "ISO 8601" in proc.stderr
