"""Hostile traffic against the real server: what each attack costs it, and whether it still
answers its health check meanwhile.

Each attack runs against a fresh `mnist-canvas serve` (one worker, shipped model) started from
--repo (default: this checkout; point it at a checkout of an older commit to measure "before").
For each it reports the answers' status codes, the server's CPU seconds used (user + system,
from /proc, summed over its process tree: the worker processes that decode are included), the
worst /healthz latency seen by a poller that asks every 20 ms during the attack, the peak
resident memory the attack added (each process's VmHWM minus its VmRSS at ready, summed over
the tree: an upper bound of the tree's peak, since the processes' peaks need not coincide), and the
server's own view: the bucket of its worst event-loop lag (`mnist_canvas_event_loop_lag_seconds`
on /metrics, sampled every 0.1 s), which no client-side noise enters.

The attack's clients run in a child process at a lower CPU priority (--attacker-nice, default
10), the poller alone in this one: on a real deployment the attacker's CPU is not the server's,
and with both on one small machine 64 client threads would otherwise take the cores (and, in
one process, the poller's own GIL) from what is measured. The server runs at normal priority.

Attacks:

* idle:        no attack for 3 s: the poller's baseline on this machine at this moment
* bomb:        one 720-byte lossless WebP of 4096x4096 pixels (two dots)
* bomb-x4:     four clients sending three such bombs each, at once
* bomb-batch:  /api/predict/batch with N of them (--bomb-batch, default 200: 192 KB)
* worst-batch: the costliest batch the default limits accept: 23 WebPs of 2048x2048
* disconnect:  that batch, the client gone after 0.5 s; CPU counted for --linger s after
* flood-4k:    16 clients at once, each a 4096x4096 PNG drawing (80 KB)
* flood-worst: 16 clients at once, each the worst single image under the limits (2048x2048)
* flood-64:    64 clients at once, the same: how many are told 503 (busy) instead of waiting
* slowloris:   200 connections that send half a request head and then nothing
* big-head:    a request with a 1 MB header
* slow-body:   20 clients that declare a 1 MB body and send a byte every 0.5 s
* cross-site:  POST /v2/.../infer as text/plain (what a hostile page can send cross-site)
* v2-1000:     two clients at once, each a v2 infer of 1,000 [784] tensors (4 MB of JSON)
* json-16:     16 clients at once, each a batch of 1,000 28x28 pixel images as nested rows
               (5 MB of JSON that the exact, per-image path reads)
* pixels-16:   16 clients at once, each a batch of 1,000 flat 784-pixel images (3.5 MB of
               JSON that simdjson reads in the server's own threads)
* v2-bin-16:   16 clients at once, each a v2 infer of 1,000 [784] FP32 tensors in binary
               (3.1 MB, read in the server's own threads)
* json-junk:   16 clients at once, each one /api/predict of 784 pixels and 7 MB of numbers
               that are not read (parsing the body is the cost)
* list-bomb:   one /api/predict/batch of 7.6 MB of empty arrays: 2.6 million lists to build
* canvas-1000: a legitimate batch of 1,000 280x280 canvas PNGs, for scale

Run from the repository root (about 3 minutes on an idle 2-core machine):

    python -m benchmarks.hostile
    python -m benchmarks.hostile --repo /tmp/before --bomb-batch 20 --json before.json
    python -m benchmarks.hostile --only bomb,worst-batch
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from PIL import Image, ImageDraw
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.environment import REPO, bench_env, machine_info
from benchmarks.reporting import finish
from benchmarks.servers import cpu_seconds, free_port, http_get, process_tree, stop_process

Answer = tuple[int, bytes]


# --------------------------------------------------------------------------- payloads


def dots_webp(side: int) -> bytes:
    img = Image.new("RGB", (side, side), "white")
    img.putpixel((1, 1), (0, 0, 0))
    img.putpixel((side - 2, side - 2), (0, 0, 0))
    out = io.BytesIO()
    img.save(out, "WEBP", lossless=True)
    return out.getvalue()


def drawing_png(side: int) -> bytes:
    img = Image.new("L", (side, side), 255)
    ImageDraw.Draw(img).ellipse((side * 0.3, side * 0.15, side * 0.7, side * 0.85), outline=0,
                                width=max(2, side // 30))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def canvas_png() -> bytes:
    img = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    ImageDraw.Draw(img).line((140, 40, 140, 240), fill=(0, 0, 0, 255), width=18)
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def batch_body(image: bytes, n: int, mime: str) -> bytes:
    url = f"data:{mime};base64," + base64.b64encode(image).decode()
    return json.dumps({"images": [url] * n}).encode()


# --------------------------------------------------------------------------- the server


class Target:
    """`python -m app.cli serve` from `repo` on a free port; peak memory from /proc."""

    def __init__(self, repo: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        model = repo / "models" / "mnist-logreg.safetensors"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port",
             str(self.port), "--model", str(model)],
            cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server at {repo} exited with {self.process.returncode}")
            try:
                if http_get(self.port, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        else:
            raise TimeoutError("the server did not become ready")
        time.sleep(0.3)
        self.rss_at_ready = self.status_kib("VmRSS")

    def pids(self) -> list[int]:
        """The server and every process below it (the fork server and the worker processes)."""
        return process_tree(self.process.pid)

    def status_kib(self, field: str) -> int:
        """The field (VmRSS, VmHWM) summed over the server's process tree."""
        total = 0
        for pid in self.pids():
            try:
                lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            except OSError:
                continue  # exited meanwhile
            total += sum(int(line.split()[1]) for line in lines if line.startswith(field + ":"))
        return total

    def cpu(self) -> float:
        return cpu_seconds(self.pids())

    def loop_lag_buckets(self) -> dict[float, float]:
        """The server's event-loop lag histogram: {upper bound in s: samples at most that}."""
        try:
            status, body = http_get(self.port, "/metrics", timeout=10)
        except OSError:
            return {}
        if status != 200:
            return {}
        return {float(sample.labels["le"]): sample.value
                for family in text_string_to_metric_families(body.decode())
                for sample in family.samples
                if sample.name == "mnist_canvas_event_loop_lag_seconds_bucket"}

    def stop(self) -> None:
        stop_process(self.process, timeout=30)


