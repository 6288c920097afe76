"""The SOAP side of the Exchange connector: exchangelib's EWS operations, answered as plain
values read straight from the XML.

We call exchangelib's service classes (GetFolder, FindFolder, SyncFolderItems, GetItem)
directly rather than its folder/queryset layer:

- `Folder.sync_items()` keeps calling SyncFolderItems until IncludesLastItemInRange, and only
  hands out the new SyncState once its generator is exhausted; we need one page per
  `fetch_changes` so the cursor moves with each batch (exchangelib 5.6 `FolderCollection.
  sync_items`).
- Its folder classes need the whole folder tree (a `Root`) before anything else; we need
  a few distinguished folders and one FindFolder.
- Parsing an answer into full `Item` models costs more than the request; the subclasses below
  read the few elements we ask for.
"""

from __future__ import annotations

import binascii
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import lxml.etree  # type: ignore[import-untyped]
from exchangelib import errors as ews_errors  # type: ignore[import-untyped]
from exchangelib import services as ews_services
from exchangelib import util as ews_util
from exchangelib.extended_properties import ExtendedProperty  # type: ignore[import-untyped]
from exchangelib.fields import ExtendedPropertyField, FieldPath  # type: ignore[import-untyped]
from exchangelib.folders import Folder  # type: ignore[import-untyped]
from exchangelib.items import ID_ONLY, Message  # type: ignore[import-untyped]

TNS = "http://schemas.microsoft.com/exchange/services/2006/types"
MAX_SYNC_PAGE = 512  # MaxChangesReturned ceiling (SyncFolderItems reference)
CHUNK = 100  # ids per GetItem request (exchangelib's CHUNK_SIZE)


@dataclass(frozen=True)
class FolderInfo:
    id: str
    name: str
    parent_id: str | None
    folder_class: str | None


@dataclass(frozen=True)
class ItemState:
    """What SyncFolderItems and GetItem tell us about one item, MIME content aside."""

    id: str
    is_read: bool | None = None
    flag_status: int | None = None
    last_verb: int | None = None
    size: int = 0
    received: datetime | None = None

    @property
    def flags(self) -> frozenset[str]:
        # IMAP-style flags from MAPI: PidTagFlagStatus 2 = followupFlagged, PidTagLastVerbExecuted
        # 102/103 = reply / reply all, 104 = forward ([MS-OXOMSG] 2.2.1.34, [MS-OXOFLAG] 2.2.1.1).
        out = {"\\Seen"} if self.is_read else set()
        if self.flag_status == 2:
            out.add("\\Flagged")
        if self.last_verb in (102, 103):
            out.add("\\Answered")
        elif self.last_verb == 104:
            out.add("$Forwarded")
        return frozenset(out)


@dataclass(frozen=True)
class Change:
    kind: str  # "create", "update", "delete" or "read_flag_change"
    item: ItemState


@dataclass(frozen=True)
class SyncPage:
    changes: Sequence[Change]
    sync_state: str
    last: bool


@dataclass(frozen=True)
class Fetched:
    """One GetItem answer: raw bytes, or `problem` saying why there are none."""

    state: ItemState
    raw: bytes | None = None
    problem: str | None = None
    headers_only: bool = False  # raw is the header block (InternetMessageHeaders)


class _FlagStatus(ExtendedProperty):  # type: ignore[misc]
    property_tag = 0x1090
    property_type = "Integer"


class _LastVerb(ExtendedProperty):  # type: ignore[misc]
    property_tag = 0x1081
    property_type = "Integer"


def _paths(cls: Any, names: Iterable[str]) -> set[Any]:
    return {FieldPath(field=cls.get_field_by_fieldname(n)) for n in names}


FOLDER_FIELDS = _paths(Folder, ("name", "parent_folder_id", "folder_class"))
STATE_FIELDS = _paths(Message, ("is_read", "size", "datetime_received")) | {
    FieldPath(field=ExtendedPropertyField("mm_flag_status", value_cls=_FlagStatus)),
    FieldPath(field=ExtendedPropertyField("mm_last_verb", value_cls=_LastVerb)),
}
MIME_FIELDS = STATE_FIELDS | _paths(Message, ("mime_content",))
HEADER_FIELDS = STATE_FIELDS | _paths(Message, ("headers",))  # item:InternetMessageHeaders


# ---------------------------------------------------------------------------- XML readers
def _t(name: str) -> str:
    return f"{{{TNS}}}{name}"


def to_int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _folder(elem: Any) -> FolderInfo:
    parent = elem.find(_t("ParentFolderId"))
    return FolderInfo(
        id=elem.find(_t("FolderId")).get("Id"),
        name=elem.findtext(_t("DisplayName")) or "",
        parent_id=parent.get("Id") if parent is not None else None,
        folder_class=elem.findtext(_t("FolderClass")),
    )


