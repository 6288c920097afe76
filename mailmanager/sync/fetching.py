"""The fetch side of a sync: the connector and the parser, feeding the writer batch by batch.

The writer (`sync.Syncer`) stores batches in the database; everything before that — asking
the provider, reading its answers, parsing the raw bytes — happens here, in one of two ways:

- `workers = 0`: in the writer's process. A fetcher thread runs one batch ahead; the writer
  thread parses. Simple, slow (one core), for debugging and for connectors whose state must
  stay in this process.
- `workers >= 1` (the default): the first batch of each folder in the writer's process
  (a sync with little or nothing new, the daemon's usual case, forks nothing), then, once a
  folder has more to give, in a *fetch worker*: a child process forked for the rest of the
  sync. Its fetcher thread reads batches from the provider while its main thread parses the
  previous one (or hands it to `workers - 1` parse processes) and sends batch + results
  down a pipe; the writer's process only unpickles and stores. Python threads share one
  core, processes do not: with the provider's reading and parsing out of the writer's
  process, fetching, parsing and storing each get a core.

The child uses the connector object it inherits from the fork (built by the writer's
process, so configuration errors still surface there, and closed there before the fork, so
the child connects afresh and no connection is shared) and drives it
folder by folder on the writer's command: `folders`, then `fetch` (folder, cursor) for each
folder to sync. It answers a `fetch` with batches and `end`, or with the first error, which
the writer re-raises. At most a few batches are in flight (the fetcher's queue holds one,
the pipe blocks until the writer reads), so memory stays bounded. When the writer stops
early (shutdown, a failed write) it kills the child; the next sync starts a new one.

The child dies with the writer: on Linux the kernel sends it SIGKILL when the writer's
thread that forked it ends (`prctl(PR_SET_PDEATHSIG)`), elsewhere a watchdog thread sees
the writer's pid go. It also never holds the writer's database connections: the sockets it
inherits (the connection pool's, other threads' IMAP connections) are pointed at /dev/null
as it starts, so a `kill -9` of the writer closes them at the server at once instead of
leaving its transaction "idle in transaction" while the child lives (see `forked`).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import queue
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from mailmanager import spi
from mailmanager.mail import parsing
from mailmanager.sync import forked

log = logging.getLogger(__name__)


@dataclass
class ParsedBatch:
    """One batch from the connector with the parse result of each of its messages."""

    batch: spi.ChangeBatch
    results: list[Any]  # parsing.ParsedMessage | parsing.Quarantined, one per message
    rescanned: bool = False  # the stored cursor had expired: this is a full scan


_Item = tuple[bytes, datetime | None, int | None, str | None]


def _items(batch: spi.ChangeBatch) -> list[_Item]:
    """(raw, provider date, whole size when the connector fetched the headers only, the
    connector's problem with the item)."""
    return [
        (m.raw, m.internal_date, (m.size or len(m.raw)) if m.truncated else None, m.problem)
        for m in batch.messages
    ]


def _parse_many(items: Sequence[_Item], max_size: int | None = None) -> list[Any]:
    """Parse each item; a message over `max_size` bytes is read from its headers only; an
    item the connector had a problem with is quarantined with that reason."""
    return [
        parsing.parse(
            raw, provider_date=date, max_size=max_size, truncated_size=whole, problem=problem
        )
        for raw, date, whole, problem in items
    ]


class _Parser:
    """Parses batches in `workers` processes, or when asked for the result if `workers` is 0
    (so the thread that wants the result does the work, not the fetcher thread)."""

    def __init__(self, workers: int, max_size: int | None = None) -> None:
        self.max_size = max_size
        self.pool: cf.ProcessPoolExecutor | None = None
        if workers > 0:
            ctx = multiprocessing.get_context("fork")
            self.pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx)

    def submit(self, batch: spi.ChangeBatch) -> Callable[[], list[Any]]:
        items = _items(batch)
        if self.pool is None or not items:
            return lambda: _parse_many(items, self.max_size)
        return self.pool.submit(_parse_many, items, self.max_size).result

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def _fetch(
    connector: spi.Connector, remote: spi.RemoteFolder, cursor: str | None, limit: int
) -> tuple[spi.ChangeBatch, bool]:
    """The next batch, and True when the stored cursor had expired (a full scan restarts)."""
    try:
        return connector.fetch_changes(remote, cursor, limit), False
    except spi.CursorExpiredError:
        if cursor is None:
            raise
        log.info(
            "cursor expired, rescanning",
            extra={"action": "cursor_expired", "folder": remote.name},
        )
        return connector.fetch_changes(remote, None, limit), True


