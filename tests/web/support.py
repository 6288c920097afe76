"""A real `mailmanager web` process for the web tests, over a database filled by a real sync
of the sample mailbox, with a real SMTP sink (aiosmtpd) receiving its emails.

Time: the sample mailbox's mail is dated November 2026, and which reminders exist depends on
"now". Every `mailmanager` process here (the sync, digests, the web server) runs under
libfaketime (`tests/faketime.py`) starting at `NOW`, so the reminders, their ages, sign-in
expiry and digest links are the same whatever day the tests run. (The server's clock then
advances normally.)

Users of the test configuration:
- alice@example.com (fr), salesperson, owns the sample mailbox; her manager is carol;
- bob@example.com (en), salesperson, with one reminder made directly (`BOB_REMINDER`);
- carol@example.com (en), manager of alice;
- dave@example.com (fr), admin.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config
from mailmanager.db import configrows, models, store
from mailmanager.notify import actionlinks
from tests import faketime
from tests.integration.notify_support import REPO, Sink, free_port

SAMPLE = REPO / "examples" / "sample-mailbox"
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # a Wednesday: alice has 3 follow-ups due
FAKETIME = NOW.strftime("%Y-%m-%d %H:%M:%S")
USERS = ("alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com")
LINK = re.compile(r"https?://[^\s\"'<>]+/signin/[A-Za-z0-9_-]+(?:\?next=[^\s\"'<>]*)?")
ACTION_LINK = re.compile(r"https?://[^\s\"'<>]+/a/[A-Za-z0-9_.-]+")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def config_text(
    db: Path | str, smtp_port: int, web_port: int, secret: Path, web_extra: str, extra: str = ""
) -> str:
    """The test configuration over `db` (a SQLite file, or a database URL); `web_extra`
    holds `[web]` lines ("key = value") that replace the defaults below or add to them;
    `extra` is TOML appended after `[web]` (other sections, e.g. `[[oidc]]`)."""
    url = db if isinstance(db, str) else f"sqlite:///{db}"
    web = {
        "base_url": f'"http://127.0.0.1:{web_port}"',
        "port": str(web_port),
        "secret_file": f'"{secret}"',
        "sign_in_links": '"email"',
        "login_limit_per_address": "1000",
        "login_limit_per_ip": "1000",
    }
    for line in textwrap.dedent(web_extra).splitlines():
        if "=" in line:
            key, _, value = line.partition("=")
            web[key.strip()] = value.strip()
    web_lines = "".join(f"{k} = {v}\n" for k, v in web.items())
    return (
        textwrap.dedent(
            f"""
        [database]
        url = "{url}"
        [organization]
        name = "Example SA"
        domains = ["example.com"]
        [[users]]
        email = "alice@example.com"
        name = "Alice Martin"
        locale = "fr"
        timezone = "Europe/Paris"
        manager = "carol@example.com"
        [[users]]
        email = "bob@example.com"
        name = "Bob Smith"
        locale = "en"
        timezone = "Europe/Paris"
        [[users]]
        email = "carol@example.com"
        name = "Carol Manager"
        locale = "en"
        timezone = "Europe/Paris"
        role = "manager"
        [[users]]
        email = "dave@example.com"
        name = "Dave Admin"
        locale = "fr"
        timezone = "Europe/Paris"
        role = "admin"
        [[mailboxes]]
        name = "alice-archive"
        connector = "maildir"
        path = "{SAMPLE}"
        owner = "alice@example.com"
        [smtp]
        host = "127.0.0.1"
        port = {smtp_port}
        security = "none"
        from = "Mailmanager <mailmanager@example.com>"
        timeout = 10
        [web]
        """
        )
        + web_lines
        + textwrap.dedent(extra)
    )


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MAILMANAGER_CONFIG"}
    env.update(TZ="UTC", FAKETIME_DONT_FAKE_MONOTONIC="1", PYTHONUNBUFFERED="1")
    return faketime.environ(FAKETIME, env)


def _command(config_path: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mailmanager",
        "-c",
        str(config_path),
        *args,
    ]


def run_cli(config_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`mailmanager ARGS` with its clock starting at NOW."""
    proc = subprocess.run(
        _command(config_path, *args), capture_output=True, text=True, timeout=300, env=_env()
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def csrf_of(page: str) -> str:
    """The CSRF token of the first form on an HTML page."""
    m = CSRF.search(page)
    assert m, "no csrf field on the page"
    return html.unescape(m[1])


@dataclass
class Template:
    """A database synced once (at NOW) from the sample mailbox, copied for each server."""

    root: Path
    db: Path
    bob_reminder: int
    alice_reminders: tuple[int, ...]


def build_template(root: Path) -> Template:
    """Sync the sample mailbox at NOW into a new SQLite file, and give bob a reminder."""
    root.mkdir(parents=True, exist_ok=True)
    db = root / "template.db"
    path = root / "template.toml"
    path.write_text(config_text(db, free_port(), free_port(), root / "template.key", ""))
    bob, alice = seed(path)
    return Template(root, db, bob, alice)


def seed(path: Path) -> tuple[int, tuple[int, ...]]:
    """Sync the sample mailbox at NOW into the database of the configuration `path` and
    give bob a reminder: (bob's reminder id, alice's open reminder ids)."""
    run_cli(path, "sync")
    cfg = config.load(path)
    engine = store.make_engine(cfg.database.url)
    factory = store.session_factory(engine)
    with store.session_scope(factory) as s:
        configrows.ensure_config_rows(s, cfg)
        s.flush()
        R, U = models.Reminder, models.User
        alice = s.scalars(
            sa.select(R.id)
            .join(U, U.id == R.user_id)
            .where(U.email == "alice@example.com", R.status.in_(("pending", "sent")))
            .order_by(R.id)
        ).all()
        taken = set(s.scalars(sa.select(R.thread_id).where(R.thread_id.is_not(None))))
        thread = s.scalars(
            sa.select(models.Thread.id)
            .where(models.Thread.id.not_in(taken))
            .order_by(models.Thread.id)
        ).first()
        bob = s.scalars(sa.select(U.id).where(U.email == "bob@example.com")).one()
        row = R(
            thread_id=thread,
            user_id=bob,
            kind="awaiting_reply",
            cycle=999_999,
            due_at=NOW - timedelta(days=1),
            status="pending",
            contact_email="buyer@client-of-bob.test",
            reason="waiting for a reply",
            waiting_since=NOW - timedelta(days=6),
            created_at=NOW - timedelta(days=1),
            updated_at=NOW - timedelta(days=1),
        )
        s.add(row)
        s.flush()
        bob_id = row.id
    engine.dispose()
    assert alice, "the sync made no reminder for alice"
    return bob_id, tuple(alice)


@dataclass
class WebServer:
    """A running `mailmanager web` (see the module docstring)."""

    root: Path
    config: Path
    url: str
    sink: Sink
    template: Template
    proc: subprocess.Popen[str] | None = None
    factory: sessionmaker[Session] | None = None
    _engine: sa.Engine | None = field(default=None, repr=False)

    @property
    def secret_file(self) -> Path:
        return self.root / "web.key"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cli(self.config, *args, check=check)

    def session(self) -> Session:
        assert self.factory is not None
        return self.factory()

    def client(self, **kwargs: object) -> httpx.Client:
        """An HTTP client for this server (no redirect following, cookies kept)."""
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=30, **kwargs)  # type: ignore[arg-type]

    def mails_to(self, email: str) -> list[EmailMessage]:
        return [
            m for m in self.sink.messages() if f"<{email}>" in str(m["To"]) or str(m["To"]) == email
        ]

    def wait_mail(self, email: str, after: int, timeout: float = 20) -> EmailMessage:
        """The first email to `email` beyond the `after` first ones, waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.mails_to(email)
            if len(found) > after:
                return found[after]
            time.sleep(0.05)
        raise AssertionError(f"no email to {email} within {timeout} s")

    def request_link(self, client: httpx.Client, email: str) -> str:
        """Ask for a sign-in link for `email` and return the link read from the email."""
        before = len(self.mails_to(email))
        page = client.get("/signin")
        assert page.status_code == 200
        reply = client.post("/signin", data={"email": email, "csrf": csrf_of(page.text)})
        assert reply.status_code == 200, reply.text
        return link_in(self.wait_mail(email, before))

    def sign_in(self, email: str, client: httpx.Client | None = None) -> httpx.Client:
        """A client signed in as `email` through the emailed link (confirmation page, POST)."""
        client = client or self.client()
        link = self.request_link(client, email)
        page = client.get(link)
        assert page.status_code == 200, page.text
        done = client.post(
            link.split("?")[0], data={"csrf": csrf_of(page.text), "next": "/followups"}
        )
        assert done.status_code == 303, done.text
        return client

    def send_digest(self, email: str) -> EmailMessage:
        """A digest for `email` made at NOW (`digest send --force`) and sent to the sink."""
        before = len(self.mails_to(email))
        self.cli("digest", "send", "--now", NOW.isoformat(), "--force", "--user", email)
        self.cli("outbox", "flush")
        return self.wait_mail(email, before)

    def output(self) -> str:
        return self._out.read_text() if hasattr(self, "_out") else ""

    def start(self) -> WebServer:
        """Start the server and wait until it answers. Other test sessions start servers on
        this machine too: when the free port we picked was taken meanwhile, another server
        answers (it does not know our signing key), so we move to another port."""
        for _ in range(3):
            self._launch()
            if self._ours():
                break
            self.stop()
            self._move_to(free_port())
        else:
            raise AssertionError(f"no free port for mailmanager web:\n{self.output()}")
        cfg = config.load(self.config)
        self._engine = store.make_engine(cfg.database.url)
        self.factory = store.session_factory(self._engine)
        return self

    def _launch(self) -> None:
        self._out = self.root / "web.out"
        out = self._out.open("w")
        self.proc = subprocess.Popen(
            _command(self.config, "web"),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=_env(),
            start_new_session=True,  # its group is stopped: the server and any child
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"mailmanager web exited:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/signin", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"mailmanager web did not answer:\n{self.output()}")

    def _ours(self) -> bool:
        """Whether the server on our port signs with our key: a genuine link to no one's
        reminder is "gone" (404) there, "invalid" (400) anywhere else."""
        key = actionlinks.load_key(str(self.secret_file))
        token = actionlinks.sign(key, "nobody@example.com", 0, "done", NOW)
        return httpx.get(f"{self.url}/a/{token}", timeout=10).status_code == 404

    def _move_to(self, port: int) -> None:
        old = self.url.rsplit(":", 1)[1]
        text = self.config.read_text().replace(f"127.0.0.1:{old}", f"127.0.0.1:{port}")
        self.config.write_text(text.replace(f"port = {old}\n", f"port = {port}\n"))
        self.url = f"http://127.0.0.1:{port}"

    def restart(self, edit: Callable[[str], str] = lambda text: text) -> WebServer:
        """Stop the server, apply `edit` to its configuration file's text, start it again."""
        self.stop()
        self.config.write_text(edit(self.config.read_text()))
        return self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            port = int(self.url.rsplit(":", 1)[1])
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:  # a child of the server may outlive it
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) != 0:
                        break
                time.sleep(0.05)
        if self._engine is not None:
            self._engine.dispose()


