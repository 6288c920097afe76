"""The sync engine end to end on a real database (SQLite and PostgreSQL), fed by the
in-memory connector shipped in `connectors/memory.py`."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from connectors.memory import MemoryConnector
from mailmanager import config, spi
from mailmanager.db import models
from mailmanager.db.models import Message, MessageLocation, Thread
from mailmanager.sync import engine as sync
from tests.conftest import ConfigWriter
from tests.mailgen import day, make

ALICE = "Alice Martin <alice@example.com>"
CLIENT = "Jean Dupont <jean.dupont@acme-industrie.fr>"


@pytest.fixture
def account_name() -> str:
    return f"acct-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def cfg(db_url: str, write_config: ConfigWriter, account_name: str) -> config.Config:
    path = write_config(
        db_url,
        f"""
        [[mailboxes]]
        name = "alice"
        connector = "memory"
        store = "{account_name}"
        owner = "alice@example.com"
        [sync]
        batch_size = 3
        parse_workers = 0
        """,
    )
    return config.load(path)


@pytest.fixture
def account(account_name: str):  # type: ignore[no-untyped-def]
    acct = MemoryConnector.account(account_name)
    acct.add_folder("INBOX", spi.FolderRole.INBOX)
    acct.add_folder("Sent", spi.FolderRole.SENT)
    yield acct
    acct.clear()


def run(cfg: config.Config, factory: sessionmaker[Session]) -> sync.SyncReport:
    return sync.Syncer(cfg, factory).sync("alice")


def count(factory: sessionmaker[Session], model: type[models.Base], *where: object) -> int:
    with factory() as s:
        return int(s.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0)


def test_sync_threads_and_directions_then_is_idempotent(cfg, factory, account) -> None:  # type: ignore[no-untyped-def]
    account.append(
        "Sent", make(ALICE, CLIENT, "Devis portes coupe-feu", msgid="q1@example.com", at=day(0))
    )
    account.append(
        "INBOX",
        make(
            CLIENT,
            ALICE,
            "RE: Devis portes coupe-feu",
            msgid="r1@acme-industrie.fr",
            reply_to="q1@example.com",
            at=day(1),
        ),
    )
    account.append(
        "INBOX", make("Bob <bob@example.com>", ALICE, "Déjeuner ?", msgid="i1@example.com")
    )
    account.append(
        "INBOX", make(CLIENT, ALICE, "Autre sujet", msgid="o1@acme-industrie.fr", at=day(2))
    )
    report = run(cfg, factory)
    assert report.status == "ok", report.error
    assert report.total("fetched") == 4 and report.total("new_messages") == 4
    with factory() as s:
        msgs = {m.message_id: m for m in s.scalars(sa.select(Message))}
        assert msgs["q1@example.com"].direction == "outbound"
        assert msgs["r1@acme-industrie.fr"].direction == "inbound"
        assert msgs["i1@example.com"].direction == "internal"
        assert msgs["q1@example.com"].thread_id == msgs["r1@acme-industrie.fr"].thread_id
        assert msgs["o1@acme-industrie.fr"].thread_id != msgs["q1@example.com"].thread_id
        thread = s.get(Thread, msgs["q1@example.com"].thread_id)
        assert thread is not None
        assert thread.message_count == 2
        assert thread.last_direction == "inbound"
        assert thread.last_outbound_at == day(0) and thread.last_inbound_at == day(1)
    again = run(cfg, factory)
    assert again.total("fetched") == 0 and again.total("new_messages") == 0
    assert count(factory, Message) == 4 and count(factory, MessageLocation) == 4


def test_late_parent_merges_threads_and_summary_follows(cfg, factory, account) -> None:  # type: ignore[no-untyped-def]
    # Two replies to a message we have not seen yet; then the parent arrives via a child
    # that references both branches.
    account.append("INBOX", make(CLIENT, ALICE, "Re: Offre", msgid="a@x", reply_to="root@x"))
    account.append("INBOX", make(CLIENT, ALICE, "Re: Offre", msgid="b@x", reply_to="other@x"))
    run(cfg, factory)
    assert count(factory, Thread) == 2
    account.append(
        "INBOX", make(CLIENT, ALICE, "Re: Offre", msgid="c@x", reply_to=["root@x", "other@x"])
    )
    run(cfg, factory)
    assert count(factory, Thread) == 1
    with factory() as s:
        assert s.scalar(sa.select(Thread.message_count)) == 3


def test_same_message_in_two_folders_is_one_message(cfg, factory, account) -> None:  # type: ignore[no-untyped-def]
    raw = make(ALICE, CLIENT, "Proposition", msgid="p@example.com")
    account.append("Sent", raw)
    # A copy with other transport headers (a BCC or archive copy) is the same message.
    account.append("INBOX", b"Received: from mx by mx; Mon, 2 Nov 2026 09:00:01 +0000\r\n" + raw)
    # A different message that reuses the Message-ID is kept apart.
    account.append("INBOX", make(CLIENT, ALICE, "Autre chose", msgid="p@example.com", at=day(3)))
    run(cfg, factory)
    assert count(factory, Message) == 2
    assert count(factory, MessageLocation) == 3
    with factory() as s:
        keys = sorted(s.scalars(sa.select(Message.key)))
    assert keys[0] == "p@example.com" and keys[1].startswith("p@example.com#")


def test_header_less_reply_joins_by_subject_only_with_shared_people(cfg, factory, account) -> None:  # type: ignore[no-untyped-def]
    account.append(
        "Sent", make(ALICE, CLIENT, "Commande n° 4471", msgid="c1@example.com", at=day(0))
    )
    account.append(
        "INBOX",
        make(CLIENT, ALICE, "RE : Commande n° 4471", msgid="c2@acme-industrie.fr", at=day(1)),
    )
    account.append(
        "INBOX",
        make("x@elsewhere.fr", ALICE, "Re: Commande n° 4471", msgid="c3@elsewhere.fr", at=day(1)),
    )
    run(cfg, factory)
    with factory() as s:
        tid = dict(s.execute(sa.select(Message.message_id, Message.thread_id)).all())
    assert tid["c1@example.com"] == tid["c2@acme-industrie.fr"]
    assert tid["c3@elsewhere.fr"] != tid["c1@example.com"]


def test_a_thread_made_by_the_subject_fallback_within_one_batch_sums_up_all_its_mail(
    cfg, factory, account
) -> None:  # type: ignore[no-untyped-def]
    # Both header-less messages arrive in one batch: the second joins the thread the first
    # creates, and the new thread's summary counts both.
    account.append(
        "INBOX", make(CLIENT, ALICE, "Commande n° 5120", msgid="d1@acme-industrie.fr", at=day(0))
    )
    account.append(
        "INBOX",
        make(CLIENT, ALICE, "RE: Commande n° 5120", msgid="d2@acme-industrie.fr", at=day(1)),
    )
    run(cfg, factory)
    with factory() as s:
        (thread,) = s.scalars(sa.select(Thread)).all()
        last = s.scalars(sa.select(Message.id).where(Message.message_id == "d2@acme-industrie.fr"))
        assert (thread.message_count, thread.first_at, thread.last_at) == (2, day(0), day(1))
        assert thread.last_message_id == last.one()
        assert thread.last_inbound_at == day(1)


def test_delete_flags_and_expired_cursor_keep_messages_and_links(cfg, factory, account) -> None:  # type: ignore[no-untyped-def]
    ids = [
        account.append("INBOX", make(CLIENT, ALICE, f"Sujet {i}", msgid=f"m{i}@x"))
        for i in range(5)
    ]
    run(cfg, factory)
    with factory() as s, s.begin():
        m0 = s.scalars(sa.select(Message).where(Message.message_id == "m0@x")).one()
        s.add(models.Company(name="ACME"))
        s.flush()
        s.add(
            models.Link(
                message_id=m0.id,
                thread_id=m0.thread_id,
                target_kind="company",
                target_id=1,
                method="manual",
                explanation="test",
            )
        )
    account.delete("INBOX", ids[1])
    account.set_flags("INBOX", ids[2], {"\\Seen"})
    report = run(cfg, factory)
    assert report.total("removed") == 1
    assert count(factory, MessageLocation) == 4
    assert count(factory, Message) == 5  # the message stays; only its location goes
    with factory() as s:
        flags = s.scalar(
            sa.select(MessageLocation.flags).where(MessageLocation.provider_id == ids[2])
        )
    assert flags == "\\Seen"
    # The provider resets the folder (UIDVALIDITY change): a full rescan, nothing duplicated.
    account.reset_folder("INBOX")
    renumbered = [m.provider_id for m in account.messages("INBOX")]
    assert ids[0] not in renumbered
    account.delete("INBOX", renumbered[2])
    report = run(cfg, factory)
    assert report.status == "ok"
    assert any(f.rescanned for f in report.folders)
    assert count(factory, Message) == 5
    with factory() as s:
        locs = set(s.scalars(sa.select(MessageLocation.provider_id)))
    assert len(locs) == 3
    assert count(factory, models.Link) == 1


def test_connector_failure_is_recorded_and_next_run_recovers(cfg, factory, account) -> None:  # type: ignore[no-untyped-def]
    account.append("INBOX", make(CLIENT, ALICE, "Un", msgid="u1@x"))
    account.fail_next(spi.TransientError("server said BYE", retry_after=30))
    report = run(cfg, factory)
    assert report.status == "error" and "server said BYE" in (report.error or "")
    with factory() as s:
        mb = s.scalars(sa.select(models.Mailbox)).one()
        assert mb.last_error and "BYE" in mb.last_error
        assert mb.lease_owner is None
        assert s.scalars(sa.select(models.SyncRun.status)).all() == ["error"]
    report = run(cfg, factory)
    assert report.status == "ok" and count(factory, Message) == 1
    with factory() as s:
        assert s.scalars(sa.select(models.Mailbox.last_error)).one() is None


def test_quarantine_keeps_bytes_and_reason(cfg, factory, account) -> None:  # type: ignore[no-untyped-def]
    pid = account.append("INBOX", b"\x00\x01\x02 not a message at all \xff\xfe")
    account.append("INBOX", make(CLIENT, ALICE, "Normal", msgid="n@x"))
    report = run(cfg, factory)
    assert report.total("quarantined") == 1 and report.total("new_messages") == 1
    with factory() as s:
        q = s.scalars(sa.select(models.Quarantine)).one()
        assert q.provider_id == pid and q.reason and q.data and q.data.startswith(b"\x00")


def test_lease_held_by_another_worker_blocks_a_second_sync(cfg, factory, account) -> None:  # type: ignore[no-untyped-def]
    run(cfg, factory)
    with factory() as s, s.begin():
        s.execute(sa.update(models.Mailbox).values(lease_owner="other:1", lease_until=day(10_000)))
    with pytest.raises(sync.LeaseHeldError):
        run(cfg, factory)


def test_parse_worker_process_gives_the_same_result(cfg, factory, account, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for i in range(12):
        account.append(
            "INBOX",
            make(
                CLIENT,
                ALICE,
                f"Re: Fil {i % 3}",
                msgid=f"w{i}@x",
                reply_to=f"w{i % 3}@x" if i >= 3 else None,
            ),
        )
    cfg2 = config.Config(
        **{**cfg.__dict__, "sync": config.SyncConfig(batch_size=5, parse_workers=1)}
    )
    report = sync.Syncer(cfg2, factory).sync("alice")
    assert report.total("new_messages") == 12
    assert count(factory, Thread) == 3


def test_folder_gone_at_provider_drops_its_locations_not_its_messages(
    cfg, factory, account
) -> None:  # type: ignore[no-untyped-def]
    account.add_folder("Projets", spi.FolderRole.OTHER)
    account.append("Projets", make(CLIENT, ALICE, "Plans", msgid="pl@x"))
    account.append("INBOX", make(CLIENT, ALICE, "Re: Plans", msgid="pl2@x", reply_to="pl@x"))
    run(cfg, factory)
    assert count(factory, MessageLocation) == 2
    # The folder is renamed at the provider: a new folder with the same mail.
    raw = account.messages("Projets")[0].raw
    account.remove_folder("Projets")
    account.add_folder("Projets 2026", spi.FolderRole.OTHER)
    account.append("Projets 2026", raw)
    run(cfg, factory)
    with factory() as s:
        folders = {f.remote_id: f.present for f in s.scalars(sa.select(models.Folder))}
        places = (
            s.execute(
                sa.select(models.Folder.remote_id).join(
                    MessageLocation, MessageLocation.folder_id == models.Folder.id
                )
            )
            .scalars()
            .all()
        )
    assert folders["Projets"] is False and folders["Projets 2026"] is True
    assert sorted(places) == ["INBOX", "Projets 2026"]
    assert count(factory, Message) == 2 and count(factory, Thread) == 1
