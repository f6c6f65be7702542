"""CPU-heavy work (decoding images, parsing large JSON bodies) in a pool of worker processes.

Decoding and parsing are C calls that hold the GIL for their whole length (orjson: 50 ms for a
5 MB body; WebP: 12 ms chunks). In a thread of the server's own process each one made the
event loop, and so /healthz, wait behind it. In a worker process it holds that process's GIL,
and the worker runs at a lower CPU priority (MNIST_CANVAS_WORKER_NICE), so the OS runs the
server's process first whenever both want a core.

A pool process is a worker slot of app.limits.WorkLimiter: the limiter lets at most as many
heavy requests work at once as there are processes. What crosses to a worker is bytes (a body,
an image) and what comes back is small: (N, 28, 28) float32 digits and per-item InputErrors,
never a decoded image. The functions sent here import neither torch nor the model: the model's
matrix product stays in the server's process (a millisecond for 1,000 images).

A worker that dies (killed for memory) breaks the pool (concurrent.futures' BrokenProcessPool):
its requests are answered with a JSON 503 and a new pool replaces it. `processes=0` runs the
same functions in threads of the server's process (small deployments, fast unit tests).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from anyio import to_thread
from fastapi import HTTPException

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: Imported once by the fork server, so that every worker starts with them loaded.
PRELOAD = ["app.batchwork", "app.v2parse"]
RETRY_AFTER_S = 1


def _initialize(nice: int, server: int) -> None:
    """A new worker: lower its CPU priority below the server's, and end with the server."""
    if nice:
        os.nice(nice)
    threading.Thread(target=_exit_with, args=(server,), name="server-watch", daemon=True).start()
    import app.batchwork  # noqa: F401 - loaded before the first request (the fork server did)
    import app.v2parse  # noqa: F401


def _exit_with(pid: int) -> None:
    """Exit once process `pid` (the server) has ended, however it ended.

    A worker's parent is the fork server, and it holds the pipes it reads its work from at both
    ends: without this a killed server (SIGKILL, out of memory) left its workers, the fork server
    and multiprocessing's resource tracker running for ever.
    """
    try:
        watched = os.pidfd_open(pid)
    except OSError:  # the server has ended already (or no pidfd on this kernel: poll)
        while _alive(pid):
            time.sleep(1.0)
    else:
        select.select([watched], [], [])  # readable once the process has ended
    os._exit(0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_identity() -> tuple[int, int]:
    """The pid and niceness of the process this runs in."""
    return os.getpid(), os.nice(0)


class WorkerDied(HTTPException):
    """A worker process died (killed for memory, most likely) while holding this request."""

    def __init__(self) -> None:
        super().__init__(503, detail="A worker process stopped while working on this request; "
                                     f"it was replaced. Retry in {RETRY_AFTER_S} s.",
                         headers={"Retry-After": str(RETRY_AFTER_S)})


class WorkerPool:
    """`processes` worker processes at niceness `nice`, started by `start` (0: threads)."""

    def __init__(self, processes: int, nice: int) -> None:
        self.processes = processes
        self.nice = nice
        self.replaced = 0
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.processes > 0

    def _new_executor(self) -> ProcessPoolExecutor:
        # forkserver: a fork of this threaded process could copy a lock held by another thread.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        return ProcessPoolExecutor(max_workers=self.processes, mp_context=context,
                                   initializer=_initialize, initargs=(self.nice, os.getpid()))

    def start(self) -> None:
        """Start every worker now (the first request does not pay it); blocks until they run."""
        if not self.enabled or self._executor is not None:
            return
        self._executor = self._new_executor()
        # Workers start on demand, one per call that finds none idle: as many calls as
        # workers, each holding its worker a moment, start them all.
        warm = [self._executor.submit(_hold, 0.2) for _ in range(self.processes)]
        pids = {future.result() for future in warm}
        logger.info("%d worker processes at niceness %d: %s", self.processes, self.nice,
                    sorted(pids))

    def shutdown(self) -> None:
        """Stop the workers once the work given to them is done."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        """fn(*args) in a worker process (a thread when the pool is off).

        Cancelled (the request's task ended), it still waits for a call that already runs, so
        the caller's worker slot stays held while the CPU is in use.
        """
        if not self.enabled:
            return await to_thread.run_sync(fn, *args)
        executor = self._executor_now()
        try:
            future: Future[T] = executor.submit(fn, *args)
        except BrokenProcessPool:
            self._replace(executor)
            raise WorkerDied() from None
        waiting = asyncio.wrap_future(future)
        try:
            return await asyncio.shield(waiting)
        except asyncio.CancelledError:
            if not future.cancel():  # already running: let it end before the slot is freed
                await asyncio.wait([waiting])
            raise
        except BrokenProcessPool:
            self._replace(executor)
            raise WorkerDied() from None

    def _executor_now(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = self._new_executor()
            return self._executor

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is not broken:
                return  # another request replaced it already
            logger.error("a worker process died; starting a new pool of %d", self.processes)
            self._executor = self._new_executor()
            self.replaced += 1
        broken.shutdown(wait=False, cancel_futures=True)


def _hold(seconds: float) -> int:
    """Keep a worker busy a moment (so that the pool starts another); its pid."""
    threading.Event().wait(seconds)
    return os.getpid()
