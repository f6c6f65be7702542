"""The per-client token bucket, on a clock the test controls."""

from __future__ import annotations

from app.ratelimit import MAX_KEYS, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_allows_the_limit_then_says_how_long_to_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(6, clock=clock)  # one token every 10 s
    assert [limiter.hit("a") for _ in range(6)] == [None] * 6
    assert limiter.hit("a") == 10
    clock.now += 4
    assert limiter.hit("a") == 6
    clock.now += 6
    assert limiter.hit("a") is None
    assert limiter.hit("b") is None  # buckets are per key


def test_zero_turns_it_off() -> None:
    limiter = RateLimiter(0)
    assert not limiter.enabled
    assert all(limiter.hit("a") is None for _ in range(1000))


def test_memory_stays_bounded_under_random_ids() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock=clock)
    for i in range(3 * MAX_KEYS):
        limiter.hit(f"id-{i}")
        clock.now += 0.001
    assert len(limiter._buckets) <= MAX_KEYS + 1