def _pipeline(
    connector: spi.Connector,
    remote: spi.RemoteFolder,
    cursor: str | None,
    limit: int,
    parser: _Parser,
    stop: threading.Event,
) -> Iterator[ParsedBatch]:
    """The folder's batches from `cursor` on, parsed, in order; a thread fetches ahead."""
    pipe: queue.Queue[tuple[spi.ChangeBatch, Callable[[], list[Any]], bool] | BaseException | None]
    pipe = queue.Queue(maxsize=1)
    abort = threading.Event()

    def put(item: Any) -> bool:
        while not abort.is_set():
            try:
                pipe.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        cur, rescanned = cursor, False
        try:
            while not abort.is_set():
                batch, expired = _fetch(connector, remote, cur, limit)
                rescanned = rescanned or expired
                if not put((batch, parser.submit(batch), rescanned)):
                    return
                if not batch.more or stop.is_set():
                    break
                cur = batch.cursor
            put(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    fetcher = threading.Thread(target=produce, name=f"fetch:{remote.name}", daemon=True)
    fetcher.start()
    try:
        while True:
            item = pipe.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            batch, result, rescanned = item
            yield ParsedBatch(batch, result(), rescanned)
    finally:
        abort.set()
        fetcher.join()


class FetchSide:
    """See the module docstring. Use `open_fetch_side`; always `close` it (the connector is
    the caller's to close)."""

    def folders(self) -> list[spi.RemoteFolder]:
        raise NotImplementedError

    def batches(self, remote: spi.RemoteFolder, cursor: str | None) -> Iterator[ParsedBatch]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _Local(FetchSide):
    def __init__(
        self,
        connector: spi.Connector,
        limit: int,
        stop: threading.Event,
        max_size: int | None = None,
    ) -> None:
        self.connector, self.limit, self.stop = connector, limit, stop
        self.parser = _Parser(0, max_size)

    def folders(self) -> list[spi.RemoteFolder]:
        return list(self.connector.list_folders())

    def batches(self, remote: spi.RemoteFolder, cursor: str | None) -> Iterator[ParsedBatch]:
        return _pipeline(self.connector, remote, cursor, self.limit, self.parser, self.stop)

    def close(self) -> None:
        self.parser.close()


def _portable(exc: BaseException) -> BaseException:
    """`exc` if it survives pickling, else its nearest `spi` error (or a RuntimeError) with
    the same text: the writer handles those alike."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        text = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, spi.TransientError):
            return spi.TransientError(text, exc.retry_after)
        for kind in (spi.AuthError, spi.CursorExpiredError, spi.UnsupportedError):
            if isinstance(exc, kind):
                return kind(text)
        if isinstance(exc, spi.ConnectorError):
            return spi.ConnectorError(text)
        return RuntimeError(text)


_INHERITED: list[Any] = []


def _serve(
    conn: multiprocessing.connection.Connection,
    connector: spi.Connector,
    limit: int,
    parse_workers: int,
    engine: Engine | None,
    max_size: int | None = None,
    parent: int | None = None,
) -> None:
    """The fetch worker's main loop (in the child process)."""
    if parent is not None:
        forked.die_with(parent)
    forked.drop_inherited_sockets(conn.fileno())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the writer's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if engine is not None:
        # The parent's pooled connections are not ours to use, nor to close: a SQLite
        # connection closed here could touch the parent's locks and WAL. Keep the old pool
        # referenced (never collected; the child ends with os._exit) and use a new one.
        _INHERITED.append(engine.pool)
        engine.dispose(close=False)
    parser = _Parser(parse_workers, max_size)
    try:
        while True:
            command = conn.recv()
            if command[0] == "folders":
                conn.send(("folders", list(connector.list_folders())))
            elif command[0] == "fetch":
                _, remote, cursor = command
                for item in _pipeline(connector, remote, cursor, limit, parser, threading.Event()):
                    conn.send(("batch", item))
                conn.send(("end",))
            else:
                return
    except (EOFError, BrokenPipeError):
        return  # the writer is gone
    except BaseException as exc:
        if not isinstance(exc, spi.ConnectorError):
            log.error("fetch worker failed", exc_info=True, extra={"action": "fetch_failed"})
        with contextlib.suppress(OSError, ValueError):
            conn.send(("error", _portable(exc)))
    finally:
        parser.close()
        connector.close()


class _Worker(FetchSide):
    def __init__(
        self,
        connector: spi.Connector,
        limit: int,
        parse_workers: int,
        engine: Engine | None,
        max_size: int | None = None,
    ) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_serve,
            args=(child, connector, limit, parse_workers, engine, max_size, os.getpid()),
            name="mailmanager-fetch",
            daemon=True,
        )
        self.process.start()
        child.close()

    def _receive(self) -> tuple[Any, ...]:
        try:
            message: tuple[Any, ...] = self.conn.recv()
        except EOFError:
            self.process.join(timeout=5)
            code = self.process.exitcode
            raise spi.ConnectorError(
                f"the fetch worker process ended unexpectedly (exit code {code})"
            ) from None
        if message[0] == "error":
            raise message[1]
        return message

    def folders(self) -> list[spi.RemoteFolder]:
        self.conn.send(("folders",))
        found: list[spi.RemoteFolder] = self._receive()[1]
        return found

    def batches(self, remote: spi.RemoteFolder, cursor: str | None) -> Iterator[ParsedBatch]:
        self.conn.send(("fetch", remote, cursor))
        done = False
        try:
            while True:
                message = self._receive()
                if message[0] == "end":
                    done = True
                    return
                yield message[1]
        finally:
            if not done:  # stopped early: the child may be mid-folder, start afresh
                self._kill()

    def _kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(("quit",))
        self.process.join(timeout=10)
        self._kill()
        self.conn.close()