class HealthPoller(threading.Thread):
    """GET /healthz on a new connection every 20 ms; keeps the worst latency and failures."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.worst = 0.0
        self.count = 0
        self.failures = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            started = time.perf_counter()
            try:
                ok = http_get(self.port, "/healthz", timeout=10)[0] == 200
            except OSError:
                ok = False
            self.worst = max(self.worst, time.perf_counter() - started)
            self.count += 1
            self.failures += 0 if ok else 1
            self.halt.wait(0.02)


# --------------------------------------------------------------------------- clients


def request(port: int, method: str, path: str, body: bytes = b"", ctype: str = "",
            headers: dict[str, str] | None = None, timeout: float = 300) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        all_headers = dict(headers or {})
        if ctype:
            all_headers["Content-Type"] = ctype
        conn.request(method, path, body=body or None, headers=all_headers)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return 0, b""  # refused, reset or timed out: counted as status 0
    finally:
        conn.close()


def post(port: int, path: str, body: bytes, ctype: str = "application/json",
         headers: dict[str, str] | None = None) -> Answer:
    return request(port, "POST", path, body, ctype, headers)


def at_once(n: int, job: Callable[[], list[Answer]]) -> list[Answer]:
    with ThreadPoolExecutor(n) as pool:
        return [a for answers in pool.map(lambda _: job(), range(n)) for a in answers]


def disconnect_after(port: int, body: bytes, seconds: float, linger: float) -> list[Answer]:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /api/predict/batch HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\n" + f"Content-Length: {len(body)}\r\n\r\n".encode()
                     + body)
        time.sleep(seconds)
    time.sleep(linger)  # the server's CPU is counted until the attack returns
    return []


def slowloris(port: int, n: int, hold: float) -> list[Answer]:
    socks = []
    for _ in range(n):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=hold + 5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-a: ")
            socks.append(sock)
        except OSError:
            break
    time.sleep(hold)
    answers: list[Answer] = []
    for sock in socks:
        sock.setblocking(False)
        try:
            data = sock.recv(4096)
            # Closed by the server (with or without an answer) or still held open (-1).
            answers.append((int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0, b""))
        except BlockingIOError:
            answers.append((-1, b""))
        except OSError:
            answers.append((0, b""))
        sock.close()
    return answers


def slow_body(port: int, n: int, seconds: float) -> list[Answer]:
    def one() -> list[Answer]:
        with socket.create_connection(("127.0.0.1", port), timeout=seconds + 10) as sock:
            sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                         b"Content-Length: 1000000\r\n\r\n")
            end = time.monotonic() + seconds
            sock.setblocking(False)
            while time.monotonic() < end:
                try:
                    data = sock.recv(4096)
                    if data.startswith(b"HTTP/"):
                        return [(int(data.split(b" ", 2)[1]), b"")]
                    if not data:
                        return [(0, b"")]
                except BlockingIOError:
                    pass
                try:
                    sock.send(b"x")
                except OSError:
                    return [(0, b"")]
                time.sleep(0.5)
            return [(-1, b"")]  # still open: the server waited all along

    return at_once(n, one)


def idle(seconds: float) -> list[Answer]:
    time.sleep(seconds)
    return []


def attacks(args: argparse.Namespace) -> dict[str, Callable[[int], list[Answer]]]:
    bomb, worst, png4k = dots_webp(4096), dots_webp(2048), drawing_png(4096)
    worst_batch = batch_body(worst, 23, "image/webp")
    v2_body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 784],
                                      "data": [0.0] * 784}]}).encode()
    v2_big = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1000, 784],
                                     "data": [0.5] * 784_000}]}).encode()
    junk = json.dumps({"pixels": [0] * 784, "junk": [0.5] * 1_600_000}).encode()
    nested = json.dumps({"pixels": [[[254.5] * 28] * 28] * 1000}).encode()
    flat = json.dumps({"pixels": [[(i * 7) % 256 for i in range(784)]] * 1000}).encode()
    tensors = np.full((1000, 784), 0.5, dtype=np.float32).tobytes()
    v2_head = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1000, 784],
                                      "parameters": {"binary_data_size": len(tensors)}}],
                          "parameters": {"binary_data_output": True}}).encode()
    v2_binary = {"Inference-Header-Content-Length": str(len(v2_head))}
    return {
        "idle": lambda p: idle(3.0),
        "bomb": lambda p: [post(p, "/api/predict", bomb, "image/webp")],
        "bomb-x4": lambda p: at_once(4, lambda: [post(p, "/api/predict", bomb, "image/webp")
                                                 for _ in range(3)]),
        "bomb-batch": lambda p: [post(p, "/api/predict/batch",
                                      batch_body(bomb, args.bomb_batch, "image/webp"))],
        "worst-batch": lambda p: [post(p, "/api/predict/batch", worst_batch)],
        "disconnect": lambda p: disconnect_after(p, worst_batch, 0.5, args.linger),
        "flood-4k": lambda p: at_once(16, lambda: [post(p, "/api/predict", png4k,
                                                        "image/png")]),
        "flood-worst": lambda p: at_once(16, lambda: [post(p, "/api/predict", worst,
                                                           "image/webp")]),
        "flood-64": lambda p: at_once(64, lambda: [post(p, "/api/predict", worst,
                                                        "image/webp")]),
        "slowloris": lambda p: slowloris(p, 200, args.hold),
        "big-head": lambda p: [request(p, "GET", "/healthz",
                                       headers={"X-Pad": "a" * 1_000_000})],
        "slow-body": lambda p: slow_body(p, 20, args.hold),
        "cross-site": lambda p: [post(p, "/v2/models/mnist-logreg/infer", v2_body,
                                      "text/plain")],
        "v2-1000": lambda p: at_once(2, lambda: [post(p, "/v2/models/mnist-logreg/infer",
                                                      v2_big)]),
        "json-16": lambda p: at_once(16, lambda: [post(p, "/api/predict/batch", nested)]),
        "pixels-16": lambda p: at_once(16, lambda: [post(p, "/api/predict/batch", flat)]),
        "v2-bin-16": lambda p: at_once(16, lambda: [post(p, "/v2/models/mnist-logreg/infer",
                                                         v2_head + tensors,
                                                         "application/octet-stream",
                                                         v2_binary)]),
        "json-junk": lambda p: at_once(16, lambda: [post(p, "/api/predict", junk)]),
        "list-bomb": lambda p: [post(p, "/api/predict/batch",
                                     b'{"pixels": [' + b"[]," * 2_650_000 + b"[]]}")],
        "canvas-1000": lambda p: [post(p, "/api/predict/batch",
                                       batch_body(canvas_png(), 1000, "image/png"))],
    }


# --------------------------------------------------------------------------- measuring


class Attacker:
    """attack(port) in a child process at CPU priority `nice`, forked before the poller's
    thread starts (a fork copies no thread) and started by `go`."""

    def __init__(self, attack: Callable[[int], list[Answer]], port: int, nice: int) -> None:
        context = multiprocessing.get_context("fork")
        self.start_event = context.Event()
        self.receiver, sender = context.Pipe(duplex=False)

        def child() -> None:
            os.nice(nice)
            self.start_event.wait()
            sender.send([(status, b"") for status, _ in attack(port)])

        self.process = context.Process(target=child, daemon=True)
        self.process.start()
        sender.close()

    def go(self) -> list[Answer]:
        self.start_event.set()
        try:
            answers: list[Answer] = self.receiver.recv()
        except EOFError as exc:
            raise RuntimeError(f"the attacker process exited with {self.process.exitcode}"
                               ) from exc
        finally:
            self.process.join()
        return answers


def measure(repo: Path, name: str, attack: Callable[[int], list[Answer]],
            attacker_nice: int = 0) -> dict[str, Any]:
    target = Target(repo, bench_env())
    try:
        attacker = Attacker(attack, target.port, attacker_nice) if attacker_nice > 0 else None
        poller = HealthPoller(target.port)
        cpu_before = target.cpu()
        lag_before = target.loop_lag_buckets()
        poller.start()
        started = time.perf_counter()
        answers = attacker.go() if attacker else attack(target.port)
        seconds = time.perf_counter() - started
        poller.halt.set()
        poller.join()
        cpu = target.cpu() - cpu_before
        lag_after = target.loop_lag_buckets()
        peak_added = (target.status_kib("VmHWM") - target.rss_at_ready) / 1024
        alive = target.process.poll() is None
    finally:
        target.stop()
    statuses = Counter(status for status, _ in answers)
    return {
        "attack": name, "statuses": dict(sorted(statuses.items())), "seconds": round(seconds, 2),
        "server_cpu_s": round(cpu, 2), "healthz_worst_ms": round(poller.worst * 1000, 1),
        "healthz_polls": poller.count, "healthz_failures": poller.failures,
        "peak_rss_added_mb": round(peak_added, 1), "server_alive": alive,
        "loop_lag_worst_le_ms": worst_lag_bound(lag_before, lag_after),
    }


def worst_lag_bound(before: dict[float, float], after: dict[float, float]) -> float | None:
    """The smallest histogram bound (ms) that every lag sampled between the scrapes stays under
    (None: no samples, or a server without the metric)."""
    during = {le: after[le] - before.get(le, 0.0) for le in after}
    total = during.get(float("inf"), 0.0)
    if not total:
        return None
    bound = min(le for le, n in during.items() if n >= total)
    return bound * 1000 if bound != float("inf") else float("inf")


def goals(rows: list[dict[str, Any]]) -> dict[str, bool]:
    """The issue's goals, for the attacks that ran."""
    by = {r["attack"]: r for r in rows}
    out: dict[str, bool] = {}
    if "flood-worst" in by:
        out["worst single image <= 0.3 s CPU"] = by["flood-worst"]["server_cpu_s"] / 16 <= 0.3
        out["16 worst-case requests add <= 600 MB"] = by["flood-worst"]["peak_rss_added_mb"] <= 600
    if "bomb" in by:
        out["bomb <= 0.3 s CPU"] = by["bomb"]["server_cpu_s"] <= 0.3
    for name in ("worst-batch", "bomb-batch"):
        if name in by:
            out[f"{name} <= 5 s CPU"] = by[name]["server_cpu_s"] <= 5.0
    out["healthz worst <= 100 ms, never failing"] = all(
        r["healthz_worst_ms"] <= 100 and not r["healthz_failures"] for r in rows
        if r["attack"] != "idle")
    out["no 5xx but 503"] = all(
        not (500 <= int(code) < 600 and int(code) != 503) for r in rows for code in r["statuses"])
    out["server alive after every attack"] = all(r["server_alive"] for r in rows)
    return out


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'attack':<12} {'answers (status: count)':<28} {'CPU s':>7} {'healthz max ms':>15} "
             f"{'+peak RSS MB':>13} {'loop lag ms <=':>14}"]
    for r in rows:
        answers = ", ".join(f"{k}: {v}" for k, v in r["statuses"].items()) or "-"
        fails = f" ({r['healthz_failures']} failed)" if r["healthz_failures"] else ""
        lag = r.get("loop_lag_worst_le_ms")
        lines.append(f"{r['attack']:<12} {answers:<28} {r['server_cpu_s']:>7.2f} "
                     f"{r['healthz_worst_ms']:>15.1f}{fails} {r['peak_rss_added_mb']:>13.1f} "
                     f"{'-' if lag is None else f'{lag:g}':>14}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose server to attack")
    parser.add_argument("--only", default="", help="comma-separated attack names")
    parser.add_argument("--bomb-batch", type=int, default=200, help="bombs in bomb-batch")
    parser.add_argument("--hold", type=float, default=8.0,
                        help="seconds slowloris and slow-body keep their connections")
    parser.add_argument("--linger", type=float, default=8.0,
                        help="seconds after a disconnect during which CPU is still counted")
    parser.add_argument("--attacker-nice", type=int, default=10,
                        help="CPU niceness of the attacking clients' process (0: attack from "
                             "the poller's process, as before)")
    parser.add_argument("--json", default="", help="also write the results here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    chosen = attacks(args)
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
    load_start = os.getloadavg()[0]
    rows = []
    for name, attack in chosen.items():
        rows.append(measure(args.repo.resolve(), name, attack, args.attacker_nice))
        print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    met = goals(rows)
    result = {"machine": machine_info(), "loadavg_1m_start": load_start,
              "attacker_nice": args.attacker_nice,
              "loadavg_1m_end": os.getloadavg()[0], "repo": str(args.repo), "attacks": rows,
              "goals": met, "ok": all(met.values())}
    print(format_table(rows))
    for goal, ok in met.items():
        print(f"{'met' if ok else 'MISSED':<7} {goal}")
    print(f"load average (1 min): {load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the "
          "end")
    return finish(args, result)


if __name__ == "__main__":
    raise SystemExit(main())
