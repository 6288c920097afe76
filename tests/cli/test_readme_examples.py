"""Every command line of README's "Using it" block runs as written against the sample data.

The commands are read from README.md itself (no copy of the list here): each `mailmanager`
line of the block's code, split at " | " into commands (a piece that does not start with a
top-level command continues the previous piece's group: `reminders list | snooze ID 3d`),
optional parts (`[--dry-run]`) included, `A|B` alternatives expanded in the command words
(`contacts|companies list`, `link|unlink`) and the first one taken in the arguments
(`import companies|contacts FILE.csv` runs for companies). Placeholders
(`NAME`, `ID`, `FILE.csv`...) become real values of the sample data, read when the command
runs. Everything runs, in README order, as a subprocess on one database synced once from a
copy of `examples/sample-mailbox` with a configuration made from `config.example.toml`.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager.cli.app import COMMANDS, main
from mailmanager.db import models, store
from mailmanager.notify import outbox
from tests.cli.helpers import cli
from tests.conftest import REPO
from tests.integration.notify_support import Sink

README = REPO / "README.md"

# Commands that need what a test cannot give, with the exit code they end with and why.
# (None so far: `auth NAME` on the sample's Maildir mailbox says no consent is needed.)
EXPECTED_CODES: dict[str, tuple[int, str]] = {}

# Commands that write the configuration file: they run in an empty directory, without it.
MAKES_CONFIG = {"init"}

# Commands that serve until stopped: each must answer HTTP on its port, then stop on SIGTERM.
SERVES = {"web"}

KINDS = {
    "contact": "contact", "contacts": "contact", "company": "company", "companies": "company",
    "opportunity": "opportunity", "opportunities": "opportunity",
}  # fmt: skip

CSV = {
    "companies": "name,domain\nLaiterie des Alpes,laiterie-des-alpes.fr\n",
    "contacts": "email,first_name,last_name\npaul.girard@laiterie-des-alpes.fr,Paul,Girard\n",
    "opportunities": "reference,title\nOPP-3001,Contrat de maintenance 2027\n",
}

# A Maildir file that is no e-mail, so that the quarantine has an item to list and show.
NOT_MAIL = b"\x00\x01 this is no e-mail"


def readme_commands() -> list[list[str]]:
    """The command lines of the "Using it" block, expanded (see the module docstring)."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Using it", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    out: list[list[str]] = []
    for line in block.splitlines():
        if not line.startswith("mailmanager "):
            continue
        line = re.sub(r"\s+#\s.*$", "", line)  # a comment
        line = re.sub(r"\[([^\]]*)\]", r"\1", line)  # optional parts: included
        group = ""
        for n, piece in enumerate(line.split(" | ")):
            words = shlex.split(piece)
            if n == 0:
                words = words[1:]  # "mailmanager"
            if words[0].split("|")[0] not in COMMANDS:
                words = [group, *words]
            group = words[0].split("|")[0]
            names = 2 if _is_group(group) else 1  # the command words, then its arguments
            heads = [w.split("|") for w in words[:names]]
            rest = [w.split("|")[0] for w in words[names:]]
            out += [[*combo, *rest] for combo in itertools.product(*heads)]
    return out


def _is_group(name: str) -> bool:
    return isinstance(main.get_command(click.Context(main), name), click.Group)


COMMAND_LINES = readme_commands()


