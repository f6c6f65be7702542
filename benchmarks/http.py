"""HTTP throughput and latency of the real server, next to GET /healthz measured in the same run.

Starts `mnist-canvas serve` on 127.0.0.1 with the shipped model (1 worker, then 2 workers) and
drives it from separate load-generator processes (a raw asyncio HTTP/1.1 keep-alive client,
see benchmarks.loadgen) at concurrency 16 and 64, each for a fixed time, sending:

* png:     POST /api/predict, multipart upload (field `file`) of a 280x280 PNG drawing
* dataurl: POST /api/predict, JSON {"image": "data:image/png;base64,..."}: a 280x280
           transparent canvas drawn with the page's brush, what the page sends
* pixels:  POST /api/predict, JSON {"pixels": [784 numbers]}
* healthz: GET /healthz, measured before and after the others (their mean is the yardstick)

It prints requests/s, p50 and p99 latency and the ratio to /healthz (goals: png >= 0.35x,
pixels >= 0.5x, p99 <= 100 ms at concurrency 64, no errors or timeouts). It also measures the
in-process cost of model.preprocess.preprocess_image on canvas PNGs, and the time from process
start to the first /readyz 200 next to a bare `import torch; load_file(model)` process
(goal <= 1.5x).

Run from the repository root:

    python -m benchmarks.http                  # about 4 minutes
    python -m benchmarks.http --quick          # about 1.5 minutes
    python -m benchmarks.http --seconds 5 --workers 1 --concurrency 64 --json out.json

The server gets the environment a deployment would (MNIST_CANVAS_TORCH_THREADS=1, nothing
else pinned) and logs at --server-log-level (default: the app's default, info).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import from the repository root, and keep
    # benchmarks/http.py from shadowing the standard library's `http`
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

from benchmarks.environment import (
    REPO,
    SHIPPED_MODEL,
    bench_env,
    data_dir,
    limit_threads,
    machine_info,
)
from benchmarks.loadgen import Request, build_request, json_request, multipart_request, run_load
from benchmarks.reporting import finish
from benchmarks.servers import ServerProcess, sequential_latency

KINDS = ("png", "dataurl", "pixels")
GOALS = {"png": 0.35, "pixels": 0.5}
P99_GOAL_MS = 100.0
STARTUP_GOAL = 1.5
NAGLE_MS = 20.0  # a back-to-back request slower than this is waiting on delayed ACKs
N_PAYLOADS = 32  # distinct digits cycled through, so no answer is the same twice in a row


def payloads(count: int = N_PAYLOADS) -> dict[str, list[Request]]:
    """Prebuilt requests of each kind, from the first `count` MNIST test digits."""
    from benchmarks.drawing import CONDITIONS, draw_indexed
    from model.data import load_mnist

    data = load_mnist(data_dir(), download=False)
    page = next(c for c in CONDITIONS if c.name == "page-brush")
    upload = next(c for c in CONDITIONS if c.name == "dark-on-light")
    out: dict[str, list[Request]] = {k: [] for k in (*KINDS, "healthz")}
    for i in range(count):
        digit = data.test_images[i]
        png = draw_indexed(digit, i, upload).data
        out["png"].append(multipart_request("png", "/api/predict", "file", "digit.png", png,
                                            "image/png"))
        url = draw_indexed(digit, i, page).data_url()
        out["dataurl"].append(json_request("dataurl", "/api/predict", {"image": url}))
        out["pixels"].append(json_request("pixels", "/api/predict",
                                          {"pixels": digit.reshape(-1).tolist()}))
    out["healthz"].append(build_request("healthz", "GET", "/healthz"))
    return out


def measure(server: ServerProcess, requests: list[Request], *, concurrency: int, seconds: float,
            processes: int, warmup: float) -> dict[str, Any]:
    """Warm up, then one timed run of one request kind; the summary plus CPU use."""
    if warmup > 0:
        run_load(server.port, requests, concurrency=concurrency, max_requests=100_000,
                 max_seconds=warmup, processes=processes)
    result, server_cpu = run_load(server.port, requests, concurrency=concurrency,
                                  max_requests=2_000_000, max_seconds=seconds,
                                  processes=processes, server_pids=server.worker_pids())
    summary = result.summary()
    summary["seconds"] = round(result.seconds, 2)
    summary["server_cpu_pct"] = round(100 * server_cpu / result.seconds, 1)
    summary["client_cpu_pct"] = round(100 * result.client_cpu / result.seconds, 1)
    summary["server_cpu_ms_per_request"] = round(1000 * server_cpu / max(1, summary["requests"]),
                                                 3)
    return summary


def preprocess_cost(count: int) -> dict[str, Any]:
    """Mean ms of preprocess_image over `count` canvas PNGs, in this process."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from benchmarks.drawing import CONDITIONS, draw_indexed
    from model.data import load_mnist
    from model.preprocess import preprocess_image

    data = load_mnist(data_dir(), download=False)
    page = next(c for c in CONDITIONS if c.name == "page-brush")
    pngs = [draw_indexed(data.test_images[i], i, page).data for i in range(count)]
    for png in pngs[:10]:
        preprocess_image(png)
    out: dict[str, Any] = {"images": count}
    # OpenBLAS starts one thread per core unless told otherwise (this process was told 1).
    default_threads = os.cpu_count() or 1
    blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    for label, limit in (("one_blas_thread", 1), ("default_blas_threads", None)):
        times = []
        with threadpool_limits(limits=limit if limit is not None else default_threads,
                               user_api="blas"):
            for png in pngs:
                t0 = time.perf_counter()
                preprocess_image(png)
                times.append(time.perf_counter() - t0)
        times.sort()
        out[label] = {
            "mean_ms": round(1000 * statistics.fmean(times), 3),
            "p50_ms": round(1000 * times[len(times) // 2], 3),
            "p99_ms": round(1000 * times[min(len(times) - 1, int(0.99 * len(times)))], 3),
        }
    out["blas_threads_default"] = default_threads
    out["blas"] = sorted({str(p.get("internal_api")) for p in blas})
    return out


BASELINE = (
    "import sys, torch\n"
    "from safetensors.torch import load_file\n"
    "load_file(sys.argv[1])\n"
    "print('loaded', flush=True)\n"
)


def startup(repeats: int, model: Path) -> dict[str, Any]:
    """Process start -> /readyz 200 for the server; process start -> exit for the baseline."""
    env = bench_env()
    server_times = []
    for _ in range(repeats):
        with ServerProcess(model=model, workers=1, env=env) as server:
            server_times.append(server.ready_seconds)
    base_times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", BASELINE, str(model)], cwd=REPO, env=env,
                       check=True, capture_output=True, timeout=120)
        base_times.append(time.perf_counter() - t0)
    server_s = statistics.median(server_times)
    base_s = statistics.median(base_times)
    return {
        "repeats": repeats,
        "server_ready_s": round(server_s, 3),
        "server_ready_all_s": [round(t, 3) for t in server_times],
        "baseline_s": round(base_s, 3),
        "baseline_all_s": [round(t, 3) for t in base_times],
        "ratio": round(server_s / base_s, 2),
        "ok": server_s / base_s <= STARTUP_GOAL,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    requests = payloads()
    model = Path(args.model)
    env = bench_env()
    env.pop("OMP_NUM_THREADS", None)  # measure the server as deployed: only its own settings
    env["MNIST_CANVAS_LOG_LEVEL"] = args.server_log_level
    for item in args.server_env:
        key, _, value = item.partition("=")
        env[key] = value
    rows: list[dict[str, Any]] = []
    sequential: dict[str, float] = {}
    for workers in args.workers:
        log = Path(args.log_dir) / f"http-server-{workers}w.log" if args.log_dir else None
        with ServerProcess(model=model, workers=workers, env=env, log_path=log) as server:
            # Every worker: connections are spread over them, so probe a few times.
            seq = max(sequential_latency(server.port) for _ in range(2 * workers))
            sequential[str(workers)] = round(1000 * seq, 2)
            print(f"workers={workers}: back-to-back GET /healthz on one connection "
                  f"{1000 * seq:.2f} ms", flush=True)
            for conc in args.concurrency:
                print(f"workers={workers} concurrency={conc}", flush=True)
                runs: dict[str, dict[str, Any]] = {}
                order = ["healthz", *KINDS, "healthz2"]
                for kind in order:
                    base = "healthz" if kind == "healthz2" else kind
                    summary = measure(server, requests[base], concurrency=conc,
                                      seconds=args.seconds, processes=args.clients,
                                      warmup=args.warmup)
                    runs[kind] = summary
                    print(f"  {kind:<9} {summary['rps']:>8.1f} req/s  p50 {summary['p50_ms']:>7.2f}"
                          f" ms  p99 {summary['p99_ms']:>7.2f} ms  server cpu "
                          f"{summary['server_cpu_pct']:>5.1f}%  client cpu "
                          f"{summary['client_cpu_pct']:>5.1f}%  failures "
                          f"{summary['non_2xx'] + summary['errors'] + summary['timeouts']}",
                          flush=True)
                health = (runs["healthz"]["rps"] + runs["healthz2"]["rps"]) / 2
                for kind in ("healthz", *KINDS):
                    s = runs[kind] if kind != "healthz" else dict(runs["healthz"], rps=health)
                    ratio = s["rps"] / health if health else float("nan")
                    failures = s["non_2xx"] + s["errors"] + s["timeouts"]
                    goal = GOALS.get(kind)
                    ok = failures == 0 and (goal is None or ratio >= goal) and (
                        conc < 64 or s["p99_ms"] <= P99_GOAL_MS)
                    rows.append({
                        "workers": workers, "concurrency": conc, "kind": kind,
                        "rps": round(s["rps"], 1), "ratio": round(ratio, 3),
                        "p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"], "failures": failures,
                        "server_cpu_pct": s["server_cpu_pct"],
                        "client_cpu_pct": s["client_cpu_pct"],
                        "server_cpu_ms_per_request": s["server_cpu_ms_per_request"],
                        "goal_ratio": goal, "ok": ok,
                        "healthz_runs_rps": [runs["healthz"]["rps"], runs["healthz2"]["rps"]]
                        if kind == "healthz" else None,
                    })
    print("preprocess_image cost ...", flush=True)
    pre = preprocess_cost(args.preprocess_images)
    print("startup ...", flush=True)
    start = startup(args.startup_repeats, model)
    table = format_table(rows, pre, start, sequential)
    print()
    print(table)
    return {
        "benchmark": "http",
        "command": " ".join([sys.executable, "-m", "benchmarks.http", *sys.argv[1:]]),
        "machine": machine_info(),
        "seconds_per_run": args.seconds,
        "client_processes": args.clients,
        "server_log_level": args.server_log_level,
        "rows": rows,
        "sequential_healthz_ms": sequential,
        "preprocess": pre,
        "startup": start,
        "ok": all(r["ok"] for r in rows) and start["ok"],
        "table": table,
    }


def format_table(rows: list[dict[str, Any]], pre: dict[str, Any], start: dict[str, Any],
                 sequential: dict[str, float]) -> str:
    lines = [
        f"{'workers':>7} {'conc':>4} {'request':<8} {'req/s':>8} {'x healthz':>9} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'fail':>4} {'srv cpu':>7} {'cli cpu':>7}  goal",
    ]
    for r in rows:
        goal = f">= {r['goal_ratio']}x" if r["goal_ratio"] else ""
        if r["concurrency"] >= 64:
            goal = (goal + ", " if goal else "") + f"p99 <= {P99_GOAL_MS:g}"
        verdict = "ok" if r["ok"] else "FAIL"
        lines.append(
            f"{r['workers']:>7} {r['concurrency']:>4} {r['kind']:<8} {r['rps']:>8.1f} "
            f"{r['ratio']:>8.2f}x {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['failures']:>4} "
            f"{r['server_cpu_pct']:>6.0f}% {r['client_cpu_pct']:>6.0f}%  {goal} {verdict}"
        )
    one, many = pre["one_blas_thread"], pre["default_blas_threads"]
    lines.append("")
    for workers, ms in sequential.items():
        note = ("  <- about 40 ms: the server's sockets lack TCP_NODELAY (Nagle + delayed ACK)"
                if ms > NAGLE_MS else "")
        lines.append(f"{workers} worker(s): back-to-back GET /healthz on one keep-alive "
                     f"connection {ms:.2f} ms{note}")
    lines += [
        f"preprocess_image, {pre['images']} canvas PNGs (280x280, page brush): mean "
        f"{one['mean_ms']:.2f} ms (p99 {one['p99_ms']:.2f}) with 1 BLAS thread; "
        f"{many['mean_ms']:.2f} ms (p99 {many['p99_ms']:.2f}) with numpy's default "
        f"{pre['blas_threads_default']} BLAS threads",
        f"startup to /readyz 200: {start['server_ready_s']:.2f} s vs bare torch + load_file "
        f"{start['baseline_s']:.2f} s = {start['ratio']:.2f}x (goal <= {STARTUP_GOAL}x) "
        f"{'ok' if start['ok'] else 'FAIL'}",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="2 s per measurement, fewer preprocessing and startup samples")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds per run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes")
    parser.add_argument("--preprocess-images", type=int, default=None)
    parser.add_argument("--startup-repeats", type=int, default=None)
    parser.add_argument("--server-log-level", default="info",
                        choices=("critical", "error", "warning", "info", "debug"))
    parser.add_argument("--server-env", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra environment for the servers (experiments), e.g. "
                        "OPENBLAS_NUM_THREADS=1")
    parser.add_argument("--log-dir", default=None, help="keep the servers' logs here")
    parser.add_argument("--model", default=str(SHIPPED_MODEL))
    parser.add_argument("--json", default=None, metavar="PATH", help="write the results here")
    return parser


def main(argv: list[str] | None = None) -> int:
    limit_threads()
    args = build_parser().parse_args(argv)
    args.seconds = args.seconds or (2.0 if args.quick else 6.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    args.preprocess_images = args.preprocess_images or (100 if args.quick else 300)
    args.startup_repeats = args.startup_repeats or (2 if args.quick else 3)
    return finish(args, run(args))


if __name__ == "__main__":
    raise SystemExit(main())
