"""The IMAP connector in the contract suite, against a private Dovecot on loopback.

One Dovecot serves the whole test process (started on first use, stopped at exit); each
harness gets a fresh random user, so harnesses never see each other's mail. Without
Dovecot the harness skips, except when CI is set: then it fails.

IMAP is a CRLF protocol (RFC 3501 §2.2): Dovecot hands back every bare LF as CRLF, so the
bytes that come back equal `expected_raw(raw)`, not always `raw` itself.
"""

from __future__ import annotations

import atexit
import os
import random
from pathlib import Path

import pytest

from mailmanager import registry, spi
from mailmanager.testing.dovecot import DovecotServer, dovecot_binary, free_port

_SERVER: DovecotServer | None = None


def _server() -> DovecotServer:
    global _SERVER
    if _SERVER is None:
        if dovecot_binary() is None:
            reason = "Dovecot is not installed (apt-get install dovecot-imapd dovecot-lmtpd)"
            if os.environ.get("CI"):
                pytest.fail(f"CI is set but {reason}")
            pytest.skip(reason)
        _SERVER = DovecotServer()
        _SERVER.start()
        atexit.register(_SERVER.cleanup)
    return _SERVER


def expected_raw(raw: bytes) -> bytes:
    """The bytes an IMAP server returns for `raw`: line ends made CRLF."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class ImapHarness:
    entry_point = "imap"
    expected_raw = staticmethod(expected_raw)
    reports_removed = True
    stores_flags = True
    reports_flags = True

    def __init__(self, tmp_path: Path) -> None:
        self.server = _server()
        self.user = DovecotServer.new_user("contract")
        self._built: list[spi.Connector] = []

    def _build(self, **overrides: object) -> spi.Connector:
        cls = registry.load(self.entry_point)
        values = {o.name: o.default for o in cls.options}
        values.update(self.server.options(self.user, folders=["*"], **overrides))
        conn = cls(spi.ConnectorConfig("contract", values))
        self._built.append(conn)
        return conn

    def connector(self) -> spi.Connector:
        return self._build()

    def broken_connector(self) -> spi.Connector:
        return self._build(port=free_port())  # nothing listens there

    def add_folder(self, name: str, role: spi.FolderRole) -> str:
        with self.server.session(self.user) as imap:
            if not imap.folder_exists(name):
                imap.create_folder(name)
        return name

    def append(self, folder_id: str, raw: bytes, flags: frozenset[str] = frozenset()) -> str:
        [uid] = self.server.append(self.user, folder_id, [raw], flags=sorted(flags))
        return str(uid)

    def delete(self, folder_id: str, handle: str) -> None:
        with self.server.session(self.user) as imap:
            imap.select_folder(folder_id)
            imap.delete_messages([int(handle)])
            imap.uid_expunge([int(handle)])

    def set_flags(self, folder_id: str, handle: str, flags: frozenset[str]) -> None:
        with self.server.session(self.user) as imap:
            imap.select_folder(folder_id)
            imap.set_flags([int(handle)], sorted(flags))

    def reset_folder(self, folder_id: str) -> None:
        # INBOX cannot be deleted and recreated; doveadm gives it a new UIDVALIDITY instead,
        # as a mailbox restored from backup would get.
        self.server.set_uidvalidity(self.user, folder_id, random.randint(10, 2**31))

    def close(self) -> None:
        for conn in self._built:
            conn.close()