@dataclass
class Sample:
    config: Path
    root: Path
    factory: sessionmaker[Session]
    used: set[tuple[str, int]] = field(default_factory=set)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sample]:
    root = tmp_path_factory.mktemp("readme")
    shutil.copytree(REPO / "examples" / "sample-mailbox", root / "examples" / "sample-mailbox")
    (root / "examples" / "sample-mailbox" / "INBOX" / "cur" / "1799999999.bad:2,S").write_bytes(
        NOT_MAIL
    )
    sink = Sink().start()
    text = (REPO / "config.example.toml").read_text(encoding="utf-8")
    text = _set(text, "[smtp]\n", f'host = "127.0.0.1"\nport = {sink.port}\nsecurity = "none"\n')
    text = text.replace('\nhost = "localhost"\n', "\n", 1)
    # The sample's mail is from 2026: keep its reminders open whatever the day of the run.
    text = _set(text, "[reminders]\n", "max_age_days = 100000\n")
    db = root / "mailmanager.db"
    text = text.replace('url = "sqlite:///mailmanager.db"', f'url = "sqlite:///{db}"', 1)
    config = root / "mailmanager.toml"
    config.write_text(text, encoding="utf-8")
    for kind, rows in CSV.items():
        (root / f"{kind}.csv").write_text(rows, encoding="utf-8")
    cli("sync", config=config)
    engine = store.make_engine(f"sqlite:///{db}")
    factory = sessionmaker(engine)
    _dead_outbox_email(factory)
    try:
        yield Sample(config, root, factory)
    finally:
        engine.dispose()
        sink.stop()


def _set(text: str, section: str, lines: str) -> str:
    """`lines` added at the top of the table `section` ("[smtp]\n", at a line's start)."""
    pattern = re.compile("^" + re.escape(section), re.MULTILINE)
    assert pattern.search(text), f"config.example.toml has no {section.strip()} table"
    return pattern.sub(lambda m: m.group(0) + lines, text, count=1)


def _dead_outbox_email(factory: sessionmaker[Session]) -> None:
    """An email that could not be sent, for `outbox retry ID`."""
    at = datetime(2026, 11, 10, 8, 0, tzinfo=UTC)
    with factory() as s, s.begin():
        row = outbox.enqueue(
            s,
            key="readme:1",
            message_id_header=outbox.message_id("readme:1", "mailmanager@example.com"),
            recipient="alice@example.com",
            recipient_name="Alice Martin",
            subject="[mailmanager] test",
            body_text="Bonjour.\n",
            body_html="<p>Bonjour.</p>",
            now=at,
        )
        row.status, row.attempts, row.last_error = "dead", 5, "550 mailbox unavailable"


def _first(s: Session, stmt: sa.Select[Any], what: str) -> int:
    """The first id `stmt` selects; the sample data must have one."""
    value = s.scalar(stmt.limit(1))
    assert value is not None, f"the sample data has no {what}"
    return int(value)


def _id(sample: Sample, words: list[str]) -> str:
    """The ID a command of this group takes: a thread, message, reminder, outbox or
    quarantine id; a reminder is used once (snooze, dismiss and done each get their own)."""
    M, R = models.Message, models.Reminder
    with sample.factory() as s:
        group = words[0]
        if group == "threads":
            stmt = sa.select(models.Thread.id).order_by(models.Thread.message_count.desc())
            return str(_first(s, stmt, "thread"))
        if group == "messages":
            return str(_first(s, sa.select(M.id).order_by(M.id), "message"))
        if group == "quarantine":
            return str(_first(s, sa.select(models.Quarantine.id), "quarantined item"))
        if group == "outbox":
            o = models.OutboxEmail
            stmt = sa.select(o.id).where(o.status.in_(("dead", "pending"))).order_by(o.id)
            return str(_first(s, stmt, "outbox email to retry"))
        if group == "reminders":
            ids = s.scalars(
                sa.select(R.id).where(R.status.in_(("pending", "snoozed"))).order_by(R.id)
            )
            free = [i for i in ids if ("reminders", i) not in sample.used]
            assert free, "the sample data has no open reminder left"
            sample.used.add(("reminders", free[0]))
            return str(free[0])
    raise AssertionError(f"no ID known for `{' '.join(words)}`: add it to _id")


def _message(sample: Sample, header: bool) -> str:
    with sample.factory() as s:
        m = s.scalars(
            sa.select(models.Message).where(models.Message.direction == "inbound").limit(1)
        ).one()
        return m.message_id if header else str(m.id)


