"""Preprocessing in process: what each canvas condition costs and how well it reads, no HTTP.

The digits of a split (benchmarks/drawing.py, the same drawings as benchmarks/canvas.py) are
drawn once per condition; then, for each setting of the preprocessing constants, every drawing
goes through model.preprocess.preprocess_image in this process and the shipped model
(model.inference.Predictor) reads the result. Per condition it prints the accuracy next to the
same digits' 28x28 accuracy, and the CPU time of preprocess_image per drawing (this thread's
CPU time, so other processes on the machine do not inflate it): mean, p50, p90, and the share
of drawings whose strokes were eroded (the bold path). The goal: a bold drawing (the thick
marker) costs at most 1.5 ms on average.

It is the tool the constants in model/preprocess were chosen with, on validation digits:
`--set NAME=VALUE` overrides a constant, `--sweep NAME=V1,V2,...` tries each value in turn
(the drawings are made once). The test digits (`--split test`) are for the final report only.

    python -m benchmarks.preprocess                       # 1,000 validation digits, 7 conditions
    python -m benchmarks.preprocess --conditions thick page-brush --limit 2000 \\
        --sweep ERODE_TO=0.7,0.8,0.9
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import pickle
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import from the repository root, and keep
    # benchmarks/http.py from shadowing the standard library's `http`
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

import numpy as np

from benchmarks.canvas import add_sample_arguments, score, split_digits
from benchmarks.drawing import CONDITIONS, Condition, draw_indexed
from benchmarks.environment import SHIPPED_MODEL, data_dir, limit_threads, machine_info
from benchmarks.reporting import finish

#: A bold drawing's preprocessing, mean CPU ms: the goal for the conditions drawn with a marker.
BOLD_GOAL_MS = 1.5
BOLD_CONDITIONS = ("thick",)
TOLERANCE = 2.0  # points, as benchmarks/canvas.py


@dataclass
class Drawings:
    """One condition's drawings of a split: PNG/JPEG bytes and the ink heights."""

    condition: Condition
    data: list[bytes]
    heights: np.ndarray


def _draw(args: tuple[np.ndarray, int, Condition, int]) -> list[tuple[bytes, float]]:
    digits, start, condition, seed = args
    return [(d.data, d.height) for d in (draw_indexed(digit, start + k, condition, seed)
                                         for k, digit in enumerate(digits))]


def draw_all(images: np.ndarray, conditions: Sequence[Condition], seed: int,
             jobs: int, cache: Path | None = None) -> list[Drawings]:
    """Every image drawn under every condition (the same drawings as benchmarks/canvas.py),
    kept in `cache` (a directory) for the next run with the same digits and seed."""
    chunk = 100
    out = []
    key = hashlib.sha256(images.tobytes() + str(seed).encode()).hexdigest()[:16]
    pool = (ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"))
            if jobs > 1 else None)
    try:
        for condition in conditions:
            kept = cache / f"{condition.name}-{key}.pickle" if cache else None
            if kept is not None and kept.exists():
                out.append(pickle.loads(kept.read_bytes()))
                continue
            tasks = [(images[i : i + chunk], i, condition, seed)
                     for i in range(0, len(images), chunk)]
            parts = list(pool.map(_draw, tasks) if pool else map(_draw, tasks))
            drawn = [d for part in parts for d in part]
            out.append(Drawings(condition, [d for d, _h in drawn],
                                np.array([h for _d, h in drawn], dtype=np.float64)))
            if kept is not None:
                kept.parent.mkdir(parents=True, exist_ok=True)
                kept.write_bytes(pickle.dumps(out[-1]))
    finally:
        if pool is not None:
            pool.shutdown()
    return out


@contextmanager
def constants(overrides: dict[str, float]) -> Iterator[None]:
    """Preprocessing constants set to `overrides` in every module of model.preprocess that
    reads them, and restored afterwards."""
    import importlib

    names = ("model.preprocess", "model.preprocess.ink", "model.preprocess.stroke",
             "model.preprocess.field")
    modules = [importlib.import_module(n) for n in names]
    saved: list[tuple[Any, str, Any]] = []
    for name, value in overrides.items():
        holders = [m for m in modules if hasattr(m, name)]
        if not holders:
            raise SystemExit(f"model.preprocess has no constant {name}")
        for module in holders:
            saved.append((module, name, getattr(module, name)))
            setattr(module, name, value)
    try:
        yield
    finally:
        for module, name, value in reversed(saved):
            setattr(module, name, value)


def run_condition(drawings: Drawings, predictor: Any) -> tuple[np.ndarray, list[float], float]:
    """Predicted digits (-1: refused), CPU seconds per drawing, and the share eroded."""
    from model.preprocess import PreprocessError, field, preprocess_image

    eroded = 0
    real_erode = field.erode_smoothly

    def counting_erode(*args: Any, **kwargs: Any) -> np.ndarray:
        nonlocal eroded
        eroded += 1
        return real_erode(*args, **kwargs)

    digits = np.zeros((len(drawings.data), 28, 28), dtype=np.float32)
    ok = np.ones(len(drawings.data), dtype=bool)
    times = []
    field.erode_smoothly = counting_erode  # type: ignore[assignment]
    try:
        for i, data in enumerate(drawings.data):
            started = time.thread_time()
            try:
                digits[i] = preprocess_image(data)
            except PreprocessError:
                ok[i] = False
            times.append(time.thread_time() - started)
    finally:
        field.erode_smoothly = real_erode
    predicted = predictor.probabilities(digits).argmax(axis=1)
    predicted[~ok] = -1
    return predicted, times, eroded / max(1, len(drawings.data))


