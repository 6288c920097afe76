"""Push in daemon mode: watchers that ask a mailbox's sync to run as soon as the provider
reports a change (IMAP IDLE on INBOX), between the timer's passes.

A connector may offer the optional extra `wait_for_changes(timeout) -> bool` (not part of
`spi.Connector`): block until the provider reports a change (True) or `timeout` passes
(False), raising `spi.TransientError` / `spi.AuthError`. The IMAP connector implements it
with `idle = true` (on a second connection of its own) and returns False at once without.

`start_watchers` starts one thread per enabled mailbox whose connector has the method and
does not declare an `idle` option set to false. Each thread owns its connector and loops:

- `wait_for_changes(WAIT_SLICE)`; True -> `wake(mailbox)` (the daemon runs that sync now).
  The slice is short so that the thread sees `stop` within seconds: the connector's
  blocking wait cannot be interrupted safely from another thread (closing it would write
  LOGOUT on a socket another thread reads). Re-issuing IDLE every slice also keeps well
  under RFC 2177's 29-minute limit. Keepalives such as Dovecot's "* OK Still here" (every
  2 min by default) are not changes: the IMAP connector keeps waiting through them.
  Short waits rely on the connector counting what the server reports as a wait ends (the
  responses to IMAP's DONE): a change reported only there would otherwise be lost.
- False at once (under half the slice): the connector does not watch (e.g. idle off): the
  thread ends.
- `TransientError` or another `ConnectorError`: log, drop the connection, back off (5 s
  doubling to 5 min, or the provider's `retry_after`) and call again, which reconnects.
  Once a wait succeeds again the mailbox is synced once, for what arrived meanwhile.
- `AuthError`, `UnsupportedError`, a configuration error: logged once at error level; the
  thread ends (the timer's syncs go on and record the error on the mailbox).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, cast

from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config as config_mod
from mailmanager import registry, spi
from mailmanager.db import tokens

log = logging.getLogger(__name__)

WAIT_SLICE = 5.0  # seconds per wait_for_changes call: how late a watcher may see `stop`
BACKOFF_MIN, BACKOFF_MAX = 5.0, 300.0
JOIN_TIMEOUT = 10.0
MIN_ROUND = 1.0  # at most one wake per second and mailbox


class Watchable(Protocol):
    """A connector with the optional `wait_for_changes` extra (see the module docstring)."""

    def wait_for_changes(self, timeout: float) -> bool: ...

    def close(self) -> None: ...


@dataclass
class Watcher:
    """One mailbox's watch thread; it owns `connector` and closes it when it ends."""

    mailbox: str
    connector: Watchable
    wake: Callable[[str], None]
    stop: threading.Event
    slice: float = WAIT_SLICE
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self.run, name=f"idle:{self.mailbox}", daemon=True)

    def _log(self, level: int, msg: str, action: str, **extra: object) -> None:
        log.log(level, msg, extra={"action": action, "mailbox": self.mailbox, **extra})

    def run(self) -> None:
        backoff, resync = BACKOFF_MIN, False
        self._log(logging.INFO, "watching for changes", "watch_start")
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    changed = self.connector.wait_for_changes(self.slice)
                except spi.AuthError as exc:
                    self._log(logging.ERROR, "watch stopped", "watch_auth_error", error=str(exc))
                    return
                except spi.UnsupportedError as exc:
                    self._log(logging.ERROR, "watch stopped", "watch_unsupported", error=str(exc))
                    return
                except spi.ConnectorError as exc:
                    self.connector.close()  # a fresh connection on the next call
                    retry_after = getattr(exc, "retry_after", None)
                    delay = max(backoff, float(retry_after or 0))
                    action = (
                        "watch_transient" if isinstance(exc, spi.TransientError) else "watch_error"
                    )
                    self._log(
                        logging.WARNING,
                        "watch failed, retrying",
                        action,
                        error=str(exc),
                        retry_in=round(delay, 1),
                    )
                    backoff, resync = min(backoff * 2, BACKOFF_MAX), True
                    self.stop.wait(delay)
                    continue
                elapsed = time.monotonic() - started
                if not changed and elapsed < self.slice / 2:
                    self._log(logging.INFO, "connector does not watch", "watch_unsupported")
                    return
                backoff = BACKOFF_MIN
                if changed or resync:
                    resync = False
                    self._log(logging.DEBUG, "change reported", "watch_change")
                    self._wake()
                    # A server that answers every wait at once must not make us spin.
                    self.stop.wait(max(0.0, MIN_ROUND - elapsed))
        except spi.ConfigError as exc:
            self._log(logging.ERROR, "watch stopped", "watch_config_error", error=str(exc))
        except Exception:  # the thread boundary: never let a watcher die silently
            log.exception("watch crashed", extra={"action": "watch_crash", "mailbox": self.mailbox})
        finally:
            self.connector.close()
            self._log(logging.INFO, "watch ended", "watch_stop")

    def _wake(self) -> None:
        try:
            self.wake(self.mailbox)
        except Exception:  # e.g. the scheduler is shutting down: the timer still syncs
            log.exception(
                "cannot run the sync now",
                extra={"action": "watch_wake_failed", "mailbox": self.mailbox},
            )


