"""Logging setup: plain text for people, one JSON object per line for log collectors.

Events carry stable keys in `extra` (`action`, `mailbox`, ...); message bodies and secrets
are never logged. `bound(mailbox=...)`/`bind(run=...)` add fields to every record logged
in the current context (a sync's thread: its connector's and store's lines too).

With the JSON format, everything the process writes to stderr is a JSON line: the start-up
banner (`announce`), errors before the configuration is loaded (`format_in` reads the
format from the file alone), Python warnings, and uncaught exceptions of any thread.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import threading
import tomllib
from collections.abc import Iterator
from types import TracebackType
from typing import Any

_CONTEXT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "mailmanager_log_context", default=None
)

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


class _ContextFilter(logging.Filter):
    """Adds the fields of `bound`/`bind` to records that do not carry them already."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_CONTEXT.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Every record logged inside (in this thread or task) gets `fields`."""
    token = _CONTEXT.set({**(_CONTEXT.get() or {}), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def bind(**fields: Any) -> None:
    """Add `fields` to the innermost `bound` context (e.g. the run id once it is known)."""
    current = _CONTEXT.get()
    if current is not None:
        current.update(fields)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = [f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD]
        return f"{base} {' '.join(extras)}" if extras else base


def is_json() -> bool:
    """True when the log handler writes JSON lines (`setup(fmt="json")`)."""
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)


def format_in(path: str) -> str:
    """The `[logging] format` of the config file at `path`, read on its own: for the errors
    that come before the configuration loads. "text" when the file cannot be read."""
    try:
        with open(path, "rb") as f:
            section = tomllib.load(f).get("logging")
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return "text"
    return "json" if isinstance(section, dict) and section.get("format") == "json" else "text"


def announce(message: str, **fields: Any) -> None:
    """A line for the operator whatever the level (the daemon's banner): a JSON record
    through the log handler with the JSON format, else `message` as is on stderr."""
    handlers = logging.getLogger().handlers
    if not is_json():
        print(message, file=sys.stderr, flush=True)
        return
    record = logging.makeLogRecord(
        {"name": "mailmanager", "levelno": logging.INFO, "levelname": "INFO", "msg": message}
    )
    record.__dict__.update(fields)
    for handler in handlers:
        handler.handle(record)


def error(message: str, **fields: Any) -> None:
    """An error ending the process, as a log record (for the JSON format)."""
    logging.getLogger("mailmanager").error(message, extra={"action": "fatal", **fields})


def _uncaught(
    kind: type[BaseException], exc: BaseException, tb: TracebackType | None, thread: str = ""
) -> None:
    logging.getLogger("mailmanager").critical(
        "uncaught exception" + (f" in thread {thread}" if thread else ""),
        exc_info=(kind, exc, tb),
        extra={"action": "uncaught"},
    )


def _uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        name = args.thread.name if args.thread is not None else ""
        _uncaught(args.exc_type, args.exc_value, args.exc_traceback, name)


def setup(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
        logging.captureWarnings(True)
        sys.excepthook = _uncaught
        threading.excepthook = _uncaught_in_thread
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_ContextFilter())
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
