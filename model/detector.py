"""The verdict's seventh test: a small network that tells digits from non-digits.

One hidden layer (HIDDEN ReLU units) on the normalised 28x28 input, trained on the training
split's digits (and some of them sent again through the server's ``ink_to_mnist``) against
non-digits of our own generator (``model.nondigit_examples``: stroke-skeleton letters,
shapes, strokes, scribbles, pairs of training digits, specks). Its score is the logit of
"not a digit"; its threshold, like the other tests', is chosen on the validation split
(``model.calibrate``). Never fitted on MNIST's validation or test digits, nor on the
benchmark's drawings (``benchmarks/nondigits.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

import numpy as np
import torch

from model.optim import Optimizer

#: Hidden units, epochs and the generated set's size: chosen on drawings of
#: ``benchmarks/nondigits.py`` with seed 1 (not the benchmark's seed) and the validation digits.
HIDDEN: Final = 64
EPOCHS: Final = 6
BATCH: Final = 256

#: Tensors of a checkpoint that hold the detector.
TENSOR_KEYS: Final = ("verdict_detector_w1", "verdict_detector_b1", "verdict_detector_w2",
                      "verdict_detector_b2")


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread inside: the same sums on every machine, and on a busy machine
    small products (784 x 784 by 784 x 20) run 5 to 10x faster than split over threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class NonDigitDetector:
    """logit = w2 . relu(x @ w1 + b1) + b2 on normalised (N, 784) inputs."""

    w1: np.ndarray  # (784, H)
    b1: np.ndarray  # (H,)
    w2: np.ndarray  # (H,)
    b2: np.ndarray  # (1,)

    @classmethod
    def fit(cls, digits: np.ndarray, non_digits: np.ndarray, *,
            redrawn: np.ndarray | None = None, hidden: int = HIDDEN, epochs: int = EPOCHS,
            seed: int = 0) -> NonDigitDetector:
        """Weighted logistic loss (digits and non-digits count alike; among the digits,
        `redrawn` ones, sent through the server's path, as much as all the others), Adam,
        minibatches of BATCH.
        One torch thread while it trains: the same weights on every machine (a sum split
        over threads rounds differently), so a refit reproduces the stored thresholds."""
        with one_torch_thread():
            return cls._fit(digits, non_digits, redrawn, hidden, epochs, seed)

    @classmethod
    def _fit(cls, digits: np.ndarray, non_digits: np.ndarray, redrawn: np.ndarray | None,
             hidden: int, epochs: int, seed: int) -> NonDigitDetector:
        generator = torch.Generator().manual_seed(seed)
        extra = redrawn if redrawn is not None else digits[:0]
        x = torch.from_numpy(np.concatenate([digits, extra, non_digits]).astype(np.float32))
        y = torch.cat([torch.zeros(len(digits) + len(extra)), torch.ones(len(non_digits))])
        positives = len(digits) + len(extra)
        share = 0.5 if len(extra) else 1.0
        weight = torch.cat([torch.full((len(digits),), share * positives / len(digits)),
                            torch.full((len(extra),), (1 - share) * positives
                                       / max(len(extra), 1)),
                            torch.full((len(non_digits),), positives / max(len(non_digits), 1))])
        first = torch.nn.Linear(x.shape[1], hidden)
        last = torch.nn.Linear(hidden, 1)
        with torch.no_grad():  # a seeded start, whatever torch's global seed
            for layer in (first, last):
                bound = 1.0 / layer.in_features ** 0.5
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)
        net = torch.nn.Sequential(first, torch.nn.ReLU(), last)
        # torch.optim.Adam's steps through its functional form (model.optim): the same weights,
        # without importing torch._dynamo on the first step (1.9 s)
        opt = Optimizer(net.parameters(), "adam", lr=2e-3, weight_decay=1e-4)
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), BATCH):
                pick = order[start : start + BATCH]
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    net(x[pick])[:, 0], y[pick], weight=weight[pick])
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            return cls(first.weight.T.numpy().copy(), first.bias.numpy().copy(),
                       last.weight[0].numpy().copy(), last.bias.numpy().copy())

    def score(self, x: np.ndarray) -> np.ndarray:
        """(N, 784) normalised inputs -> (N,) logits of "not a digit"."""
        hidden = np.asarray(x, dtype=np.float32) @ self.w1 + self.b1
        return (np.maximum(hidden, 0.0) @ self.w2 + self.b2[0]).astype(np.float64)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {key: torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
                for key, value in zip(TENSOR_KEYS, (self.w1, self.b1, self.w2, self.b2),
                                      strict=True)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> NonDigitDetector | None:
        """The stored detector, or None for a checkpoint calibrated before it existed."""
        if not all(key in tensors for key in TENSOR_KEYS):
            return None
        return cls(*(tensors[key].numpy().astype(np.float32) for key in TENSOR_KEYS))
