"""A loopback Exchange Web Services server speaking the SOAP that exchangelib sends.

It answers the operations the `exchange` connector uses, in the shapes Microsoft documents
(learn.microsoft.com/exchange/client-developer/web-service-reference/<operation>-operation):

- GetFolder (FolderId or DistinguishedFolderId, with or without a Mailbox), FindFolder
  (Shallow/Deep, IndexedPageFolderView paging), SyncFolderItems (Create / Update / Delete /
  ReadFlagChange, MaxChangesReturned, IncludesLastItemInRange, opaque SyncState), GetItem
  (MimeContent in base64, IsRead, Size, DateTimeReceived, extended MAPI properties by tag),
  ConvertId (only so that exchangelib's version guess gets a ServerVersionInfo header).
- Every answer carries a ServerVersionInfo header for Exchange 2016 (build 15.1.2.3 unless
  told otherwise).
- Auth: none, Basic, or Bearer tokens from its own OAuth 2.0 client-credentials endpoint
  (`/oauth2/token`); a 401 always names the schemes offered (`WWW-Authenticate`), NTLM and
  Negotiate included, as IIS does.
- Faults, queued with `fail(kind, times, operation)`: "busy" (HTTP 500 SOAP fault
  ErrorServerBusy with BackOffMilliseconds, as in the EWS throttling docs), "http500" (an IIS
  error page), "http503", "http401", "drop" (connection closed without an answer). Per
  mailbox: `denied` (ErrorAccessDenied). Per folder: `reset_folder` (old SyncStates answer
  ErrorInvalidSyncStateData). Per item: `corrupt(item, kind)` with "bad_base64" (truncated
  MimeContent), "no_mime" (no MimeContent element), "conversion_failed"
  (ErrorMimeContentConversionFailed for that item).

Change tracking: each folder keeps an append-only log of (seq, item id); a SyncState names the
folder, its epoch and a seq. Changes after a seq are each item's latest change, oldest first:
Create when the item was created after that seq, Delete when it existed then and is gone now,
ReadFlagChange when only IsRead moved, Update otherwise.
"""

from __future__ import annotations

import base64
import bisect
import itertools
import json
import os
import secrets
import ssl
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

S = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
E = "http://schemas.microsoft.com/exchange/services/2006/errors"
DISTINGUISHED = {
    "inbox": "Inbox",
    "sentitems": "Sent Items",
    "drafts": "Drafts",
    "deleteditems": "Deleted Items",
    "junkemail": "Junk Email",
}
FLAG_STATUS, LAST_VERB = 0x1090, 0x1081  # PidTagFlagStatus, PidTagLastVerbExecuted
_ids = itertools.count(1)


def _new_id(kind: bytes) -> str:
    # Real ids are ~150 base64 characters with "+", "/" and "=" (an entry id inside).
    raw = b"\x00\x00\x00" + kind + next(_ids).to_bytes(8, "big") + secrets.token_bytes(90)
    return base64.b64encode(raw).decode()


@dataclass(eq=False)
class FakeItem:
    id: str
    mime: bytes
    is_read: bool = False
    flag_status: int = 0  # 0 not flagged, 1 complete, 2 flagged
    last_verb: int | None = None  # 102 replied, 103 replied all, 104 forwarded
    kind: str = "Message"
    fault: str | None = None
    received: datetime = field(default_factory=lambda: datetime.now(UTC))
    changekey: int = 1
    created_seq: int = 0
    last_seq: int = 0
    read_only: bool = False  # the latest change moved IsRead alone
    b64: str = ""  # MimeContent, encoded on first use


@dataclass(eq=False)
class FakeFolder:
    id: str
    name: str
    parent_id: str
    mailbox: FakeMailbox
    distinguished: str | None = None
    folder_class: str = "IPF.Note"
    items: dict[str, FakeItem] = field(default_factory=dict)
    gone: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (created, deleted)
    log: list[tuple[int, str]] = field(default_factory=list)
    seq: int = 0
    epoch: int = 1

    def touch(self, item_id: str) -> int:
        self.seq += 1
        self.log.append((self.seq, item_id))
        return self.seq


