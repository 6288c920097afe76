"""Shared by the notification tests: a real SMTP sink (aiosmtpd on 127.0.0.1), a Maildir
writer, the CLI as a subprocess, and time helpers (reminders are created by the real rules,
`reminders.evaluate`, from synced mail dated relative to the next working morning)."""

from __future__ import annotations

import asyncio
import base64
import mailbox
import os
import socket
import ssl
import subprocess
import sys
import threading
import time as clock
from datetime import UTC, datetime, time, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config
from mailmanager.db import models
from mailmanager.reminders import businesstime
from mailmanager.reminders import evaluation as reminders

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sink:
    """An aiosmtpd server that keeps every message it accepts (and may copy it to a Maildir).

    `reject_rcpt` makes it answer RCPT with that reply; `user`/`password` require AUTH.
    """

    def __init__(
        self,
        port: int | None = None,
        tls: ssl.SSLContext | None = None,
        maildir: Path | None = None,
        reject_rcpt: str | None = None,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self.received: list[tuple[str, list[str], bytes]] = []
        self.maildir = maildir
        self.reject_rcpt = reject_rcpt
        self.logins: list[str] = []
        self.user, self.token = user, token
        self._lock = threading.Lock()
        kwargs: dict[str, Any] = {}
        if tls is not None:
            kwargs["tls_context"] = tls
        if user is not None:
            kwargs.update(
                auth_required=True,
                auth_require_tls=tls is not None,
                authenticator=self._authenticate(user, password or ""),
            )
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)

    def _authenticate(self, user: str, password: str) -> Any:
        def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
            ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
                user.encode(),
                password.encode(),
            )
            if ok:
                self.logins.append(user)
            return AuthResult(success=ok)

        return check

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> AuthResult:
        # RFC 7628-style initial response: base64("user=U^Aauth=Bearer T^A^A").
        fields = base64.b64decode(args[1]).decode().split("\x01")
        ok = bool(self.token) and fields[:2] == [f"user={self.user}", f"auth=Bearer {self.token}"]
        if ok:
            self.logins.append(f"xoauth2:{self.user}")
        return AuthResult(success=ok, handled=False)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.reject_rcpt:
            return self.reject_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = bytes(envelope.original_content or envelope.content)
        with self._lock:
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos), data))
        if self.maildir is not None:
            mailbox.Maildir(str(self.maildir), create=True).add(data)
        await asyncio.sleep(0)
        return "250 2.0.0 queued"

    def start(self) -> Sink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def messages(self) -> list[EmailMessage]:
        return [message_from_bytes(raw, policy=policy.default) for _, _, raw in self.received]


def write_maildir_message(root: Path, folder: str, raw: bytes) -> None:
    box = mailbox.Maildir(str(root), create=True)
    target = box if folder == "INBOX" else box.add_folder(folder)
    target.add(raw)


def user_id(factory: sessionmaker[Session], email: str) -> int:
    with factory() as s:
        return int(s.scalars(sa.select(models.User.id).where(models.User.email == email)).one())


def working_morning(
    after: datetime, tz: str = "Europe/Paris", country: str = "FR", hhmm: str = "08:35"
) -> datetime:
    """The first working day strictly after `after` (local), at `hhmm` local, in UTC."""
    cal = businesstime.calendar(tz, holiday_country=country)
    day = after.astimezone(cal.tz).date() + timedelta(days=1)
    while not businesstime.is_working_day(day, cal):
        day += timedelta(days=1)
    return datetime.combine(day, time.fromisoformat(hhmm), tzinfo=cal.tz).astimezone(UTC)


def evaluate(factory: sessionmaker[Session], cfg: config.Config, now: datetime) -> None:
    with factory() as s, s.begin():
        reminders.evaluate(s, cfg, now)


def reminder_statuses(factory: sessionmaker[Session]) -> dict[int, str]:
    with factory() as s:
        rows = s.execute(sa.select(models.Reminder.id, models.Reminder.status))
        return dict(rows.all())


def outbox_rows(factory: sessionmaker[Session]) -> list[models.OutboxEmail]:
    with factory() as s:
        return list(s.scalars(sa.select(models.OutboxEmail).order_by(models.OutboxEmail.id)))


def cli_command(config: Path, *args: str) -> list[str]:
    """The argv of `mailmanager --config CONFIG ARGS`."""
    return [sys.executable, "-m", "mailmanager", "--config", str(config), *args]


def run_cli(config: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    env = dict(env or os.environ)
    env.pop("MAILMANAGER_CONFIG", None)
    return subprocess.run(
        cli_command(config, *args), capture_output=True, text=True, timeout=120, env=env, cwd=REPO
    )


def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    deadline = clock.monotonic() + timeout
    while not predicate():
        if clock.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        clock.sleep(0.05)
