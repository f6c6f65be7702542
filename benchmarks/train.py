"""Training speed and accuracy: the default recipe against scikit-learn's LogisticRegression.

Both models see the same data: the 50,000 training images normalised with the training
mean/std (model.training.to_inputs, so exactly the same float32 inputs), and both are scored on
the 10,000 test images. Ours is `train(data, TrainConfig())` (8 epochs of Adam, cosine schedule);
its time is `TrainResult.train_seconds` (input tensors, the fit loop and the per-epoch
validation pass). scikit-learn's is `LogisticRegression(solver="lbfgs", C=SKLEARN_C)` fitted to
convergence (n_iter_ < max_iter is checked and reported); its time covers the same input
preparation plus `fit`. One thread each (torch and BLAS). The `deskew` row repeats both with
the deskew input transform.

C was chosen once per variant with `--tune-c` as the best validation accuracy among 0.003,
0.01, 0.03, 0.1, 0.3 and 1 (SKLEARN_C below: 0.03 plain, 0.003 deskew, with the numbers); it is
fixed so that every run reports the same oracle. Ours is timed --repeats times (median).

Run from the repository root:

    python -m benchmarks.train                # both rows, about 2 minutes
    python -m benchmarks.train --quick        # the plain row only
    python -m benchmarks.train --tune-c       # re-run the choice of C (several minutes)
    python -m benchmarks.train --device cuda --json out.json

Goal: ours at least 10x faster than scikit-learn at equal or better test accuracy.

Whole processes: what a user waits for. `mnist-canvas train --no-calibrate` (the default
recipe, one torch thread, saving its checkpoint: a classifier, the same product as
scikit-learn's) and `mnist-canvas train` (the same, then fitting the not-a-digit verdict and
temperature: what a user who types the plain command waits for) against
`python -m benchmarks.sklearn_train` (the same inputs, lbfgs with the plain C, one BLAS thread,
saving its weights), each a fresh process from start to exit, alternated --whole-repeats times
in the same run; the medians of wall and CPU time (user + system, from the kernel's accounting
of the child) are compared, and the 1-minute load average is printed before, between and after,
since other work on the machine slows both. Goal: ours at least 12x faster (wall time); the
like-for-like row (--no-calibrate) is the one judged. Below the table, where the uncalibrated
process's time goes: start-up to the command, then each phase `mnist-canvas train` prints on
its `phases:` line (imports, reading MNIST, statistics, inputs, fit, evaluation, checkpoint).
"""

from __future__ import annotations

import os

# One BLAS thread for scikit-learn/numpy, set before numpy is imported; torch gets one too.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ["MNIST_CANVAS_TORCH_THREADS"] = "1"

import argparse
import io
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import from the repository root, and keep
    # benchmarks/http.py from shadowing the standard library's `http`
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

import numpy as np
import torch

from benchmarks.environment import REPO, data_dir, machine_info
from benchmarks.reporting import finish
from model.data import Mnist, load_mnist, pixel_stats
from model.training import TrainConfig, to_inputs, train

#: scikit-learn's inverse regularisation strength per variant, chosen once by `--tune-c` as the
#: best validation accuracy (50,000 train / 10,000 validation images, lbfgs, tol 1e-4):
#:   C        0.003   0.01    0.03    0.1     0.3     1
#:   plain    92.56   92.90   92.95   92.87   92.69   92.44
#:   deskew   95.66   95.59   95.63   95.53   95.28   95.02
SKLEARN_C: dict[str, float] = {"plain": 0.03, "deskew": 0.003}
C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
MAX_ITER = 2000
SPEEDUP_GOAL = 10.0
WHOLE_SPEEDUP_GOAL = 12.0


def sklearn_inputs(data: Mnist, transforms: list[str]) -> tuple[np.ndarray, ...]:
    """Train, valid and test inputs exactly as our trainer makes them (float32, normalised)."""
    mean, std = pixel_stats(data.train_images)
    return tuple(
        to_inputs(images, mean, std, transforms).numpy()
        for images in (data.train_images, data.valid_images, data.test_images)
    )


