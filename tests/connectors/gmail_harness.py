"""The Gmail connector in the contract suite, against the loopback Gmail API fake.

Each harness runs its own fake (mailmanager/testing/fakes/gmail_server.py) holding one
mailbox, reached by per-user OAuth (an OAuth client JSON plus a refresh token, both pointing
at the fake).

Gmail has labels, not folders: `add_folder` maps the INBOX and SENT roles to those system
labels, ARCHIVE to the connector's virtual ARCHIVE view, and anything else to a new user
label; the connector is configured with the folders added so far (`folders` option).
Flags travel as labels (no UNREAD = \\Seen, STARRED = \\Flagged). Gmail has no \\Answered
label, so the contract's flag-change case runs only its first half here (reports_flags is
False); tests/integration/test_gmail.py covers flag changes through UNREAD and STARRED.
"""

from __future__ import annotations

from pathlib import Path

from connectors.gmail.connector import GmailConnector
from mailmanager import registry, spi
from mailmanager.testing.fakes.gmail_server import GmailFake

_SYSTEM = {spi.FolderRole.INBOX: "INBOX", spi.FolderRole.SENT: "SENT"}


def flag_labels(flags: frozenset[str]) -> set[str]:
    labels = set() if "\\Seen" in flags else {"UNREAD"}
    return labels | ({"STARRED"} if "\\Flagged" in flags else set())


class GmailHarness:
    entry_point = "gmail"
    reports_removed = True
    stores_flags = True
    reports_flags = False

    def __init__(self, tmp_path: Path) -> None:
        self.fake = GmailFake()
        client_id, _ = self.fake.register_client()
        self.client_json = self.fake.client_json(client_id)
        self.refresh_token = self.fake.issue_refresh_token(client_id)
        self.folders: list[str] = []
        self._built: list[spi.Connector] = []

    def _build(self, **overrides: object) -> spi.Connector:
        values: dict[str, object] = {o.name: o.default for o in GmailConnector.options}
        values.update(
            client_secret=self.client_json,
            refresh_token=self.refresh_token,
            api_endpoint=self.fake.url,
            folders=self.folders or ["ALL"],
            max_retries=1,
        )
        values.update(overrides)
        conn = registry.load(self.entry_point)(spi.ConnectorConfig("contract", values))
        self._built.append(conn)
        return conn

    def connector(self) -> spi.Connector:
        return self._build()

    def broken_connector(self) -> spi.Connector:
        return self._build(refresh_token="1//revoked-long-ago")

    def add_folder(self, name: str, role: spi.FolderRole) -> str:
        if role in _SYSTEM:
            folder_id = spec = _SYSTEM[role]
        elif role is spi.FolderRole.ARCHIVE:
            folder_id = spec = "ARCHIVE"
        else:
            folder_id, spec = self.fake.add_label(name), name
        if spec not in self.folders:
            self.folders.append(spec)
        return folder_id

    def append(self, folder_id: str, raw: bytes, flags: frozenset[str] = frozenset()) -> str:
        labels = flag_labels(flags) | (set() if folder_id == "ARCHIVE" else {folder_id})
        return self.fake.append(raw, labels)

    def delete(self, folder_id: str, handle: str) -> None:
        self.fake.delete(handle)

    def set_flags(self, folder_id: str, handle: str, flags: frozenset[str]) -> None:
        wanted = flag_labels(flags)
        self.fake.modify(handle, add=wanted, remove={"UNREAD", "STARRED"} - wanted)

    def reset_folder(self, folder_id: str) -> None:
        self.fake.expire_history()  # as when Gmail's history for the cursor has expired

    def close(self) -> None:
        for conn in self._built:
            conn.close()
        self.fake.close()
