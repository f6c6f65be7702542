"""The fit loop: NLL loss, SGD or Adam, shuffled mini-batches drawn from tensors on the device.

Run it from the command line: `mnist-canvas train --epochs 4 --lr 0.002` (see `model.cli`).
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from model.checkpoint import Checkpoint
from model.config import OPTIMIZERS as OPTIMIZERS  # re-exported: written once there
from model.config import SCHEDULES as SCHEDULES
from model.config import TrainConfig as TrainConfig
from model.data import Mnist, pixel_stats
from model.device import resolve_device, set_threads
from model.evaluation import Metrics, evaluate
from model.network import build_model, get_linear, linear_parameters
from model.optim import Optimizer
from model.transforms import apply_transforms

logger = logging.getLogger(__name__)

class TextSink(Protocol):
    """Where the epoch table goes: sys.stdout, a StringIO, a logger adapter."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


GALLERY_SIZE = 24  # misclassified test digits kept in the checkpoint for the model page


@dataclass
class EpochRecord:
    epoch: int
    trn_loss: float
    val_loss: float
    accuracy: float
    seconds: float


@dataclass
class TrainResult:
    model: nn.Module
    config: TrainConfig
    mean: float
    std: float
    history: list[EpochRecord]
    valid: Metrics
    test: Metrics | None
    train_seconds: float
    device: str
    data_sha256: str
    train_size: int = 0
    gallery: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # images, true, predicted
    #: Seconds of each part of `train`: statistics, inputs, fit, evaluation (not stored).
    phases: dict[str, float] = field(default_factory=dict)

    def to_checkpoint(self) -> Checkpoint:
        """Everything a server needs to rebuild, run and explain this model."""
        weight, bias = get_linear(self.model)
        meta: dict[str, Any] = {
            "config": self.config.to_dict(),
            "history": [asdict(r) for r in self.history],
            "valid": self.valid.to_dict(),
            "test": self.test.to_dict() if self.test is not None else None,
            "train_seconds": round(self.train_seconds, 3),
            "train_size": self.train_size,
            "device": self.device,
            "data_sha256": self.data_sha256,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        ckpt = Checkpoint(
            weight=weight,
            bias=bias,
            arch=self.config.arch,
            mean=self.mean,
            std=self.std,
            transforms=list(self.config.transforms),
            meta=meta,
        )
        if self.gallery is not None:
            images, true, pred = self.gallery
            ckpt.gallery_images = torch.from_numpy(np.ascontiguousarray(images))
            ckpt.gallery_true = torch.from_numpy(true.astype(np.int64))
            ckpt.gallery_pred = torch.from_numpy(pred.astype(np.int64))
        return ckpt


def to_inputs(
    images: np.ndarray,
    mean: float,
    std: float,
    transforms: list[str] | tuple[str, ...],
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """uint8/float pixel images (N, 28, 28) in 0..255 -> normalised float32 (N, 784).

    One float copy, normalised in place: (x / 255 - mean) / std = x * a - b.
    """
    pixels = apply_transforms(images, tuple(transforms)) if transforms else images
    # A fresh float32 array (never the caller's), so normalising in place is safe.
    x = torch.from_numpy(np.array(pixels, dtype=np.float32, copy=True)).reshape(len(pixels), -1)
    x.mul_(1.0 / (255.0 * std)).sub_(mean / std)
    return x.to(device)


class Progress:
    """A one-line progress bar: redrawn in place on a terminal, silent otherwise."""

    def __init__(self, total: int, stream: TextSink, label: str) -> None:
        self.total, self.stream, self.label = total, stream, label
        self.live = bool(getattr(stream, "isatty", lambda: False)())
        self._last = 0.0

    def update(self, done: int, loss: float) -> None:
        now = time.monotonic()
        if not self.live or (now - self._last < 0.1 and done < self.total):
            return
        self._last = now
        width = 30
        filled = int(width * done / self.total)
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total} loss {loss:.4f}")
        self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\r" + " " * 79 + "\r")
            self.stream.flush()


def make_optimizer(model: nn.Module, config: TrainConfig) -> Optimizer:
    # The fused kernel saves about 8% of the default recipe's time on the CPU.
    return Optimizer(model.parameters(), config.optimizer, lr=config.lr,
                     momentum=config.momentum,
                     weight_decay=config.weight_decay,
                     fused=True if config.optimizer == "adam" else None)


def lr_factor(config: TrainConfig, step: int, total_steps: int) -> float:
    """Multiplier of the base learning rate at `step` (0-based) of `total_steps`."""
    if config.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / max(total_steps, 1)))
    if config.schedule == "step":
        # Divide by 10 for the last quarter of training.
        return 0.1 if step >= 0.75 * total_steps else 1.0
    return 1.0


