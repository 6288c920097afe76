"""The graph connector in the contract suite, against the loopback Graph fake.

One fake (mailmanager/testing/fakes/graph_server.py `shared_fake`: HTTPS, msal's token
endpoint, Graph's delta query) serves the whole test process; each harness gets its own
mailbox and app registration, so harnesses never see each other's mail. Handles are the
fake's immutable message ids, which are also the connector's provider ids. Flags map to
Graph properties as the connector reads them: \\Seen isRead, \\Flagged flag.flagStatus,
\\Draft isDraft, \\Answered PidTagLastVerbExecuted = 102.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from connectors.graph.connector import GraphConnector
from mailmanager import registry, spi
from mailmanager.testing.fakes.graph_server import shared_fake

_WELL_KNOWN = {spi.FolderRole.INBOX: "inbox", spi.FolderRole.SENT: "sentitems",
               spi.FolderRole.ARCHIVE: "archive", spi.FolderRole.DRAFTS: "drafts",
               spi.FolderRole.TRASH: "deleteditems", spi.FolderRole.JUNK: "junkemail"}  # fmt: skip

# Until pyproject declares the entry point, tests find the class by registration.
registry.register("graph", GraphConnector)


def flag_props(flags: frozenset[str]) -> dict[str, object]:
    return {
        "read": "\\Seen" in flags,
        "flagged": "\\Flagged" in flags,
        "draft": "\\Draft" in flags,
        "verb": 102 if "\\Answered" in flags else None,
    }


class GraphHarness:
    entry_point = "graph"
    reports_removed = True
    stores_flags = True
    reports_flags = True

    def __init__(self, tmp_path: Path) -> None:
        self.fake = shared_fake()
        self.upn = f"contract-{uuid.uuid4().hex[:10]}@contoso.example"
        self.fake.add_mailbox(self.upn)
        self.secret = uuid.uuid4().hex
        self.app = self.fake.add_app(secret=self.secret)
        self._built: list[spi.Connector] = []

    def options(self, **overrides: object) -> dict[str, object]:
        values = {o.name: o.default for o in GraphConnector.options}
        values.update(
            tenant_id=self.fake.tenant_id,
            client_id=self.app.client_id,
            client_secret=self.secret,
            user=self.upn,
            authority_url=self.fake.authority_url,
            graph_url=self.fake.graph_url,
            ssl_ca_file=str(self.fake.ca_file),
            folders=["*"],
        )
        values.update(overrides)
        return values

    def _build(self, **overrides: object) -> spi.Connector:
        cls = registry.load(self.entry_point)
        conn = cls(spi.ConnectorConfig("contract", self.options(**overrides)))
        self._built.append(conn)
        return conn

    def connector(self) -> spi.Connector:
        return self._build()

    def broken_connector(self) -> spi.Connector:
        return self._build(client_secret="not-the-secret")

    def add_folder(self, name: str, role: spi.FolderRole) -> str:
        if role in _WELL_KNOWN:
            return self.fake.folder_id(self.upn, _WELL_KNOWN[role])
        return self.fake.add_folder(self.upn, name)

    def append(self, folder_id: str, raw: bytes, flags: frozenset[str] = frozenset()) -> str:
        return self.fake.append(self.upn, folder_id, raw, **flag_props(flags))

    def delete(self, folder_id: str, handle: str) -> None:
        self.fake.delete(self.upn, handle)

    def set_flags(self, folder_id: str, handle: str, flags: frozenset[str]) -> None:
        self.fake.set_flags(self.upn, handle, **flag_props(flags))

    def reset_folder(self, folder_id: str) -> None:
        self.fake.reset_folder(self.upn, folder_id)

    def close(self) -> None:
        for conn in self._built:
            conn.close()