def fit_sklearn(data: Mnist, transforms: list[str], c: float, max_iter: int,
                tol: float) -> dict[str, Any]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    x_train, x_valid, x_test = sklearn_inputs(data, transforms)
    clf = LogisticRegression(solver="lbfgs", C=c, max_iter=max_iter, tol=tol)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(x_train, data.train_labels)
    seconds = time.perf_counter() - started
    n_iter = int(np.max(clf.n_iter_))
    return {
        "C": c,
        "seconds": round(seconds, 3),
        "n_iter": n_iter,
        "max_iter": max_iter,
        "converged": n_iter < max_iter
        and not any(issubclass(w.category, ConvergenceWarning) for w in caught),
        "valid_accuracy": round(float(clf.score(x_valid, data.valid_labels)), 4),
        "test_accuracy": round(float(clf.score(x_test, data.test_labels)), 4),
    }


def fit_ours(data: Mnist, deskew: bool, device: str) -> dict[str, Any]:
    config = TrainConfig(deskew=deskew)
    started = time.perf_counter()
    result = train(data, config, device=device, threads=1, out=io.StringIO())
    wall = time.perf_counter() - started
    assert result.test is not None
    return {
        "config": config.to_dict(),
        "device": result.device,
        "seconds": round(result.train_seconds, 3),
        "wall_seconds": round(wall, 3),
        "valid_accuracy": round(result.valid.accuracy, 4),
        "test_accuracy": round(result.test.accuracy, 4),
    }


def subset(data: Mnist, n: int) -> Mnist:
    return Mnist(
        train_images=data.train_images[:n], train_labels=data.train_labels[:n],
        valid_images=data.valid_images, valid_labels=data.valid_labels,
        test_images=data.test_images, test_labels=data.test_labels, sha256=data.sha256,
    )


def timed_process(command: list[str]) -> tuple[float, float, str, str]:
    """Run `command` to its end: wall seconds, CPU seconds (user + system), stdout, stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "MNIST_CANVAS_TORCH_THREADS": "1", "PYTHONPATH": str(REPO)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=900, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout, done.stderr


def train_args(out: Path, device: str, calibrate: bool) -> list[str]:
    """`train`'s arguments as a user types them, without or with the verdict's calibration."""
    return ["train", "--data-dir", str(data_dir()), "--no-download", "--device", device,
            "--threads", "1", "--out", str(out), *([] if calibrate else ["--no-calibrate"])]


def train_command(out: Path, device: str, calibrate: bool = False) -> list[str]:
    """`mnist-canvas train` as a user types it (the console script beside this Python)."""
    script = Path(sys.executable).with_name("mnist-canvas")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]
    return [*head, *train_args(out, device, calibrate)]


def parse_phases(stdout: str) -> dict[str, float]:
    """The `phases:` line `mnist-canvas train` prints: {name: seconds}."""
    found = re.search(r"^phases: (.*?) \(MNIST was read in ([0-9.]+) s", stdout, re.M)
    if found is None:
        return {}
    phases = {name: float(value)
              for name, value in re.findall(r"([a-zA-Z ]+?) ([0-9.]+) s(?:, |$)", found.group(1))}
    phases["reading MNIST, beside the imports"] = float(found.group(2))
    return phases


#: How `-X importtime`'s modules are grouped in the breakdown (by top-level package).
IMPORT_GROUPS = {"torch": ("torch", "torchgen"), "numpy": ("numpy",),
                 "pydantic and settings": ("pydantic", "pydantic_core", "pydantic_settings",
                                           "dotenv", "annotated_types", "typing_inspection"),
                 "the project (app, model)": ("app", "model")}


def import_seconds(importtime: str) -> dict[str, float]:
    """Sum `-X importtime`'s self times (microseconds) by group; the rest is 'other'."""
    group_of = {pkg: group for group, pkgs in IMPORT_GROUPS.items() for pkg in pkgs}
    totals: dict[str, float] = dict.fromkeys([*IMPORT_GROUPS, "other (standard library, ...)"],
                                             0.0)
    for self_us, name in re.findall(r"^import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", importtime,
                                    re.M):
        group = group_of.get(name.split(".")[0], "other (standard library, ...)")
        totals[group] += int(self_us) / 1e6
    return totals