class Pixels:
    """uint8 images (N, 784) on the device, normalised a batch at a time.

    A batch comes out as exactly the float32 numbers `to_inputs` gives its rows (x * a - b, the
    same two float32 operations; a test compares them bit for bit), without the float copy of
    the whole training split: 157 MB that took 0.23 s to write in a fresh process, where
    normalising each batch after gathering it costs at most 0.02 s over the recipe's 3,128 steps
    (the fit loop measured 0.43-0.46 s either way: gathering bytes is cheaper than floats).
    """

    def __init__(self, images: np.ndarray, mean: float, std: float,
                 device: torch.device | str = "cpu") -> None:
        if images.dtype != np.uint8:
            raise TypeError(f"Pixels holds uint8 images, got {images.dtype}")
        with warnings.catch_warnings():  # MNIST's arrays are read-only views of its bytes;
            warnings.simplefilter("ignore", UserWarning)  # nothing here writes to them
            raw = torch.from_numpy(np.ascontiguousarray(images).reshape(len(images), -1))
        self.raw = raw.to(device)
        self.scale, self.shift = 1.0 / (255.0 * std), mean / std
        self.shape = self.raw.shape

    def take(self, idx: torch.Tensor, raw: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The normalised rows `idx`, written into `out`, gathered through `raw` (same rows)."""
        torch.index_select(self.raw, 0, idx, out=raw)
        # to_inputs' operations: a float32 copy, then * a and - b (faster than a mixed-type mul).
        return out.copy_(raw).mul_(self.scale).sub_(self.shift)


def model_inputs(
    images: np.ndarray,
    mean: float,
    std: float,
    transforms: list[str] | tuple[str, ...],
    device: torch.device | str = "cpu",
) -> torch.Tensor | Pixels:
    """What `fit` trains on: `Pixels` for untransformed uint8 images, else `to_inputs`."""
    if transforms or images.dtype != np.uint8:
        return to_inputs(images, mean, std, transforms, device)
    return Pixels(images, mean, std, device)


@dataclass
class Batch:
    """The buffers of one batch size, allocated once and written by every step of that size."""

    raw: torch.Tensor  # (B, 784) rows as stored: uint8 for Pixels, else `x` itself
    x: torch.Tensor  # (B, 784) normalised float32 inputs
    y: torch.Tensor  # (B,) labels
    logits: torch.Tensor  # (10, B), classes first
    logp: torch.Tensor  # (10, B) log-probabilities, then the gradient of the logits
    onehot: torch.Tensor  # (10, B)

    @classmethod
    def empty(cls, rows: int, classes: int, pixels: int, raw_dtype: torch.dtype,
              device: torch.device) -> Batch:
        x = torch.empty((rows, pixels), device=device)
        raw = x if raw_dtype == x.dtype else torch.empty((rows, pixels), dtype=raw_dtype,
                                                         device=device)
        return cls(raw=raw, x=x, y=torch.empty(rows, dtype=torch.int64, device=device),
                   logits=torch.empty((classes, rows), device=device),
                   logp=torch.empty((classes, rows), device=device),
                   onehot=torch.empty((classes, rows), device=device))


class LinearStep:
    """The gradient of the mean NLL of log_softmax(x W + b), derived by hand, into `.grad`.

    Both of the lesson's forms are a linear layer followed by log-softmax, and the fit loop's
    loss is the mean negative log-likelihood of the right digit, so the gradient has a closed
    form: with p = softmax(logits) and Y the one-hot labels of a batch of B rows,
    dL/dlogits = (p - Y) / B, dL/dW = (p - Y)^T x / B (in nn.Linear's (10, 784) layout) and
    dL/db = the column sums of (p - Y) / B. It is computed with the classes first, (10, B):
    torch's log-softmax over 10 rows of a (10, 128) block takes 4.5 us where the same over
    10 columns of (128, 10) takes 20, and W x^T runs faster than x W^T for these shapes. A test
    compares the gradients with autograd's to float32 rounding.
    """

    def __init__(self, model: nn.Module) -> None:
        self.weight, self.bias, self.classes_first = linear_parameters(model)
        self.weight.grad = torch.zeros_like(self.weight)
        self.bias.grad = torch.zeros_like(self.bias)
        with torch.no_grad():  # views of the parameters, which the optimizer updates in place
            self.w = self.weight if self.classes_first else self.weight.t()  # (10, 784)
            self.b = self.bias.unsqueeze(1)  # (10, 1)
        self.grad_w = self.weight.grad if self.classes_first else torch.empty_like(self.w)
        self.eye = torch.eye(self.w.shape[0], device=self.weight.device)

    def batch(self, rows: int, raw_dtype: torch.dtype = torch.float32) -> Batch:
        """Buffers for batches of `rows` rows gathered from inputs stored as `raw_dtype`."""
        classes, pixels = self.w.shape
        return Batch.empty(rows, classes, pixels, raw_dtype, self.weight.device)

    def __call__(self, batch: Batch) -> torch.Tensor:
        """Write the gradients of the batch in `batch.x` and `batch.y`; return its summed
        log-likelihood (a tensor: no sync)."""
        torch.addmm(self.b, self.w, batch.x.t(), out=batch.logits)
        logp = torch.log_softmax(batch.logits, 0, out=batch.logp)
        torch.index_select(self.eye, 1, batch.y, out=batch.onehot)
        likelihood = torch.dot(logp.view(-1), batch.onehot.view(-1))
        grad = logp.exp_().sub_(batch.onehot).mul_(1.0 / batch.y.shape[0])  # (p - Y)^T / B
        torch.mm(grad, batch.x, out=self.grad_w)
        if not self.classes_first:
            assert self.weight.grad is not None
            self.weight.grad.copy_(self.grad_w.t())
        torch.sum(grad, 1, out=self.bias.grad)
        return likelihood


def fit(
    model: nn.Module,
    train: tuple[torch.Tensor | Pixels, torch.Tensor],
    valid: tuple[torch.Tensor, torch.Tensor],
    config: TrainConfig,
    *,
    out: TextSink | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> list[EpochRecord]:
    """Train `model` in place; print the lesson's `epoch trn_loss val_loss accuracy` table.

    `train` holds normalised float inputs (N, 784) or `Pixels`, and int64 labels. Batches are
    drawn in a fresh seeded random order each epoch; each step's gradient is `LinearStep`'s.
    """
    stream = out if out is not None else sys.stdout
    x, y = train
    n, size = x.shape[0], config.batch_size
    device = y.device
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    optimizer = make_optimizer(model, config)
    step_grads = LinearStep(model)
    steps_per_epoch = math.ceil(n / size)
    total_steps = steps_per_epoch * config.epochs
    lrs = [config.lr * lr_factor(config, step, total_steps) for step in range(total_steps)]
    raw_dtype = x.raw.dtype if isinstance(x, Pixels) else x.dtype
    full, last = step_grads.batch(min(size, n), raw_dtype), n - (steps_per_epoch - 1) * size
    batches = [full] * (steps_per_epoch - 1) + [full if last == size else
                                                step_grads.batch(last, raw_dtype)]
    history: list[EpochRecord] = []
    stream.write(f"{'epoch':>5}  {'trn_loss':>9}  {'val_loss':>9}  {'accuracy':>8}\n")
    step = 0
    for epoch in range(config.epochs):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=generator).to(device)
        progress = Progress(steps_per_epoch, stream, f"epoch {epoch}")
        running = torch.zeros((), device=device)
        with torch.no_grad():
            for i, batch in enumerate(batches):
                optimizer.lr = lrs[step]
                idx = order[i * size : (i + 1) * size]
                if isinstance(x, Pixels):
                    x.take(idx, batch.raw, batch.x)
                else:  # index_select gathers rows about 3x faster than x[idx] (8 vs 30 us)
                    torch.index_select(x, 0, idx, out=batch.x)
                torch.index_select(y, 0, idx, out=batch.y)
                likelihood = step_grads(batch)
                optimizer.step()
                running -= likelihood
                step += 1
                if progress.live:
                    progress.update(i + 1, -float(likelihood) / batch.y.shape[0])
        progress.close()
        trn_loss = float(running) / n
        val = evaluate(model, valid[0], valid[1])
        record = EpochRecord(
            epoch=epoch,
            trn_loss=trn_loss,
            val_loss=val.loss,
            accuracy=val.accuracy,
            seconds=time.perf_counter() - started,
        )
        history.append(record)
        stream.write(f"{epoch:>5}  {trn_loss:>9.6f}  {val.loss:>9.6f}  {val.accuracy:>8.4f}\n")
        stream.flush()
        if on_epoch is not None:
            on_epoch(record)
    return history


def train(
    data: Mnist,
    config: TrainConfig | None = None,
    *,
    device: str = "auto",
    threads: int = 1,
    out: TextSink | None = None,
) -> TrainResult:
    """The whole recipe: statistics, tensors on the device, fit, validation and test metrics."""
    config = config or TrainConfig()
    set_threads(threads)
    dev = resolve_device(device)
    torch.manual_seed(config.seed)
    clock = time.perf_counter()
    phases: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[name] = now - clock
        clock = now

    mean, std = pixel_stats(data.train_images)
    lap("statistics")
    logger.info(
        "training %s with %s lr=%g for %d epochs on %s (train mean %.5f std %.5f)",
        config.arch, config.optimizer, config.lr, config.epochs, dev, mean, std,
    )
    x_train = model_inputs(data.train_images, mean, std, config.transforms, dev)
    y_train = torch.from_numpy(data.train_labels).to(dev)
    x_valid = to_inputs(data.valid_images, mean, std, config.transforms, dev)
    y_valid = torch.from_numpy(data.valid_labels).to(dev)
    model = build_model(config.arch).to(dev)
    lap("inputs")
    history = fit(model, (x_train, y_train), (x_valid, y_valid), config, out=out)
    lap("fit")
    train_seconds = phases["inputs"] + phases["fit"]
    valid_metrics = evaluate(model, x_valid, y_valid)
    x_test = to_inputs(data.test_images, mean, std, config.transforms, dev)
    test_metrics = evaluate(model, x_test, torch.from_numpy(data.test_labels).to(dev))
    with torch.no_grad():
        model.eval()
        test_pred = model(x_test).argmax(dim=1).cpu().numpy()
    wrong = np.flatnonzero(test_pred != data.test_labels)[:GALLERY_SIZE]
    lap("evaluation")
    logger.info(
        "trained in %.2f s: validation %.4f, test %.4f",
        train_seconds, valid_metrics.accuracy, test_metrics.accuracy,
    )
    return TrainResult(
        model=model.cpu(),
        config=config,
        mean=mean,
        std=std,
        history=history,
        valid=valid_metrics,
        test=test_metrics,
        train_seconds=train_seconds,
        device=str(dev),
        data_sha256=data.sha256,
        train_size=len(data.train_images),
        gallery=(data.test_images[wrong], data.test_labels[wrong], test_pred[wrong]),
        phases=phases,
    )
