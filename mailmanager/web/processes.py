"""Several server processes for `mailmanager web` (`[web] workers` > 1), each listening on
a socket of its own at the same address (`SO_REUSEPORT`), so the kernel spreads the new
connections over the processes.

uvicorn's own `workers` share one listening socket, and the process that wakes first
accepts every connection waiting: a client that opened its 32 connections at once had them
all served by one process while the other idled (`benchmarks/api.py`: 0.98 of 2 cores
used, 484 requests/s, against 735 when both took part). With a socket per process, the
kernel picks the socket by each connection's addresses and ports.

The parent checks that the address is free (a server already there would otherwise share
it, when it also uses `SO_REUSEPORT`), starts the processes (multiprocessing's "spawn", each
making its app with `web.app.for_worker`), starts again one that dies, and stops them all on
SIGTERM or SIGINT (each finishes the requests it has: uvicorn's graceful shutdown). A process
that fails before serving (uvicorn's exit status 3: a broken configuration or app) stops the
whole server with that error instead of being restarted in a loop.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from multiprocessing.process import BaseProcess
from typing import Any

from uvicorn.config import STARTUP_FAILURE  # a process that could not start serving

from mailmanager.errors import MailmanagerError

log = logging.getLogger(__name__)

STOP_WAIT = 30.0  # seconds a process gets to finish its requests before it is killed
QUICK_DEATHS = 5  # processes dying within QUICK seconds of their start, in a row: give up
QUICK = 10.0


class ServeError(RuntimeError):
    """The server cannot start: its address is taken, or its processes fail at start."""


def balanced() -> bool:
    """Whether the kernel spreads connections over sockets sharing a port: Linux's
    `SO_REUSEPORT` (on macOS and the BSDs the option exists, but one socket gets them all;
    those systems and Windows keep uvicorn's shared socket)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def listener(host: str, port: int, share: bool = True) -> socket.socket:
    """A TCP socket bound to `host`:`port`, not yet listening; with `share`, one of several
    (`SO_REUSEPORT`). Raises OSError (EADDRINUSE: the address is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if share:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def check_free(host: str, port: int) -> None:
    """Raises ServeError when something listens on `host`:`port` already."""
    try:
        listener(host, port, share=False).close()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(
                f"{host}:{port} is in use already (another `mailmanager web`?): stop it, or "
                "choose another port ([web] port, or --port)"
            ) from exc
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def _serve_one(host: str, port: int, options: dict[str, Any]) -> None:
    """A server process: its own socket, then uvicorn until SIGTERM or SIGINT."""
    import uvicorn

    config = uvicorn.Config(
        "mailmanager.web.app:for_worker", factory=True, host=host, port=port, **options
    )
    try:
        sock = listener(host, port)
    except OSError as exc:
        print(f"mailmanager web: cannot listen on {host}:{port}: {exc}", flush=True)
        raise SystemExit(STARTUP_FAILURE) from exc
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except MailmanagerError as exc:  # its configuration or database, read again here
        print(f"mailmanager web: a server process cannot start: {exc}", flush=True)
        raise SystemExit(STARTUP_FAILURE) from None


class Supervisor:
    """`count` server processes on `host`:`port` (module docstring); `run` returns when
    they have stopped."""

    def __init__(self, host: str, port: int, count: int, options: dict[str, Any]) -> None:
        self.host, self.port, self.count, self.options = host, port, count, options
        self.processes: list[BaseProcess] = []
        self.started: list[float] = []
        self.stopping = threading.Event()
        self.quick_deaths = 0

    def _start(self) -> tuple[BaseProcess, float]:
        spawn = multiprocessing.get_context("spawn")
        process = spawn.Process(
            target=_serve_one, args=(self.host, self.port, self.options), daemon=False
        )
        process.start()
        return process, time.monotonic()

    def _stop_signal(self, signum: int, _frame: object) -> None:
        self.stopping.set()

    def run(self) -> None:
        """Start the processes, keep them running until SIGTERM or SIGINT, stop them.
        Raises ServeError when the address is taken or the processes fail at start."""
        check_free(self.host, self.port)
        previous = {
            sig: signal.signal(sig, self._stop_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            for _ in range(self.count):
                process, at = self._start()
                self.processes.append(process)
                self.started.append(at)
            while not self.stopping.wait(0.5):
                self._replace_dead()
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _replace_dead(self) -> None:
        for n, process in enumerate(self.processes):
            if process.is_alive() or self.stopping.is_set():
                continue
            process.join()
            lived = time.monotonic() - self.started[n]
            if process.exitcode == STARTUP_FAILURE:
                raise ServeError("a server process could not start: see its message above")
            self.quick_deaths = self.quick_deaths + 1 if lived < QUICK else 0
            if self.quick_deaths >= QUICK_DEATHS:
                raise ServeError(
                    f"server processes keep dying within {QUICK:.0f} s of their start "
                    f"(last exit status {process.exitcode}): see the messages above"
                )
            log.warning(
                "web server process %s ended (exit status %s); starting another",
                process.pid,
                process.exitcode,
            )
            self.processes[n], self.started[n] = self._start()

    def _stop_all(self) -> None:
        for process in self.processes:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