def _key(words: list[str]) -> str:
    kind = next((KINDS[w] for w in reversed(words) if w in KINDS), None)
    keys = {
        "contact": "h.dubois@acme-industrie.fr",
        "company": "acme-industrie.fr",
        "opportunity": "OPP-2041",
    }
    assert kind is not None, f"no record kind before KEY in `{' '.join(words)}`"
    return keys[kind]


def placeholders(sample: Sample) -> dict[str, Callable[[list[str]], str]]:
    return {
        "NAME": lambda w: "alice-archive",
        "TEXT": lambda w: "Devis",
        "ZONE": lambda w: "Europe/Paris",
        "ID": lambda w: _id(sample, w),
        "MESSAGE": lambda w: _message(sample, header=False),
        "MESSAGE-ID": lambda w: _message(sample, header=True),
        "FILE.csv": lambda w: str(sample.root / f"{w[1]}.csv"),
        "COMPANY": lambda w: "Acme Industrie",
        "DOMAIN": lambda w: "acme-industrie.fr",
        "EMAIL": lambda w: "h.dubois@acme-industrie.fr",
        "TITLE": lambda w: "Équipement atelier de Lyon",
        "REF": lambda w: "OPP-2041",
        "KEY": _key,
        "U": lambda w: "alice@example.com",
        "PORT": lambda w: str(_free_port()),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(config: Path, args: list[str]) -> tuple[int, str]:
    """Start the server command, wait until its port answers HTTP (at most 60 s), stop it
    with SIGTERM: (exit code, its output)."""
    port = int(args[args.index("--port") + 1])
    env = {k: v for k, v in os.environ.items() if k != "MAILMANAGER_CONFIG"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailmanager", "--config", str(config), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    answered = None
    try:
        for _ in range(600):
            if proc.poll() is not None:
                break
            try:
                answered = httpx.get(f"http://127.0.0.1:{port}/signin", timeout=2).status_code
                break
            except httpx.TransportError:
                time.sleep(0.1)  # wall clock: not yet listening
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert answered == 200, f"`mailmanager {' '.join(args)}` never answered\n{output}"
    return proc.returncode, output


def _is_placeholder(word: str) -> bool:
    return re.fullmatch(r"[A-Z][A-Z0-9-]*(\.csv)?", word) is not None and not re.search(r"\d", word)


def test_readme_lists_the_commands() -> None:
    assert len(COMMAND_LINES) > 30
    firsts = {words[0] for words in COMMAND_LINES}
    assert {"threads", "engagement", "outbox", "reminders", "suggestions"} <= firsts


@pytest.mark.parametrize("words", COMMAND_LINES, ids=[" ".join(w) for w in COMMAND_LINES])
def test_readme_command_runs_as_written(sample: Sample, words: list[str]) -> None:
    subs = placeholders(sample)
    args: list[str] = []
    for word in words:
        if _is_placeholder(word):
            assert word in subs, f"README placeholder {word!r} has no sample value: add it"
            args.append(subs[word](words))
        else:
            args.append(word)
    if words[0] in SERVES:
        code, output = _serve(sample.config, args)
        assert code in (0, -signal.SIGTERM), f"exit {code}\n{output}"
        return
    if words[0] in MAKES_CONFIG:
        fresh = sample.root / "fresh"
        fresh.mkdir(exist_ok=True)
        proc = _run_in(fresh, args)
    else:
        proc = cli(*args, config=sample.config, check=False, timeout=120)
    code, why = EXPECTED_CODES.get(words[0], (0, ""))
    assert proc.returncode == code, (
        f"`mailmanager {' '.join(args)}` exited {proc.returncode} {why}\n"
        f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )


def _run_in(cwd: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MAILMANAGER_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "mailmanager", *args],
        capture_output=True, text=True, timeout=120, env=env, cwd=cwd,
    )  # fmt: skip
