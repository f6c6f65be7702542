"""A raw HTTP/1.1 load generator: asyncio keep-alive clients sending prebuilt request bytes.

The clients run in separate processes (multiprocessing, spawn) so that they cost the server
little and are never measured inside the server's process. Every run is bounded in requests and
in time.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.reporting import percentile
from benchmarks.servers import cpu_seconds


@dataclass(frozen=True)
class Request:
    """One prebuilt HTTP/1.1 request (keep-alive), named by what it exercises."""

    kind: str
    raw: bytes


def build_request(kind: str, method: str, path: str, body: bytes = b"",
                  content_type: str | None = None) -> Request:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "User-Agent: mnist-canvas-bench",
            "Accept: */*"]
    if body or method in ("POST", "PUT"):
        head.append(f"Content-Length: {len(body)}")
    if content_type:
        head.append(f"Content-Type: {content_type}")
    return Request(kind, ("\r\n".join(head) + "\r\n\r\n").encode() + body)


def json_request(kind: str, path: str, payload: Any) -> Request:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return build_request(kind, "POST", path, body, "application/json")


def multipart_request(kind: str, path: str, field_name: str, filename: str, data: bytes,
                      mime: str) -> Request:
    boundary = "----mnistcanvasbench7d1f0e"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field_name}\"; "
        f"filename=\"{filename}\"\r\nContent-Type: {mime}\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return build_request(kind, "POST", path, body, f"multipart/form-data; boundary={boundary}")


class ProtocolError(Exception):
    pass


async def read_response(reader: asyncio.StreamReader) -> tuple[int, int, bool]:
    """(status, body bytes, server wants to close) of one HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ProtocolError(f"bad status line {lines[0][:80]!r}")
    status = int(parts[1])
    length = -1
    chunked = False
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            length = int(value.strip())
        elif key == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif key == b"connection" and b"close" in value.lower():
            close = True
    size = 0
    if chunked:
        while True:
            line = await reader.readuntil(b"\r\n")
            n = int(line.split(b";")[0].strip(), 16)
            if n:
                await reader.readexactly(n)
                size += n
            await reader.readuntil(b"\r\n")
            if n == 0:
                break
    elif length >= 0:
        if length:
            await reader.readexactly(length)
        size = length
    else:
        raise ProtocolError("response without Content-Length or chunked encoding")
    return status, size, close


@dataclass
class LoadSpec:
    """One load-generator process: which requests to send, how many at once, for how long."""

    port: int
    requests: list[Request]  # sent in rotation (a weighted mix: repeat entries)
    connections: int
    max_requests: int
    max_seconds: float
    timeout: float = 10.0
    offset: int = 0  # where in the rotation this process starts


@dataclass
class LoadResult:
    """What one or more load-generator processes saw."""

    kinds: dict[str, list[float]] = field(default_factory=dict)  # latencies (s) of 2xx answers
    statuses: dict[str, dict[int, int]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # connection errors, protocol errors
    timeouts: dict[str, int] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0
    client_cpu: float = 0.0

    def merge(self, other: LoadResult) -> None:
        for kind, values in other.kinds.items():
            self.kinds.setdefault(kind, []).extend(values)
        for kind, counts in other.statuses.items():
            mine = self.statuses.setdefault(kind, {})
            for status, n in counts.items():
                mine[status] = mine.get(status, 0) + n
        for kind, n in other.errors.items():
            self.errors[kind] = self.errors.get(kind, 0) + n
        for kind, n in other.timeouts.items():
            self.timeouts[kind] = self.timeouts.get(kind, 0) + n
        self.started = min(self.started, other.started) if self.started else other.started
        self.finished = max(self.finished, other.finished)
        self.client_cpu += other.client_cpu

    @property
    def seconds(self) -> float:
        return max(self.finished - self.started, 1e-9)

    def total(self, kind: str | None = None) -> int:
        kinds = [kind] if kind else list(self.statuses)
        return sum(sum(self.statuses.get(k, {}).values()) + self.errors.get(k, 0)
                   + self.timeouts.get(k, 0) for k in kinds)

    def failures(self, kind: str | None = None) -> int:
        """Non-2xx answers, connection errors and timeouts."""
        kinds = [kind] if kind else list(self.statuses)
        bad = 0
        for k in kinds:
            bad += sum(n for s, n in self.statuses.get(k, {}).items() if not 200 <= s < 300)
            bad += self.errors.get(k, 0) + self.timeouts.get(k, 0)
        return bad

    def summary(self, kind: str | None = None) -> dict[str, Any]:
        kinds = [kind] if kind else sorted(self.statuses)
        latencies = sorted(v for k in kinds for v in self.kinds.get(k, []))
        n = sum(self.total(k) for k in kinds)
        return {
            "requests": n,
            "ok": len(latencies),
            "rps": round(n / self.seconds, 1),
            "p50_ms": round(1000 * percentile(latencies, 50), 2),
            "p90_ms": round(1000 * percentile(latencies, 90), 2),
            "p99_ms": round(1000 * percentile(latencies, 99), 2),
            "max_ms": round(1000 * latencies[-1], 2) if latencies else float("nan"),
            "non_2xx": sum(n for k in kinds for s, n in self.statuses.get(k, {}).items()
                           if not 200 <= s < 300),
            "errors": sum(self.errors.get(k, 0) for k in kinds),
            "timeouts": sum(self.timeouts.get(k, 0) for k in kinds),
        }


async def _drive(spec: LoadSpec, start_event: Any, ready_queue: Any) -> LoadResult:
    result = LoadResult()
    budget = [spec.max_requests]
    cursor = [spec.offset]
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = []
    for _ in range(spec.connections):
        streams.append(await asyncio.open_connection("127.0.0.1", spec.port))
    ready_queue.put(os.getpid())
    while not start_event.wait(0.001):
        await asyncio.sleep(0)
    started = time.time()
    deadline = time.monotonic() + spec.max_seconds
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)

    async def connection(slot: int) -> None:
        while budget[0] > 0 and time.monotonic() < deadline:
            budget[0] -= 1
            request = spec.requests[cursor[0] % len(spec.requests)]
            cursor[0] += 1
            stream = streams[slot]
            kind = request.kind
            t0 = time.perf_counter()
            try:
                if stream is None:
                    stream = await asyncio.wait_for(
                        asyncio.open_connection("127.0.0.1", spec.port), spec.timeout)
                    streams[slot] = stream
                reader, writer = stream
                writer.write(request.raw)
                status, _size, close = await asyncio.wait_for(read_response(reader),
                                                              spec.timeout)
            except TimeoutError:
                result.timeouts[kind] = result.timeouts.get(kind, 0) + 1
                _close(streams, slot)
                continue
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    ProtocolError, ValueError):
                result.errors[kind] = result.errors.get(kind, 0) + 1
                _close(streams, slot)
                continue
            elapsed = time.perf_counter() - t0
            counts = result.statuses.setdefault(kind, {})
            counts[status] = counts.get(status, 0) + 1
            if 200 <= status < 300:
                result.kinds.setdefault(kind, []).append(elapsed)
            if close:
                _close(streams, slot)

    await asyncio.gather(*(connection(i) for i in range(spec.connections)))
    result.started, result.finished = started, time.time()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    result.client_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    for i in range(len(streams)):
        _close(streams, i)
    return result


