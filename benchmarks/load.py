"""Sustained mixed load on one server worker: no errors, no timeouts, no memory growth.

Starts `mnist-canvas serve --workers 1` on 127.0.0.1 with the shipped model and sends (from two
separate load-generator processes, 64 connections in all) a rotation of equally weighted
requests: pixels JSON, canvas data-URL JSON, a multipart PNG upload, a batch of 8 data URLs,
GET /healthz and GET /api/model. The first --warmup requests (default 2,000) warm the server
up; its resident memory (VmRSS) is read then, sampled during the run, and read at the end.

Run from the repository root:

    python -m benchmarks.load                  # 20,000 requests, a few minutes
    python -m benchmarks.load --quick          # 3,000 requests
    python -m benchmarks.load --requests 50000 --json out.json

Exits non-zero when any request failed (non-2xx, connection error or timeout) or when the
resident memory grew by 10% or more between the end of the warm-up and the end of the run.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import from the repository root, and keep
    # benchmarks/http.py from shadowing the standard library's `http`
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

from benchmarks.environment import SHIPPED_MODEL, bench_env, data_dir, limit_threads, machine_info
from benchmarks.loadgen import (
    LoadResult,
    Request,
    build_request,
    json_request,
    multipart_request,
    run_load,
)
from benchmarks.reporting import finish
from benchmarks.servers import ServerProcess, rss_bytes

KINDS = ("pixels", "dataurl", "png", "batch8", "healthz", "model")
GROWTH_LIMIT = 0.10


def mixed_requests(count: int = 24) -> list[Request]:
    """The rotation: one request of each kind per digit, `count` digits."""
    from benchmarks.drawing import CONDITIONS, draw_indexed
    from model.data import load_mnist

    data = load_mnist(data_dir(), download=False)
    page = next(c for c in CONDITIONS if c.name == "page-brush")
    upload = next(c for c in CONDITIONS if c.name == "dark-on-light")
    urls = [draw_indexed(data.test_images[i], i, page).data_url() for i in range(count + 8)]
    out: list[Request] = []
    for i in range(count):
        digit = data.test_images[i]
        out.append(json_request("pixels", "/api/predict", {"pixels": digit.reshape(-1).tolist()}))
        out.append(json_request("dataurl", "/api/predict", {"image": urls[i]}))
        png = draw_indexed(digit, i, upload).data
        out.append(multipart_request("png", "/api/predict", "file", "digit.png", png,
                                     "image/png"))
        out.append(json_request("batch8", "/api/predict/batch", {"images": urls[i : i + 8]}))
        out.append(build_request("healthz", "GET", "/healthz"))
        out.append(build_request("model", "GET", "/api/model"))
    return out


class RssSampler:
    """Samples the server's VmRSS every `interval` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            self.samples.append((round(time.monotonic() - start, 2), rss_bytes(self.pid)))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def mib(n: int) -> float:
    return round(n / 2**20, 1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    requests = mixed_requests()
    env = bench_env(MNIST_CANVAS_LOG_LEVEL=args.server_log_level)
    env.pop("OMP_NUM_THREADS", None)  # the server as deployed: only its own settings
    log = Path(args.log_dir) / "load-server.log" if args.log_dir else None
    with ServerProcess(model=args.model, workers=1, env=env, log_path=log) as server:
        pid = server.pid
        rss_start = rss_bytes(pid)
        print(f"server pid {pid} ready, VmRSS {mib(rss_start)} MiB; warm-up {args.warmup} "
              f"requests", flush=True)
        warm, _ = run_load(server.port, requests, concurrency=args.concurrency,
                           max_requests=args.warmup, max_seconds=args.max_seconds,
                           processes=args.clients, timeout=args.timeout)
        rss_warm = rss_bytes(pid)
        remaining = args.requests - args.warmup
        print(f"after warm-up VmRSS {mib(rss_warm)} MiB; {remaining} more requests", flush=True)
        with RssSampler(pid) as sampler:
            main, server_cpu = run_load(server.port, requests, concurrency=args.concurrency,
                                        max_requests=remaining, max_seconds=args.max_seconds,
                                        processes=args.clients, timeout=args.timeout,
                                        server_pids=[pid])
        rss_end = rss_bytes(pid)
        alive = server.process is not None and server.process.poll() is None
    everything = LoadResult()
    everything.merge(warm)
    everything.merge(main)
    growth = (rss_end - rss_warm) / rss_warm if rss_warm else float("inf")
    peak = max((r for _t, r in sampler.samples), default=rss_end)
    per_kind = {kind: main.summary(kind) for kind in KINDS if kind in main.statuses}
    overall = main.summary()
    failures = everything.failures()
    sent = everything.total()
    table = format_table(per_kind, overall, main.seconds, rss_start, rss_warm, rss_end, peak,
                         growth, failures, sent)
    print()
    print(table)
    ok = failures == 0 and growth < GROWTH_LIMIT and alive and sent == args.requests
    if sent != args.requests:
        print(f"only {sent} of {args.requests} requests were sent within --max-seconds")
    return {
        "benchmark": "load",
        "command": " ".join([sys.executable, "-m", "benchmarks.load", *sys.argv[1:]]),
        "machine": machine_info(),
        "requests": args.requests,
        "sent": sent,
        "warmup_requests": args.warmup,
        "concurrency": args.concurrency,
        "client_processes": args.clients,
        "measured_seconds": round(main.seconds, 2),
        "server_cpu_pct": round(100 * server_cpu / main.seconds, 1),
        "overall": overall,
        "kinds": per_kind,
        "failures": failures,
        "rss_mib": {"ready": mib(rss_start), "after_warmup": mib(rss_warm), "end": mib(rss_end),
                    "peak": mib(peak)},
        "rss_growth_pct": round(100 * growth, 2),
        "rss_samples_mib": [(t, mib(r)) for t, r in sampler.samples[:: max(1, len(
            sampler.samples) // 100)]],
        "server_alive_at_end": alive,
        "ok": ok,
        "table": table,
    }


def format_table(per_kind: dict[str, dict[str, Any]], overall: dict[str, Any], seconds: float,
                 rss_start: int, rss_warm: int, rss_end: int, peak: int, growth: float,
                 failures: int, sent: int) -> str:
    lines = [f"{'request':<9} {'count':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
             f"{'max ms':>8} {'fail':>5}"]
    for kind, s in [*per_kind.items(), ("all", overall)]:
        fail = s["non_2xx"] + s["errors"] + s["timeouts"]
        lines.append(f"{kind:<9} {s['requests']:>7} {s['rps']:>8.1f} {s['p50_ms']:>8.2f} "
                     f"{s['p99_ms']:>8.2f} {s['max_ms']:>8.2f} {fail:>5}")
    lines += [
        "",
        f"{sent} requests sent ({seconds:.1f} s measured after warm-up), failures (non-2xx, "
        f"errors, timeouts): {failures} {'ok' if failures == 0 else 'FAIL'}",
        f"VmRSS: ready {mib(rss_start)} MiB, after warm-up {mib(rss_warm)} MiB, end "
        f"{mib(rss_end)} MiB (peak {mib(peak)} MiB): growth {100 * growth:+.2f}% "
        f"(limit < {100 * GROWTH_LIMIT:g}%) {'ok' if growth < GROWTH_LIMIT else 'FAIL'}",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3,000 requests, 500 of warm-up")
    parser.add_argument("--requests", type=int, default=None, help="total, warm-up included")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up requests")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout (s)")
    parser.add_argument("--max-seconds", type=float, default=900.0,
                        help="time limit of each phase")
    parser.add_argument("--server-log-level", default="info",
                        choices=("critical", "error", "warning", "info", "debug"))
    parser.add_argument("--log-dir", default=None, help="keep the server's log here")
    parser.add_argument("--model", default=str(SHIPPED_MODEL))
    parser.add_argument("--json", default=None, metavar="PATH", help="write the results here")
    return parser


def main(argv: list[str] | None = None) -> int:
    limit_threads()
    args = build_parser().parse_args(argv)
    args.requests = args.requests or (3_000 if args.quick else 20_000)
    args.warmup = args.warmup if args.warmup is not None else (500 if args.quick else 2_000)
    if not 0 < args.warmup < args.requests:
        raise SystemExit("--warmup must be between 0 and --requests")
    return finish(args, run(args))


if __name__ == "__main__":
    raise SystemExit(main())
