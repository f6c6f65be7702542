"""What one request may cost: its pixels, a worker slot, a deadline, and its client's presence.

The guarantees that trusted inference servers make (TorchServe's `job_queue_size`, Triton's
`max_queue_size`, KServe's `containerConcurrency`), here:

- `check_pixel_budget`: the decoded pixels of a whole request, read from the image headers
  before anything is decoded, against MNIST_CANVAS_MAX_REQUEST_PIXELS (413 past it).
- `WorkLimiter`: CPU-heavy work runs in a thread, at most `slots` at once (default one: the
  decoding holds the GIL, so more threads add no speed but take the event loop's turns at it;
  0 sizes it by the cores this process may use); a request waits for a slot at most
  `queue_wait_s`, behind at most `max_queue` others, and is answered 503 with Retry-After past
  either.
- `Work`: a request's deadline (MNIST_CANVAS_REQUEST_TIMEOUT_S, 504 past it) and whether its
  client is still connected; a batch checks it between items and stops when either fails.
- `RequestDeadline`: ASGI middleware that starts the deadline when the request arrives and
  holds the body's arrival to it (408), so a client that trickles a body cannot hold a request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

from anyio import to_thread
from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.inputs import InputError
from app.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")
DEADLINE_KEY = "mnist_canvas.deadline"
RETRY_AFTER_S = 1
#: Work of at most this cost (decoded pixels, or their equivalent) runs in a thread without
#: taking a slot: about ten 280x280 canvases, 10 ms. Cheap requests never queue behind heavy
#: ones, and a flood of them costs what it would inline on the event loop.
LIGHT_COST = 10 * 280 * 280


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def limiter_for(settings: Settings) -> WorkLimiter:
    """The app's limiter, sized by the settings (0 slots: one per usable core)."""
    return WorkLimiter(slots=settings.max_concurrent_work or usable_cores(),
                       max_queue=settings.max_queue, wait_s=settings.queue_wait_s)


class Busy(HTTPException):
    """Every worker is taken and the queue is full or moved too slowly: retry shortly."""

    def __init__(self, sentence: str) -> None:
        super().__init__(503, detail=sentence, headers={"Retry-After": str(RETRY_AFTER_S)})


class WorkStopped(HTTPException):
    """A request's work stopped before its end: deadline passed, client gone, or shutdown."""


class Work:
    """One request's deadline and whether its client is still connected; safe across threads."""

    def __init__(self, *, deadline: float, timeout_s: float,
                 stopping: Callable[[], bool] = lambda: False) -> None:
        self.deadline = deadline  # on the time.monotonic() clock
        self.timeout_s = timeout_s
        self.client_gone = threading.Event()
        self._stopping = stopping
        self.done = 0  # items finished, for the log line when a batch stops

    @classmethod
    def of(cls, request: Request, timeout_s: float,
           stopping: Callable[[], bool] = lambda: False) -> Work:
        """The request's work, its deadline started by RequestDeadline when it arrived."""
        state = request.scope.get("state") or {}
        deadline = state.get(DEADLINE_KEY, time.monotonic() + timeout_s)
        return cls(deadline=deadline, timeout_s=timeout_s, stopping=stopping)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def check(self) -> None:
        """Raise WorkStopped when the work should stop; call it between items."""
        if self.client_gone.is_set():
            raise WorkStopped(400, "The client closed the connection before the answer; the "
                                   "work was stopped.")
        if self._stopping():
            raise WorkStopped(503, "The server is shutting down; retry on another replica or "
                                   "in a few seconds.", headers={"Retry-After": "5"})
        if self.remaining() <= 0:
            raise deadline_passed(self.timeout_s)


def deadline_passed(timeout_s: float) -> WorkStopped:
    return WorkStopped(504, f"The request took longer than its {timeout_s:g} s deadline: send "
                            "fewer or smaller images (MNIST_CANVAS_REQUEST_TIMEOUT_S sets it).")


def check_pixel_budget(pixels: int, limit: int) -> None:
    """Refuse (413) a request whose images hold more than `limit` decoded pixels in all."""
    if pixels > limit:
        raise InputError(
            f"The images of this request hold {pixels:,} pixels in all; the limit is {limit:,} "
            "per request: send fewer or smaller images, or split the batch "
            "(MNIST_CANVAS_MAX_REQUEST_PIXELS sets the limit).", 413, "too_many_pixels")


class WorkLimiter:
    """At most `slots` heavy jobs at once, each in a thread; a bounded, short wait for a slot."""

    def __init__(self, *, slots: int, max_queue: int, wait_s: float) -> None:
        self.slots = slots
        self.max_queue = max_queue
        self.wait_s = wait_s
        self.waiting = 0
        self.running = 0
        self.refused = 0
        self._semaphore = asyncio.Semaphore(slots)

    async def run(self, work: Work, fn: Callable[..., T], *args: object,
                  cost: int | None = None) -> T:
        """fn(*args) in a worker thread once a slot is free; 503 (Busy) when none frees in time.

        Work whose `cost` is known and at most LIGHT_COST takes no slot. A slot is held until
        the thread ends, even when the request is cancelled: it counts the CPU actually in use,
        not the requests still waiting for an answer.
        """
        if cost is not None and cost <= LIGHT_COST:
            return await to_thread.run_sync(fn, *args)
        await self._acquire(work)
        self.running += 1
        try:
            return await to_thread.run_sync(fn, *args)
        finally:
            self.running -= 1
            self._semaphore.release()

    async def _acquire(self, work: Work) -> None:
        if not self._semaphore.locked():
            await self._semaphore.acquire()
            return
        if self.waiting >= self.max_queue:
            self.refused += 1
            raise Busy(f"The server is busy: {self.slots} requests are being worked on and "
                       f"{self.waiting} are waiting. Retry in {RETRY_AFTER_S} s.")
        wait_s = min(self.wait_s, work.remaining())
        self.waiting += 1
        try:
            async with asyncio.timeout(max(wait_s, 0.0)):
                await self._semaphore.acquire()
        except TimeoutError:
            self.refused += 1
            if work.remaining() <= 0:
                raise deadline_passed(work.timeout_s) from None
            raise Busy(f"The server is busy: no worker came free within {self.wait_s:g} s. "
                       f"Retry in {RETRY_AFTER_S} s.") from None
        finally:
            self.waiting -= 1


@asynccontextmanager
async def watch_client(request: Request, work: Work) -> AsyncIterator[None]:
    """While the block runs, mark `work` when the client disconnects (call after the body)."""

    async def watch() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                work.client_gone.set()
                return

    task = asyncio.create_task(watch())
    try:
        yield
    finally:
        task.cancel()


class RequestDeadline:
    """Start each request's deadline on arrival, and hold its body's arrival to it (408).

    uvicorn waits for a body as long as the client takes; a client that sends one byte a
    second would hold its request (and its memory) for as long as it likes.
    """

    def __init__(self, app: ASGIApp, *, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = time.monotonic() + self.timeout_s
        scope.setdefault("state", {})[DEADLINE_KEY] = deadline
        body_done = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                    message = await receive()
            except TimeoutError:
                logger.info("%s %s: body not complete within %g s", scope.get("method"),
                            scope.get("path"), self.timeout_s)
                raise HTTPException(408, detail=(
                    f"The request body did not arrive within {self.timeout_s:g} s: send it "
                    "at once.")) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await self.app(scope, timed_receive, send)