class FakeMailbox:
    def __init__(self, server: EwsServer, email: str) -> None:
        self.server, self.email, self.denied = server, email, False
        self.root = FakeFolder(_new_id(b"R"), "Top of Information Store", "", self, "msgfolderroot")
        self.folders: dict[str, FakeFolder] = {self.root.id: self.root}
        server.folders[self.root.id] = self.root
        for dist, name in DISTINGUISHED.items():
            self.add_folder(name, distinguished=dist)

    def add_folder(
        self, name: str, parent: str | None = None, distinguished: str | None = None,
        folder_class: str = "IPF.Note",
    ) -> str:  # fmt: skip
        """Create a folder under `parent` (default: the message root); return its id."""
        with self.server.lock:
            folder = FakeFolder(
                _new_id(b"F"), name, parent or self.root.id, self, distinguished, folder_class
            )
            self.folders[folder.id] = folder
            self.server.folders[folder.id] = folder
            return folder.id

    def folder(self, key: str) -> FakeFolder:
        """A folder by id or distinguished name."""
        for f in self.folders.values():
            if key in (f.id, f.distinguished):
                return f
        raise KeyError(key)

    def append(self, folder: str, raw: bytes, **props: Any) -> str:
        """Deliver a message into `folder` (id or distinguished name); return the item id."""
        with self.server.lock:
            f = self.folder(folder)
            item = FakeItem(_new_id(b"I"), raw, **props)
            item.created_seq = item.last_seq = f.touch(item.id)
            f.items[item.id] = item
            self.server.items[item.id] = (f, item)
            return item.id

    def delete(self, item_id: str) -> None:
        with self.server.lock:
            f, item = self.server.items.pop(item_id)
            del f.items[item_id]
            f.gone[item_id] = (item.created_seq, f.touch(item_id))

    def set_props(self, item_id: str, **props: Any) -> None:
        """Change IsRead / flag_status / last_verb; a change of IsRead alone is a read change."""
        with self.server.lock:
            f, item = self.server.items[item_id]
            changed = {k for k, v in props.items() if getattr(item, k) != v}
            if not changed:
                return
            for k, v in props.items():
                setattr(item, k, v)
            item.changekey += 1
            item.read_only = changed == {"is_read"}
            item.last_seq = f.touch(item_id)

    def corrupt(self, item_id: str, kind: str) -> None:
        with self.server.lock:
            self.server.items[item_id][1].fault = kind

    def reset_folder(self, folder: str) -> None:
        """Invalidate every SyncState of the folder (as a mailbox move or restore does)."""
        with self.server.lock:
            self.folder(folder).epoch += 1

    def remove_folder(self, folder: str) -> None:
        with self.server.lock:
            f = self.folder(folder)
            for item_id in list(f.items):
                del self.server.items[item_id]
            del self.folders[f.id], self.server.folders[f.id]


@dataclass
class Fault:
    kind: str
    times: int
    operation: str | None
    back_off_ms: int


class EwsServer:
    """A threaded HTTP(S) server on 127.0.0.1 at a free port; `url` is the EWS endpoint."""

    def __init__(
        self,
        auth: str = "none",  # "none", "basic", "bearer" or "ntlm" (offers NTLM only: always 401)
        username: str = "corp\\alice",
        password: str = "secret",
        build: tuple[int, int, int, int] = (15, 1, 2, 3),
        tls: tuple[Path, Path] | None = None,
        client_id: str = "app-id",
        client_secret: str = "app-secret",
        token_lifetime: int = 3599,
    ) -> None:
        self.auth, self.username, self.password, self.build = auth, username, password, build
        self.client_id, self.client_secret = client_id, client_secret
        self.token_lifetime = token_lifetime
        self.token_error: tuple[str, str] | None = None  # (error, description) from /oauth2/token
        self.honour_tokens = True  # False: valid tokens get 401 (the app lacks the EWS role)
        self.lock = threading.RLock()
        self.mailboxes: dict[str, FakeMailbox] = {}
        self.folders: dict[str, FakeFolder] = {}
        self.items: dict[str, tuple[FakeFolder, FakeItem]] = {}
        self.faults: list[Fault] = []
        self.tokens: dict[str, float] = {}  # token -> expiry (time.monotonic)
        self.token_requests = 0
        self.calls: list[str] = []
        self.log_bodies = bool(os.environ.get("EWS_FAKE_LOG"))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.fake = self  # type: ignore[attr-defined]
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if tls else "http"
        self.base = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self.url = f"{self.base}/EWS/Exchange.asmx"
        self.token_url = f"{self.base}/oauth2/token"
        self._thread: threading.Thread | None = None

    def start(self) -> EwsServer:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> EwsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_mailbox(self, email: str) -> FakeMailbox:
        with self.lock:
            return self.mailboxes.setdefault(email.lower(), FakeMailbox(self, email))

    def fail(
        self, kind: str, times: int = 1, operation: str | None = None, back_off_ms: int = 50
    ) -> None:
        """Answer the next `times` requests (of `operation`, or any) with fault `kind`."""
        with self.lock:
            self.faults.append(Fault(kind, times, operation, back_off_ms))

    def expire_tokens(self) -> None:
        """Reject every bearer token issued so far (as if they expired)."""
        with self.lock:
            self.tokens.clear()

    def count(self, operation: str) -> int:
        return self.calls.count(operation)

    def _take_fault(self, operation: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.operation in (None, operation):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None


# ------------------------------------------------------------------------------ rendering
def _envelope(op: str, messages: str, build: tuple[int, int, int, int]) -> bytes:
    a, b, c, d = build
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{S}"><s:Header>'
        f'<h:ServerVersionInfo MajorVersion="{a}" MinorVersion="{b}" MajorBuildNumber="{c}" '
        f'MinorBuildNumber="{d}" Version="V2017_07_11" xmlns:h="{T}" xmlns="{T}"/>'
        f'</s:Header><s:Body><m:{op}Response xmlns:m="{M}" xmlns:t="{T}">'
        f"<m:ResponseMessages>{messages}</m:ResponseMessages></m:{op}Response>"
        "</s:Body></s:Envelope>"
    ).encode()


