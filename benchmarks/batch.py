"""Batch inference over HTTP: 1,000-image requests, v2 binary and JSON, and /api/predict/batch.

Starts `mnist-canvas serve` (one worker, one torch thread) with the shipped model and sends each
kind of request back to back on one keep-alive connection (a raw socket client in this process),
the first 1,000 MNIST test digits in every request:

* v2-binary:  POST /v2/models/mnist-logreg/infer, the binary tensor data extension as Triton's
              client sends it by default (JSON header, 3.1 MB of FP32, all outputs in binary)
* v2-binary-nv: the same, naming only the probabilities and digit outputs (no verdict judged)
* v2-json:    the same request with the pixels as JSON numbers
* batch:      POST /api/predict/batch {"pixels": [1,000 x 784 ints]} (answers with previews)
* batch-nopv: the same with "previews": false
* batch-lean: the same with "previews": false and "verdicts": false (no verdicts judged)
* batch-rows: the same pixels as 28 rows of 28 (the per-image path, as every batch was before)

For each it prints the median latency, images/s, and images per second of the server's own CPU
time (user + system of the worker process): the throughput of one core, whatever else the
machine runs. Next to the JSON batch it prints how long orjson takes to parse that body in this
process. Goals (issue 15, set before the verdict existed): v2 binary requests >= 100,000 images
per second of one core; a JSON batch without previews at most 2x orjson's parse. Each is
checked with the verdict (v2-binary, batch-nopv) and without (v2-binary-nv, batch-lean). The
1-minute load average is printed before and after.

    python -m benchmarks.batch               # about a minute
    python -m benchmarks.batch --requests 10 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
from typing import Any

if __package__ in (None, ""):  # run as a file: import from the repository root
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

import numpy as np
import orjson

from benchmarks.environment import bench_env, data_dir, machine_info
from benchmarks.reporting import finish
from benchmarks.servers import ServerProcess, cpu_seconds

N_IMAGES = 1000
INFER = "/v2/models/mnist-logreg/infer"
BINARY_GOAL = 100_000.0  # images per second of one core
JSON_GOAL = 2.0  # batch-nopv latency / orjson parse of its body


def post(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}",
            *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def requests() -> tuple[dict[str, bytes], bytes]:
    """Each kind's raw request, and the JSON batch body (for orjson's parse time)."""
    from model.data import load_mnist

    digits = load_mnist(data_dir(), download=False).test_images[:N_IMAGES]
    x = (digits.reshape(N_IMAGES, 784) / np.float32(255)).astype(np.float32)
    header = json.dumps({"inputs": [{"name": "input", "shape": [N_IMAGES, 784],
                                     "datatype": "FP32",
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "parameters": {"binary_data_output": True}}).encode()
    v2_json = orjson.dumps({"inputs": [{"name": "input", "shape": [N_IMAGES, 784],
                                        "datatype": "FP32", "data": np.round(x, 4).ravel()}]},
                           option=orjson.OPT_SERIALIZE_NUMPY)
    # The same request naming the two outputs before the verdict (binary): no verdict judged.
    header_nv = json.dumps({**json.loads(header), "outputs": [
        {"name": name, "parameters": {"binary_data": True}} for name in ("probabilities", "digit")
    ]}).encode()
    flat = digits.reshape(N_IMAGES, 784).tolist()
    batch = orjson.dumps({"pixels": flat})
    js = {"Content-Type": "application/json"}
    return {
        "v2-binary": post(INFER, header + x.tobytes(), {
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream"}),
        "v2-binary-nv": post(INFER, header_nv + x.tobytes(), {
            "Inference-Header-Content-Length": str(len(header_nv)),
            "Content-Type": "application/octet-stream"}),
        "v2-json": post(INFER, v2_json, js),
        "batch": post("/api/predict/batch", batch, js),
        "batch-nopv": post("/api/predict/batch", orjson.dumps({"pixels": flat,
                                                               "previews": False}), js),
        "batch-lean": post("/api/predict/batch", orjson.dumps({"pixels": flat, "previews": False,
                                                               "verdicts": False}), js),
        "batch-rows": post("/api/predict/batch", orjson.dumps({"pixels": digits.tolist()}), js),
    }, batch


def exchange(sock: socket.socket, raw: bytes) -> tuple[int, int]:
    """Send one request and read its whole answer: (status, body bytes)."""
    sock.sendall(raw)
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise OSError("connection closed")
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    parts = [body]
    got = len(body)
    while got < length:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise OSError("connection closed")
        parts.append(chunk)
        got += len(chunk)
    return int(head.split(b" ", 2)[1]), got


def measure(server: ServerProcess, raw: bytes, count: int) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        status, _ = exchange(sock, raw)  # warm-up
        if status != 200:
            raise RuntimeError(f"status {status}: {server.log()}")
        pids = server.worker_pids()
        cpu_before = cpu_seconds(pids)
        started = time.perf_counter()
        times, size = [], 0
        for _ in range(count):
            begun = time.perf_counter()
            status, size = exchange(sock, raw)
            times.append(time.perf_counter() - begun)
            if status != 200:
                raise RuntimeError(f"status {status}")
        wall = time.perf_counter() - started
        cpu = cpu_seconds(pids) - cpu_before
    return {
        "requests": count,
        "p50_ms": round(1000 * statistics.median(times), 2),
        "images_per_s": round(N_IMAGES * count / wall),
        "server_cpu_ms": round(1000 * cpu / count, 2),
        "images_per_cpu_s": round(N_IMAGES * count / cpu) if cpu > 0 else None,
        "request_bytes": len(raw),
        "answer_bytes": size,
    }


def orjson_parse_ms(body: bytes, count: int = 15) -> tuple[float, float]:
    """Median wall and CPU milliseconds of orjson.loads(body) in this process."""
    walls, cpus = [], []
    for _ in range(count):
        started, cpu = time.perf_counter(), time.process_time()
        orjson.loads(body)
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    return round(1000 * statistics.median(walls), 2), round(1000 * statistics.median(cpus), 2)


def run(args: argparse.Namespace) -> dict[str, Any]:
    raw, batch_body = requests()
    load_before = os.getloadavg()[0]
    rows: dict[str, dict[str, Any]] = {}
    parse_ms: list[float] = []
    parse_cpu_ms: list[float] = []
    with ServerProcess(workers=1, env=bench_env()) as server:
        for kind, request in raw.items():
            if kind.startswith("batch"):
                wall_ms, cpu_ms = orjson_parse_ms(batch_body)
                parse_ms.append(wall_ms)
                parse_cpu_ms.append(cpu_ms)
            rows[kind] = measure(server, request, args.requests)
            r = rows[kind]
            print(f"  {kind:<12} p50 {r['p50_ms']:7.2f} ms  {r['images_per_s']:>8,} images/s  "
                  f"server {r['server_cpu_ms']:6.2f} ms CPU = {r['images_per_cpu_s'] or 0:>9,} "
                  f"images per CPU-second", flush=True)
    parse = statistics.median(parse_ms)
    parse_cpu = statistics.median(parse_cpu_ms)
    load_after = os.getloadavg()[0]
    per_core = {k: rows[k]["images_per_cpu_s"] or 0.0 for k in ("v2-binary", "v2-binary-nv")}
    ratios = {k: rows[k]["p50_ms"] / parse for k in ("batch-nopv", "batch-lean")}
    cpu_ratios = {k: rows[k]["server_cpu_ms"] / parse_cpu for k in ratios}
    lines = [
        f"1,000-image requests, one worker, back to back (load average {load_before:.2f} -> "
        f"{load_after:.2f}):",
        *(f"  {k:<12} {r['p50_ms']:8.2f} ms p50 {r['images_per_s']:>9,} images/s "
          f"{r['server_cpu_ms']:7.2f} ms server CPU {r['images_per_cpu_s'] or 0:>9,} "
          "images per CPU-second" for k, r in rows.items()),
        f"  orjson.loads of the JSON batch body: {parse:.2f} ms ({parse_cpu:.2f} ms CPU); "
        f"batch / parse = {rows['batch']['p50_ms'] / parse:.2f}x",
        *(f"  {k}: latency / parse = {ratios[k]:.2f}x, server CPU / parse CPU = "
          f"{cpu_ratios[k]:.2f}x ({'ok' if ratios[k] <= JSON_GOAL else 'FAIL'}, goal <= "
          f"{JSON_GOAL:g}x)" for k in ratios),
        *(f"  {k}: {per_core[k]:,.0f} images per second of one core "
          f"({'ok' if per_core[k] >= BINARY_GOAL else 'FAIL'}, goal >= {BINARY_GOAL:,.0f})"
          for k in per_core),
    ]
    table = "\n".join(lines)
    print()
    print(table)
    return {
        "benchmark": "batch", "machine": machine_info(), "rows": rows,
        "orjson_parse_ms": parse, "orjson_parse_cpu_ms": parse_cpu,
        "json_ratios": {k: round(v, 2) for k, v in ratios.items()},
        "json_cpu_ratios": {k: round(v, 2) for k, v in cpu_ratios.items()},
        "binary_images_per_cpu_s": per_core, "loadavg_1min": [load_before, load_after],
        "table": table, "ok": all(v >= BINARY_GOAL for v in per_core.values())
        and all(v <= JSON_GOAL for v in ratios.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=30, help="timed requests of each kind")
    parser.add_argument("--quick", action="store_true", help="10 requests of each kind")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests = 10
    return finish(args, run(args))


if __name__ == "__main__":
    raise SystemExit(main())