class _Auto(FetchSide):
    """In this process until a folder has more than one batch to give, then in a fetch
    worker: a sync with nothing or little new (the daemon's usual case) forks nothing."""

    def __init__(
        self,
        connector: spi.Connector,
        limit: int,
        parse_workers: int,
        stop: threading.Event,
        engine: Engine | None,
        max_size: int | None = None,
    ) -> None:
        self.connector, self.limit, self.stop = connector, limit, stop
        self.parse_workers, self.engine, self.max_size = parse_workers, engine, max_size
        self.worker: _Worker | None = None

    def folders(self) -> list[spi.RemoteFolder]:
        if self.worker is not None:
            return self.worker.folders()
        return list(self.connector.list_folders())

    def batches(self, remote: spi.RemoteFolder, cursor: str | None) -> Iterator[ParsedBatch]:
        if self.worker is not None:
            yield from self.worker.batches(remote, cursor)
            return
        batch, rescanned = _fetch(self.connector, remote, cursor, self.limit)
        yield ParsedBatch(batch, _parse_many(_items(batch), self.max_size), rescanned)
        if not batch.more or self.stop.is_set():
            return
        # A big folder: from here on a worker fetches and parses. It connects afresh;
        # this process's connection is closed first, so the two never share one.
        self.connector.close()
        self.worker = _Worker(
            self.connector, self.limit, self.parse_workers, self.engine, self.max_size
        )
        for item in self.worker.batches(remote, batch.cursor):
            yield ParsedBatch(item.batch, item.results, item.rescanned or rescanned)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()


def open_fetch_side(
    connector: spi.Connector,
    limit: int,
    workers: int,
    stop: threading.Event,
    engine: Engine | None = None,
    max_size: int | None = None,
) -> FetchSide:
    """The fetch side for one sync: when `workers` >= 1, in this process for the first batch
    of each folder and in a fetch worker process (with `workers - 1` more processes parsing)
    once a folder has more to give; else all in this process. `engine` is the writer's, for
    the child to drop its inherited connections (a connector's token store may use it).
    A message over `max_size` bytes is parsed from its headers only (`parsing.parse`)."""
    if workers <= 0:
        return _Local(connector, limit, stop, max_size)
    return _Auto(connector, limit, workers - 1, stop, engine, max_size)