def may_watch(mb: config_mod.MailboxConfig) -> bool:
    """True when the mailbox is enabled and its connector has `wait_for_changes` and no
    `idle` option set to false (the watch itself may still fail; see `watchable`)."""
    try:
        cls = registry.load(mb.connector, key=f"mailboxes.{mb.name}.connector")
    except spi.ConfigError:
        return False
    if not mb.enabled or not callable(getattr(cls, "wait_for_changes", None)):
        return False
    return not any(o.name == "idle" for o in cls.options) or bool(mb.options.get("idle"))


def watchable(
    cfg: config_mod.Config, mb: config_mod.MailboxConfig, factory: sessionmaker[Session]
) -> Watchable | None:
    """The mailbox's connector, built as a sync builds it, when it may watch; else None.

    Raises `spi.ConfigError` / `config.ConfigFileError` as building it for a sync would."""
    cls = registry.load(mb.connector, key=f"mailboxes.{mb.name}.connector")
    if not callable(getattr(cls, "wait_for_changes", None)):
        return None
    cc = tokens.connector_config(cfg, mb, factory)
    if any(o.name == "idle" for o in cls.options) and not cc.values.get("idle"):
        return None  # the connector's own switch is off: no thread at all
    return cast(Watchable, cls(cc))


def start_watchers(
    cfg: config_mod.Config,
    factory: sessionmaker[Session],
    stop: threading.Event,
    wake: Callable[[str], None],
) -> list[Watcher]:
    """Start a watcher for every enabled mailbox that can watch (see the module docstring).

    A mailbox whose connector cannot be built is logged once and left to the timer, whose
    sync reports the same error on the mailbox."""
    watchers = []
    for mb in cfg.mailboxes:
        if not mb.enabled:
            continue
        try:
            connector = watchable(cfg, mb, factory)
        except (spi.ConfigError, config_mod.ConfigFileError) as exc:
            log.error(
                "cannot watch mailbox",
                extra={"action": "watch_config_error", "mailbox": mb.name, "error": str(exc)},
            )
            continue
        except Exception:  # a broken connector must not stop the daemon: the timer syncs
            log.exception(
                "cannot watch mailbox", extra={"action": "watch_crash", "mailbox": mb.name}
            )
            continue
        if connector is not None:
            watcher = Watcher(mb.name, connector, wake, stop)
            watcher.thread.start()
            watchers.append(watcher)
    return watchers


def join_watchers(watchers: list[Watcher], timeout: float = JOIN_TIMEOUT) -> None:
    """Wait for the watchers to end (`stop` must be set) and close their connectors.

    A thread still blocked after `timeout` (e.g. in a slow connect) is left to die with the
    process (it is a daemon thread); its connector is not closed under its feet."""
    deadline = time.monotonic() + timeout
    for w in watchers:
        w.thread.join(max(0.0, deadline - time.monotonic()))
        if w.thread.is_alive():
            log.warning(
                "watcher did not stop", extra={"action": "watch_stuck", "mailbox": w.mailbox}
            )
        else:
            w.connector.close()  # the thread closed it; closing twice is allowed
