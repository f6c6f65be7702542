"""What one request may cost: its pixels, a worker slot, a deadline, and its client's presence.

The guarantees that trusted inference servers make (TorchServe's `job_queue_size`, Triton's
`max_queue_size`, KServe's `containerConcurrency`), here:

- `check_pixel_budget`: the decoded pixels of a whole request, read from the image headers
  before anything is decoded, against MNIST_CANVAS_MAX_REQUEST_PIXELS (413 past it).
- `WorkLimiter`: CPU-heavy work runs in a worker process (app.workers), at most `slots`
  requests at once, one per process (default: the cores this process may use); a request waits
  for a slot at most `queue_wait_s`, behind at most `max_queue` others, and is answered 503
  with Retry-After past either.
- `Work`: a request's deadline (MNIST_CANVAS_REQUEST_TIMEOUT_S, 504 past it) and whether its
  client is still connected; a batch checks it between items and stops when either fails.
- `parse_json_body`: a small JSON body is read on the event loop, a large one in a worker
  process (a slot past LIGHT_COST): orjson holds the GIL for the whole of a body, 50 ms for 8 MB.
  `check_json_counts` first refuses (413) a body with more values, arrays or objects than the
  largest batch holds: 8 MB of `[],` made orjson build 2.8 million lists in 1.2 s.
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
from typing import Any, TypeVar

from anyio import to_thread
from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.inputs import InputError
from app.jsonio import parse_json
from app.settings import Settings
from app.workers import WorkerPool

logger = logging.getLogger(__name__)

T = TypeVar("T")
DEADLINE_KEY = "mnist_canvas.deadline"
RETRY_AFTER_S = 1
#: Work of at most this cost (decoded pixels, or their equivalent) runs in a thread without
#: taking a slot: about ten 280x280 canvases, 10 ms. Cheap requests never queue behind heavy
#: ones, and a flood of them costs what it would inline on the event loop.
LIGHT_COST = 10 * 280 * 280
#: JSON bodies up to this size are parsed on the event loop: a canvas's data URL (10-40 KB)
#: takes tens of microseconds, less than a thread hop.
INLINE_JSON_BYTES = 64 * 1024
FIELD_ROWS = 28  # an MNIST image: 28 rows of 28 pixels


def json_cost(size: int) -> int:
    """What parsing `size` bytes of JSON costs in the limiter's units (decoded pixels): about
    two pixels a byte (orjson: 4 MB of numbers in about 45 ms, the GIL held throughout)."""
    return 2 * size


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
    """The app's limiter, sized by the settings (0 slots: one per usable core), with its pool
    of worker processes, one per slot (none: threads, MNIST_CANVAS_WORKER_PROCESSES=0)."""
    slots = settings.max_concurrent_work or usable_cores()
    pool = WorkerPool(slots if settings.worker_processes else 0, settings.worker_nice)
    return WorkLimiter(slots=slots, max_queue=settings.max_queue, wait_s=settings.queue_wait_s,
                       pool=pool)


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
    """At most `slots` heavy jobs at once, each in a worker process of `pool` (or a thread); a
    bounded, short wait for a slot."""

    def __init__(self, *, slots: int, max_queue: int, wait_s: float,
                 pool: WorkerPool | None = None) -> None:
        self.slots = slots
        self.pool = pool or WorkerPool(0, 0)
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
        async with self.slot(work, cost):
            return await to_thread.run_sync(fn, *args)

    async def offload(self, work: Work, fn: Callable[..., T], *args: object,
                      cost: int | None = None) -> T:
        """fn(*args) in a worker process (app.workers) once a slot is free, as `run`."""
        async with self.slot(work, cost):
            return await self.pool.call(fn, *args)

    @asynccontextmanager
    async def slot(self, work: Work, cost: int | None = None) -> AsyncIterator[None]:
        """Hold a worker slot for the block (none for work of known cost <= LIGHT_COST); 503
        (Busy) when none frees in time."""
        if cost is not None and cost <= LIGHT_COST:
            yield
            return
        await self._acquire(work)
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self._semaphore.release()

    def alone(self) -> bool:
        """Whether the heavy job holding a slot now is the only one, none waiting."""
        return self.running <= 1 and self.waiting == 0

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


def check_json_counts(body: bytes, max_batch: int, end: int | None = None) -> int:
    """Refuse (413) a JSON body that holds more values, or more arrays and objects, than a batch
    of `max_batch` images as 28 rows of 28 numbers does, before it is parsed.

    The counts are upper bounds read with bytes.count (2 ms each for 5 MB): every value but
    the first follows a comma, every key a colon, every array or object opens with its bracket
    (a string holding these only makes the count larger; base64 holds none). `end`: where
    the JSON ends, when binary data follows it. Returns the count of arrays and objects.
    """
    end = len(body) if end is None else end  # the JSON part of the body ends here
    containers = body.count(b"[", 0, end) + body.count(b"{", 0, end)
    values = body.count(b",", 0, end) + body.count(b":", 0, end) + 1
    max_containers = max_batch * (FIELD_ROWS + 1) + 64
    max_values = max_batch * FIELD_ROWS * (FIELD_ROWS + 1) + 4096
    if containers > max_containers or values > max_values:
        raise InputError(
            f"The JSON body holds up to {values:,} values in {containers:,} arrays and objects; "
            f"at most {max_values:,} values in {max_containers:,} arrays and objects are read "
            f"(a batch of {max_batch:,} images of 28 rows of 28 numbers): send fewer values.",
            413, "too_many_values")
    return containers


async def parse_json_body(limiter: WorkLimiter, work: Work, body: bytes,
                          max_batch: int) -> Any:
    """The JSON value of a request body (a 400 sentence if it is not JSON), parsed on the event
    loop when small and in a worker process otherwise, taking a slot when large: a C parser
    never lets go of the GIL, so 16 bodies of 8 MB parsed at once would hold the loop for
    most of a second."""
    if len(body) <= INLINE_JSON_BYTES:
        return parse_json(body)
    return await limiter.offload(work, parse_counted_json, body, max_batch,
                                 cost=json_cost(len(body)))


def parse_counted_json(body: bytes, max_batch: int) -> Any:
    """check_json_counts, then parse_json: in a worker (counting 5 MB takes 8 ms)."""
    check_json_counts(body, max_batch)
    return parse_json(body)


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
