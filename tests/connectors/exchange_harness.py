"""The Exchange (EWS) connector in the contract suite, against the loopback EWS fake.

One fake server serves the whole test process (started on first use); each harness gets a
fresh mailbox, so harnesses never see each other's mail. exchangelib talks real HTTP to it
with Basic auth and a pinned Exchange 2016 build (no Autodiscover, no version guess).

Flags map to what Exchange stores: \\Seen is IsRead, \\Flagged the follow-up flag
(PidTagFlagStatus 2), \\Answered the last verb "reply" (PidTagLastVerbExecuted 102).
"""

from __future__ import annotations

import atexit
import uuid
from pathlib import Path

from connectors.exchange.connector import ExchangeConnector
from mailmanager import registry, spi
from mailmanager.testing.dovecot import free_port
from mailmanager.testing.fakes.ews_server import EwsServer

_SERVER: EwsServer | None = None
_DISTINGUISHED = {
    spi.FolderRole.INBOX: "inbox",
    spi.FolderRole.SENT: "sentitems",
    spi.FolderRole.DRAFTS: "drafts",
    spi.FolderRole.TRASH: "deleteditems",
    spi.FolderRole.JUNK: "junkemail",
}


def server() -> EwsServer:
    global _SERVER
    if _SERVER is None:
        _SERVER = EwsServer(auth="basic", username="corp\\svc", password="s3cret").start()
        atexit.register(_SERVER.stop)
    return _SERVER


def props(flags: frozenset[str]) -> dict[str, object]:
    return {
        "is_read": "\\Seen" in flags,
        "flag_status": 2 if "\\Flagged" in flags else 0,
        "last_verb": 102 if "\\Answered" in flags else None,
    }


class ExchangeHarness:
    entry_point = "exchange"
    reports_removed = True
    stores_flags = True
    reports_flags = True

    def __init__(self, tmp_path: Path) -> None:
        registry.register("exchange", ExchangeConnector)
        self.server = server()
        self.email = f"contract-{uuid.uuid4().hex[:12]}@corp.example"
        self.mailbox = self.server.add_mailbox(self.email)
        self._built: list[ExchangeConnector] = []

    def _build(self, **overrides: object) -> spi.Connector:
        values = {o.name: o.default for o in ExchangeConnector.options}
        values.update(
            email=self.email,
            service_endpoint=self.server.url,
            auth_type="basic",
            username="corp\\svc",
            password="s3cret",
            version="15.1.2.3",
            folders=["*"],
            timeout=10,
        )
        values.update(overrides)
        conn = ExchangeConnector(spi.ConnectorConfig("contract", values))
        conn.retry_wait = 0.01
        self._built.append(conn)
        return conn

    def connector(self) -> spi.Connector:
        return self._build()

    def broken_connector(self) -> spi.Connector:
        return self._build(service_endpoint=f"http://127.0.0.1:{free_port()}/EWS/Exchange.asmx")

    def add_folder(self, name: str, role: spi.FolderRole) -> str:
        if role in _DISTINGUISHED:
            return self.mailbox.folder(_DISTINGUISHED[role]).id
        return self.mailbox.add_folder(name)  # "Archive" at the top is the archive role

    def append(self, folder_id: str, raw: bytes, flags: frozenset[str] = frozenset()) -> str:
        return self.mailbox.append(folder_id, raw, **props(flags))

    def delete(self, folder_id: str, handle: str) -> None:
        self.mailbox.delete(handle)

    def set_flags(self, folder_id: str, handle: str, flags: frozenset[str]) -> None:
        self.mailbox.set_props(handle, **props(flags))

    def reset_folder(self, folder_id: str) -> None:
        self.mailbox.reset_folder(folder_id)  # old SyncStates: ErrorInvalidSyncStateData

    def close(self) -> None:
        for conn in self._built:
            conn.close()
        registry.unregister("exchange")