def evaluate(drawn: Sequence[Drawings], labels: np.ndarray, reference: np.ndarray,
             predictor: Any, overrides: dict[str, float]) -> dict[str, Any]:
    """One setting of the constants: accuracy and cost per condition."""
    rows = []
    with constants(overrides):
        for drawings in drawn:
            predicted, times, eroded = run_condition(drawings, predictor)
            result = score(drawings.condition, predicted, drawings.heights, labels, reference,
                           TOLERANCE)
            ms = sorted(1000.0 * t for t in times)
            rows.append({
                "name": result.name, "accuracy": result.accuracy, "reference": result.reference,
                "delta_points": result.delta_points, "errors": result.errors,
                "by_size": result.by_size, "eroded": round(eroded, 3),
                "mean_ms": round(statistics.fmean(ms), 3), "p50_ms": round(ms[len(ms) // 2], 3),
                "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 3),
            })
    correct = sum(r["accuracy"] * len(labels) for r in rows)
    return {"overrides": overrides, "conditions": rows,
            "overall": round(correct / (len(labels) * len(rows)), 4),
            "worst_delta": min(r["delta_points"] for r in rows)}


def table(result: dict[str, Any]) -> str:
    lines = [f"{'condition':<14} {'accuracy':>9} {'28x28':>7} {'delta':>7}  {'eroded':>6}  "
             f"{'mean ms':>7} {'p50 ms':>7} {'p90 ms':>7}"]
    for r in result["conditions"]:
        lines.append(f"{r['name']:<14} {100 * r['accuracy']:>8.2f}% {100 * r['reference']:>6.2f}% "
                     f"{r['delta_points']:>+7.2f}  {100 * r['eroded']:>5.1f}%  "
                     f"{r['mean_ms']:>7.3f} {r['p50_ms']:>7.3f} {r['p90_ms']:>7.3f}")
    lines.append(f"{'all conditions':<14} {100 * result['overall']:>8.2f}%   worst delta "
                 f"{result['worst_delta']:+.2f} pt")
    return "\n".join(lines)


def parse_assignments(items: Sequence[str]) -> list[tuple[str, list[float]]]:
    out = []
    for item in items:
        name, sep, values = item.partition("=")
        if not sep:
            raise SystemExit(f"expected NAME=VALUE[,VALUE...], not {item!r}")
        out.append((name.strip(), [float(v) for v in values.split(",")]))
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from model.data import load_mnist
    from model.inference import Predictor

    data = load_mnist(data_dir(), download=False)
    images, labels = split_digits(data, args.split, args.limit, spread=args.spread)
    predictor = Predictor.from_path(args.model, device="cpu")
    reference = predictor.probabilities(images.astype(np.float32)).argmax(axis=1) == labels
    conditions = [c for c in CONDITIONS if not args.conditions or c.name in args.conditions]
    started = time.perf_counter()
    cache = Path(args.cache) if args.cache else None
    drawn = draw_all(images, conditions, args.seed, args.jobs, cache)
    print(f"drew {len(images)} {args.split} digits x {len(conditions)} conditions in "
          f"{time.perf_counter() - started:.1f} s; load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    base = {name: values[0] for name, values in parse_assignments(args.set)}
    settings = [dict(base)]
    for name, values in parse_assignments(args.sweep):
        settings += [{**base, name: value} for value in values]
    results = []
    for overrides in settings:
        result = evaluate(drawn, labels, reference, predictor, overrides)
        print(f"\nconstants: {overrides or 'as shipped'}")
        print(table(result), flush=True)
        results.append(result)
    bold = [r for r in results[0]["conditions"] if r["name"] in BOLD_CONDITIONS]
    speed_ok = all(r["mean_ms"] <= BOLD_GOAL_MS for r in bold)
    if bold:
        costs = ", ".join(f"{r['name']} {r['mean_ms']:.3f} ms" for r in bold)
        print(f"\nbold drawings: {costs} mean CPU per drawing (goal <= {BOLD_GOAL_MS} ms): "
              f"{'yes' if speed_ok else 'no'}")
    return {
        "benchmark": "preprocess",
        "command": " ".join(["python", "-m", "benchmarks.preprocess", *sys.argv[1:]]),
        "machine": machine_info(),
        "load_average": round(os.getloadavg()[0], 2),
        "split": args.split,
        "digits": len(images),
        "seed": args.seed,
        "bold_goal_ms": BOLD_GOAL_MS,
        "ok": speed_ok,
        "results": results,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sample_arguments(parser, "200 digits instead of 1,000", "drawing processes")
    parser.add_argument("--spread", action="store_true",
                        help="every (10,000 / limit)-th digit instead of the first ones, as the "
                             "CI test (tests/app/test_canvas_fidelity.py) samples them")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a preprocessing constant (repeatable)")
    parser.add_argument("--sweep", action="append", default=[], metavar="NAME=V1,V2",
                        help="also run with each of these values of a constant (repeatable)")
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help="keep the drawings here and reuse them in later runs")
    parser.add_argument("--model", default=str(SHIPPED_MODEL))
    parser.add_argument("--json", default=None, metavar="PATH", help="write the results here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    limit_threads()
    if args.limit is None:
        args.limit = 200 if args.quick else 1000
    return finish(args, run(args))


if __name__ == "__main__":
    raise SystemExit(main())
