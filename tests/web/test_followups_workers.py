"""`[web] workers = 2`: `mailmanager web` serves from two processes (uvicorn workers, each
app made by `web.app.for_worker`) and nothing a person does depends on which one answers:
the sign-in link asked from one works on the other, a session and its CSRF token are the
database's, and a follow-up done through one is gone from the list the other shows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from tests.web.support import WebServer, csrf_of


def _workers(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return children


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def test_two_server_processes_share_sessions_and_follow_ups(
    start_web_server: Callable[..., WebServer],
) -> None:
    server = start_web_server("workers = 2")
    assert server.proc is not None
    workers = [  # uvicorn starts them with multiprocessing's "spawn"
        pid for pid in _workers(server.proc.pid) if b"spawn_main" in _cmdline(pid)
    ]
    assert len(workers) == 2, server.output()
    alice = server.sign_in("alice@example.com")
    cookies = dict(alice.cookies)
    rid = server.template.alice_reminders[0]
    # A new connection per request: the kernel spreads them over both processes.
    for _ in range(12):
        with httpx.Client(base_url=server.url, cookies=cookies) as fresh:
            page = fresh.get("/followups")
            assert page.status_code == 200 and f'id="followup-{rid}"' in page.text
    with httpx.Client(base_url=server.url, cookies=cookies) as one:
        token = csrf_of(one.get("/followups").text)
    with httpx.Client(base_url=server.url, cookies=cookies) as other:
        done = other.post("/followups", data={"csrf": token, "act": f"done:{rid}"})
        assert done.status_code == 303
    for _ in range(6):
        with httpx.Client(base_url=server.url, cookies=cookies) as fresh:
            assert f'id="followup-{rid}"' not in fresh.get("/followups").text
    alice.close()
