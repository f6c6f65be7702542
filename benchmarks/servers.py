"""Server processes: `mnist-canvas serve` on a free port, and what /proc says about processes
(their children, memory and CPU time)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.environment import REPO, SHIPPED_MODEL, bench_env
from tests.processes import free_port, stop_process


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
        """The processes that answer requests: the server itself, or its worker children, with
        the worker processes that decode for them (app/workers.py)."""
        tree = process_tree(self.pid)
        return tree[1:] if self.workers > 1 and len(tree) > 1 else tree

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