def _close(streams: list[Any], slot: int) -> None:
    stream = streams[slot]
    streams[slot] = None
    if stream is not None:
        try:
            stream[1].close()
        except Exception:  # noqa: BLE001 - already broken
            pass


def _loadgen_main(spec: LoadSpec, start_event: Any, ready_queue: Any, out_queue: Any) -> None:
    try:
        result = asyncio.run(_drive(spec, start_event, ready_queue))
        out_queue.put(("ok", result))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        ready_queue.put(-1)
        out_queue.put(("error", repr(exc)))


def _get(q: Any, procs: Sequence[Any], limit: float) -> Any:
    """queue.get that gives up when the client processes died or `limit` seconds passed."""
    import queue

    deadline = time.monotonic() + limit
    while True:
        try:
            return q.get(timeout=0.2)
        except queue.Empty:
            if time.monotonic() > deadline:
                raise TimeoutError("load generator did not answer in time") from None
            if not any(p.is_alive() for p in procs) and q.empty():
                raise RuntimeError("load generator processes exited without a result") from None


def run_load(port: int, requests: Sequence[Request], *, concurrency: int, max_requests: int,
             max_seconds: float, processes: int = 2, timeout: float = 10.0,
             server_pids: Sequence[int] = ()) -> tuple[LoadResult, float]:
    """Drive the server at `concurrency` connections spread over `processes` client processes.

    Stops after `max_requests` in all or `max_seconds`, whichever comes first. Returns the
    merged result and the server's CPU seconds used meanwhile (when `server_pids` are given).
    """
    ctx = mp.get_context("spawn")
    start_event = ctx.Event()
    ready_queue = ctx.Queue()
    out_queue = ctx.Queue()
    procs = []
    per_conn = [concurrency // processes + (1 if i < concurrency % processes else 0)
                for i in range(processes)]
    per_req = [max_requests // processes + (1 if i < max_requests % processes else 0)
               for i in range(processes)]
    for i in range(processes):
        if per_conn[i] == 0:
            continue
        spec = LoadSpec(port=port, requests=list(requests), connections=per_conn[i],
                        max_requests=per_req[i], max_seconds=max_seconds, timeout=timeout,
                        offset=i * 7919)
        proc = ctx.Process(target=_loadgen_main, args=(spec, start_event, ready_queue,
                                                       out_queue), daemon=True)
        proc.start()
        procs.append(proc)
    try:
        for _ in procs:
            if _get(ready_queue, procs, 60.0) == -1:
                break
        cpu_before = cpu_seconds(server_pids)
        start_event.set()
        merged = LoadResult()
        problems = []
        for _ in procs:
            status, payload = _get(out_queue, procs, max_seconds + 2 * timeout + 60)
            if status == "ok":
                merged.merge(payload)
            else:
                problems.append(payload)
    except BaseException:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        raise
    server_cpu = cpu_seconds(server_pids) - cpu_before
    for proc in procs:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.terminate()
    if problems:
        raise RuntimeError(f"load generator failed: {problems}")
    return merged, server_cpu
