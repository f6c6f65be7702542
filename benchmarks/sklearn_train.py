"""One whole scikit-learn training process: the oracle of benchmarks/train.py's whole-process row.

What a scikit-learn user runs to get the same model: read and verify MNIST (`model.data`, NumPy
only), normalise with the training split's mean and std exactly as our trainer does (the same
float32 numbers as `model.training.to_inputs`), fit `LogisticRegression(solver="lbfgs", C)` with
one BLAS thread, score the test digits, save the coefficients, and print one JSON line. It never
imports torch, so it pays only for what scikit-learn itself needs.

    python -m benchmarks.sklearn_train --c 0.03 --out /tmp/sklearn-logreg.npz
"""

from __future__ import annotations

import os

# One BLAS thread, set before numpy is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from model.data import load_mnist, pixel_stats


def normalised(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 784) float32, x * (1 / (255 std)) - mean / std, in place."""
    x = images.reshape(len(images), -1).astype(np.float32)
    x *= np.float32(1.0 / (255.0 * std))
    x -= np.float32(mean / std)
    return x


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--c", type=float, required=True, help="inverse regularisation strength")
    parser.add_argument("--max-iter", type=int, default=2000)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--out", type=Path, required=True, help="where the weights go (.npz)")
    args = parser.parse_args(argv)

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    data = load_mnist(args.data_dir, download=False)
    mean, std = pixel_stats(data.train_images)
    clf = LogisticRegression(solver="lbfgs", C=args.c, max_iter=args.max_iter, tol=args.tol)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(normalised(data.train_images, mean, std), data.train_labels)
    accuracy = float(clf.score(normalised(data.test_images, mean, std), data.test_labels))
    np.savez(args.out, weight=clf.coef_.astype(np.float32),
             bias=clf.intercept_.astype(np.float32), mean=mean, std=std)
    n_iter = int(np.max(clf.n_iter_))
    json.dump({
        "C": args.c,
        "n_iter": n_iter,
        "converged": n_iter < args.max_iter
        and not any(issubclass(w.category, ConvergenceWarning) for w in caught),
        "test_accuracy": round(accuracy, 4),
        "imported_torch": "torch" in sys.modules,
    }, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
