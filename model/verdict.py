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


def stack_facts(seen: np.ndarray) -> dict[str, np.ndarray]:
    """The facts of ``drawing_facts`` that the verdict reads, for a stack (N, H, W) of model
    inputs at once (W at most 62), and the loops (``count_loops``).

    Each row of an ink map is held as the bits of one 64-bit word: the ink's box and the Euler
    number (Gray, 1971: 2x2 windows with one, three or two diagonal ink pixels) come from a few
    bitwise operations and popcounts on (N, H + 2) words. The pieces come from one 2-D
    labelling of the stack laid end to end with a blank row between images, so no piece spans
    two images and each image's labels follow the previous image's (labels are numbered in
    scan order). For 1,000 inputs: about 5 ms, where a 3-D labelling and (N, H, W) windows
    took 15 (``tests/model/test_verdict_speed.py`` checks it against that way).
    """
    arr = np.asarray(seen)
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float32, copy=False)
    n, h, w = arr.shape
    peak = arr.reshape(n, -1).max(axis=1).astype(np.float32)
    mask = arr > (INK_FRACTION * peak)[:, None, None]
    words = _row_words(mask)  # (n, h + 2): bit j of word r is pixel (r - 1, j); rows 0, h+1 blank
    rows = words[:, 1:-1] != 0
    columns = np.bitwise_or.reduce(words, axis=1)
    inked = columns != 0
    top, bottom = rows.argmax(axis=1), h - rows[:, ::-1].argmax(axis=1)
    right = np.frexp(columns.astype(np.float64))[1]  # bit length: the last column + 1
    left = np.frexp((columns & (~columns + np.uint64(1))).astype(np.float64))[1] - 1
    height = np.where(inked, bottom - top, 1)
    width = np.where(inked, right - left, 0)
    in_rows = (np.arange(h) >= top[:, None]) & (np.arange(h) < bottom[:, None])
    in_cols = (np.arange(w) >= left[:, None]) & (np.arange(w) < right[:, None])
    row_ink = np.einsum("nhw,nw->nh", arr.astype(np.float32, copy=False),
                        in_cols.astype(np.float32))
    box_ink = (row_ink * in_rows).sum(axis=1)
    safe_peak = np.where(peak > 0.0, peak, 1.0)
    coverage = np.where(inked, box_ink / np.maximum(height * width, 1) / safe_peak, 0.0)

    # Loops = pieces - Euler number (8-connected ink, 4-connected background); each 2x2
    # window of rows r, r + 1 at columns k - 1, k is bit k of a, b (row r) and c, d (row r + 1).
    upper, lower = words[:, :-1], words[:, 1:]
    one = np.uint64(1)
    a, b, c, d = upper << one, upper, lower << one, lower
    odd, pair = a ^ b ^ c ^ d, (a & b) | (c & d)  # odd count; two in a row (so 2, 3 or 4)
    q1 = np.bitwise_count(odd & ~pair).sum(axis=1, dtype=np.int64)
    q3 = np.bitwise_count(odd & pair).sum(axis=1, dtype=np.int64)
    diagonal = np.bitwise_count((a & d & ~(b | c)) | (b & c & ~(a | d))).sum(axis=1,
                                                                              dtype=np.int64)
    euler = (q1 - q3 - 2 * diagonal) / 4.0

    pieces, second = _pieces(mask, in_rows, in_cols.any(axis=0))
    return {"aspect": width / height, "coverage": coverage, "second_piece": second,
            "loops": np.maximum(pieces - euler, 0.0)}


def _row_words(mask: np.ndarray) -> np.ndarray:
    """(N, H, W <= 62) bool -> (N, H + 2) uint64, bit j of word r + 1 = mask[:, r, j]. Rows
    padded to 32 or 64 pixels and packed as one flat run: 0.15 ms for 1,000 inputs, where
    packing along the last axis took 0.85."""
    n, h, w = mask.shape
    if w > 62:
        raise ValueError(f"stack_facts reads images up to 62 pixels wide, not {w}")
    bits = 32 if w <= 31 else 64
    padded = np.zeros((n, h + 2, bits), dtype=bool)
    padded[:, 1:-1, :w] = mask
    words = np.packbits(padded.reshape(-1), bitorder="little").view(f"<u{bits // 8}")
    return words.reshape(n, h + 2).astype(np.uint64)


