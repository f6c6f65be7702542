"""Fit a checkpoint's verdict and calibration and store them in it (weights untouched).

    mnist-canvas calibrate --model models/mnist-logreg.safetensors

The typicality model is fitted on the training split (the first 50,000 digits); the
not-a-digit thresholds, the temperature and the "not sure" line on the validation split (the
last 10,000). Reliability on MNIST's test digits is recorded for the model page as a final
report only: nothing is chosen on it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
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
from model.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from model.data import Mnist
from model.detector import NonDigitDetector
from model.inference import Predictor
from model.nondigit_examples import non_digit_examples, redrawn_digits
from model.verdict import SCORES, TypicalityModel, VerdictModel, input_scores

logger = logging.getLogger(__name__)

#: At most this share of the validation digits may be called "not a digit".
MAX_REJECTION: Final = 0.02

#: Shares of the budget tried for the detector's own threshold (``choose_thresholds``).
GRID: Final = 9

#: Generated non-digits the detector is trained on, held out to share the budget, training
#: digits and validation digits sent through the server's path again (``redrawn_digits``),
#: and the seeds of our own generator (never the benchmark's 20261201 and 20261202).
TRAIN_NON_DIGITS: Final = 4000
HELD_NON_DIGITS: Final = 1000
REDRAWN_TRAIN: Final = 5000
REDRAWN_VALID: Final = 1000
SEEDS: Final = {"train": 11, "held": 12, "redrawn_train": 13, "redrawn_valid": 14}

#: How the models of the inputs (typicality, detector) are fitted. Change it whenever their
#: fitting changes: a stored pair is reused only under the same recipe (``inputs_key``).
INPUT_MODELS_RECIPE: Final = "typicality: top-10 PPCA per class; detector: 784-64-1 MLP"

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


def _failed(scores: dict[str, np.ndarray], thresholds: dict[str, float]) -> np.ndarray:
    keys = list(thresholds)
    return np.any([scores[k] > thresholds[k] for k in keys], axis=0)


def choose_thresholds(scores: dict[str, np.ndarray], max_rejection: float = MAX_REJECTION, *,
                      also: tuple[dict[str, np.ndarray], ...] = (),
                      non_digits: dict[str, np.ndarray] | None = None,
                      keys: tuple[str, ...] = SCORES,
                      also_share: float = 1.0) -> tuple[dict[str, float], float]:
    """Thresholds on `keys` (each score's 1 - a quantile on `scores`, the validation digits)
    such that at most `max_rejection` of the digits of `scores` and of every set in `also`
    fail any test (of `also`: at most `also_share` x `max_rejection`); and the share of
    `scores` rejected.

    Without `non_digits`, one upper-tail share `a` for every score, as large as the budget
    allows. With them (generated non-digits, never the benchmark's), the ``non_digit`` test
    gets a share of its own, the one (of GRID) whose thresholds reject most of `non_digits`,
    and the other tests share what it leaves."""
    own = "non_digit" in keys and non_digits is not None

    def at(share: float, detector_share: float | None) -> tuple[dict[str, float], float]:
        th = {k: float(np.quantile(scores[k], 1.0 - share)) for k in keys}
        if detector_share is not None:
            th["non_digit"] = float(np.quantile(scores["non_digit"], 1.0 - detector_share))
        return th, max([float(_failed(scores, th).mean()),
                        *(float(_failed(one, th).mean()) / also_share for one in also)])

    def fill(detector_share: float | None) -> tuple[dict[str, float], float] | None:
        lo, hi = 0.0, max_rejection
        if at(lo, detector_share)[1] > max_rejection:
            return None
        for _ in range(30):
            mid = (lo + hi) / 2.0
            if at(mid, detector_share)[1] > max_rejection:
                hi = mid
            else:
                lo = mid
        return at(lo, detector_share)

    best = fill(None)
    if own:
        assert non_digits is not None
        caught = -1.0
        for share in np.linspace(0.0, max_rejection, GRID):
            found = fill(float(share))
            if found is not None and (rate := float(_failed(non_digits, found[0]).mean())) \
                    > caught:
                best, caught = found, rate
    assert best is not None  # share 0 for every test rejects nothing
    thresholds = best[0]
    return thresholds, float(_failed(scores, thresholds).mean())


def fit_detector(predictor: Predictor, data: Mnist, x_train: np.ndarray) -> NonDigitDetector:
    """The non-digit detector for this predictor's inputs (``model.detector``): training
    digits (`x_train`, normalised) and some of them redrawn, against generated non-digits."""
    train = data.train_images
    non_digits, _ = non_digit_examples(TRAIN_NON_DIGITS, train, SEEDS["train"])
    redrawn = redrawn_digits(train[:REDRAWN_TRAIN], SEEDS["redrawn_train"])
    return NonDigitDetector.fit(x_train, predictor.normalise(predictor.model_input(non_digits)),
                                redrawn=predictor.normalise(predictor.model_input(redrawn)))


def inputs_key(ckpt: Checkpoint, data: Mnist) -> str:
    """What the typicality model and the detector depend on, as one id: the training digits,
    the checkpoint's input transforms, mean and std, and how they are fitted. Not the weights:
    two checkpoints with the same key would fit the very same two models."""
    spec = {"data_sha256": data.sha256, "train_size": len(data.train_images),
            # to 9 digits, float32's precision: the inputs are float32, and the shipped
            # model's statistics (float64 sums) differ from today's exact integer sums in the
            # 17th digit
            "transforms": list(ckpt.transforms), "mean": f"{ckpt.mean:.9g}",
            "std": f"{ckpt.std:.9g}", "recipe": INPUT_MODELS_RECIPE, "seeds": SEEDS,
            "train_non_digits": TRAIN_NON_DIGITS, "redrawn_train": REDRAWN_TRAIN}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def stored_input_models(paths: Iterable[Path], ckpt: Checkpoint, data: Mnist
                        ) -> tuple[TypicalityModel, NonDigitDetector, Path] | None:
    """The typicality model and detector stored in the first of `paths` whose calibration was
    fitted for the same inputs as `ckpt` (the same ``inputs_key``), and that path; else None.
    A missing or unreadable file is passed over."""
    key = inputs_key(ckpt, data)
    for path in paths:
        try:
            reference = load_checkpoint(path)
        except (CheckpointError, OSError):
            continue
        if reference.meta.get("verdict", {}).get("inputs_key") != key:
            continue
        verdicts = VerdictModel.from_checkpoint(reference.meta, reference.extra_tensors)
        if verdicts is not None and verdicts.detector is not None:
            return verdicts.typicality, verdicts.detector, path
    return None


def calibrate(ckpt: Checkpoint, data: Mnist, *, max_rejection: float = MAX_REJECTION,
              target: float = TARGET_ACCURACY,
              typicality: TypicalityModel | None = None,
              detector: NonDigitDetector | None = None) -> Checkpoint:
    """The same checkpoint with the verdict fitted and stored (meta["verdict"], verdict_*).

    `typicality` and `detector`, models of the inputs fitted for another checkpoint with the
    same inputs (the same transforms, mean and std: a fine-tuned candidate and its parent),
    are reused instead of fitted again (most of the time this takes); the thresholds, the
    temperature and the "not sure" line, which depend on the weights, are always fitted anew.
    """
    predictor = Predictor(ckpt, device="cpu")
    if typicality is None or detector is None:
        _, x_train, _ = _inputs(predictor, data.train_images)
        if typicality is None:
            typicality = TypicalityModel.fit(x_train, data.train_labels)
        if detector is None:
            detector = fit_detector(predictor, data, x_train)
        del x_train

    seen, x, logits = _inputs(predictor, data.valid_images)
    labels = data.valid_labels
    scores = input_scores(seen, x, logits, typicality, detector)
    # The same budget on validation digits sent through the server's path (as drawings are;
    # the last ones, apart from the first ones the benchmark draws), and the detector's share
    # chosen on non-digits of our own generator held out from its training: never on the
    # benchmark's drawings.
    redrawn = input_scores(*_inputs(predictor, redrawn_digits(
        data.valid_images[-REDRAWN_VALID:], SEEDS["redrawn_valid"])), typicality, detector)
    held, _ = non_digit_examples(HELD_NON_DIGITS, data.train_images, SEEDS["held"])
    held_scores = input_scores(*_inputs(predictor, held), typicality, detector)
    thresholds, rejected = choose_thresholds(scores, max_rejection, also=(redrawn,),
                                             non_digits=held_scores)
    by_score = {k: round(float((scores[k] > thresholds[k]).mean()), 6) for k in SCORES}
    redrawn_rejected = float(_failed(redrawn, thresholds).mean())
    held_rejected = float(_failed(held_scores, thresholds).mean())

    temperature = fit_temperature_ece(logits, labels)
    nll_temperature = fit_temperature(logits, labels)
    before, after = softmax(logits), softmax(logits, temperature)
    right = after.argmax(axis=1) == labels
    line, coverage = sure_above(after.max(axis=1), right, target)

    _, _, test_logits = _inputs(predictor, data.test_images)
    test_before = reliability(softmax(test_logits), data.test_labels)
    test_after = reliability(softmax(test_logits, temperature), data.test_labels)

    verdicts = VerdictModel(typicality, thresholds, temperature, line, detector)
    failed_any = np.zeros(len(labels), dtype=bool)
    for k in SCORES:
        failed_any |= scores[k] > thresholds[k]  # every test, the detector's too
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
        "redrawn_valid_rejection": round(redrawn_rejected, 6),
        "generated_non_digits_rejected": round(held_rejected, 6),
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
        "inputs_key": inputs_key(ckpt, data),
        "fitted_on": {"typicality": "train", "detector": "train and generated non-digits",
                      "thresholds": "valid (and generated non-digits for the detector's "
                                    "share)", "temperature": "valid"},
    }
    logger.info("verdict: %.2f%% of validation digits rejected, T = %.3f, sure above %.4f "
                "(%.1f%% answered); test ECE %.4f -> %.4f", 100 * rejected, temperature, line,
                100 * coverage, test_before.ece, test_after.ece)
    return replace(ckpt, meta={**ckpt.meta, "verdict": info},
                   extra_tensors={**ckpt.extra_tensors, **typicality.tensors(),
                                  **detector.tensors()})