def breakdown(tmp: Path, device: str, repeats: int) -> dict[str, Any]:
    """What a `train --no-calibrate` process spends before its command runs, and its imports.

    Before the command: `mnist-canvas train --help`, a whole process that starts Python, imports
    the console script's modules (settings, argparse, NumPy), parses and exits, as `train` does
    before it runs (median of `repeats`). By package: one run under `-X importtime`, whose
    self times are summed by top-level package (they overlap the MNIST thread, and the tracing
    inflates them a little: a description, not part of the sum).
    """
    head = train_command(tmp / "help.safetensors", device)[:-len(train_args(tmp, device, False))]
    before = statistics.median(timed_process([*head, "train", "--help"])[0]
                               for _ in range(max(repeats, 1)))
    _, _, _, importtime = timed_process(
        [sys.executable, "-X", "importtime", "-m", "app.cli",
         *train_args(tmp / "importtime.safetensors", device, calibrate=False)])
    return {"before_command_seconds": round(before, 3),
            "import_seconds_by_package": {k: round(v, 3)
                                          for k, v in import_seconds(importtime).items()}}


def whole_processes(repeats: int, device: str, c: float) -> dict[str, Any]:
    """Ours (without and with calibration) and scikit-learn's whole training processes,
    alternated; medians compared, our phases from each run's `phases:` line."""
    runs: dict[str, dict[str, list[float]]] = {
        who: {"wall": [], "cpu": [], "acc": []} for who in ("ours", "ours_calibrated", "sklearn")}
    phases: dict[str, dict[str, list[float]]] = {"ours": {}, "ours_calibrated": {}}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        commands = {
            "ours": train_command(Path(tmp) / "ours.safetensors", device),
            "ours_calibrated": train_command(Path(tmp) / "cal.safetensors", device, True),
            "sklearn": [sys.executable, "-m", "benchmarks.sklearn_train", "--data-dir",
                        str(data_dir()), "--c", str(c), "--out", str(Path(tmp) / "sk.npz")],
        }
        # Warm the page cache for both (the data files, torch's and scikit-learn's libraries).
        timed_process(commands["ours"])
        timed_process([sys.executable, "-c", "import sklearn.linear_model"])
        order = list(commands)
        for i in range(repeats):
            for who in order if i % 2 == 0 else order[::-1]:
                wall, cpu, out, _ = timed_process(commands[who])
                if who == "sklearn":
                    acc = float(json.loads(out.strip().splitlines()[-1])["test_accuracy"])
                else:
                    found = re.search(r"^test: accuracy ([0-9.]+)", out, re.M)
                    acc = float(found.group(1)) if found else float("nan")
                    for name, seconds in parse_phases(out).items():
                        phases[who].setdefault(name, []).append(seconds)
                runs[who]["wall"].append(round(wall, 3))
                runs[who]["cpu"].append(round(cpu, 3))
                runs[who]["acc"].append(acc)
                print(f"  {who:<16} {wall:6.2f} s wall {cpu:6.2f} s CPU  test {100 * acc:.2f}%  "
                      f"(load {os.getloadavg()[0]:.2f})", flush=True)
            loads.append(os.getloadavg()[0])
        parts = breakdown(Path(tmp), device, repeats)
        loads.append(os.getloadavg()[0])

    def summary(who: str) -> dict[str, Any]:
        r = runs[who]
        out: dict[str, Any] = {
            "wall_seconds": statistics.median(r["wall"]),
            "cpu_seconds": statistics.median(r["cpu"]),
            "all_wall_seconds": r["wall"], "all_cpu_seconds": r["cpu"],
            "test_accuracy": r["acc"][0]}
        if who in phases:
            out["phases"] = {k: round(statistics.median(v), 3) for k, v in phases[who].items()}
        return out

    o, oc, s = summary("ours"), summary("ours_calibrated"), summary("sklearn")
    speedup = s["wall_seconds"] / o["wall_seconds"]
    return {
        "ours": o, "ours_calibrated": oc, "sklearn": s, "repeats": repeats, "C": c,
        "speedup_wall": round(speedup, 2),
        "speedup_cpu": round(s["cpu_seconds"] / o["cpu_seconds"], 2),
        "speedup_wall_calibrated": round(s["wall_seconds"] / oc["wall_seconds"], 2),
        "speedup_cpu_calibrated": round(s["cpu_seconds"] / oc["cpu_seconds"], 2),
        "breakdown": parts,
        "loadavg_1min": [round(v, 2) for v in loads],
        "goal": WHOLE_SPEEDUP_GOAL,
        "ok": speedup >= WHOLE_SPEEDUP_GOAL and o["test_accuracy"] >= s["test_accuracy"],
    }


