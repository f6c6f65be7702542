"""What the benchmarks share: a server process, a raw HTTP/1.1 load generator, statistics.

The load generator is a plain asyncio client speaking HTTP/1.1 keep-alive over prebuilt request
bytes, run in separate processes (multiprocessing, spawn) so that it costs the server little and
is never measured inside the server's process. Every run is bounded in requests and in time.
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHIPPED_MODEL = REPO / "models" / "mnist-logreg.safetensors"
RESULTS_DIR = REPO / "benchmarks" / "results"


# --------------------------------------------------------------------------- environment


def data_dir() -> Path:
    """MNIST: $MNIST_CANVAS_DATA_DIR, else ../shared/data/mnist beside the repository."""
    env = os.environ.get("MNIST_CANVAS_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data" / "mnist"


def limit_threads() -> None:
    """One compute thread everywhere (torch, BLAS): benchmark numbers per core."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    os.environ["MNIST_CANVAS_TORCH_THREADS"] = "1"
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(1)


def bench_env(**extra: str) -> dict[str, str]:
    """The environment of a benchmarked server: CPU, one torch thread, no downloads."""
    env = {
        **os.environ,
        "MNIST_CANVAS_DATA_DIR": str(data_dir()),
        "MNIST_CANVAS_DOWNLOAD": "false",
        "MNIST_CANVAS_TORCH_THREADS": "1",
        "MNIST_CANVAS_DEVICE": "cpu",
        "MNIST_CANVAS_TRAIN_ON_START": "never",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, Python and torch versions: what a number was measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024**2, 1)
                break
    except OSError:
        pass
    try:
        from importlib.metadata import version

        torch_version = version("torch")
    except Exception:  # noqa: BLE001 - informational only
        torch_version = "unknown"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "torch": torch_version,
        "platform": platform.platform(),
    }


def finish(args: Any, result: dict[str, Any]) -> int:
    """A benchmark CLI's end: write --json if asked; exit 0 when every goal was met."""
    if args.json:
        write_json(args.json, result)
    return 0 if result["ok"] else 1


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {target}")


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """A one-shot GET on 127.0.0.1 (Connection: close); raises OSError when nobody listens."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                     .encode())
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body


def sequential_latency(port: int, path: str = "/healthz", count: int = 20) -> float:
    """Median seconds of `count` back-to-back GETs on one keep-alive connection.

    About 40 ms instead of well under 1 ms means the server's sockets lack TCP_NODELAY: each
    response's second write waits for the client's delayed ACK (Nagle's algorithm).
    """
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    times = []
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            started = time.perf_counter()
            sock.sendall(request)
            buffer = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    raise OSError("connection closed")
                buffer += chunk
                head, sep, body = buffer.partition(b"\r\n\r\n")
                if not sep:
                    continue
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if len(body) >= length:
                    break
            times.append(time.perf_counter() - started)
    times.sort()
    return times[len(times) // 2]


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (Linux /proc)."""
    found = [pid]
    i = 0
    while i < len(found):
        task_dir = Path(f"/proc/{found[i]}/task")
        try:
            for task in task_dir.iterdir():
                children = (task / "children").read_text().split()
                found.extend(int(c) for c in children)
        except OSError:
            pass
        i += 1
    return found


def rss_bytes(pid: int) -> int:
    """VmRSS of one process, in bytes (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds of these processes (Linux /proc/<pid>/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def stop_process(process: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM a child that is still running, wait up to `timeout` s, then SIGKILL it."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class ServerProcess:
    """`mnist-canvas serve` on a free 127.0.0.1 port with the given model and worker count."""

    def __init__(self, *, model: str | Path = SHIPPED_MODEL, workers: int = 1,
                 env: dict[str, str] | None = None, log_path: Path | None = None,
                 ready_timeout: float = 120.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.model = Path(model)
        self.workers = workers
        self.env = dict(env if env is not None else bench_env())
        self.env["MNIST_CANVAS_MODEL_PATH"] = str(self.model)
        self.log_path = log_path
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.ready_seconds = float("nan")
        self._log: Any = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> ServerProcess:
        args = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1",
                "--port", str(self.port), "--workers", str(self.workers),
                "--model", str(self.model)]
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        out = self._log if self._log is not None else subprocess.DEVNULL
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(args, cwd=REPO, env=self.env, stdout=out,
                                        stderr=subprocess.STDOUT)
        self.wait_ready()
        return self

    def wait_ready(self) -> float:
        """Poll /readyz every 5 ms; seconds from process start to the first 200."""
        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log()}")
            try:
                status, _ = http_get(self.port, "/readyz", timeout=2.0)
                if status == 200:
                    self.ready_seconds = time.perf_counter() - self.started_at
                    return self.ready_seconds
            except OSError:
                pass
            time.sleep(0.005)
        self.stop()
        raise TimeoutError(f"server not ready in {self.ready_timeout} s: {self.log()}")

    def worker_pids(self) -> list[int]:
        """The processes that answer requests: the server itself, or its worker children."""
        tree = process_tree(self.pid)
        return tree[1:] if self.workers > 1 and len(tree) > 1 else tree[:1]

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log kept)"
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=20)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- raw HTTP client


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


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank) of already sorted values; NaN when empty."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100.0 * len(sorted_values) - 1e-9)))
    return float(sorted_values[rank - 1])


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
