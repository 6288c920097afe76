"""Logging setup: plain text for people, one JSON object per line for log collectors.

Events carry stable keys in `extra` (`action`, `mailbox`, ...); message bodies and secrets
are never logged.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = [f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD]
        return f"{base} {' '.join(extras)}" if extras else base


def setup(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter (SQL, IMAP wire) stays out unless asked for with DEBUG.
    # exchangelib and the HTTP clients log whole request bodies (messages, tokens) at DEBUG.
    for noisy in (
        "sqlalchemy",
        "imapclient",
        "apscheduler",
        "alembic",
        "exchangelib",
        "googleapiclient",
        "msal",
        "httpx",
        "httpcore",
        "urllib3",
        "requests_oauthlib",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
