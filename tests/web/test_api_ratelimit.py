"""`api.ratelimit.RateLimiter` on a clock the test moves: a sliding window of a minute per
token, the `Retry-After` it gives, refused requests not counted, quiet tokens forgotten."""

from __future__ import annotations

from mailmanager.api.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_sliding_minute_per_token() -> None:
    clock = Clock()
    limiter = RateLimiter(3, clock)
    assert [limiter.hit(1) for _ in range(3)] == [0, 0, 0]
    clock.now += 20.5
    assert limiter.hit(1) == 40  # the first request leaves the window 39.5 s from now
    assert limiter.hit(2) == 0  # another token has its own count
    clock.now += 39.25
    assert limiter.hit(1) == 1  # never "0 seconds": at least 1
    clock.now += 0.25
    assert limiter.hit(1) == 0  # the first three left the window; refusals were not counted
    assert limiter.hit(1) == 0 and limiter.hit(1) == 0
    assert limiter.hit(1) == 60  # three again at this instant: wait a whole minute


def test_quiet_tokens_are_forgotten() -> None:
    clock = Clock()
    limiter = RateLimiter(1, clock)
    for key in range(1001):
        limiter.hit(key)
    clock.now += 61
    limiter.hit(5000)
    assert limiter.hit(5000) == 60
    assert len(limiter._hits) == 1
