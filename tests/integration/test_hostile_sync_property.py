"""Whole syncs of generated hostile mail (issue #16): whatever a Maildir holds, each hostile
message followed by a canary, `mailmanager sync` (the real command, in a subprocess) stores
every canary, stores or quarantines every hostile message, ends its run (never left
"running"; `status` shows the error if there is one) and stays under 400 MB of peak RSS.
On SQLite and PostgreSQL. The generators are `mailmanager.testing.hostile`'s, at sizes
bounded so that the whole file runs in well under a minute."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from mailmanager.db import models
from mailmanager.services import queries
from mailmanager.testing import hostile
from tests.conftest import ConfigWriter

RSS_LIMIT_MB = 400
# The scale of every case is drawn up to its `small`; a message over this size is kept as
# headers and a note (the `oversize` case crosses it).
MAX_MESSAGE_SIZE = 1_000_000
SYNC_TIMEOUT = 120  # seconds


def _count(
    s: Session, model: type[models.MessageLocation | models.Quarantine], folders: Any
) -> int:
    query = sa.select(sa.func.count()).select_from(model).where(model.folder_id.in_(folders))
    return int(s.scalar(query) or 0)


def sync_and_check(
    db_url: str,
    factory: sessionmaker[Session],
    write_config: ConfigWriter,
    root: Path,
    cases: list[tuple[hostile.Case, int]],
) -> None:
    """Each case then a canary in a new Maildir mailbox; one sync; every check of the
    module docstring."""
    name = f"h{uuid.uuid4().hex[:10]}"
    tags = [f"{name}-{i}" for i in range(len(cases))]
    messages: list[bytes] = []
    for (case, scale), tag in zip(cases, tags, strict=True):
        messages += [case.make(scale, tag), hostile.canary(tag)]
    maildir = root / name
    hostile.write_maildir(maildir, messages)
    mailbox = f"""
        [[mailboxes]]
        name = "{name}"
        connector = "maildir"
        path = "{maildir}"
        owner = "{hostile.ALICE}"
        [sync]
        max_message_size = {MAX_MESSAGE_SIZE}
        """
    config_path = write_config(db_url, mailbox, name=f"{name}.toml")
    run = hostile.measured_sync(config_path, "--json", timeout=SYNC_TIMEOUT)
    assert run.code == 0, (run.code, run.stdout, run.stderr)
    [report] = json.loads(run.stdout)["mailboxes"]
    peak_mb = run.peak_mb
    label = [case.name for case, _ in cases]
    assert report["status"] == "ok", (label, report)
    assert peak_mb < RSS_LIMIT_MB, (label, peak_mb)

    with factory() as s:
        mailbox_id = s.scalar(sa.select(models.Mailbox.id).where(models.Mailbox.name == name))
        folders = sa.select(models.Folder.id).where(models.Folder.mailbox_id == mailbox_id)
        stored_ids = set(
            s.scalars(
                sa.select(models.Message.message_id)
                .join(models.MessageLocation)
                .where(models.MessageLocation.folder_id.in_(folders))
            )
        )
        located = _count(s, models.MessageLocation, folders)
        quarantined = _count(s, models.Quarantine, folders)
        runs = s.execute(
            sa.select(models.SyncRun.status, models.SyncRun.finished_at, models.SyncRun.error)
            .join(models.Mailbox, models.Mailbox.id == models.SyncRun.mailbox_id)
            .where(models.Mailbox.name == name)
        ).all()
        [status] = [row for row in queries.mailbox_status(s) if row["name"] == name]
    missing = [t for t in tags if hostile.canary_id(t) not in stored_ids]
    assert not missing, (label, missing)
    # Every hostile message is stored (cleaned) or quarantined with its reason: none lost.
    assert located + quarantined == len(messages), (label, located, quarantined)
    assert runs and all(st_ != "running" and end is not None for st_, end, _ in runs), runs
    for st_, _, error in runs:  # `status` tells the error of a run that failed
        assert st_ == "ok" or (error and status["last_error"]), (st_, error, status)
    assert status["quarantined"] == quarantined


def test_every_hostile_case_then_a_canary_in_one_mailbox(
    db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter, tmp_path: Path
) -> None:
    """Each case at its largest test scale, all in one Maildir."""
    cases = [(case, case.small) for case in hostile.CASES]
    sync_and_check(db_url, factory, write_config, tmp_path, cases)


_CASE = st.sampled_from(hostile.CASES).flatmap(
    lambda case: st.tuples(st.just(case), st.integers(min_value=1, max_value=case.small))
)


@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(cases=st.lists(_CASE, min_size=1, max_size=4))
def test_generated_hostile_mailboxes_never_stop_a_sync(
    db_url: str,
    factory: sessionmaker[Session],
    write_config: ConfigWriter,
    tmp_path: Path,
    cases: list[tuple[hostile.Case, int]],
) -> None:
    sync_and_check(db_url, factory, write_config, tmp_path, cases)
