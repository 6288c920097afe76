"""What the Graph connector reads in a delta item (`connectors.graph.connector`): its flags,
its size (PidTagMessageSize), its received date, and a header block from its
`internetMessageHeaders` for a message fetched headers only."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

LAST_VERB = "Integer 0x1081"  # PidTagLastVerbExecuted (MS-OXPROPS 2.761)
SIZE = "Integer 0x0E08"  # PidTagMessageSize (MS-OXPROPS 2.787)
_VERB_FLAGS = {102: "\\Answered", 103: "\\Answered", 104: "$Forwarded"}


def flags_of(item: Mapping[str, Any]) -> frozenset[str]:
    flags: set[str] = set()
    if item.get("isRead"):
        flags.add("\\Seen")
    if item.get("isDraft"):
        flags.add("\\Draft")
    flag = item.get("flag")
    if isinstance(flag, dict) and flag.get("flagStatus") == "flagged":
        flags.add("\\Flagged")
    for prop in item.get("singleValueExtendedProperties") or []:
        if isinstance(prop, dict) and str(prop.get("id", "")).lower() == LAST_VERB.lower():
            verb = _VERB_FLAGS.get(int(prop["value"])) if str(prop.get("value")).isdigit() else None
            if verb:
                flags.add(verb)
    return frozenset(flags)


def size_of(item: Mapping[str, Any]) -> int | None:
    """PidTagMessageSize from the expanded extended properties (Graph may write its id as
    "Integer 0xe08"), or None."""
    for prop in item.get("singleValueExtendedProperties") or []:
        if not isinstance(prop, dict):
            continue
        kind, _, tag = str(prop.get("id", "")).partition(" ")
        if kind.lower() == "integer" and tag.lower().startswith("0x"):
            with contextlib.suppress(ValueError):
                if int(tag, 16) == 0x0E08:
                    return int(str(prop.get("value")))
    return None


def header_block(headers: object) -> bytes:
    """RFC 822 bytes holding only the fields of an `internetMessageHeaders` list."""
    lines = [
        f"{h.get('name')}: {h.get('value', '')}"
        for h in (headers if isinstance(headers, list) else [])
        if isinstance(h, dict) and h.get("name")
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


def received(item: Mapping[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(item["receivedDateTime"]))
    except (KeyError, ValueError):
        return None
