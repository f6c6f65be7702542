"""Run every benchmark and write one report: benchmarks/results/report.json and report.md.

Runs, each as its own process with --json: benchmarks.train, benchmarks.http,
benchmarks.canvas (all 10,000 validation digits; --canvas-split test for the final report on
MNIST's test digits) and benchmarks.load, then writes the combined
results and a Markdown summary (date, machine, versions, the command, one table per benchmark)
ready to paste into the README.

Run from the repository root on an otherwise idle machine:

    python -m benchmarks.run_all               # about 10-15 minutes on 2 cores
    python -m benchmarks.run_all --quick       # each benchmark's --quick (a few minutes)
    python -m benchmarks.run_all --only train canvas --results-dir /tmp/results

Exit status: 0 when every benchmark met its goals, 1 otherwise (the report is written anyway).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import from the repository root, and keep
    # benchmarks/http.py from shadowing the standard library's `http`
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

from benchmarks.environment import REPO, RESULTS_DIR, limit_threads, machine_info

BENCHMARKS = ("train", "http", "batch", "canvas", "load")
TIME_LIMITS = {"train": 1800, "http": 1800, "batch": 900, "canvas": 3600,
               "load": 1800}  # seconds


def run_one(name: str, quick: bool, results: Path, extra: Sequence[str] = ()) -> dict[str, Any]:
    """Run one benchmark module; its JSON result (or why there is none) and its exit status."""
    out = results / f"{name}.json"
    out.unlink(missing_ok=True)
    args = [sys.executable, "-m", f"benchmarks.{name}", "--json", str(out)]
    if quick:
        args.append("--quick")
    args += extra
    print(f"\n=== {name}: {' '.join(args[1:])}", flush=True)
    started = time.perf_counter()
    try:
        proc = subprocess.run(args, cwd=REPO, timeout=TIME_LIMITS[name], check=False)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        code = None
    seconds = round(time.perf_counter() - started, 1)
    if out.exists():
        result: dict[str, Any] = json.loads(out.read_text())
    else:
        result = {"ok": False, "error": "no result written"}
    result["exit_code"] = code
    result["wall_seconds"] = seconds
    if code is None:
        result["error"] = f"timed out after {TIME_LIMITS[name]} s"
    return result


# --------------------------------------------------------------------------- Markdown


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _mark(ok: bool) -> str:
    return "yes" if ok else "**no**"


def md_train(r: dict[str, Any]) -> list[str]:
    lines = [
        "| variant | ours: train s | ours: test acc | scikit-learn: train s (C, iterations) "
        "| scikit-learn: test acc | speed-up | goal met (>= 10x, >= acc) |",
        "|---|---:|---:|---:|---:|---:|:---:|",
    ]
    for row in r.get("rows", []):
        ours, sk = row["ours"], row["sklearn"]
        conv = "" if sk["converged"] else ", not converged"
        lines.append(
            f"| {row['variant']} | {ours['seconds']:.2f} | {_pct(ours['test_accuracy'])} | "
            f"{sk['seconds']:.2f} (C={sk['C']:g}, {sk['n_iter']}{conv}) | "
            f"{_pct(sk['test_accuracy'])} | {row['speedup']:.1f}x | {_mark(row['ok'])} |"
        )
    lines.append("")
    lines.append(f"Ours: `train(data, TrainConfig())` on {r.get('train_size')} images, one "
                 "thread, median of the repeats; scikit-learn: `LogisticRegression(solver="
                 "\"lbfgs\")` on the same normalised inputs, one BLAS thread. Both times include "
                 "building the inputs.")
    whole = r.get("whole_process")
    if whole:
        o, s = whole["ours"], whole["sklearn"]
        lines += ["", f"Whole processes, median of {whole['repeats']} alternated (1-minute load "
                  f"average {min(whole['loadavg_1min']):.2f}-{max(whole['loadavg_1min']):.2f}): "
                  f"`mnist-canvas train --no-calibrate` {o['wall_seconds']:.2f} s wall, "
                  f"{o['cpu_seconds']:.2f} s CPU; scikit-learn's process {s['wall_seconds']:.2f} "
                  f"s wall, {s['cpu_seconds']:.2f} s CPU: {whole['speedup_wall']:.1f}x wall, "
                  f"{whole['speedup_cpu']:.1f}x CPU (goal >= {whole['goal']:g}x): "
                  f"{_mark(whole['ok'])}."]
        calibrated = whole.get("ours_calibrated")
        if calibrated:
            lines[-1] += (f" With the verdict's calibration, `mnist-canvas train` "
                          f"{calibrated['wall_seconds']:.2f} s wall, "
                          f"{calibrated['cpu_seconds']:.2f} s CPU "
                          f"({whole['speedup_wall_calibrated']:.1f}x wall).")
    return lines


def md_batch(r: dict[str, Any]) -> list[str]:
    return ["```", str(r.get("table", "")), "```"]


def md_http(r: dict[str, Any]) -> list[str]:
    lines = [
        "| workers | concurrency | request | req/s | x /healthz | p50 ms | p99 ms | failures "
        "| goal met |",
        "|---:|---:|---|---:|---:|---:|---:|---:|:---:|",
    ]
    for row in r.get("rows", []):
        lines.append(
            f"| {row['workers']} | {row['concurrency']} | {row['kind']} | {row['rps']:.0f} | "
            f"{row['ratio']:.2f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
            f"{row['failures']} | {_mark(row['ok'])} |"
        )
    pre = r.get("preprocess", {})
    start = r.get("startup", {})
    lines.append("")
    lines.append("Goals: png >= 0.35x and pixels >= 0.5x the /healthz rate of the same run; "
                 "p99 <= 100 ms at concurrency 64; no failures. png: multipart upload of a "
                 "280x280 PNG; dataurl: the page's JSON data URL; pixels: 784 numbers.")
    lines.append("")
    for workers, ms in r.get("sequential_healthz_ms", {}).items():
        note = (" (about 40 ms: the sockets lack TCP_NODELAY, Nagle's algorithm waits for "
                "delayed ACKs)" if ms > 20 else "")
        lines.append(f"- {workers} worker(s): back-to-back `GET /healthz` on one keep-alive "
                     f"connection takes {ms:.2f} ms{note}.")
    if pre:
        one = pre["one_blas_thread"]
        many = pre["default_blas_threads"]
        lines.append(f"- `preprocess_image` per canvas PNG (in process, {pre['images']} "
                     f"drawings): {one['mean_ms']:.2f} ms mean, {one['p99_ms']:.2f} ms p99 "
                     f"(1 BLAS thread); {many['mean_ms']:.2f} ms mean with numpy's default "
                     f"{pre['blas_threads_default']} BLAS threads.")
    if start:
        lines.append(f"- Start to `/readyz` 200: {start['server_ready_s']:.2f} s; a bare "
                     f"`import torch` + `load_file(model)` process: {start['baseline_s']:.2f} s "
                     f"({start['ratio']:.2f}x, goal <= 1.5x: {_mark(start['ok'])}).")
    return lines


SPLIT_NAMES = {"valid": "validation digits (the last 10,000 of MNIST's training file)",
               "test": "MNIST test digits (final test numbers)"}


def md_canvas(r: dict[str, Any]) -> list[str]:
    lines = [
        "| condition | accuracy | 28x28, same digits | difference | small | medium | large "
        "| goal met (>= -2 pt) |",
        "|---|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for c in r.get("conditions", []):
        sizes = " | ".join(_pct(c["by_size"][b]) if b in c["by_size"] else "-"
                           for b in ("small", "medium", "large"))
        lines.append(f"| {c['name']} | {_pct(c['accuracy'])} | {_pct(c['reference'])} | "
                     f"{c['delta_points']:+.2f} pt | {sizes} | {_mark(c['ok'])} |")
    if "reference" in r:
        lines.append(f"| **all conditions** | {_pct(r['overall'])} | {_pct(r['reference'])} | "
                     f"{100 * (r['overall'] - r['reference']):+.2f} pt | | | | |")
        lines.append("")
        lines.append(
            f"{r['digits']} {SPLIT_NAMES[r.get('split', 'test')]} per condition, drawn on "
            "280x280 canvases at random positions and sizes (small/medium/large: ink height in "
            "thirds of 25-90% of the canvas), rotated up to 10 degrees, sent as data URLs "
            "through the live API. "
            f"/api/predict vs /api/predict/batch on {r['single_checked']} drawings: "
            f"{r['single_digit_mismatches']} different digits.")
    return lines


def md_load(r: dict[str, Any]) -> list[str]:
    lines = [
        "| request | count | req/s | p50 ms | p99 ms | max ms | failures |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    kinds = dict(r.get("kinds", {}))
    if "overall" in r:
        kinds["all"] = r["overall"]
    for kind, s in kinds.items():
        fail = s["non_2xx"] + s["errors"] + s["timeouts"]
        lines.append(f"| {kind} | {s['requests']} | {s['rps']:.1f} | {s['p50_ms']:.1f} | "
                     f"{s['p99_ms']:.1f} | {s['max_ms']:.1f} | {fail} |")
    if "rss_mib" in r:
        rss = r["rss_mib"]
        lines.append("")
        lines.append(f"{r['sent']} requests at concurrency {r['concurrency']} against one worker "
                     f"(the first {r['warmup_requests']} are warm-up, not in the table); "
                     f"failures: {r['failures']}. Resident memory: {rss['after_warmup']} MiB "
                     f"after warm-up, {rss['end']} MiB at the end ({r['rss_growth_pct']:+.1f}%, "
                     f"limit < 10%): {_mark(r['ok'])}.")
    return lines


RENDERERS = {"train": md_train, "http": md_http, "batch": md_batch, "canvas": md_canvas,
             "load": md_load}
TITLES = {
    "train": "Training: ours vs scikit-learn",
    "http": "HTTP throughput and latency",
    "batch": "Batch inference (1,000 images a request)",
    "canvas": "Canvas fidelity",
    "load": "Sustained load (one worker)",
}


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# mnist-canvas benchmarks",
        "",
        f"- Date: {report['date']}",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM "
        f"({m['platform']})",
        f"- Python {m['python']}, torch {m['torch']}",
        f"- Command: `{report['command']}`",
        f"- All goals met: {_mark(report['ok'])}",
    ]
    for name, result in report["results"].items():
        lines += ["", f"## {TITLES[name]}", ""]
        if "error" in result:
            lines.append(f"Did not complete: {result['error']} (exit {result['exit_code']}).")
            lines.append("")
        lines += RENDERERS[name](result)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="each benchmark's --quick")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument("--results-dir", default=str(RESULTS_DIR))
    parser.add_argument("--canvas-split", choices=("valid", "test"), default="valid",
                        help="digits the canvas benchmark draws (test: the final report only)")
    args = parser.parse_args(argv)
    limit_threads()
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    extra = {"canvas": ["--split", args.canvas_split]}
    results = {name: run_one(name, args.quick, results_dir, extra.get(name, ()))
               for name in BENCHMARKS if name in args.only}
    report = {
        "date": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "command": " ".join(["python", "-m", "benchmarks.run_all", *sys.argv[1:]]),
        "quick": args.quick,
        "ok": all(r.get("ok") for r in results.values()),
        "results": results,
    }
    (results_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (results_dir / "report.md").write_text(text)
    print()
    print(text)
    print(f"wrote {results_dir / 'report.json'} and {results_dir / 'report.md'}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
