"""Does the model know? Every answer gets a verdict: "digit", "unsure" or "not_a_digit".

"Not a digit" is decided from evidence about the input, not from the softmax alone: six scores,
each an upper tail of what real digits show, with thresholds chosen on MNIST's validation
split (``model.calibration_fit``) so that at most 2% of real digits are rejected:

- ``atypicality``: how unlike any class of training digit the 28x28 input is: per class, a
  probabilistic PCA (Gaussian in the top 20 directions, isotropic residual) of the normalised
  training digits; the score is the smallest negative log-likelihood over the ten classes;
- ``energy``: minus the log-sum-exp of the logits (no template matches well);
- ``aspect``: width over height of the ink's box (a dash, a word, "12");
- ``second_piece``: share of the ink in the second-largest separate piece (two digits);
- ``coverage``: mean ink over its box (a dot or a filled blob scaled up to a digit's size);
- ``loops``: enclosed holes in the ink (stars, tangles, houses; an 8 has two).

"Unsure": a digit whose calibrated confidence (softmax of logits / temperature, the temperature
fitted on validation) is under the line above which validation answers are right 99% of the
time (the risk-coverage curve, ``model.calibration``).

The facts are read on the 28x28 input, the same form the thresholds were fitted on: read on the
canvas before scaling (``preprocess_image_with_facts``), coverage rejected 2.9% of drawn
digits instead of 0.4% (a brush's width relative to the digit varies; MNIST's does not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import torch
from scipy import ndimage

from model.preprocess.facts import INK_FRACTION, drawing_facts

#: Directions of each class's probabilistic PCA.
PCA_DIMS: Final = 20

#: The tests, in the order their reason is given when several fail.
SCORES: Final = ("second_piece", "aspect", "loops", "coverage", "energy", "atypicality")

REASONS: Final = {
    "second_piece": "it looks like two or more separate drawings, not one digit",
    "aspect": "it is much wider than any digit",
    "loops": "it has more closed loops than any digit",
    "coverage": "it is a dot or a filled shape, not the stroke of a digit",
    "energy": "none of the ten digits' templates matches it",
    "atypicality": "its shape is unlike the handwritten digits the model learned from",
}

#: Tensors of a checkpoint that hold the typicality model.
TENSOR_KEYS: Final = ("verdict_means", "verdict_bases", "verdict_variances", "verdict_residual")

_EIGHT = np.ones((3, 3), dtype=bool)


def count_loops(image: np.ndarray) -> int:
    """Enclosed background regions (holes) of a 2-D ink map, ink above INK_FRACTION of its peak;
    4-connected background, so a diagonal gap in a stroke does not close a loop."""
    peak = float(image.max())
    if not peak > 0.0:
        return 0
    background = np.pad(image <= INK_FRACTION * peak, 1, constant_values=True)
    labels, count = ndimage.label(background)
    return max(count - 1, 0)  # the outside (touching the padding) is one region


@dataclass
class TypicalityModel:
    """Per-class probabilistic PCA of normalised (N, 784) inputs."""

    means: np.ndarray  # (10, 784)
    bases: np.ndarray  # (10, k, 784), orthonormal rows
    variances: np.ndarray  # (10, k) variance along each direction
    residual: np.ndarray  # (10,) variance per pixel off the subspace

    def __post_init__(self) -> None:
        k = self.bases.shape[1]
        d = self.bases.shape[2]
        self._stacked = self.bases.reshape(-1, d).T.astype(np.float32)  # (784, 10k)
        self._offsets = np.einsum("ckd,cd->ck", self.bases, self.means).reshape(-1)
        self._mean_sq = (self.means.astype(np.float64) ** 2).sum(axis=1)
        self._log_norm = np.log(self.variances).sum(axis=1) + (d - k) * np.log(self.residual)

    @classmethod
    def fit(cls, x: np.ndarray, labels: np.ndarray, dims: int = PCA_DIMS) -> TypicalityModel:
        means, bases, variances, residual = [], [], [], []
        for c in range(10):
            xc = x[labels == c].astype(np.float64)
            mu = xc.mean(axis=0)
            cov = np.cov((xc - mu).T)
            lam, vec = np.linalg.eigh(cov)
            lam, vec = lam[::-1], vec[:, ::-1].T
            means.append(mu)
            bases.append(vec[:dims])
            variances.append(np.maximum(lam[:dims], 1e-6))
            residual.append(max(float(lam[dims:].mean()), 1e-6))
        return cls(np.array(means, np.float32), np.array(bases, np.float32),
                   np.array(variances, np.float32), np.array(residual, np.float32))

    def score(self, x: np.ndarray) -> np.ndarray:
        """(N, 784) normalised inputs -> (N,) smallest per-class negative log-likelihood / 2."""
        k = self.bases.shape[1]
        proj = (x.astype(np.float32) @ self._stacked).astype(np.float64)  # (N, 10k)
        z = (proj - self._offsets).reshape(len(x), 10, k)  # coordinates about each class mean
        # |x - mu|^2 = |x|^2 - 2 x.mu + |mu|^2, without forming x - mu for every class.
        x64 = x.astype(np.float64)
        dist2 = (x64 ** 2).sum(axis=1)[:, None] - 2.0 * (x64 @ self.means.T.astype(np.float64)) \
            + self._mean_sq
        residual2 = np.maximum(dist2 - (z ** 2).sum(axis=2), 0.0)
        nll = (z ** 2 / self.variances).sum(axis=2) + residual2 / self.residual + self._log_norm
        return 0.5 * nll.min(axis=1)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            "verdict_means": torch.from_numpy(self.means.astype(np.float32)),
            "verdict_bases": torch.from_numpy(self.bases.astype(np.float32)),
            "verdict_variances": torch.from_numpy(self.variances.astype(np.float32)),
            "verdict_residual": torch.from_numpy(self.residual.astype(np.float32)),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> TypicalityModel:
        return cls(*(tensors[key].numpy().astype(np.float32) for key in TENSOR_KEYS))


def input_scores(seen: np.ndarray, x: np.ndarray, logits: np.ndarray,
                 typicality: TypicalityModel) -> dict[str, np.ndarray]:
    """The six scores of (N, 28, 28) model inputs `seen`, normalised as `x`, with `logits`."""
    top = logits.max(axis=1)
    energy = -(top + np.log(np.exp(logits - top[:, None]).sum(axis=1)))
    facts = [drawing_facts(image) for image in seen]
    return {
        "second_piece": np.array([f.second_share for f in facts]),
        "aspect": np.array([f.aspect for f in facts]),
        "loops": np.array([count_loops(image) for image in seen], dtype=np.float64),
        "coverage": np.array([f.coverage for f in facts]),
        "energy": energy.astype(np.float64),
        "atypicality": typicality.score(x),
    }


@dataclass
class VerdictModel:
    """What the verdict needs: the typicality model, thresholds, temperature and sure line."""

    typicality: TypicalityModel
    thresholds: dict[str, float]
    temperature: float
    sure_above: float

    @classmethod
    def from_checkpoint(cls, meta: dict[str, Any],
                        tensors: dict[str, torch.Tensor]) -> VerdictModel | None:
        """The verdict stored with a checkpoint (``meta["verdict"]``), or None when it has none."""
        info = meta.get("verdict")
        if not isinstance(info, dict) or not all(k in tensors for k in TENSOR_KEYS):
            return None
        return cls(TypicalityModel.from_tensors(tensors),
                   {k: float(info["thresholds"][k]) for k in SCORES},
                   float(info["temperature"]), float(info["sure_above"]))

    def judge(self, seen: np.ndarray, x: np.ndarray, logits: np.ndarray) -> list[dict[str, Any]]:
        """A verdict for each input: its word, reason, calibrated confidence and the numbers."""
        scores = input_scores(seen, x, logits, self.typicality)
        z = logits / self.temperature
        z = z - z.max(axis=1, keepdims=True)
        calibrated = np.exp(z)
        calibrated /= calibrated.sum(axis=1, keepdims=True)
        order = np.argsort(-calibrated, axis=1)
        out = []
        for i in range(len(seen)):
            mine = {k: float(scores[k][i]) for k in SCORES}
            failed = [k for k in SCORES if mine[k] > self.thresholds[k]]
            first, second = int(order[i, 0]), int(order[i, 1])
            confidence = float(calibrated[i, first])
            if failed:
                verdict, reason = "not_a_digit", failed[0]
                message = f"That doesn't look like a digit: {REASONS[reason]}."
            elif confidence < self.sure_above:
                verdict, reason = "unsure", "low_confidence"
                message = f"Not sure: {first} or {second}?"
            else:
                verdict, reason, message = "digit", "confident", f"It's a {first}."
            out.append({
                "verdict": verdict,
                "reason": reason,
                "failed": failed,
                "message": message,
                "candidates": [first, second],
                "calibrated_confidence": round(confidence, 6),
                "sure_above": round(self.sure_above, 6),
                "temperature": round(self.temperature, 6),
                "scores": {k: round(v, 6) if math.isfinite(v) else None for k, v in mine.items()},
                "thresholds": {k: round(v, 6) for k, v in self.thresholds.items()},
            })
        return out


def uncalibrated(probs: np.ndarray) -> list[dict[str, Any]]:
    """Verdicts for a model without a stored calibration: no not-a-digit test, the softmax
    taken at its word, and the reason says so."""
    out: list[dict[str, Any]] = []
    for p in probs:
        order = np.argsort(-p)
        first, second = int(order[0]), int(order[1])
        sure = float(p[first]) >= 0.5
        out.append({
            "verdict": "digit" if sure else "unsure",
            "reason": "uncalibrated",
            "failed": [],
            "message": (f"It's a {first}." if sure else f"Not sure: {first} or {second}?")
            + " (This model has no calibration: run `mnist-canvas calibrate`.)",
            "candidates": [first, second],
            "calibrated_confidence": None,
            "sure_above": 0.5,
            "temperature": None,
            "scores": {},
            "thresholds": {},
        })
    return out
