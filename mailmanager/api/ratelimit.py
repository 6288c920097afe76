"""How many requests each API token may make within a minute (`[api] requests_per_minute`).

A sliding window kept in memory, per token, in this process: the database has no table for
it (and a write per request would cost more than what it protects). So with several server
processes (`[web] workers`) each counts its own share, and a token may make up to
`requests_per_minute` times the number of processes; a restart forgets the counts. Requests
refused (429) are not counted, so a client that waits `Retry-After` seconds gets in.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW = 60.0  # seconds


class RateLimiter:
    """At most `limit` requests per key within any `WINDOW` seconds of `clock` (monotonic)."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self._hits: dict[int, deque[float]] = {}
        self._lock = threading.Lock()  # sync routes' dependencies run in a thread pool

    def hit(self, key: int) -> int:
        """Count a request of `key`: 0 when it may go on, else the seconds (1 or more) until
        it may (the `Retry-After` of its 429), the request then not being counted."""
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - WINDOW:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(1, math.ceil(hits[0] + WINDOW - now))
            hits.append(now)
            if len(self._hits) > 1000:  # tokens gone quiet: forget them
                self._forget(now)
            return 0

    def _forget(self, now: float) -> None:
        for key in [k for k, h in self._hits.items() if not h or h[-1] <= now - WINDOW]:
            del self._hits[key]
