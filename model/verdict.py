"""Does the model know? Every answer gets a verdict: "digit", "unsure" or "not_a_digit".

"Not a digit" is decided from evidence about the input, not from the softmax alone: six scores,
each an upper tail of what real digits show, with thresholds chosen on MNIST's validation
split (``model.calibration_fit``) so that at most 2% of real digits are rejected:

- ``atypicality``: how unlike any group of training digits the 28x28 input is: per class, the
  digits are split by k-means into 4 groups written alike, each modelled by a probabilistic
  PCA (Gaussian in its top 10 directions, isotropic residual) of the normalised training
  digits; the score is the smallest negative log-likelihood over the 40 groups;
- ``energy``: minus the log-sum-exp of the logits (no template matches well);
- ``aspect``: width over height of the ink's box (a dash, a word, "12");
- ``second_piece``: share of the ink in the second-largest separate piece (two digits);
- ``coverage``: mean ink over its box (a dot or a filled blob scaled up to a digit's size);
- ``loops``: enclosed holes in the ink (stars, tangles, houses; an 8 has two);
- ``non_digit``: a small network's logit of "not a digit" (``model.detector``), trained on
  training digits against non-digits of a generator of our own (``model.nondigit_examples``).

"Unsure": a digit whose calibrated confidence (softmax of logits / temperature, the temperature
fitted on validation) is under the line above which validation answers are right 99% of the
time (the risk-coverage curve, ``model.calibration``).

The facts are read on the 28x28 input, the same form the thresholds were fitted on: read on the
canvas before scaling (``preprocess_image_with_facts``), coverage alone at its validation 99th
percentile rejected 2.9% of 280 drawn digits instead of 0.4% (a brush's width relative to the
digit varies; MNIST's does not), and the other facts read the same either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import torch
from scipy import ndimage
from scipy.cluster.vq import kmeans2

from model.detector import NonDigitDetector, one_torch_thread
from model.preprocess.facts import INK_FRACTION

#: Groups of digits written alike per class, and directions of each group's probabilistic PCA.
#: The one choice made by looking at non-digits: four groups of 10 rejected 67.5% of 240
#: generated non-digits (benchmarks/nondigits.py, seed 20261201) where one group of 20 per
#: class rejected 60% (eight of 8: 66%), no drawn digit rejected either way. The benchmark
#: and tests measure on drawings of another seed, never looked at before.
CLUSTERS: Final = 4
PCA_DIMS: Final = 10

#: The tests, in the order their reason is given when several fail.
SCORES: Final = ("second_piece", "aspect", "loops", "coverage", "energy", "atypicality",
                  "non_digit")

REASONS: Final = {
    "second_piece": "it looks like two or more separate drawings, not one digit",
    "aspect": "it is much wider than any digit",
    "loops": "it has more closed loops than any digit",
    "coverage": "it is a dot or a filled shape, not the stroke of a digit",
    "energy": "none of the ten digits' templates matches it",
    "atypicality": "its shape is unlike the handwritten digits the model learned from",
    "non_digit": "it looks more like a letter, a shape or a scribble than like a digit",
}

#: Tensors of a checkpoint that hold the typicality model.
TENSOR_KEYS: Final = ("verdict_means", "verdict_bases", "verdict_variances", "verdict_residual")

_EIGHT = np.ones((3, 3), dtype=bool)


_PLANE = np.zeros((3, 3, 3), dtype=bool)
_PLANE[1] = True  # 8-connected within an image, never across images of a stack


def _label_owner(labels: np.ndarray, count: int, pixels: int) -> np.ndarray:
    """Which image of a stack each label 1..count lies in (index 0: background)."""
    flat = labels.ravel()
    where = np.flatnonzero(flat)
    owner = np.zeros(count + 1, dtype=np.int64)
    owner[flat[where]] = where // pixels
    return owner


def stack_facts(seen: np.ndarray) -> dict[str, np.ndarray]:
    """The facts of ``drawing_facts`` that the verdict reads, for a stack (N, H, W) of model
    inputs at once (one labelling for the whole stack), and the loops (``count_loops``)."""
    arr = np.asarray(seen, dtype=np.float32)
    n, h, w = arr.shape
    peak = arr.reshape(n, -1).max(axis=1)
    safe_peak = np.where(peak > 0.0, peak, 1.0)
    mask = arr > (INK_FRACTION * peak)[:, None, None]
    rows, cols = mask.any(axis=2), mask.any(axis=1)
    inked = rows.any(axis=1)
    top, bottom = rows.argmax(axis=1), h - rows[:, ::-1].argmax(axis=1)
    left, right = cols.argmax(axis=1), w - cols[:, ::-1].argmax(axis=1)
    height = np.where(inked, bottom - top, 1)
    width = np.where(inked, right - left, 0)
    in_rows = (np.arange(h) >= top[:, None]) & (np.arange(h) < bottom[:, None])
    in_cols = (np.arange(w) >= left[:, None]) & (np.arange(w) < right[:, None])
    box_ink = (arr * (in_rows[:, :, None] & in_cols[:, None, :])).sum(axis=(1, 2))
    coverage = np.where(inked, box_ink / np.maximum(height * width, 1) / safe_peak, 0.0)

    if n == 1:  # one image (the canvas path): a 2-D labelling is several times cheaper
        plane, count = ndimage.label(mask[0], structure=_EIGHT)
        labels = plane[None]
    else:
        labels, count = ndimage.label(mask, structure=_PLANE)
    second = np.zeros(n)
    pieces = np.zeros(n)
    if count:
        owner = np.zeros(count, np.int64) if n == 1 else _label_owner(labels, count, h * w)[1:]
        pieces = np.bincount(owner, minlength=n).astype(np.float64)
        sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:].astype(np.float64)
        totals = np.bincount(owner, weights=sizes, minlength=n)
        order = np.lexsort((-sizes, owner))  # by image, largest piece first
        ranked_owner = owner[order]
        is_second = np.zeros(count, dtype=bool)
        is_second[1:] = (ranked_owner[1:] == ranked_owner[:-1])
        is_second[2:] &= ranked_owner[2:] != ranked_owner[:-2]
        picks = order[is_second]
        second[owner[picks]] = sizes[picks] / totals[owner[picks]]

    # Loops = pieces - Euler number (8-connected ink, 4-connected background), the Euler
    # number counted from 2x2 windows (Gray, 1971): no second labelling.
    padded = np.zeros((n, h + 2, w + 2), dtype=np.int8)
    padded[:, 1:-1, 1:-1] = mask
    a, b, c, d = padded[:, :-1, :-1], padded[:, :-1, 1:], padded[:, 1:, :-1], padded[:, 1:, 1:]
    window = a + b + c + d
    q1 = (window == 1).sum(axis=(1, 2))
    q3 = (window == 3).sum(axis=(1, 2))
    diagonal = ((window == 2) & (a == d)).sum(axis=(1, 2))
    euler = (q1 - q3 - 2 * diagonal) / 4.0
    loops = pieces - euler
    return {"aspect": width / height, "coverage": coverage, "second_piece": second,
            "loops": np.maximum(loops, 0.0)}


def count_loops(image: np.ndarray) -> int:
    """Enclosed background regions (holes) of a 2-D ink map, ink above INK_FRACTION of its peak;
    4-connected background, so a diagonal gap in a stroke does not close a loop."""
    return int(stack_facts(np.asarray(image)[None])["loops"][0])


#: Subspace iterations of ``_top_eigen`` and the extra directions carried: with 14 and 10 the
#: top 10 eigenpairs of a class's covariance agree with ``numpy.linalg.eigh``'s to 5e-11
#: relative (10 steps: 3e-8, 6: 2e-5; tests/model/test_verdict_speed.py checks them on a
#: mix of classes, where 10 steps miss the 10th eigenvalue by 2e-6).
POWER_STEPS: Final = 14
OVERSAMPLE: Final = 10


def _orthonormal(y: torch.Tensor) -> torch.Tensor:
    """Orthonormal columns spanning y's (d, m), by Cholesky QR: one m x m factorisation
    instead of a Householder QR of the tall matrix (7 ms here against 0.1 ms)."""
    factor = torch.linalg.cholesky(y.T @ y)
    return torch.linalg.solve_triangular(factor, y.T, upper=False).T


def _top_eigen(cov: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray,
                                                                          np.ndarray]:
    """The k largest eigenvalues (descending) and their eigenvectors (k, d) of a symmetric
    positive semi-definite matrix: block power (subspace) iteration, then Rayleigh-Ritz; in
    float64 torch on one thread (``one_torch_thread``)."""
    with one_torch_thread():
        a = torch.from_numpy(np.asarray(cov, dtype=np.float64))
        q = _orthonormal(torch.from_numpy(rng.standard_normal((a.shape[0], k + OVERSAMPLE))))
        for _ in range(POWER_STEPS):
            q = _orthonormal(a @ q)
        lam, small = torch.linalg.eigh(q.T @ a @ q)
        order = torch.argsort(lam, descending=True)[:k]
        return lam[order].numpy(), (q @ small[:, order]).T.numpy()


@dataclass
class TypicalityModel:
    """A mixture of probabilistic PCAs of normalised (N, 784) inputs: CLUSTERS per class."""

    means: np.ndarray  # (C, 784)
    bases: np.ndarray  # (C, k, 784), orthonormal rows
    variances: np.ndarray  # (C, k) variance along each direction
    residual: np.ndarray  # (C,) variance per pixel off the subspace

    def __post_init__(self) -> None:
        k, d = self.bases.shape[1], self.bases.shape[2]
        # One product gives every component's coordinates and x.mean_c: (784, Ck + C).
        # float32: half the time of float64 for this product, the scores within 1e-3.
        self._project = np.ascontiguousarray(np.concatenate(
            [self.bases.reshape(-1, d), self.means]).T.astype(np.float32))
        self._offsets = np.einsum("ckd,cd->ck", self.bases.astype(np.float64),
                                  self.means.astype(np.float64))
        self._mean_sq = (self.means.astype(np.float64) ** 2).sum(axis=1)
        self._inv_var = 1.0 / self.variances.astype(np.float64)
        self._inv_residual = 1.0 / self.residual.astype(np.float64)
        self._log_norm = np.log(self.variances.astype(np.float64)).sum(axis=1) \
            + (d - k) * np.log(self.residual.astype(np.float64))
        # For one input at a time, the same NLL with fewer small steps: with a = 1/res - 1/var
        # (>= 0: the kept directions' variances are the largest), NLL = -sum a (p - o)^2
        # + (|x|^2 - 2 x.mu + |mu|^2) / res + log_norm; sqrt(a) and -2/res folded into the
        # columns of one (784, Ck + C) matrix.
        a = np.maximum(self._inv_residual[:, None] - self._inv_var, 0.0)
        root = np.sqrt(a)
        self._project_one = np.ascontiguousarray(np.concatenate(
            [(self.bases.astype(np.float64) * root[:, :, None]).reshape(-1, d),
             self.means.astype(np.float64) * (-2.0 * self._inv_residual)[:, None]]
        ).T.astype(np.float32))
        self._offsets_one = (self._offsets * root).ravel()
        self._const_one = self._mean_sq * self._inv_residual + self._log_norm

    @classmethod
    def fit(cls, x: np.ndarray, labels: np.ndarray, dims: int = PCA_DIMS,
            clusters: int = CLUSTERS, seed: int = 0) -> TypicalityModel:
        """Per class, k-means (k-means++ start, fixed seed) into `clusters` groups of digits
        written alike, then a probabilistic PCA of `dims` directions for each group: its top
        eigenpairs by subspace iteration on the group's covariance (``_top_eigen``) and the
        residual variance from its trace, no full eigendecomposition of 784 x 784."""
        means, bases, variances, residual = [], [], [], []
        d = x.shape[1]
        rng = np.random.default_rng(seed)
        for c in range(10):
            xc = x[labels == c].astype(np.float64)
            _, groups = kmeans2(xc, clusters, minit="++", seed=seed + c)
            for g in range(clusters):
                xg = xc[groups == g]
                if len(xg) <= dims:  # too few digits for a subspace: the class's own
                    xg = xc
                mu = xg.mean(axis=0)
                with one_torch_thread():  # see one_torch_thread: 2 to 3x faster when busy
                    centred = torch.from_numpy(xg - mu)
                    cov = (centred.T @ centred / (len(xg) - 1)).numpy()
                lam, vec = _top_eigen(cov, dims, rng)
                means.append(mu)
                bases.append(vec)
                variances.append(np.maximum(lam, 1e-6))
                rest = (float(np.trace(cov)) - float(lam.sum())) / (d - dims)
                residual.append(max(rest, 1e-6))
        return cls(np.array(means, np.float32), np.array(bases, np.float32),
                   np.array(variances, np.float32), np.array(residual, np.float32))

    def score(self, x: np.ndarray) -> np.ndarray:
        """(N, 784) normalised inputs -> (N,) smallest negative log-likelihood / 2 over the
        components."""
        n, (components, k) = len(x), self.variances.shape
        x32 = np.asarray(x, dtype=np.float32)
        product = (x32 @ self._project).astype(np.float64)  # (N, Ck + C)
        x64 = x32.astype(np.float64)
        z = product[:, : components * k].reshape(n, components, k) - self._offsets
        # |x - mu|^2 = |x|^2 - 2 x.mu + |mu|^2, without forming x - mu for every component.
        dist2 = np.einsum("nd,nd->n", x64, x64)[:, None] - 2.0 * product[:, components * k :] \
            + self._mean_sq
        z2 = z * z
        residual2 = np.maximum(dist2 - z2.sum(axis=2), 0.0)
        nll = (z2 * self._inv_var).sum(axis=2) + residual2 * self._inv_residual + self._log_norm
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
                 typicality: TypicalityModel,
                 detector: NonDigitDetector | None = None) -> dict[str, np.ndarray]:
    """The scores of (N, 28, 28) model inputs `seen`, normalised as `x`, with `logits`
    (``non_digit`` only with a detector)."""
    top = logits.max(axis=1)
    energy = -(top + np.log(np.exp(logits - top[:, None]).sum(axis=1)))
    scores = {**stack_facts(seen), "energy": energy.astype(np.float64),
              "atypicality": typicality.score(x)}
    if detector is not None:
        scores["non_digit"] = detector.score(x)
    return scores


#: Euler-number contribution x 4 of each 2x2 window pattern (a + 2b + 4c + 8d), as
#: ``stack_facts`` counts it: +1 for one ink pixel, -1 for three, -2 for a diagonal pair.
_EULER4 = np.array([0, 1, 1, 0, 1, 0, -2, -1, 1, -2, 0, -1, 0, -1, -1, 0], dtype=np.int64)


def one_image_facts(image: np.ndarray) -> tuple[float, float, float, float]:
    """``stack_facts`` of one (28, 28) model input, the same numbers in fewer calls: aspect,
    coverage, second piece's share and loops (one labelling; the Euler number by a table
    lookup of the 2x2 windows)."""
    peak = float(image.max())
    if peak <= 0.0:
        return 0.0, 0.0, 0.0, 0.0
    mask = image > INK_FRACTION * peak
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    height, width = bottom - top, right - left
    coverage = float(image[top:bottom, left:right].sum(dtype=np.float64)) / (height * width) \
        / peak
    labels = np.empty(mask.shape, dtype=np.int32)  # given, label() skips choosing a type
    count = int(ndimage.label(mask, structure=_EIGHT, output=labels))
    second = 0.0
    if count > 1:
        sizes = np.sort(np.bincount(labels.ravel())[1:])
        second = float(sizes[-2]) / float(sizes.sum())
    padded = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), dtype=np.uint8)
    padded[1:-1, 1:-1] = mask
    pairs = padded[:, :-1] + 2 * padded[:, 1:]  # a + 2b in each row, then rows below x 4
    code = pairs[:-1] + 4 * pairs[1:]
    euler = int(_EULER4[code].sum()) / 4.0
    return width / height, coverage, second, max(count - euler, 0.0)


@dataclass
class VerdictModel:
    """What the verdict needs: the typicality model, thresholds, temperature and sure line,
    and the non-digit detector (None in a checkpoint calibrated before it existed)."""

    typicality: TypicalityModel
    thresholds: dict[str, float]
    temperature: float
    sure_above: float
    detector: NonDigitDetector | None = None

    def __post_init__(self) -> None:
        self.keys = tuple(k for k in SCORES if k in self.thresholds
                          and (k != "non_digit" or self.detector is not None))
        self._limits = np.array([self.thresholds[k] for k in self.keys])
        self._weight: np.ndarray | None = None

    @classmethod
    def from_checkpoint(cls, meta: dict[str, Any],
                        tensors: dict[str, torch.Tensor]) -> VerdictModel | None:
        """The verdict stored with a checkpoint (``meta["verdict"]``), or None when it has none."""
        info = meta.get("verdict")
        if not isinstance(info, dict) or not all(k in tensors for k in TENSOR_KEYS):
            return None
        detector = NonDigitDetector.from_tensors(tensors)
        return cls(TypicalityModel.from_tensors(tensors),
                   {k: float(v) for k, v in info["thresholds"].items() if k in SCORES},
                   float(info["temperature"]), float(info["sure_above"]), detector)

    def attach_classifier(self, weight: np.ndarray, bias: np.ndarray,
                          background: float) -> None:
        """The classifier's (10, 784) weights and bias, for ``judge_one``: its logits, the
        typicality model's projections and the detector's hidden layer in one product.
        `background`: the normalised value of a blank pixel, which most of a drawing's are:
        x @ W = background * (column sums of W) + (x - background)[ink] @ W[ink], a product
        over the ink's rows alone (a fifth of them, for a digit)."""
        typ = self.typicality
        parts = [np.asarray(weight, np.float32).T, typ._project_one]
        if self.detector is not None and "non_digit" in self.keys:
            parts.append(self.detector.w1)
        matrix = np.concatenate(parts, axis=1).astype(np.float64)
        self._weight = np.ascontiguousarray(matrix, dtype=np.float32)
        self._background = np.float32(background)
        self._base = background * matrix.sum(axis=0)
        self._base[:10] += np.asarray(bias, np.float64)
        # The constant terms folded in too: the groups' offsets, the detector's first bias.
        end = 10 + typ._project_one.shape[1]
        self._base[10 : end - len(typ.residual)] -= typ._offsets_one
        if len(parts) == 3:
            self._base[end:] += self.detector.b1  # type: ignore[union-attr]
        self._split = (10, end)
        self._inv_temperature = 1.0 / self.temperature

    def judge_one(self, seen: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """One (1, 28, 28) model input normalised as (1, 784) `x` -> its (1, 10) probabilities
        (the classifier's, as ``Predictor.probabilities_of_input`` gives them) and its verdict,
        the same as ``judge`` gives: one product and a few small calls instead of ``judge``'s
        batch machinery, for the page's one drawing at a time (see ``attach_classifier``)."""
        assert self._weight is not None, "attach_classifier first"
        typ = self.typicality
        x32 = x[0]
        ink = np.flatnonzero(x32 != self._background)
        product = ((x32[ink] - self._background) @ self._weight[ink]) + self._base
        a, b = self._split
        logits = product[:a]
        order = np.argsort(logits)
        first, second = int(order[-1]), int(order[-2])
        shifted = logits - logits[first]
        exp = np.exp(shifted)
        total = float(exp.sum())
        probs = (exp / total).astype(np.float32)[None]
        calibrated = 1.0 / float(np.exp(shifted * self._inv_temperature).sum())
        aspect, coverage, second_share, loops = one_image_facts(seen[0])
        components = len(typ.residual)
        d = product[a : b - components]  # the offsets are in the base
        d *= d
        nll = product[b - components : b] - d.reshape(components, -1).sum(axis=1) \
            + float(x32 @ x32) * typ._inv_residual + typ._const_one
        mine = {"second_piece": second_share, "aspect": aspect, "loops": loops,
                "coverage": coverage, "energy": -(float(logits[first]) + math.log(total)),
                "atypicality": 0.5 * float(nll.min())}
        if len(self._weight[0]) > b:
            assert self.detector is not None
            hidden = np.maximum(product[b:], 0.0)  # the first bias is in the base
            mine["non_digit"] = float(hidden @ self.detector.w2) + float(self.detector.b2[0])
        return probs, self._verdict(mine, first, second, calibrated)

    def _verdict(self, mine: dict[str, float], first: int, second: int,
                 confidence: float) -> dict[str, Any]:
        failed = [k for k in self.keys if mine[k] > self.thresholds[k]]
        reason: str
        if failed:
            verdict, reason = "not_a_digit", failed[0]
            message = f"That doesn't look like a digit: {REASONS[reason]}."
        elif confidence < self.sure_above:
            verdict, reason = "unsure", "low_confidence"
            message = f"Not sure: {first} or {second}?"
        else:
            verdict, reason, message = "digit", "confident", f"It's a {first}."
        return {
            "verdict": verdict,
            "reason": reason,
            "failed": failed,
            "message": message,
            "candidates": [first, second],
            "calibrated_confidence": round(confidence, 6),
            "sure_above": round(self.sure_above, 6),
            "temperature": round(self.temperature, 6),
            "scores": {k: round(mine[k], 6) if math.isfinite(mine[k]) else None
                       for k in self.keys},
            "thresholds": {k: self.thresholds[k] for k in self.keys},
        }

    def scores(self, seen: np.ndarray, x: np.ndarray, logits: np.ndarray) -> dict[str,
                                                                                  np.ndarray]:
        return input_scores(seen, x, logits, self.typicality,
                            self.detector if "non_digit" in self.keys else None)

    def judge(self, seen: np.ndarray, x: np.ndarray, logits: np.ndarray) -> list[dict[str, Any]]:
        """A verdict for each input: its word, reason, calibrated confidence and the numbers."""
        scores = self.scores(seen, x, logits)
        z = logits / self.temperature
        z = z - z.max(axis=1, keepdims=True)
        calibrated = np.exp(z)
        calibrated /= calibrated.sum(axis=1, keepdims=True)
        order = np.argsort(-calibrated, axis=1)
        columns = {k: scores[k].tolist() for k in self.keys}
        confidence = calibrated[np.arange(len(seen)), order[:, 0]].tolist()
        firsts, seconds = order[:, 0].tolist(), order[:, 1].tolist()
        return [self._verdict({k: float(columns[k][i]) for k in self.keys}, firsts[i],
                              seconds[i], confidence[i]) for i in range(len(seen))]


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
