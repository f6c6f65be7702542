"""A token bucket per key (client id or remote address), in memory, per worker process.

`limit` corrections a minute, refilled continuously; `hit` answers how many seconds to wait
when the bucket is empty. Old keys are dropped once the table grows, so a flood of random ids
costs bounded memory. With several workers each keeps its own buckets (a client may reach
`limit` per worker): enough to stop a flood without a shared store.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

MAX_KEYS = 10_000


class RateLimiter:
    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def hit(self, key: str) -> int | None:
        """Take one token for `key`; None if allowed, else whole seconds until one is free."""
        if not self.enabled:
            return None
        now = self.clock()
        with self._lock:
            tokens, updated = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - updated) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > MAX_KEYS:
                    self._prune(now)
                return None
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))

    def _prune(self, now: float) -> None:
        """Forget buckets that have refilled completely (they hold no information)."""
        full = self.capacity / self.rate
        for key in [k for k, (_, t) in self._buckets.items() if now - t >= full]:
            del self._buckets[key]
        if len(self._buckets) > MAX_KEYS:  # still too many: drop the oldest half
            for key, _ in sorted(self._buckets.items(), key=lambda kv: kv[1][1])[:MAX_KEYS // 2]:
                del self._buckets[key]
