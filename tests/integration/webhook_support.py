"""A real webhook receiver on 127.0.0.1 for the webhook tests.

It verifies every request's signature with `standardwebhooks` (the reference
implementation), answers 500 on purpose to the first `fail_first` attempts of each
`webhook-id` (or always, `fail_always`), and records per `webhook-id` the attempts it saw
and the bodies it answered 2xx to: "delivered twice" is two 2xx answers for one id.
"""

from __future__ import annotations

import json
import ssl
import threading
import time as clock
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import standardwebhooks


class Receiver:
    def __init__(
        self, secret: str = "", fail_first: int = 0, fail_always: bool = False,
        redirect_to: str = "", tls: tuple[Path, Path] | None = None,
    ) -> None:  # fmt: skip
        self.secret = secret
        self.fail_first, self.fail_always = fail_first, fail_always
        self.redirect_to = redirect_to  # answer 307 to there instead
        self.lock = threading.Lock()
        self.attempts: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()  # 2xx answers by webhook-id
        self.bodies: dict[str, Any] = {}
        self.bad_signatures = 0
        self.accepted_at: dict[str, list[float]] = defaultdict(list)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                data = self.rfile.read(length)
                code = receiver.handle(dict(self.headers.items()), data)
                self.send_response(code)
                if code == 307:
                    self.send_header("Location", receiver.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        if tls is not None:  # HTTPS only, with this certificate and key, as "localhost"
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.url = f"https://localhost:{self.port}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(self, headers: dict[str, str], data: bytes) -> int:
        try:
            body = standardwebhooks.Webhook(self.secret).verify(data, headers)
        except standardwebhooks.WebhookVerificationError:
            with self.lock:
                self.bad_signatures += 1
            return 400
        wid = {k.lower(): v for k, v in headers.items()}["webhook-id"]
        with self.lock:
            self.attempts[wid] += 1
            if self.redirect_to:
                return 307
            if self.fail_always or self.attempts[wid] <= self.fail_first:
                return 500
            self.accepted[wid] += 1
            self.bodies[wid] = body
            self.accepted_at[wid].append(clock.monotonic())
        return 204

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def types(self) -> Counter[str]:
        with self.lock:
            return Counter(b["type"] for b in self.bodies.values())

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.accepted)


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