def link_in(mail: EmailMessage) -> str:
    body = mail.get_body(("plain",))
    assert body is not None
    m = LINK.search(body.get_content())
    assert m, "no sign-in link in the email"
    return m[0]


def action_links(mail: EmailMessage) -> list[str]:
    """The action links of a digest's plain-text part, in order."""
    body = mail.get_body(("plain",))
    assert body is not None
    return ACTION_LINK.findall(body.get_content())


def start_pg_server(root: Path, db_url: str, sink: Sink) -> WebServer:
    """A server over an empty PostgreSQL database `db_url`, synced and seeded here."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    path = root / "web.toml"
    path.write_text(config_text(db_url, sink.port, port, root / "web.key", ""))
    bob, alice = seed(path)
    template = Template(root, Path(), bob, alice)
    return WebServer(root, path, f"http://127.0.0.1:{port}", sink, template).start()


def start_server(
    root: Path,
    template: Template,
    sink: Sink,
    web_extra: str = "",
    extra: str = "",
    edit: Callable[[str], str] = lambda text: text,
) -> WebServer:
    """A server over a copy of the template database (its own secret file and port);
    `web_extra` and `extra` as `config_text` takes them; `edit` changes the configuration
    file's text before the server first starts (as `WebServer.restart` does after)."""
    root.mkdir(parents=True, exist_ok=True)
    db = root / "web.db"
    shutil.copy(template.db, db)
    port = free_port()
    path = root / "web.toml"
    text = config_text(db, sink.port, port, root / "web.key", web_extra, extra)
    path.write_text(edit(text))
    server = WebServer(root, path, f"http://127.0.0.1:{port}", sink, template)
    return server.start()
