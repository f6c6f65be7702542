"""How late the event loop runs: the wait every request, health checks included, has before
the loop gets to it.

A task sleeps `interval_s` again and again and records how much later than asked it woke, as
the histogram `mnist_canvas_event_loop_lag_seconds`. Work that holds the loop (or Python's GIL,
from a worker thread) shows there as it happens, whatever the clients see.
"""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import Histogram

from app.metrics import NAMESPACE

LAG = Histogram(
    "event_loop_lag_seconds",
    "How much later than asked the event loop woke from a short sleep (sampled every "
    "MNIST_CANVAS_LOOP_LAG_INTERVAL_S).",
    namespace=NAMESPACE,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


class LoopLagProbe:
    """Samples the running loop's lag into LAG; `start` inside the loop, `stop` to end it."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.worst = 0.0  # the largest lag seen, in seconds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.interval_s > 0:
            self._task = asyncio.get_running_loop().create_task(self._sample())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            lag = max(0.0, loop.time() - asked)
            self.worst = max(self.worst, lag)
            LAG.observe(lag)