def _state(elem: Any) -> ItemState:
    ext: dict[int, int | None] = {}
    for prop in elem.iterfind(_t("ExtendedProperty")):
        uri = prop.find(_t("ExtendedFieldURI"))
        try:  # PropertyTag comes as "0x1090"; accept a decimal too
            tag = int(uri.get("PropertyTag", ""), 0) if uri is not None else None
        except ValueError:
            tag = None
        if tag is not None:
            ext[tag] = to_int(prop.findtext(_t("Value")))
    read = elem.findtext(_t("IsRead"))
    stamp = elem.findtext(_t("DateTimeReceived"))
    received = None
    if stamp:
        try:
            received = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            received = None
    return ItemState(
        id=elem.find(_t("ItemId")).get("Id"),
        is_read=None if read is None else read.strip().lower() == "true",
        flag_status=ext.get(0x1090),
        last_verb=ext.get(0x1081),
        size=to_int(elem.findtext(_t("Size"))) or 0,
        received=received,
    )


def header_block(headers: Any) -> bytes:
    """RFC 822 bytes holding only the fields of an InternetMessageHeaders element."""
    lines = [
        f"{h.get('HeaderName')}: {h.text or ''}"
        for h in headers.iterfind(_t("InternetMessageHeader"))
        if h.get("HeaderName")
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


def decode_mime(text: str) -> bytes:
    """Base64 MimeContent to bytes; Exchange sometimes omits the padding (exchangelib
    `safe_b64decode`). Raises ValueError when the text is not base64."""
    data = "".join(text.split())
    if len(data) % 4 == 1:
        raise ValueError(f"truncated base64 ({len(data)} characters)")
    try:
        return binascii.a2b_base64(data + "=" * (-len(data) % 4), strict_mode=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from exc


_PARSERS = threading.local()


class _ParseWhole:
    # exchangelib 5.6 parses `to_xml(response.iter_content())`: requests' default chunk size
    # there is one byte, and its stream wrapper copies what is left on every read; 98% of a
    # GetItem's time went there. Our responses are never streamed: parse the bytes in memory,
    # with exchangelib's parser settings but one parser per thread (lxml parsers must not be
    # used by two threads at once, and we run GetItems in parallel).
    @classmethod
    def _get_soap_parts(cls, response: Any) -> tuple[Any, Any]:
        parser = getattr(_PARSERS, "parser", None)
        if parser is None:
            parser = _PARSERS.parser = lxml.etree.XMLParser(
                resolve_entities=False, recover=True, huge_tree=True
            )
        try:
            root = lxml.etree.fromstring(response.content, parser)
        except lxml.etree.XMLSyntaxError as exc:
            raise ews_errors.SOAPError(f"Bad SOAP response: {exc}") from exc
        if root is None:
            raise ews_errors.SOAPError("Bad SOAP response: no XML")
        body = root.find(f"{{{ews_util.SOAPNS}}}Body")
        if body is None:
            raise ews_errors.MalformedResponseError("No Body element in SOAP response")
        return root.find(f"{{{ews_util.SOAPNS}}}Header"), body


class GetFolders(_ParseWhole, ews_services.GetFolder):  # type: ignore[misc]
    def _elems_to_objs(self, elems: Iterable[Any]) -> Iterator[Any]:
        for elem in elems:
            yield elem if isinstance(elem, Exception) else _folder(elem)


class FindFolders(_ParseWhole, ews_services.FindFolder):  # type: ignore[misc]
    def call_flat(self, parent: Any) -> Iterator[Any]:
        # FindFolder.call() wants exchangelib folder objects with a shared root; the paged
        # request itself only needs ids.
        found: Iterator[Any] = self._elems_to_objs(
            self._paged_call(
                payload_func=self.get_payload,
                max_items=None,
                folders=[parent],
                additional_fields=FOLDER_FIELDS,
                restriction=None,
                shape=ID_ONLY,
                depth="Deep",
                page_size=self.page_size,
                offset=0,
            )
        )
        return found

    def _elem_to_obj(self, elem: Any) -> FolderInfo:
        return _folder(elem)


class SyncItems(_ParseWhole, ews_services.SyncFolderItems):  # type: ignore[misc]
    def _elem_to_obj(self, elem: Any) -> tuple[str, ItemState]:
        kind = self.change_types_map[elem.tag]
        if kind == self.DELETE:
            return kind, ItemState(id=elem.find(_t("ItemId")).get("Id"))
        if kind == self.READ_FLAG_CHANGE:
            read = (elem.findtext(_t("IsRead")) or "").strip().lower() == "true"
            return kind, ItemState(id=elem.find(_t("ItemId")).get("Id"), is_read=read)
        return kind, _state(elem[0])  # Message, MeetingRequest, PostItem...


class GetItems(_ParseWhole, ews_services.GetItem):  # type: ignore[misc]
    # Per-item failures come back as values instead of aborting the whole request.
    ERRORS_TO_CATCH_IN_RESPONSE = (
        *ews_services.GetItem.ERRORS_TO_CATCH_IN_RESPONSE,
        ews_errors.ErrorMimeContentConversionFailed,
        ews_errors.ErrorCorruptData,
        ews_errors.ErrorAccessDenied,
    )

    def _elem_to_obj(self, elem: Any) -> Fetched:
        state = _state(elem)
        mime = elem.findtext(_t("MimeContent"))
        headers = elem.find(_t("InternetMessageHeaders"))
        if mime is None and headers is not None:
            return Fetched(state, raw=header_block(headers), headers_only=True)
        if mime is None:
            return Fetched(state, problem="no MimeContent")
        try:
            return Fetched(state, raw=decode_mime(mime))
        except ValueError as exc:
            return Fetched(state, problem=f"MimeContent is not base64: {exc}")