def _error(op: str, code: str, text: str, extra: str = "") -> str:
    return (
        f'<m:{op}ResponseMessage ResponseClass="Error"><m:MessageText>{escape(text)}'
        f"</m:MessageText><m:ResponseCode>{code}</m:ResponseCode>"
        f"<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>{extra}</m:{op}ResponseMessage>"
    )


def _folder_xml(f: FakeFolder) -> str:
    children = sum(1 for c in f.mailbox.folders.values() if c.parent_id == f.id)
    parent = f'<t:ParentFolderId Id="{f.parent_id}" ChangeKey="AQAAAA=="/>' if f.parent_id else ""
    return (
        f'<t:Folder><t:FolderId Id="{f.id}" ChangeKey="AQAAAA=="/>{parent}'
        f"<t:FolderClass>{escape(f.folder_class)}</t:FolderClass>"
        f"<t:DisplayName>{escape(f.name)}</t:DisplayName>"
        f"<t:ChildFolderCount>{children}</t:ChildFolderCount></t:Folder>"
    )


def _item_xml(item: FakeItem, props: set[str], tags: set[int], mime: bool) -> str:
    parts = [f"<t:{item.kind}>"]
    if mime and "item:MimeContent" in props and item.fault != "no_mime":
        if not item.b64:
            item.b64 = base64.b64encode(item.mime).decode()
        data = item.b64
        if item.fault == "bad_base64":
            data = data[: (len(data) // 8) * 4 + 1]  # truncated: 4k+1 characters
        parts.append(f'<t:MimeContent CharacterSet="UTF-8">{data}</t:MimeContent>')
    parts.append(f'<t:ItemId Id="{item.id}" ChangeKey="CQAAAB{item.changekey:06d}"/>')
    if "item:ItemClass" in props:
        cls = "IPM.Schedule.Meeting.Request" if item.kind == "MeetingRequest" else "IPM.Note"
        parts.append(f"<t:ItemClass>{cls}</t:ItemClass>")
    if "item:Size" in props:
        parts.append(f"<t:Size>{len(item.mime) + 1200}</t:Size>")
    if "item:DateTimeReceived" in props:
        stamp = item.received.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        parts.append(f"<t:DateTimeReceived>{stamp}</t:DateTimeReceived>")
    if "item:InternetMessageHeaders" in props:
        head = item.mime.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        fields = BytesHeaderParser(policy=compat32).parsebytes(head).items()
        parts.append("<t:InternetMessageHeaders>")
        for name, raw_value in fields:
            text = str(raw_value).replace("\r\n", "").replace("\n", "")
            parts.append(
                f'<t:InternetMessageHeader HeaderName="{escape(name, {chr(34): "&quot;"})}">'
                f"{escape(text)}</t:InternetMessageHeader>"
            )
        parts.append("</t:InternetMessageHeaders>")
    for tag, value in ((FLAG_STATUS, item.flag_status or None), (LAST_VERB, item.last_verb)):
        if tag in tags and value is not None:  # unset MAPI properties are left out
            parts.append(
                f'<t:ExtendedProperty><t:ExtendedFieldURI PropertyTag="0x{tag:x}" '
                f'PropertyType="Integer"/><t:Value>{value}</t:Value></t:ExtendedProperty>'
            )
    if "message:IsRead" in props:
        parts.append(f"<t:IsRead>{'true' if item.is_read else 'false'}</t:IsRead>")
    parts.append(f"</t:{item.kind}>")
    return "".join(parts)


def _shape(req: ET.Element, tag: str) -> tuple[set[str], set[int]]:
    shape = req.find(f"{{{M}}}{tag}")
    props: set[str] = set()
    tags: set[int] = set()
    if shape is not None:
        for uri in shape.iter(f"{{{T}}}FieldURI"):
            props.add(uri.get("FieldURI", ""))
        for ext in shape.iter(f"{{{T}}}ExtendedFieldURI"):
            tags.add(int(ext.get("PropertyTag", "0"), 0))
    return props, tags


def _encode_state(f: FakeFolder, seq: int) -> str:
    return base64.b64encode(json.dumps([f.id, f.epoch, seq]).encode()).decode()


# ------------------------------------------------------------------------------ operations
class _Ops:
    def __init__(self, fake: EwsServer, user_mailbox: str | None) -> None:
        self.fake, self.anchor = fake, user_mailbox

    def _mailbox_of(self, elem: ET.Element | None) -> FakeMailbox:
        email = None
        if elem is not None:
            email = elem.findtext(f"{{{T}}}Mailbox/{{{T}}}EmailAddress")
        email = (email or self.anchor or "").lower()
        if email not in self.fake.mailboxes:
            raise _Fail("ErrorNonExistentMailbox", f"The SMTP address {email} has no mailbox.")
        return self.fake.mailboxes[email]

    def _folder(self, ref: ET.Element) -> FakeFolder:
        if ref.tag == f"{{{T}}}DistinguishedFolderId":
            mb = self._mailbox_of(ref)
            try:
                f = mb.folder(ref.get("Id", ""))
            except KeyError:
                raise _Fail(
                    "ErrorFolderNotFound", "The specified folder could not be found."
                ) from None
        else:
            f2 = self.fake.folders.get(ref.get("Id", ""))
            if f2 is None:
                raise _Fail("ErrorFolderNotFound", "The specified folder could not be found.")
            f = f2
        if f.mailbox.denied:
            raise _Fail("ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        return f

    def GetFolder(self, req: ET.Element) -> str:
        out = []
        for ref in _children(req, "FolderIds"):
            try:
                f = self._folder(ref)
            except _Fail as exc:
                out.append(_error("GetFolder", exc.code, exc.text, "<m:Folders/>"))
                continue
            out.append(
                '<m:GetFolderResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
                f"</m:ResponseCode><m:Folders>{_folder_xml(f)}</m:Folders>"
                "</m:GetFolderResponseMessage>"
            )
        return "".join(out)

    def FindFolder(self, req: ET.Element) -> str:
        deep = req.get("Traversal") == "Deep"
        view = req.find(f"{{{M}}}IndexedPageFolderView")
        size = int(view.get("MaxEntriesReturned", "1000")) if view is not None else 1000
        offset = int(view.get("Offset", "0")) if view is not None else 0
        out = []
        for ref in _children(req, "ParentFolderIds"):
            try:
                parent = self._folder(ref)
            except _Fail as exc:
                out.append(_error("FindFolder", exc.code, exc.text))
                continue
            found: list[FakeFolder] = []
            todo = [parent.id]
            while todo:
                pid = todo.pop(0)
                kids = [f for f in parent.mailbox.folders.values() if f.parent_id == pid]
                found += kids
                todo += [k.id for k in kids] if deep else []
            page = found[offset : offset + size]
            last = offset + len(page) >= len(found)
            out.append(
                '<m:FindFolderResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
                f'</m:ResponseCode><m:RootFolder IndexedPagingOffset="{offset + len(page)}" '
                f'TotalItemsInView="{len(found)}" IncludesLastItemInRange='
                f'"{"true" if last else "false"}"><t:Folders>'
                f"{''.join(_folder_xml(f) for f in page)}</t:Folders></m:RootFolder>"
                "</m:FindFolderResponseMessage>"
            )
        return "".join(out)

    def SyncFolderItems(self, req: ET.Element) -> str:
        props, tags = _shape(req, "ItemShape")
        ref = req.find(f"{{{M}}}SyncFolderId")
        try:
            if ref is None or not len(ref):
                raise _Fail("ErrorInvalidRequest", "SyncFolderId is missing.")
            f = self._folder(ref[0])
            since = self._since(f, req.findtext(f"{{{M}}}SyncState"))
            limit = int(req.findtext(f"{{{M}}}MaxChangesReturned") or "0")
            if not 1 <= limit <= 512:
                raise _Fail("ErrorInvalidArgument", "MaxChangesReturned must be 1 to 512.")
        except _Fail as exc:
            empty = "<m:SyncState/><m:IncludesLastItemInRange>true</m:IncludesLastItemInRange>"
            return _error("SyncFolderItems", exc.code, exc.text, empty)
        changes: list[str] = []
        new_seq, last_seq = f.seq, since
        start = bisect.bisect_right(f.log, (since, "\uffff"))
        for seq, iid in itertools.islice(f.log, start, None):
            change = self._change(f, since, seq, iid, props, tags)
            if change is None:
                continue
            if len(changes) == limit:
                new_seq = last_seq
                break
            changes.append(change)
            last_seq = seq
        more = new_seq != f.seq
        return (
            '<m:SyncFolderItemsResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
            f"</m:ResponseCode><m:SyncState>{_encode_state(f, new_seq)}</m:SyncState>"
            f"<m:IncludesLastItemInRange>{'false' if more else 'true'}"
            f"</m:IncludesLastItemInRange><m:Changes>{''.join(changes)}</m:Changes>"
            "</m:SyncFolderItemsResponseMessage>"
        )

    @staticmethod
    def _since(f: FakeFolder, state: str | None) -> int:
        if not state:
            return 0
        try:
            fid, epoch, seq = json.loads(base64.b64decode(state, validate=True))
            if fid == f.id and epoch == f.epoch and isinstance(seq, int):
                return seq
        except ValueError:
            pass
        raise _Fail(
            "ErrorInvalidSyncStateData",
            "Synchronization state data is corrupt or otherwise invalid.",
        )

    @staticmethod
    def _change(
        f: FakeFolder, since: int, seq: int, iid: str, props: set[str], tags: set[int]
    ) -> str | None:
        item = f.items.get(iid)
        if item is not None:
            if item.last_seq != seq:
                return None  # superseded by a later change of the same item
            if item.created_seq > since:
                return f"<t:Create>{_item_xml(item, props, tags, False)}</t:Create>"
            if item.read_only and since >= _previous_seq(f, iid, seq):
                read = "true" if item.is_read else "false"
                return (
                    f'<t:ReadFlagChange><t:ItemId Id="{iid}" ChangeKey="CQAAAB{item.changekey:06d}"'
                    f"/><t:IsRead>{read}</t:IsRead></t:ReadFlagChange>"
                )
            return f"<t:Update>{_item_xml(item, props, tags, False)}</t:Update>"
        created, deleted = f.gone.get(iid, (0, -1))
        if deleted != seq or created > since:
            return None
        return f'<t:Delete><t:ItemId Id="{iid}"/></t:Delete>'

    def GetItem(self, req: ET.Element) -> str:
        props, tags = _shape(req, "ItemShape")
        out = []
        for ref in _children(req, "ItemIds"):
            found = self.fake.items.get(ref.get("Id", ""))
            if found is None or found[0].mailbox.denied:
                code = "ErrorItemNotFound" if found is None else "ErrorAccessDenied"
                text = "The specified object was not found in the store."
                out.append(_error("GetItem", code, text, "<m:Items/>"))
                continue
            item = found[1]
            if item.fault == "conversion_failed" and "item:MimeContent" in props:
                text = "Content conversion failed."
                out.append(
                    _error("GetItem", "ErrorMimeContentConversionFailed", text, "<m:Items/>")
                )
                continue
            out.append(
                '<m:GetItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
                f"</m:ResponseCode><m:Items>{_item_xml(item, props, tags, True)}</m:Items>"
                "</m:GetItemResponseMessage>"
            )
        return "".join(out)

    def ConvertId(self, req: ET.Element) -> str:
        return _error("ConvertId", "ErrorInvalidIdMalformed", "Id is malformed.")


def _previous_seq(f: FakeFolder, iid: str, seq: int) -> int:
    """The seq of the item's change before `seq` (a ReadFlagChange covers only that step)."""
    for s, i in reversed(f.log[: bisect.bisect_left(f.log, (seq, ""))]):
        if i == iid:
            return s
    return 0


def _children(req: ET.Element, tag: str) -> list[ET.Element]:
    found = req.find(f"{{{M}}}{tag}")
    return list(found) if found is not None else []


class _Fail(Exception):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(code)
        self.code, self.text = code, text


# ------------------------------------------------------------------------------ HTTP
_BUSY = (
    f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{S}"><s:Body><s:Fault>'
    f'<faultcode xmlns:a="{T}">a:ErrorServerBusy</faultcode><faultstring xml:lang="en-US">'
    "The server cannot service this request right now. Try again later.</faultstring><detail>"
    f'<e:ResponseCode xmlns:e="{E}">ErrorServerBusy</e:ResponseCode><e:Message xmlns:e="{E}">'
    "The server cannot service this request right now. Try again later.</e:Message>"
    f'<t:MessageXml xmlns:t="{T}"><t:Value Name="BackOffMilliseconds">{{ms}}</t:Value>'
    "</t:MessageXml></detail></s:Fault></s:Body></s:Envelope>"
)
_IIS_500 = b"<html><body><h1>500 - Internal server error.</h1></body></html>"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes

    @property
    def fake(self) -> EwsServer:
        return self.server.fake  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(
        self, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _challenge(self) -> None:
        self.send_response(401)
        offered = {"basic": ['Basic realm="127.0.0.1"'], "bearer": ['Bearer realm=""']}
        for scheme in [*offered.get(self.fake.auth, []), "Negotiate", "NTLM"]:
            self.send_header("WWW-Authenticate", scheme)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _authorized(self) -> bool:
        fake, header = self.fake, self.headers.get("Authorization", "")
        if fake.auth == "none":
            return True
        if fake.auth == "basic" and header.startswith("Basic "):
            user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
            return (user, pw) == (fake.username, fake.password)
        if fake.auth == "bearer" and header.startswith("Bearer "):
            expiry = fake.tokens.get(header[7:], 0.0)
            return fake.honour_tokens and expiry > time.monotonic()
        return False

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/oauth2/token":
            return self._token(data)
        if self.path.lower() != "/ews/exchange.asmx":
            return self._send(404, b"not found", "text/plain")
        fake = self.fake
        try:
            body = ET.fromstring(data).find(f"{{{S}}}Body")
            req = body[0] if body is not None and len(body) else None
        except ET.ParseError:
            req = None
        op = req.tag.rsplit("}", 1)[-1] if req is not None else "?"
        with fake.lock:
            fake.calls.append(op)
        if fake.log_bodies:
            print(f"EWS fake <- {op}: {data.decode(errors='replace')}")
        fault = fake._take_fault(op)
        if fault is not None and self._fault(fault):
            return
        if not self._authorized():
            return self._challenge()
        handler = getattr(_Ops, op, None)
        if req is None or handler is None or op.startswith("_"):
            return self._send(400, b"bad request", "text/plain")
        anchor = self.headers.get("X-AnchorMailbox")
        if b"ExchangeImpersonation" in data:
            header = ET.fromstring(data).find(f"{{{S}}}Header")
            if header is not None:
                anchor = header.findtext(f".//{{{T}}}PrimarySmtpAddress") or anchor
        with fake.lock:
            messages = handler(_Ops(fake, anchor), req)
        self._send(200, _envelope(op, messages, fake.build), "text/xml; charset=utf-8")

    def _fault(self, fault: Fault) -> bool:
        if fault.kind == "busy":
            self._send(500, _BUSY.replace("{ms}", str(fault.back_off_ms)).encode(), "text/xml")
        elif fault.kind == "http500":
            self._send(500, _IIS_500, "text/html")
        elif fault.kind == "http503":
            self._send(503, b"Service Unavailable", "text/html")
        elif fault.kind == "http401":
            self._challenge()
        elif fault.kind == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
        else:
            return False
        return True

    def _token(self, data: bytes) -> None:
        form = {k: v[0] for k, v in parse_qs(data.decode()).items()}
        fake = self.fake
        error = fake.token_error
        if (
            form.get("client_id") != fake.client_id
            or form.get("client_secret") != fake.client_secret
        ):
            error = ("invalid_client", "AADSTS7000215: Invalid client secret provided.")
        if error is not None:
            body = json.dumps({"error": error[0], "error_description": error[1]})
            return self._send(400 if error[0] != "invalid_client" else 401, body.encode(),
                              "application/json")  # fmt: skip
        token = secrets.token_urlsafe(24)
        with fake.lock:
            fake.tokens[token] = time.monotonic() + fake.token_lifetime
            fake.token_requests += 1
        body = json.dumps(
            {"access_token": token, "token_type": "Bearer", "expires_in": fake.token_lifetime}
        )
        self._send(200, body.encode(), "application/json")
