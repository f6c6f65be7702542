"""Corrections per second on SQLite and PostgreSQL, and what they do to prediction latency.

For each backend: a fresh database, `mnist-canvas serve --workers 1` with the shipped model,
then POST /api/feedback with distinct MNIST training digits (pixels JSON, so each one is a new
row) at concurrency 1 and 16; then predictions alone at concurrency 16, and predictions with
corrections arriving alongside (half of the requests), to compare the prediction p99.
PostgreSQL is a throwaway local server started with Debian's initdb/pg_ctl (tests/postgres.py),
with its default durability (fsync on); SQLite runs in WAL mode with synchronous=NORMAL.

Run from the repository root:

    python -m benchmarks.feedback               # a few minutes on 2 cores
    python -m benchmarks.feedback --quick       # fewer requests
    python -m benchmarks.feedback --backends sqlite --json out.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import from the repository root
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

from benchmarks.environment import SHIPPED_MODEL, bench_env, data_dir, limit_threads, machine_info
from benchmarks.loadgen import Request, json_request, run_load
from benchmarks.reporting import finish
from benchmarks.servers import ServerProcess, http_get


def correction_requests(images: Any, labels: Any, start: int, count: int) -> list[Request]:
    """`count` corrections of distinct digits from `start` on: every one a new row."""
    return [json_request("feedback", "/api/feedback",
                         {"pixels": images[i].reshape(-1).tolist(), "label": int(labels[i]),
                          "client_id": f"bench-{i % 16}"})
            for i in range(start, start + count)]


def predict_requests(images: Any, count: int) -> list[Request]:
    return [json_request("predict", "/api/predict", {"pixels": images[i].reshape(-1).tolist()})
            for i in range(count)]


@contextmanager
def database(backend: str) -> Iterator[str]:
    """A fresh, empty database URL for `backend` (and its server, for PostgreSQL)."""
    if backend == "sqlite":
        directory = Path(tempfile.mkdtemp(prefix="mnist-canvas-bench-db-"))
        try:
            yield f"sqlite:///{directory / 'corrections.sqlite3'}"
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    from tests.postgres import start_postgres

    server = start_postgres(durable=True)  # fsync on, as deployed
    try:
        yield server.create_database()
    finally:
        server.stop("immediate")
        shutil.rmtree(server.datadir.parent, ignore_errors=True)


def wait_feedback_ready(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_get(port, "/api/feedback/stats")[0] == 200:
            return
        time.sleep(0.05)
    raise TimeoutError("the corrections database never became ready")


def measure(port: int, requests: list[Request], concurrency: int, pids: list[int]
            ) -> dict[str, Any]:
    result, cpu = run_load(port, requests, concurrency=concurrency, max_requests=len(requests),
                           max_seconds=600, processes=1, server_pids=pids)
    kinds = {kind: result.summary(kind) for kind in sorted(result.statuses)}
    return {"concurrency": concurrency, "seconds": round(result.seconds, 2),
            "server_cpu_s": round(cpu, 2), **kinds}


def run_backend(backend: str, args: argparse.Namespace, images: Any, labels: Any
                ) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": backend}
    with database(backend) as url:
        env = bench_env(MNIST_CANVAS_DATABASE_URL=url, MNIST_CANVAS_FEEDBACK_PER_MINUTE="0",
                        MNIST_CANVAS_LOG_LEVEL="warning")
        with ServerProcess(model=args.model, workers=1, env=env) as server:
            wait_feedback_ready(server.port)
            pids = server.worker_pids()
            n = args.corrections
            cursor = 0
            warm = correction_requests(images, labels, cursor, 50)
            cursor += 50
            run_load(server.port, warm, concurrency=4, max_requests=len(warm), max_seconds=60,
                     processes=1)
            for concurrency in (1, 16):
                count = n // 4 if concurrency == 1 else n
                batch = correction_requests(images, labels, cursor, count)
                cursor += count
                out[f"feedback_c{concurrency}"] = measure(server.port, batch, concurrency, pids)
                print(backend, f"corrections c={concurrency}:", out[f"feedback_c{concurrency}"]
                      ["feedback"], flush=True)
            predicts = predict_requests(images, args.predictions)
            out["predict_alone"] = measure(server.port, predicts, 16, pids)
            mixed_feedback = correction_requests(images, labels, cursor, args.predictions)
            mixed = [r for pair in zip(predicts, mixed_feedback, strict=True) for r in pair]
            out["predict_with_corrections"] = measure(server.port, mixed, 16, pids)
            print(backend, "predict alone:", out["predict_alone"]["predict"], flush=True)
            print(backend, "predict with corrections:", out["predict_with_corrections"],
                  flush=True)
    return out


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| backend | corrections/s c=1 | p99 ms c=1 | corrections/s c=16 | p99 ms c=16 "
             "| predict p99 ms alone | predict p99 ms with corrections | corrections/s alongside |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        c1, c16 = r["feedback_c1"]["feedback"], r["feedback_c16"]["feedback"]
        alone = r["predict_alone"]["predict"]
        mixed = r["predict_with_corrections"]
        lines.append(f"| {r['backend']} | {c1['rps']} | {c1['p99_ms']} | {c16['rps']} | "
                     f"{c16['p99_ms']} | {alone['p99_ms']} | {mixed['predict']['p99_ms']} | "
                     f"{round(mixed['feedback']['ok'] / mixed['seconds'], 1)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", choices=("sqlite", "postgresql"),
                        default=["sqlite", "postgresql"])
    parser.add_argument("--corrections", type=int, default=2000,
                        help="corrections at concurrency 16 (a quarter of that at 1)")
    parser.add_argument("--predictions", type=int, default=2000,
                        help="predictions alone, and again with as many corrections alongside")
    parser.add_argument("--quick", action="store_true", help="400 corrections, 400 predictions")
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.corrections, args.predictions = 400, 400
    limit_threads()
    from model.data import load_mnist

    mnist = load_mnist(data_dir(), download=False)
    images, labels = mnist.train_images, mnist.train_labels  # never the test digits
    started = time.time()
    results = [run_backend(b, args, images, labels) for b in args.backends]
    failures = sum(r[k][kind]["non_2xx"] + r[k][kind]["errors"] + r[k][kind]["timeouts"]
                   for r in results for k in ("feedback_c1", "feedback_c16", "predict_alone",
                                              "predict_with_corrections")
                   for kind in r[k] if isinstance(r[k][kind], dict))
    print()
    print(table(results))
    print(f"\nload average (1 min) at the end: {os.getloadavg()[0]:.2f}; failures: {failures}")
    return finish(args, {"ok": failures == 0, "results": results, "table": table(results),
                         "loadavg_1min": round(os.getloadavg()[0], 2), "machine": machine_info(),
                         "seconds": round(time.time() - started, 1)})


if __name__ == "__main__":
    raise SystemExit(main())
