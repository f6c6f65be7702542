"""A clean shutdown: on SIGTERM, readiness fails at once, requests in flight finish within a
grace period (MNIST_CANVAS_SHUTDOWN_GRACE_S), new ones get a JSON 503, and only then does the
server stop.

uvicorn on its own closes its listener on SIGTERM (new clients get a refused connection, not
an answer), waits `timeout_graceful_shutdown` for requests in flight, then cancels them, and a
cancelled request was answered with a plain-text 500. Here the server's own SIGTERM handler is
chained rather than replaced: `install_drain` wraps it while the app runs, drains first, then
calls it, so uvicorn's shutdown (and its last-resort timeout) follows as before. The handler is
the process's, so this works under `mnist-canvas serve`, `uvicorn app.main:app` and with
several workers alike.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

#: Liveness stays 200 while draining: the process is alive and finishing its work.
LIVENESS_PATHS = frozenset(("/healthz", "/v2/health/live"))
#: Readiness answers 503 from the first moment, so that balancers stop sending new requests.
READINESS_PATHS = frozenset(("/readyz", "/v2/health/ready"))
STOPPING = "The server is shutting down; retry on another replica or in a few seconds."


class Drain:
    """The app's shutdown state: started or not, and how many requests are still in flight."""

    def __init__(self) -> None:
        self.started_at: float | None = None
        self.grace_s = 0.0
        self.in_flight = 0
        self._changed = threading.Condition()

    @property
    def draining(self) -> bool:
        return self.started_at is not None

    @property
    def expired(self) -> bool:
        """True once the grace period is over: work still running should stop."""
        return self.started_at is not None and time.monotonic() >= self.started_at + self.grace_s

    def begin(self, grace_s: float) -> None:
        with self._changed:
            if self.started_at is None:
                self.grace_s = grace_s
                self.started_at = time.monotonic()
            self._changed.notify_all()

    def enter(self) -> None:
        with self._changed:
            self.in_flight += 1

    def leave(self) -> None:
        with self._changed:
            self.in_flight -= 1
            self._changed.notify_all()

    def wait(self) -> bool:
        """Block until no request is in flight or the grace period is over; True if drained."""
        with self._changed:
            assert self.started_at is not None, "wait() before begin()"
            end = self.started_at + self.grace_s
            while self.in_flight > 0:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True


Handler = Callable[[int, FrameType | None], Any]


def install_drain(drain: Drain, grace_s: float) -> Callable[[], None]:
    """Chain a draining step before the server's SIGTERM handler; returns the undo.

    The first SIGTERM starts the drain and returns at once; a thread waits until the requests
    in flight are done (or the grace is over), then calls the server's handler, which begins
    its own shutdown. A second SIGTERM goes to the server's handler directly. Outside the main
    thread (a test client) signals cannot be handled, and nothing is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)

    def hand_on(sig: int, frame: FrameType | None) -> None:
        if callable(previous):
            previous(sig, frame)
        else:  # no handler of the server's: do what the default would
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)

    def after_drain(sig: int) -> None:
        drained = drain.wait()
        logger.info("drain %s: %d request(s) still in flight; stopping the server",
                    "complete" if drained else "grace period over", drain.in_flight)
        hand_on(sig, None)

    def on_sigterm(sig: int, frame: FrameType | None) -> None:
        if drain.draining:
            hand_on(sig, frame)
            return
        drain.begin(grace_s)
        logger.info("SIGTERM: readiness now 503; %d request(s) in flight get up to %g s to "
                    "finish", drain.in_flight, grace_s)
        threading.Thread(target=after_drain, args=(sig,), name="drain", daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)

    def undo() -> None:
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, previous)

    return undo


class DrainMiddleware:
    """Counts requests in flight; while draining, answers readiness and new requests 503 JSON.

    A request cancelled by the server's last-resort shutdown timeout is answered with a JSON
    503 if it had not answered yet, never with the server's plain-text 500.
    """

    def __init__(self, app: ASGIApp, *, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if self.drain.draining and path not in LIVENESS_PATHS:
            await send_stopping(send, path)
            return
        started = False

        async def send_watching(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        self.drain.enter()
        try:
            await self.app(scope, receive, send_watching)
        except asyncio.CancelledError:
            if not started:
                logger.warning("%s %s cancelled by the shutdown timeout; answered 503",
                               scope.get("method"), path)
                try:
                    await send_stopping(send, path)
                except Exception:  # noqa: BLE001 - the connection may be gone already
                    pass
            raise
        finally:
            self.drain.leave()


async def send_stopping(send: Send, path: str) -> None:
    """The JSON 503 of a draining server, in the form the path's clients read."""
    body: dict[str, Any]
    if path in READINESS_PATHS:
        body = ({"ready": False} if path.startswith("/v2") else
                {"status": "stopping", "detail": STOPPING})
    elif path.startswith("/v2"):
        body = {"error": STOPPING}
    else:
        body = {"detail": STOPPING}
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"retry-after", b"5"),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