def _pieces(mask: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """Separate 8-connected pieces of each (H, W) mask of a stack, and the second-largest
    piece's share of the ink (0 with fewer than two). `rows`: (N, H), the rows of each
    image's ink box; `columns`: (W,), the columns that hold ink in any image. Only those are
    labelled (with a blank row after each image): for MNIST-like inputs, 30% fewer pixels."""
    n, h, _ = mask.shape
    keep = np.flatnonzero(columns)
    if not len(keep):
        return np.zeros(n), np.zeros(n)
    left, right = int(keep[0]), int(keep[-1]) + 1
    width = right - left
    tiled = np.zeros((n, h + 1, width), dtype=bool)
    tiled[:, :h] = mask[:, :, left:right]
    chosen = np.ones((n, h + 1), dtype=bool)
    chosen[:, :h] = rows
    packed = tiled.reshape(-1, width)[chosen.ravel()]
    labels = np.empty(packed.shape, dtype=np.int32)  # given, label() skips choosing a type
    ndimage.label(packed, structure=_EIGHT, output=labels)
    ends = np.cumsum(chosen.sum(axis=1))
    starts = np.concatenate(([0], ends[:-1]))
    # Image i's labels are those after the previous images' and up to last[i].
    last = np.maximum.reduceat(labels.ravel(), starts * width).astype(np.int64)
    before = np.maximum.accumulate(np.concatenate(([0], last[:-1])))
    pieces = np.where(last > 0, last - before, 0)
    second = np.zeros(n)
    for i in np.flatnonzero(pieces > 1).tolist():
        mine = np.sort(np.bincount(labels[starts[i] : ends[i]].ravel())[before[i] + 1 :])
        second[i] = float(mine[-2]) / float(mine.sum())
    return pieces.astype(np.float64), second


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
        self._weight_t = torch.from_numpy(self._weight)
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
        failed: list[str] = [k for k in self.keys if mine[k] > self.thresholds[k]]
        scores: dict[str, float | None] = {
            k: round(mine[k], 6) if math.isfinite(mine[k]) else None for k in self.keys}
        return self._answer(failed, first, second, confidence, scores)

    def _answer(self, failed: list[str], first: int, second: int, confidence: float,
                scores: dict[str, float | None]) -> dict[str, Any]:
        """One verdict as the API shows it, from the tests it failed and its numbers."""
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
            "scores": scores,
            "thresholds": {k: self.thresholds[k] for k in self.keys},
        }

    def scores(self, seen: np.ndarray, x: np.ndarray, logits: np.ndarray) -> dict[str,
                                                                                  np.ndarray]:
        return input_scores(seen, x, logits, self.typicality,
                            self.detector if "non_digit" in self.keys else None)

    def judge(self, seen: np.ndarray, x: np.ndarray, logits: np.ndarray) -> list[dict[str, Any]]:
        """A verdict for each input: its word, reason, calibrated confidence and the numbers."""
        scores = self.scores(seen, x, logits)
        return self.details(self._judged(np.stack([scores[k] for k in self.keys], axis=1),
                                         logits))

    def assess(self, seen: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, Judged]:
        """A batch of (N, 28, 28) model inputs normalised as (N, 784) `x` -> their (N, 10)
        probabilities and their verdicts as arrays (``details`` and ``words`` read them): the
        logits, the typicality model's projections and the detector's hidden layer come from
        one product, as in ``judge_one`` (see ``attach_classifier``); 1,000 inputs in about
        9 ms where ``judge``'s separate products, facts and a dict an input took 35."""
        assert self._weight is not None, "attach_classifier first"
        typ = self.typicality
        x32 = np.asarray(x, dtype=np.float32)
        # Only the pixels some input inks take part (a quarter of MNIST's are blank in all of
        # 1,000); torch's product, on the threads the server allows it (numpy's BLAS would
        # take every core).
        inked = np.flatnonzero((x32 != self._background).any(axis=0))
        shifted = np.take(x32, inked, axis=1)
        shifted -= self._background
        product = (torch.from_numpy(shifted) @ self._weight_t[torch.from_numpy(inked)]).numpy()
        a, b = self._split
        components = len(typ.residual)
        logits = product[:, :a].astype(np.float64) + self._base[:a]
        top = logits.max(axis=1, keepdims=True)
        exp = np.exp(logits - top)
        total = exp.sum(axis=1)
        probs = (exp / total[:, None]).astype(np.float32)
        means = b - components  # the groups' coordinates, then x . mean (scaled) of each group
        coordinates = (product[:, a:means] + self._base[a:means].astype(np.float32)).reshape(
            len(x32), components, -1)  # float32 like the product: within 1e-6 of float64
        squared = np.einsum("nck,nck->nc", coordinates, coordinates).astype(np.float64)
        length2 = np.einsum("nd,nd->n", x32, x32).astype(np.float64)
        nll = product[:, means:b].astype(np.float64) + self._base[means:b] - squared \
            + length2[:, None] * typ._inv_residual + typ._const_one
        mine = {**stack_facts(seen), "energy": -(top[:, 0] + np.log(total)),
                "atypicality": 0.5 * nll.min(axis=1)}
        if product.shape[1] > b:
            assert self.detector is not None
            hidden = np.maximum(product[:, b:] + self._base[b:].astype(np.float32), 0.0)
            mine["non_digit"] = (hidden @ self.detector.w2).astype(np.float64) \
                + float(self.detector.b2[0])
        return probs, self._judged(np.stack([mine[k] for k in self.keys], axis=1), logits)

    def _judged(self, scores: np.ndarray, logits: np.ndarray) -> Judged:
        """The verdicts of a batch from its (N, K) scores (in ``keys``' order) and logits."""
        order = np.argsort(-logits, axis=1, kind="stable")
        z = (logits - logits.max(axis=1, keepdims=True)) / self.temperature
        confidence = 1.0 / np.exp(z).sum(axis=1)  # the calibrated softmax of the first
        with np.errstate(invalid="ignore"):  # a NaN score fails no test, as in ``_verdict``
            failed = scores > self._limits
        return Judged(scores, failed, order[:, 0], order[:, 1], confidence)

    def words(self, judged: Judged) -> list[str]:
        """Each input's verdict word, without the rest of its verdict."""
        word = np.where(judged.confidence < self.sure_above, 1, 2)
        word[judged.failed.any(axis=1)] = 0
        return [WORDS[i] for i in word.tolist()]

    def details(self, judged: Judged) -> list[dict[str, Any]]:
        """Each input's verdict as ``_verdict`` gives it, built for the batch at once."""
        keys = self.keys
        rounded = np.round(judged.scores, 6)
        rows: list[list[float | None]] = rounded.tolist()
        if not np.isfinite(rounded).all():
            rows = [[v if v is not None and math.isfinite(v) else None for v in row]
                    for row in rows]
        failing: list[bool] = np.asarray(judged.failed.any(axis=1)).tolist()
        confidences = judged.confidence.tolist()
        firsts, seconds = judged.first.tolist(), judged.second.tolist()
        return [self._answer([keys[j] for j in np.flatnonzero(judged.failed[i]).tolist()]
                             if failing[i] else [], firsts[i], seconds[i], confidences[i],
                             dict(zip(keys, row, strict=True)))
                for i, row in enumerate(rows)]


#: The verdict words, by ``VerdictModel.words``' codes.
WORDS: Final = ("not_a_digit", "unsure", "digit")


@dataclass
class Judged:
    """The verdicts of a batch as arrays, as ``VerdictModel.details`` and ``words`` read them."""

    scores: np.ndarray  # (N, K) float64, in the verdict model's ``keys`` order
    failed: np.ndarray  # (N, K) bool: the score is over its threshold
    first: np.ndarray  # (N,) the most likely digit
    second: np.ndarray  # (N,) the next
    confidence: np.ndarray  # (N,) calibrated probability of the first


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
