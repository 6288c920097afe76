"""`[web] workers = 2` (`web.processes`): each server process listens on a socket of its own
at the same address, so a burst of connections is spread over both (with uvicorn's one
shared socket, the process that woke first took them all); a killed process is replaced;
SIGTERM stops them all; an address in use is refused with a message that says so.

Which process holds which connection is read from /proc (the sockets each process has
open, and the kernel's TCP table), not from the answers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.web.support import WebServer, _command, _env

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "SO_REUSEPORT") or not Path("/proc/net/tcp").exists(),
    reason="needs Linux (/proc and SO_REUSEPORT)",
)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _workers(server: WebServer) -> list[int]:
    """The server processes (multiprocessing's "spawn" children of `mailmanager web`)."""
    assert server.proc is not None
    return [
        pid
        for pid in _children(server.proc.pid)
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def _tcp(port: int) -> dict[int, str]:
    """The kernel's IPv4 TCP sockets on local port `port`: inode → state ("0A" listening,
    "01" established)."""
    out = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], int(fields[9])
        if int(local.rsplit(":", 1)[1], 16) == port and inode:
            out[inode] = state
    return out


def _sockets_of(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _states(server: WebServer, port: int) -> dict[int, list[str]]:
    """Per server process: the states of its sockets on `port`."""
    table = _tcp(port)
    return {
        pid: sorted(table[i] for i in _sockets_of(pid) if i in table) for pid in _workers(server)
    }


def _port(server: WebServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _wait(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def _both_listening(server: WebServer) -> bool:
    states = _states(server, _port(server))
    return len(states) == 2 and all(s.count("0A") == 1 for s in states.values())


def test_a_burst_of_connections_is_spread_over_both_processes(
    start_web_server: Callable[..., WebServer],
) -> None:
    server = start_web_server("workers = 2")
    port = _port(server)
    _wait(lambda: _both_listening(server), "each process listens on a socket of its own")
    listening = {
        pid: [i for i in _sockets_of(pid) if _tcp(port).get(i) == "0A"] for pid in _workers(server)
    }
    assert len({i for found in listening.values() for i in found}) == 2, listening
    # The connections wait in the kernel while both processes are stopped; then one
    # process runs before the other (as when the other is busy): with one shared socket, it
    # took every waiting connection; with a socket each, half of them wait for the other.
    first, second = _workers(server)
    for pid in (first, second):
        os.kill(pid, signal.SIGSTOP)
    try:
        burst = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
    finally:
        os.kill(first, signal.SIGCONT)
        time.sleep(0.5)
        os.kill(second, signal.SIGCONT)
    try:
        _wait(
            lambda: sum(s.count("01") for s in _states(server, port).values()) == 64,
            "the server processes accepted the 64 connections",
        )
        held = {pid: s.count("01") for pid, s in _states(server, port).items()}
        # The kernel picks a socket by each connection's ports: some 32 each. A count under
        # 8 on either has a chance of 1 in 10^11.
        assert all(n >= 8 for n in held.values()), held
        for sock in burst[:3]:  # and each connection is served
            sock.sendall(b"GET /signin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert sock.recv(64).startswith(b"HTTP/1.1 200")
    finally:
        for sock in burst:
            sock.close()


def test_a_killed_process_is_replaced_and_sigterm_stops_them_all(
    start_web_server: Callable[..., WebServer],
) -> None:
    server = start_web_server("workers = 2")
    _wait(lambda: _both_listening(server), "both processes listen")
    first, second = _workers(server)
    os.kill(first, signal.SIGKILL)
    _wait(
        lambda: first not in _workers(server) and _both_listening(server),
        "a new process replaces the killed one",
    )
    assert second in _workers(server)
    for _ in range(10):  # new connections, whichever process takes them
        assert httpx.get(f"{server.url}/signin", timeout=10).status_code == 200
    assert server.proc is not None
    workers = _workers(server)
    server.proc.send_signal(signal.SIGTERM)  # the parent alone, as a service manager does
    assert server.proc.wait(timeout=40) == 0, server.output()
    for pid in workers:
        _wait(lambda pid=pid: not Path(f"/proc/{pid}").exists(), f"process {pid} ended")


def test_an_address_in_use_is_refused_with_what_to_do(
    start_web_server: Callable[..., WebServer],
) -> None:
    server = start_web_server("workers = 2")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            _command(server.config, "web", "--port", str(port)),
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(),
        )
    assert done.returncode == 1, done
    assert f"127.0.0.1:{port} is in use already" in done.stderr, done.stderr
    assert "--port" in done.stderr


def test_processes_that_cannot_start_stop_the_server_with_the_reason(
    start_web_server: Callable[..., WebServer],
) -> None:
    server = start_web_server("workers = 2")
    _wait(lambda: _both_listening(server), "both processes listen")
    assert server.proc is not None
    server.config.rename(server.config.with_suffix(".moved"))  # a new process cannot start
    first, second = _workers(server)
    os.kill(first, signal.SIGKILL)
    assert server.proc.wait(timeout=60) == 1, server.output()  # not restarted in a loop
    out = server.output()
    assert "a server process cannot start" in out and "file not found" in out, out
    assert "a server process could not start: see its message above" in out, out
    assert "Traceback" not in out, out
    _wait(lambda: not Path(f"/proc/{second}").exists(), "the other process was stopped")
