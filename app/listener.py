"""uvicorn's HTTP protocols with two limits it lacks: time and bytes to send a request's head.

uvicorn holds a connection that never finishes its headers for as long as the client likes
(its keep-alive timeout starts only after a first response), and its httptools parser takes
headers of any size. A few hundred such connections (slowloris) hold the server's memory and
file descriptors. Here a connection must deliver each request head within
MNIST_CANVAS_HEADER_TIMEOUT_S and MNIST_CANVAS_MAX_HEADER_BYTES, or it is answered 408 or 431
and closed. Production runs behind nginx (deploy/nginx.conf), which enforces the same; these
limits protect a server exposed directly.

`mnist-canvas serve` passes the class by import string (`http=` in uvicorn's Config), so each
worker process imports it and reads its limits from Settings once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadLimits:
    timeout_s: float
    max_bytes: int

    @classmethod
    def from_settings(cls) -> HeadLimits:
        from app.settings import Settings

        settings = Settings()
        return cls(settings.header_timeout_s, settings.max_header_bytes)


class _HeadGuard:
    """Mixin over a uvicorn HTTP protocol: a timer and a byte count until each head arrives."""

    limits: HeadLimits | None = None  # per process, from Settings at the first connection
    transport: asyncio.Transport
    cycle: Any
    loop: asyncio.AbstractEventLoop

    def _await_head(self) -> None:
        if _HeadGuard.limits is None:
            _HeadGuard.limits = HeadLimits.from_settings()
        self._head_cycle = self.cycle
        self._head_bytes = 0
        self._head_tail = b""
        self._head_timer: asyncio.TimerHandle | None = self.loop.call_later(
            _HeadGuard.limits.timeout_s, self._head_timed_out)

    def _head_arrived(self) -> bool:
        return self._head_timer is None or self.cycle is not self._head_cycle

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, status: int, reason: str, sentence: str) -> None:
        self._stop_head_timer()
        if self.transport.is_closing():
            return
        body = json.dumps({"detail": sentence}).encode()
        self.transport.write(
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body)
        self.transport.close()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.cycle is self._head_cycle:
            assert _HeadGuard.limits is not None
            logger.info("closed a connection that sent no complete request head in %g s",
                        _HeadGuard.limits.timeout_s)
            self._refuse(408, "Request Timeout", "The request headers did not arrive in time.")

    # -- the protocol's own events ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._await_head()

    def data_received(self, data: bytes) -> None:
        waiting = not self._head_arrived()
        if waiting:
            # Count the bytes up to the blank line that ends the head, before parsing them: a
            # head can arrive whole in one read, and the parser would take it at any size.
            window = self._head_tail + data
            end = window.find(b"\r\n\r\n")
            self._head_bytes += len(data) if end < 0 else max(0, end + 4 - len(self._head_tail))
            self._head_tail = window[-3:]
            assert _HeadGuard.limits is not None
            if self._head_bytes > _HeadGuard.limits.max_bytes:
                logger.info("refused a request head of more than %d bytes",
                            _HeadGuard.limits.max_bytes)
                self._refuse(431, "Request Header Fields Too Large", "The request head is "
                             f"larger than {_HeadGuard.limits.max_bytes} bytes.")
                return
        super().data_received(data)  # type: ignore[misc]
        if waiting and self._head_arrived():
            self._stop_head_timer()

    def on_response_complete(self) -> None:
        answered = self.cycle
        super().on_response_complete()  # type: ignore[misc]
        # The next request on this keep-alive connection gets the same time for its head,
        # unless it was pipelined and has already begun.
        if not self.transport.is_closing() and self.cycle is answered:
            self._stop_head_timer()
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)  # type: ignore[misc]


class GuardedHttpToolsProtocol(_HeadGuard, HttpToolsProtocol):
    """uvicorn's httptools protocol with the head limits."""


class GuardedH11Protocol(_HeadGuard, H11Protocol):
    """uvicorn's h11 protocol with the head limits (h11 counts header bytes itself too)."""