def format_whole(w: dict[str, Any]) -> str:
    o, oc, s = w["ours"], w["ours_calibrated"], w["sklearn"]

    def row(label: str, r: dict[str, Any]) -> str:
        return (f"  {label:<36} {r['wall_seconds']:>7.2f} s wall {r['cpu_seconds']:>7.2f} s CPU  "
                f"test {100 * r['test_accuracy']:.2f}%")

    lines = [
        f"whole processes (median of {w['repeats']}; 1-min load average "
        f"{min(w['loadavg_1min']):.2f}-{max(w['loadavg_1min']):.2f}):",
        row("mnist-canvas train --no-calibrate", o),
        row("mnist-canvas train (calibrated)", oc),
        row("sklearn lbfgs C=" + format(w["C"], "g"), s),
        f"  {'ratio sklearn / train --no-calibrate':<36} {w['speedup_wall']:>6.1f}x wall "
        f"{w['speedup_cpu']:>6.1f}x CPU  {'ok' if w['ok'] else 'FAIL'} "
        f"(goal >= {w['goal']:g}x wall, >= acc)",
        f"  {'ratio sklearn / train (calibrated)':<36} {w['speedup_wall_calibrated']:>6.1f}x wall "
        f"{w['speedup_cpu_calibrated']:>6.1f}x CPU",
        "",
        "where `train --no-calibrate`'s wall time goes (medians):",
    ]
    parts, phases = w["breakdown"], dict(o["phases"])
    background = phases.pop("reading MNIST, beside the imports", None)
    items = [("start-up to the command (`mnist-canvas train --help`)",
              parts["before_command_seconds"])]
    items += [("reading MNIST (what was left to wait)" if k == "reading MNIST" else k, v)
              for k, v in phases.items()]
    rest = o["wall_seconds"] - sum(v for _, v in items)
    # Negative when the parts overlap: the --help process pays a normal exit, which train skips,
    # and on a busy machine the MNIST thread slows the imports it runs beside.
    items.append(("the rest (lock, printing, exit)" if rest >= 0 else
                  "the rest (negative: the parts above overlap)", rest))
    lines += [f"  {name:<56} {seconds:>6.3f} s" for name, seconds in items]
    lines.append(f"  {'total (median wall)':<56} {o['wall_seconds']:>6.3f} s")
    if background is not None:
        lines.append(f"  reading and verifying MNIST took {background:.3f} s in a thread beside "
                     "the imports")
    lines.append("  imports by package, one run under -X importtime (self times): " + ", ".join(
        f"{k} {v:.3f} s" for k, v in parts["import_seconds_by_package"].items()))
    if "calibration" in oc.get("phases", {}):
        lines.append(f"  calibration, in the calibrated run: {oc['phases']['calibration']:.3f} s")
    return "\n".join(lines)


