"""The graph connector's fast paths: batched downloads and the http.client transport."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from connectors.graph.connector import GraphConnector
from connectors.graph.http import _Connections
from mailmanager import spi


def _bare(concurrency: int) -> GraphConnector:
    conn = object.__new__(GraphConnector)
    conn.concurrency, conn._pool, conn._lock = concurrency, None, threading.Lock()
    return conn


@pytest.mark.parametrize("concurrency", [1, 4])
def test_download_keeps_order(concurrency: int, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = _bare(concurrency)

    def raw(pid: str, folder_id: str) -> bytes:
        time.sleep(0.001 * (int(pid) % 3))
        return f"{folder_id}:{pid}".encode()

    monkeypatch.setattr(conn, "_raw", raw)
    ids = [str(i) for i in range(50)]
    assert conn._download(ids, "f") == [f"f:{i}".encode() for i in ids]
    assert conn._download([], "f") == []


def test_download_raises_first_failure_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = _bare(4)

    def raw(pid: str, folder_id: str) -> bytes:
        if pid == "3":
            time.sleep(0.05)
            raise spi.TransientError("three")
        if pid == "5":
            raise spi.TransientError("five")
        return b"x"

    monkeypatch.setattr(conn, "_raw", raw)
    with pytest.raises(spi.TransientError, match="three"):
        conn._download([str(i) for i in range(40)], "f")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = self.path.startswith("/drop")  # silently, keep-alive said

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_connections_reuse_and_recover_from_a_closed_keepalive(
    server: ThreadingHTTPServer,
) -> None:
    import ssl

    port = server.server_address[1]
    pool = _Connections(f"http://127.0.0.1:{port}", ssl.create_default_context(), 5.0)
    assert pool.get("/a?x=1", {}).content == b"/a?x=1"
    assert pool.get("/drop", {}).content == b"/drop"  # the server then closes it
    assert len(pool._idle) == 1
    time.sleep(0.05)
    assert pool.get("/b", {}).content == b"/b"
    assert len(pool._idle) == 1
    pool.close()
    assert pool._idle == []
