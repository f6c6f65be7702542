"""Canvas fidelity: MNIST digits drawn the way people draw on the page, read by a live server.

Every digit is re-drawn on a 280x280 canvas under each condition below (benchmarks/drawing.py:
a fixed seed per digit and condition), rotated by up to +-10 degrees, scaled so the rotated
digit is from a quarter to nine tenths of the canvas tall, placed at a random position, and sent
to a real `mnist-canvas serve` process through POST /api/predict/batch as JSON data URLs, the
form the page sends to /api/predict. The first --single-check drawings of each condition also go
one by one through POST /api/predict and must get the same digit, preview and probabilities. The
same digits as 28x28 pixels (JSON, no preprocessing) give the reference accuracy in the same run.

Which digits: `--split valid` (the default) draws the validation digits, the last 10,000 of
MNIST's training file, which the shipped model was not trained on: every preprocessing constant
is chosen on these. `--split test` draws MNIST's 10,000 test digits: for the final report only,
once the constants are chosen, never for tuning.

Conditions (CONDITIONS): page-brush (exactly what the page sends: transparent PNG, opaque black
ink), transparent / dark-on-light / light-on-dark PNGs of the digit's own strokes, thin (0.5x
MNIST's stroke) and thick (2x) pens, and a JPEG (quality 85) dark-on-light image. Accuracy is
also reported by size, thirds of the height range (small, medium, large).

Run from the repository root:

    python -m benchmarks.canvas              # all 10,000 validation digits x 7 conditions
    python -m benchmarks.canvas --quick      # 500 digits
    python -m benchmarks.canvas --split test # the final report on the test digits (minutes)
    python -m benchmarks.canvas --limit 2000 --json out.json --save-examples /tmp/canvas

Environment: MNIST_CANVAS_DATA_DIR (default ../shared/data/mnist). The goal: every condition
within 2 points of the 28x28 accuracy of the same digits.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

if __package__ in (None, ""):  # run as a file: import from the repository root, and keep
    # benchmarks/http.py from shadowing the standard library's `http`
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

import numpy as np
from PIL import Image

from benchmarks.drawing import (
    CANVAS,
    CONDITION_NAMES,
    CONDITIONS,
    DEFAULT_SEED,
    Condition,
    draw_chunk,
    draw_indexed,
)
from model.data import Mnist

# --------------------------------------------------------------------------- digits


SPLITS = ("valid", "test")


def add_split_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--split", choices=SPLITS, default="valid",
        help="valid: the last 10,000 training digits, for choosing constants (default); "
             "test: MNIST's test digits, for the final report only")


def add_sample_arguments(parser: argparse.ArgumentParser, quick: str, jobs: str) -> None:
    """Which digits are drawn, how, and by how many processes: the arguments shared by this
    benchmark and benchmarks/preprocess.py (`quick` and `jobs` say what each one means there)."""
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--limit", type=int, default=None, help="number of digits")
    add_split_argument(parser)
    parser.add_argument("--conditions", nargs="*", choices=CONDITION_NAMES, default=None,
                        help="only these conditions (default: all)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)), help=jobs)


def split_digits(data: Mnist, split: str, limit: int,
                 spread: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """`limit` digits and labels of the validation or the test split: the first ones, or with
    `spread` every (size / limit)-th one (all ten classes in any sample, as CI's test takes)."""
    images, labels = ((data.valid_images, data.valid_labels) if split == "valid"
                      else (data.test_images, data.test_labels))
    if not spread:
        return images[:limit], labels[:limit]
    pick = np.linspace(0, len(images) - 1, min(limit, len(images))).round().astype(int)
    return images[pick], labels[pick]


# --------------------------------------------------------------------------- scoring


SIZE_BANDS = (("small", 0.25, 0.4833), ("medium", 0.4833, 0.7167), ("large", 0.7167, 0.91))


@dataclass
class ConditionResult:
    name: str
    description: str
    n: int
    accuracy: float
    reference: float  # 28x28 accuracy of the same digits
    delta_points: float
    by_size: dict[str, float]  # accuracy by ink height, thirds of HEIGHT_RANGE
    reference_by_size: dict[str, float]
    errors: int  # drawings the API refused (counted as wrong)
    ok: bool


@dataclass
class CanvasReport:
    """Everything one fidelity run measured."""

    digits: int
    reference: float
    overall: float
    conditions: list[ConditionResult]
    single_checked: int = 0
    single_digit_mismatches: int = 0
    single_preview_mismatches: int = 0
    single_max_probability_diff: float = 0.0
    tolerance: float = 2.0

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.conditions) and self.single_consistent

    @property
    def single_consistent(self) -> bool:
        # Probabilities are rounded to 6 decimals; a batch's matrix product may differ from a
        # single image's in the last bit, so allow two units of the 6th decimal, counted in
        # those units (0.123457 - 0.123455 is 2.0000000000575e-06 in floating point).
        return (self.single_digit_mismatches == 0 and self.single_preview_mismatches == 0
                and round(self.single_max_probability_diff * 1e6) <= 2)

    def table(self) -> str:
        lines = [
            f"{'condition':<14} {'n':>6} {'accuracy':>9} {'28x28':>7} {'delta':>7}  "
            f"{'small':>6} {'medium':>6} {'large':>6}  goal(>= -{self.tolerance:g} pt)",
        ]
        for r in self.conditions:
            sizes = " ".join(f"{100 * r.by_size.get(b, float('nan')):>6.2f}"
                             for b, _l, _h in SIZE_BANDS)
            lines.append(
                f"{r.name:<14} {r.n:>6} {100 * r.accuracy:>8.2f}% {100 * r.reference:>6.2f}% "
                f"{r.delta_points:>+7.2f}  {sizes}  {'ok' if r.ok else 'FAIL'}"
            )
        lines.append(f"{'28x28 (same digits, through the API)':<36} {100 * self.reference:>6.2f}%")
        lines.append(f"{'all conditions':<36} {100 * self.overall:>6.2f}%  "
                     f"({len(self.conditions)} conditions x {self.digits} digits)")
        lines.append(
            f"single /api/predict vs batch on {self.single_checked} drawings: "
            f"{self.single_digit_mismatches} digit and {self.single_preview_mismatches} preview "
            f"differences, probabilities within {self.single_max_probability_diff:.1e} "
            f"{'ok' if self.single_consistent else 'FAIL'}"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        out["table"] = self.table()
        return out


def size_band(height: float) -> str:
    frac = height / CANVAS
    for name, _lo, hi in SIZE_BANDS:
        if frac < hi:
            return name
    return SIZE_BANDS[-1][0]


def score(condition: Condition, predicted: np.ndarray, heights: np.ndarray, labels: np.ndarray,
          reference_correct: np.ndarray, tolerance: float) -> ConditionResult:
    correct = predicted == labels
    accuracy = float(correct.mean())
    reference = float(reference_correct.mean())
    bands = np.array([size_band(h) for h in heights])
    by_size = {b: round(float(correct[bands == b].mean()), 4)
               for b, _lo, _hi in SIZE_BANDS if (bands == b).any()}
    ref_size = {b: round(float(reference_correct[bands == b].mean()), 4)
                for b, _lo, _hi in SIZE_BANDS if (bands == b).any()}
    delta = 100.0 * (accuracy - reference)
    return ConditionResult(name=condition.name, description=condition.description,
                           n=int(len(labels)), accuracy=round(accuracy, 4),
                           reference=round(reference, 4), delta_points=round(delta, 2),
                           by_size=by_size, reference_by_size=ref_size,
                           errors=int((predicted < 0).sum()), ok=delta >= -tolerance)


# --------------------------------------------------------------------------- the live run


class Client(Protocol):
    """What evaluate() needs of a client: httpx.Client(base_url=...) or FastAPI's TestClient."""

    def post(self, url: str, *, json: Any = ...) -> Any: ...


def rendered(images: np.ndarray, indices: np.ndarray, condition: Condition, seed: int,
             chunk: int, pool: Executor | None) -> Iterator[list[tuple[str, float]]]:
    """Data URLs (and ink heights) of `images` under one condition, in chunks, in order."""
    tasks = [(images[i : i + chunk], indices[i : i + chunk], condition, seed)
             for i in range(0, len(images), chunk)]
    if pool is None:
        yield from map(draw_chunk, tasks)
    else:
        yield from pool.map(draw_chunk, tasks)


def _post_ok(client: Client, url: str, body: dict[str, Any]) -> Any:
    response = client.post(url, json=body)
    if response.status_code != 200:
        raise RuntimeError(f"POST {url} answered {response.status_code}: {response.text[:300]}")
    return response.json()


def evaluate(client: Client, images: np.ndarray, labels: np.ndarray,
             conditions: Sequence[Condition] = CONDITIONS, *, seed: int = DEFAULT_SEED,
             batch: int = 100, jobs: int = 1, single_check: int = 100,
             tolerance: float = 2.0, progress: bool = False) -> CanvasReport:
    """Accuracy of the API on `images` drawn under each condition, next to the 28x28 images.

    Drawings go to POST /api/predict/batch as {"images": [data URLs]} in chunks of `batch`;
    the first `single_check` of each condition also go one by one to POST /api/predict, the
    page's route, whose digit, preview and probabilities must match the batch answer's.
    A drawing the API refuses counts as wrong.
    """
    count = len(images)
    ref_pred = np.empty(count, dtype=np.int64)
    for i in range(0, count, batch):
        body = {"pixels": images[i : i + batch].reshape(-1, 784).tolist()}
        answers = _post_ok(client, "/api/predict/batch", body)["predictions"]
        ref_pred[i : i + batch] = [p["digit"] for p in answers]
    ref_correct = ref_pred == labels
    report = CanvasReport(digits=count, reference=round(float(ref_correct.mean()), 4),
                          overall=float("nan"), conditions=[], tolerance=tolerance)
    if progress:
        print(f"28x28 accuracy of the {count} digits through the API: "
              f"{100 * report.reference:.2f}%", flush=True)
    all_correct: list[np.ndarray] = []
    pool = (ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"))
            if jobs > 1 else None)
    try:
        for condition in conditions:
            _evaluate_condition(client, images, labels, condition, ref_correct, report,
                                all_correct, seed=seed, batch=batch, pool=pool,
                                single_check=single_check, progress=progress)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if all_correct:
        report.overall = round(float(np.concatenate(all_correct).mean()), 4)
    return report


def _evaluate_condition(client: Client, images: np.ndarray, labels: np.ndarray,
                        condition: Condition, ref_correct: np.ndarray, report: CanvasReport,
                        all_correct: list[np.ndarray], *, seed: int, batch: int,
                        pool: Executor | None, single_check: int, progress: bool) -> None:
    count = len(images)
    indices = np.arange(count)
    started = time.perf_counter()
    predicted = np.full(count, -1, dtype=np.int64)
    heights = np.empty(count, dtype=np.float64)
    pos = 0
    for chunk in rendered(images, indices, condition, seed, batch, pool):
        urls = [u for u, _h in chunk]
        answers = _post_ok(client, "/api/predict/batch", {"images": urls})["predictions"]
        for k, answer in enumerate(answers):
            if "error" not in answer:
                predicted[pos + k] = answer["digit"]
        heights[pos : pos + len(chunk)] = [h for _u, h in chunk]
        for k in range(min(len(urls), max(0, single_check - pos))):
            _compare_single(client, urls[k], answers[k], report)
        pos += len(chunk)
    result = score(condition, predicted, heights, labels, ref_correct, report.tolerance)
    report.conditions.append(result)
    all_correct.append(predicted == labels)
    if progress:
        print(f"  {condition.name:<14} {100 * result.accuracy:6.2f}%  "
              f"({result.delta_points:+.2f} pt, {time.perf_counter() - started:.1f} s)",
              flush=True)


def _compare_single(client: Client, url: str, batch_answer: dict[str, Any],
                    report: CanvasReport) -> None:
    report.single_checked += 1
    response = client.post("/api/predict", json={"image": url})
    if response.status_code != 200 or "error" in batch_answer:
        same_error = response.status_code != 200 and "error" in batch_answer
        report.single_digit_mismatches += int(not same_error)
        return
    one = response.json()
    report.single_digit_mismatches += int(one["digit"] != batch_answer["digit"])
    report.single_preview_mismatches += int(one["preview"] != batch_answer["preview"])
    diff = float(np.max(np.abs(np.asarray(one["probabilities"])
                               - np.asarray(batch_answer["probabilities"]))))
    report.single_max_probability_diff = max(report.single_max_probability_diff, diff)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from benchmarks.environment import REPO, bench_env, data_dir, machine_info
    from benchmarks.servers import ServerProcess
    from model.data import load_mnist

    data = load_mnist(data_dir(), download=False)
    images, labels = split_digits(data, args.split, args.limit)
    conditions = [c for c in CONDITIONS if not args.conditions or c.name in args.conditions]
    started = time.perf_counter()
    env = bench_env()
    with ServerProcess(model=args.model, workers=1, env=env) as server, \
            httpx.Client(base_url=server.url, timeout=300.0) as client:
        report = evaluate(client, images, labels, conditions, seed=args.seed, batch=args.batch,
                          jobs=args.jobs, single_check=args.single_check,
                          tolerance=args.tolerance, progress=True)
        if args.save_examples:
            for condition in conditions:
                save_examples(Path(args.save_examples), condition, images, labels, client,
                              args.seed)
    elapsed = time.perf_counter() - started
    table = report.table()
    print()
    print(table)
    print(f"elapsed {elapsed:.1f} s")
    model = Path(args.model).resolve()
    return {
        "benchmark": "canvas",
        "command": " ".join([sys.executable, "-m", "benchmarks.canvas", *sys.argv[1:]]),
        "machine": machine_info(),
        "model": str(model.relative_to(REPO) if model.is_relative_to(REPO) else model),
        "seed": args.seed,
        "split": args.split,
        "seconds": round(elapsed, 1),
        **report.to_dict(),
    }


def save_examples(directory: Path, condition: Condition, images: np.ndarray, labels: np.ndarray,
                  client: Client, seed: int, count: int = 12) -> None:
    """Write drawings next to the original and the server's 28x28 preview, misreads first:
    DIR/<condition>-<index>-true<d>-pred<d>.png (canvas | original x4 | preview x4)."""
    directory.mkdir(parents=True, exist_ok=True)
    answers = []
    for index in range(min(len(images), 10 * count)):
        drawing = draw_indexed(images[index], index, condition, seed)
        body = client.post("/api/predict", json={"image": drawing.data_url()}).json()
        answers.append((index, drawing, body))
    answers.sort(key=lambda a: a[2].get("digit") == labels[a[0]])  # misreads first
    for index, drawing, body in answers[:count]:
        preview = np.asarray(body.get("preview", np.zeros((28, 28))), dtype=np.uint8)
        canvas = Image.open(io.BytesIO(drawing.data)).convert("RGBA")
        flat = Image.new("RGBA", canvas.size, (200, 200, 255, 255))
        flat.alpha_composite(canvas)
        tile = Image.new("L", (CANVAS + 2 * 116, CANVAS), 128)
        tile.paste(flat.convert("L"), (0, 0))
        tile.paste(Image.fromarray(images[index]).resize((112, 112), Image.Resampling.NEAREST),
                   (CANVAS + 4, 0))
        tile.paste(Image.fromarray(preview).resize((112, 112), Image.Resampling.NEAREST),
                   (CANVAS + 120, 0))
        name = f"{condition.name}-{index:05d}-true{labels[index]}-pred{body.get('digit')}.png"
        tile.save(directory / name)
    print(f"  examples of {condition.name} in {directory} (canvas | original | preview)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sample_arguments(parser, "500 digits instead of 10,000", "rendering processes")
    parser.add_argument("--batch", type=int, default=100, help="images per batch request")
    parser.add_argument("--single-check", type=int, default=100,
                        help="per condition, this many images also go through /api/predict")
    parser.add_argument("--tolerance", type=float, default=2.0,
                        help="allowed accuracy drop in points")
    parser.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    parser.add_argument("--save-examples", default=None, metavar="DIR",
                        help="write example drawings with the server's previews here")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the results here")
    return parser


def main(argv: list[str] | None = None) -> int:
    from benchmarks.environment import SHIPPED_MODEL, limit_threads
    from benchmarks.reporting import finish

    args = build_parser().parse_args(argv)
    limit_threads()
    if args.limit is None:
        args.limit = 500 if args.quick else 10_000
    if args.model is None:
        args.model = str(SHIPPED_MODEL)
    return finish(args, run(args))


if __name__ == "__main__":
    raise SystemExit(main())