def tune(data: Mnist, variants: list[str], max_iter: int, tol: float) -> list[dict[str, Any]]:
    rows = []
    for variant in variants:
        transforms = ["deskew"] if variant == "deskew" else []
        for c in C_GRID:
            fit = fit_sklearn(data, transforms, c, max_iter, tol)
            fit["variant"] = variant
            rows.append(fit)
            print(f"  {variant:<7} C={c:<6g} valid {100 * fit['valid_accuracy']:.2f}%  "
                  f"({fit['seconds']:.1f} s, {fit['n_iter']} iterations"
                  f"{'' if fit['converged'] else ', NOT converged'})", flush=True)
        best = max((r for r in rows if r["variant"] == variant),
                   key=lambda r: r["valid_accuracy"])
        print(f"  best C for {variant}: {best['C']:g}", flush=True)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'variant':<8} {'model':<28} {'train s':>8} {'test acc':>9} {'valid acc':>9} "
        f"{'iters':>6}",
    ]
    for r in rows:
        ours, sk = r["ours"], r["sklearn"]
        lines.append(f"{r['variant']:<8} {'ours (Adam, 8 epochs, ' + ours['device'] + ')':<28} "
                     f"{ours['seconds']:>8.2f} {100 * ours['test_accuracy']:>8.2f}% "
                     f"{100 * ours['valid_accuracy']:>8.2f}% {'':>6}")
        conv = "" if sk["converged"] else " (NOT converged)"
        lines.append(f"{'':<8} {'sklearn lbfgs C=' + format(sk['C'], 'g'):<28} "
                     f"{sk['seconds']:>8.2f} {100 * sk['test_accuracy']:>8.2f}% "
                     f"{100 * sk['valid_accuracy']:>8.2f}% {sk['n_iter']:>6}{conv}")
        lines.append(f"{'':<8} {'time ratio sklearn / ours':<28} {r['speedup']:>7.1f}x "
                     f"{r['accuracy_delta_points']:>+8.2f} pt  "
                     f"{'ok' if r['ok'] else 'FAIL'} (goal >= {SPEEDUP_GOAL:g}x, >= +0.00 pt)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    data = load_mnist(data_dir(), download=False)
    if args.train_size:
        data = subset(data, args.train_size)
    result: dict[str, Any] = {
        "benchmark": "train",
        "command": " ".join([sys.executable, "-m", "benchmarks.train", *sys.argv[1:]]),
        "machine": machine_info(),
        "train_size": len(data.train_images),
        "test_size": len(data.test_images),
        "speedup_goal": SPEEDUP_GOAL,
    }
    variants = ["plain"] if args.quick or args.no_deskew else ["plain", "deskew"]
    if args.tune_c:
        print("tuning C on the validation set", flush=True)
        result["tuning"] = tune(data, variants, args.max_iter, args.tol)
    rows = []
    for variant in [] if args.whole_only else variants:
        deskew = variant == "deskew"
        c = args.c if args.c is not None else SKLEARN_C[variant]
        print(f"{variant}: ours ...", flush=True)
        fit_ours(subset(data, 2000), deskew, args.device)  # warm-up: first-use costs of torch
        runs = sorted((fit_ours(data, deskew, args.device) for _ in range(args.repeats)),
                      key=lambda r: r["seconds"])
        ours = runs[len(runs) // 2]
        ours["all_seconds"] = [r["seconds"] for r in runs]
        print(f"  {ours['seconds']:.2f} s (of {ours['all_seconds']}), test "
              f"{100 * ours['test_accuracy']:.2f}%", flush=True)
        print(f"{variant}: scikit-learn C={c:g} ...", flush=True)
        sk = fit_sklearn(data, ["deskew"] if deskew else [], c, args.max_iter, args.tol)
        print(f"  {sk['seconds']:.2f} s, test {100 * sk['test_accuracy']:.2f}%, "
              f"{sk['n_iter']} iterations", flush=True)
        speedup = sk["seconds"] / ours["seconds"]
        delta = 100 * (ours["test_accuracy"] - sk["test_accuracy"])
        rows.append({
            "variant": variant, "ours": ours, "sklearn": sk,
            "speedup": round(speedup, 2), "accuracy_delta_points": round(delta, 2),
            "ok": speedup >= SPEEDUP_GOAL and delta >= 0.0 and sk["converged"],
        })
    table = format_table(rows)
    ok = all(r["ok"] for r in rows)
    if args.whole_repeats and not args.train_size:
        print("plain: whole processes ...", flush=True)
        whole = whole_processes(args.whole_repeats, args.device,
                                args.c if args.c is not None else SKLEARN_C["plain"])
        result["whole_process"] = whole
        table += "\n\n" + format_whole(whole)
        ok = ok and whole["ok"]
    print()
    print(table)
    result.update(rows=rows, table=table, ok=ok)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the plain row only")
    parser.add_argument("--device", default="cpu", help="device for ours (cpu, cuda, mps, auto)")
    parser.add_argument("--no-deskew", action="store_true", help="skip the deskew row")
    parser.add_argument("--c", type=float, default=None,
                        help="scikit-learn's C for every variant (default: SKLEARN_C)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="times ours is trained, the median reported (default 3, quick 1)")
    parser.add_argument("--max-iter", type=int, default=MAX_ITER)
    parser.add_argument("--tol", type=float, default=1e-4, help="scikit-learn's tol")
    parser.add_argument("--tune-c", action="store_true",
                        help=f"first fit scikit-learn with C in {C_GRID}, report validation "
                        "accuracy")
    parser.add_argument("--train-size", type=int, default=None,
                        help="train on the first N training images only (a smoke test)")
    parser.add_argument("--whole-repeats", type=int, default=None,
                        help="whole training processes of each, alternated (default 3, quick 1; "
                        "0: none)")
    parser.add_argument("--whole-only", action="store_true",
                        help="only the whole-process comparison")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the results here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.whole_repeats is None:
        args.whole_repeats = 1 if args.quick else 3
    return finish(args, run(args))


if __name__ == "__main__":
    raise SystemExit(main())
