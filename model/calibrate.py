"""Fit a checkpoint's verdict and calibration and store them in it (weights untouched).

    mnist-canvas calibrate --model models/mnist-logreg.safetensors

The typicality model is fitted on the training split (the first 50,000 digits); the
not-a-digit thresholds, the temperature and the "not sure" line on the validation split (the
last 10,000). Reliability on MNIST's test digits is recorded for the model page as a final
report only: nothing is chosen on it.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Final

import numpy as np
import torch

from model.calibration import (
    TARGET_ACCURACY,
    fit_temperature,
    fit_temperature_ece,
    reliability,
    risk_coverage,
    softmax,
    sure_above,
)
from model.checkpoint import Checkpoint
from model.data import Mnist
from model.inference import Predictor
from model.verdict import SCORES, TypicalityModel, VerdictModel, input_scores

logger = logging.getLogger(__name__)

#: At most this share of the validation digits may be called "not a digit".
MAX_REJECTION: Final = 0.02

#: Rejected validation digits kept as examples for the model page.
EXAMPLES: Final = 8


def _inputs(predictor: Predictor, images: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                 np.ndarray]:
    """Model input (N, 28, 28), normalised (N, 784) and float64 logits (N, 10)."""
    seen = predictor.model_input(images)
    x = predictor.normalise(seen)
    w = predictor.checkpoint.weight.to(torch.float64).numpy()
    b = predictor.checkpoint.bias.to(torch.float64).numpy()
    return seen, x, x.astype(np.float64) @ w.T + b


def choose_thresholds(scores: dict[str, np.ndarray],
                      max_rejection: float = MAX_REJECTION) -> tuple[dict[str, float], float]:
    """One upper-tail share `a` for every score, as large as keeps the share of inputs that
    fail any test at or under `max_rejection`: the thresholds (each score's 1 - a quantile)
    and the share rejected."""

    def at(share: float) -> tuple[dict[str, float], float]:
        th = {k: float(np.quantile(scores[k], 1.0 - share)) for k in SCORES}
        failed = np.zeros(len(scores[SCORES[0]]), dtype=bool)
        for k in SCORES:
            failed |= scores[k] > th[k]
        return th, float(failed.mean())

    lo, hi = 0.0, max_rejection
    for _ in range(40):
        mid = (lo + hi) / 2.0
        if at(mid)[1] > max_rejection:
            hi = mid
        else:
            lo = mid
    return at(lo)


def calibrate(ckpt: Checkpoint, data: Mnist, *, max_rejection: float = MAX_REJECTION,
              target: float = TARGET_ACCURACY,
              typicality: TypicalityModel | None = None) -> Checkpoint:
    """The same checkpoint with the verdict fitted and stored (meta["verdict"], verdict_*).

    `typicality`, a model of the training digits fitted for another checkpoint with the same
    inputs (the same transforms, mean and std: a fine-tuned candidate and its parent), is
    reused instead of fitted again (most of the 13 s of CPU this takes); the thresholds, the
    temperature and the "not sure" line, which depend on the weights, are always fitted anew.
    """
    predictor = Predictor(ckpt, device="cpu")
    if typicality is None:
        _, x_train, _ = _inputs(predictor, data.train_images)
        typicality = TypicalityModel.fit(x_train, data.train_labels)
        del x_train

    seen, x, logits = _inputs(predictor, data.valid_images)
    labels = data.valid_labels
    scores = input_scores(seen, x, logits, typicality)
    thresholds, rejected = choose_thresholds(scores, max_rejection)
    by_score = {k: round(float((scores[k] > thresholds[k]).mean()), 6) for k in SCORES}

    temperature = fit_temperature_ece(logits, labels)
    nll_temperature = fit_temperature(logits, labels)
    before, after = softmax(logits), softmax(logits, temperature)
    right = after.argmax(axis=1) == labels
    line, coverage = sure_above(after.max(axis=1), right, target)

    _, _, test_logits = _inputs(predictor, data.test_images)
    test_before = reliability(softmax(test_logits), data.test_labels)
    test_after = reliability(softmax(test_logits, temperature), data.test_labels)

    verdicts = VerdictModel(typicality, thresholds, temperature, line)
    failed_any = np.zeros(len(labels), dtype=bool)
    for k in SCORES:
        failed_any |= scores[k] > thresholds[k]
    # The most atypical of the rejected digits, one per reason where there are several.
    picks = sorted(np.flatnonzero(failed_any), key=lambda i: -float(scores["atypicality"][i]))
    examples: list[dict[str, Any]] = []
    reasons_seen: set[str] = set()
    for first_pass in (True, False):
        for i in picks:
            if len(examples) >= EXAMPLES:
                break
            verdict = verdicts.judge(seen[i : i + 1], x[i : i + 1], logits[i : i + 1])[0]
            if (first_pass and verdict["reason"] in reasons_seen) or any(
                e["index"] == int(i) for e in examples
            ):
                continue
            reasons_seen.add(verdict["reason"])
            examples.append({
                "index": int(i), "label": int(labels[i]), "image": seen[i].tolist(),
                "reason": verdict["reason"], "message": verdict["message"],
                "scores": verdict["scores"],
            })

    info = {
        "model_version": ckpt.model_version,
        "max_rejection": max_rejection,
        "thresholds": thresholds,  # unrounded: several scores sit on exact ratios
        "valid_rejection": round(rejected, 6),
        "valid_rejection_by_score": by_score,
        "temperature": round(temperature, 6),
        "temperature_fit": "lowest validation ECE",
        "nll_temperature": round(nll_temperature, 6),
        "target_accuracy": target,
        "sure_above": round(line, 6),
        "sure_coverage": round(coverage, 6),
        "reliability": {
            "valid_before": reliability(before, labels).as_dict(),
            "valid_after": reliability(after, labels).as_dict(),
            "test_before": test_before.as_dict(),
            "test_after": test_after.as_dict(),
        },
        "risk_coverage": risk_coverage(after.max(axis=1), right),
        "rejected_examples": examples,
        "fitted_on": {"typicality": "train", "thresholds": "valid", "temperature": "valid"},
    }
    logger.info("verdict: %.2f%% of validation digits rejected, T = %.3f, sure above %.4f "
                "(%.1f%% answered); test ECE %.4f -> %.4f", 100 * rejected, temperature, line,
                100 * coverage, test_before.ece, test_after.ece)
    return replace(ckpt, meta={**ckpt.meta, "verdict": info},
                   extra_tensors={**ckpt.extra_tensors, **typicality.tensors()})
