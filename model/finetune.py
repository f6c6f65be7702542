"""Fine-tune from corrections: retrain the current model's recipe on MNIST plus people's
corrections, and promote the candidate only through a gate.

    result = finetune(current_checkpoint, load_mnist(), Corrections(images, labels, clients))
    if result.report.promoted: save_checkpoint(result.candidate, path)

The candidate is trained from scratch with the current model's TrainConfig (stored in its
checkpoint) and normalisation, on MNIST's 50,000-image training split plus the training part
of the corrections, each repeated `correction_weight` times. Part of the corrections is held
out for the gate, split by client id so that one person's drawings are never on both sides.

The gate: the candidate's MNIST validation accuracy is at most `max_valid_drop` below the
current model's, AND it reads the held-out corrections better (higher accuracy; at equal
accuracy, lower mean NLL). Both models are measured in the same run on the same inputs. The
test digits are reported, never used to decide.
"""

from __future__ import annotations

import io
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch

from model.checkpoint import Checkpoint
from model.data import Mnist
from model.evaluation import Metrics, evaluate
from model.gate import (
    DEFAULT_CORRECTION_WEIGHT,
    DEFAULT_HOLDOUT_FRACTION,
    DEFAULT_MAX_VALID_DROP,
    DEFAULT_MIN_CLIENTS,
    gate,
)
from model.network import build_model, get_linear, set_linear
from model.training import GALLERY_SIZE, TrainConfig, fit, to_inputs

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class Corrections:
    """People's corrections in MNIST form: images (N, 28, 28) uint8, labels (N,), client ids."""

    images: np.ndarray
    labels: np.ndarray
    clients: np.ndarray  # (N,) strings; "" when unknown

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.images.shape != (n, 28, 28) or len(self.clients) != n:
            raise ValueError(
                f"corrections need images (N, 28, 28), N labels and N client ids; got "
                f"{self.images.shape}, {len(self.labels)} and {len(self.clients)}"
            )
        if n and (int(np.min(self.labels)) < 0 or int(np.max(self.labels)) > 9):
            raise ValueError("correction labels must be digits 0..9")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> Corrections:
        return Corrections(self.images[index], self.labels[index], self.clients[index])

    @classmethod
    def from_lists(cls, images: list[np.ndarray] | np.ndarray, labels: list[int] | np.ndarray,
                   clients: list[str | None] | np.ndarray) -> Corrections:
        stacked = (np.asarray(images, dtype=np.uint8).reshape(-1, 28, 28) if len(labels)
                   else np.zeros((0, 28, 28), np.uint8))
        return cls(
            stacked,
            np.asarray(labels, dtype=np.int64),
            np.asarray(["" if c is None else str(c) for c in clients], dtype=object),
        )


@dataclass
class FinetuneConfig:
    """The knobs of a fine-tune; the server's settings fill them (see app.settings)."""

    correction_weight: int = DEFAULT_CORRECTION_WEIGHT
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION
    min_clients: int = DEFAULT_MIN_CLIENTS  # fewer distinct ids: a random split instead
    max_valid_drop: float = DEFAULT_MAX_VALID_DROP  # 0.003 = 0.3 points
    seed: int = 0

    def __post_init__(self) -> None:
        if self.correction_weight < 1:
            raise ValueError("correction_weight must be >= 1")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError("holdout_fraction must be between 0 and 1")
        if self.max_valid_drop < 0:
            raise ValueError("max_valid_drop must be >= 0")


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # indices into the corrections
    holdout: np.ndarray
    method: str  # "client" or "random"
    train_clients: int
    holdout_clients: int


def split_corrections(clients: np.ndarray, *, fraction: float, min_clients: int,
                      seed: int = 0) -> Split:
    """Hold out about `fraction` of the corrections for the gate, whole clients at a time.

    With fewer than `min_clients` distinct ids (anonymous corrections count as one id each, so
    they can land on either side) the split is random over corrections instead.
    """
    n = len(clients)
    rng = np.random.default_rng(seed)
    keys = np.array([c if c else f"\0anon{i}" for i, c in enumerate(clients)], dtype=object)
    named = {c for c in clients if c}
    if n < 2:
        return Split(np.arange(n), np.arange(0), "random", len(named), 0)
    if len(named) >= min_clients:
        ids = np.array(sorted(set(keys.tolist())), dtype=object)
        rng.shuffle(ids)
        # Whole clients go to the hold-out until it holds the wanted share of corrections.
        counts = Counter(keys.tolist())
        chosen: set[str] = set()
        held = 0
        target = max(1, round(fraction * n))
        for k in ids:
            if held >= target or len(chosen) == len(ids) - 1:
                break
            chosen.add(k)
            held += counts[k]
        mask = np.array([k in chosen for k in keys])
        return Split(np.flatnonzero(~mask), np.flatnonzero(mask), "client",
                     len(ids) - len(chosen), len(chosen))
    order = rng.permutation(n)
    k = min(max(1, round(fraction * n)), n - 1)
    return Split(np.sort(order[k:]), np.sort(order[:k]), "random", len(named), len(named))


@dataclass
class GateReport:
    """Both models on both sets, the counts, the weight, the decision and the time it took."""

    promoted: bool
    reason: str
    parent_version: str
    candidate_version: str
    current: dict[str, float]  # valid_accuracy, holdout_accuracy, holdout_loss, test_accuracy
    candidate: dict[str, float]
    corrections: int
    train_corrections: int
    holdout_corrections: int
    split: str
    train_clients: int
    holdout_clients: int
    correction_weight: int
    max_valid_drop: float
    train_size: int
    train_seconds: float
    seconds: float
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        """The report as a terminal table (the CLI prints it)."""
        c, k = self.current, self.candidate
        lines = [
            f"corrections: {self.corrections} ({self.train_corrections} trained on, weight "
            f"{self.correction_weight}; {self.holdout_corrections} held out, split by "
            f"{self.split}: {self.train_clients} / {self.holdout_clients} clients)",
            f"{'':24}{'current':>10}{'candidate':>11}",
            f"{'MNIST validation acc':24}{c['valid_accuracy']:>10.4f}{k['valid_accuracy']:>11.4f}",
            f"{'held-out corrections acc':24}{c['holdout_accuracy']:>10.4f}"
            f"{k['holdout_accuracy']:>11.4f}",
            f"{'held-out corrections NLL':24}{c['holdout_loss']:>10.4f}{k['holdout_loss']:>11.4f}",
            f"{'MNIST test acc (report)':24}{c['test_accuracy']:>10.4f}{k['test_accuracy']:>11.4f}",
            f"models: {self.parent_version} -> {self.candidate_version}; trained on "
            f"{self.train_size} images in {self.train_seconds:.2f} s, {self.seconds:.2f} s in all",
            f"gate: {'PROMOTE' if self.promoted else 'REFUSE'}: {self.reason}",
        ]
        return "\n".join(lines)


@dataclass
class FinetuneResult:
    candidate: Checkpoint
    report: GateReport


def recipe_of(checkpoint: Checkpoint) -> TrainConfig:
    """The TrainConfig the checkpoint was trained with (the default recipe when it has none)."""
    stored = checkpoint.meta.get("config")
    config = TrainConfig.from_dict(stored) if isinstance(stored, dict) else TrainConfig()
    config.arch = checkpoint.arch
    config.transforms = list(checkpoint.transforms)
    return config


def _numbers(model: torch.nn.Module, sets: dict[str, tuple[torch.Tensor, torch.Tensor]]
             ) -> tuple[dict[str, float], dict[str, Metrics]]:
    metrics = {name: evaluate(model, x, y) for name, (x, y) in sets.items() if len(y)}
    numbers = {
        "valid_accuracy": metrics["valid"].accuracy,
        "test_accuracy": metrics["test"].accuracy,
        "holdout_accuracy": metrics["holdout"].accuracy if "holdout" in metrics else 0.0,
        "holdout_loss": metrics["holdout"].loss if "holdout" in metrics else 0.0,
    }
    return {k: round(v, 6) for k, v in numbers.items()}, metrics


def finetune(current: Checkpoint, data: Mnist, corrections: Corrections,
             config: FinetuneConfig | None = None) -> FinetuneResult:
    """Train a candidate on MNIST's training split plus corrections and judge it by the gate.

    Nothing is written: the caller stores the candidate when `result.report.promoted` (or
    stores it unpromoted, for the record).
    """
    config = config or FinetuneConfig()
    started = time.perf_counter()
    recipe = recipe_of(current)
    split = split_corrections(corrections.clients, fraction=config.holdout_fraction,
                              min_clients=config.min_clients, seed=config.seed)
    trained_on, held_out = corrections.subset(split.train), corrections.subset(split.holdout)
    mean, std, transforms = current.mean, current.std, recipe.transforms

    def inputs(images: np.ndarray) -> torch.Tensor:
        return to_inputs(images, mean, std, transforms)

    def labels(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(values, dtype=np.int64))

    repeat = config.correction_weight
    x_train = torch.cat([inputs(data.train_images),
                         inputs(np.repeat(trained_on.images, repeat, axis=0))])
    y_train = torch.cat([labels(data.train_labels), labels(np.repeat(trained_on.labels, repeat))])
    sets = {
        "valid": (inputs(data.valid_images), labels(data.valid_labels)),
        "holdout": (inputs(held_out.images), labels(held_out.labels)),
        "test": (inputs(data.test_images), labels(data.test_labels)),
    }
    train_started = time.perf_counter()
    torch.manual_seed(recipe.seed)
    model = build_model(recipe.arch)
    history = fit(model, (x_train, y_train), sets["valid"], recipe, out=io.StringIO())
    train_seconds = time.perf_counter() - train_started

    parent = build_model(recipe.arch)
    set_linear(parent, current.weight, current.bias)
    current_numbers, _ = _numbers(parent, sets)
    candidate_numbers, candidate_metrics = _numbers(model, sets)
    promoted, reason = gate(current_numbers, candidate_numbers, holdout=len(held_out),
                            max_valid_drop=config.max_valid_drop)
    candidate = _candidate_checkpoint(current, model, recipe, history, candidate_metrics, data,
                                      sets["test"][0], len(x_train), train_seconds)
    report = GateReport(
        promoted=promoted, reason=reason, parent_version=current.model_version,
        candidate_version=candidate.model_version, current=current_numbers,
        candidate=candidate_numbers, corrections=len(corrections),
        train_corrections=len(trained_on), holdout_corrections=len(held_out), split=split.method,
        train_clients=split.train_clients, holdout_clients=split.holdout_clients,
        correction_weight=repeat, max_valid_drop=config.max_valid_drop,
        train_size=len(x_train), train_seconds=round(train_seconds, 3),
        seconds=round(time.perf_counter() - started, 3),
    )
    candidate.meta["finetune"] = report.to_dict()
    logger.info("finetune %s -> %s: %s", report.parent_version, report.candidate_version,
                reason)
    return FinetuneResult(candidate=candidate, report=report)


def _candidate_checkpoint(current: Checkpoint, model: torch.nn.Module, recipe: TrainConfig,
                          history: list[Any], metrics: dict[str, Metrics], data: Mnist,
                          x_test: torch.Tensor, train_size: int, train_seconds: float
                          ) -> Checkpoint:
    """The candidate keeps every metadata field it does not recompute (e.g. calibration)."""
    weight, bias = get_linear(model)
    meta = dict(current.meta)
    meta.update({
        "config": recipe.to_dict(),
        "history": [asdict(r) for r in history],
        "valid": metrics["valid"].to_dict(),
        "test": metrics["test"].to_dict(),
        "train_seconds": round(train_seconds, 3),
        "train_size": train_size,
        "device": "cpu",
        "data_sha256": data.sha256,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "parent_version": current.model_version,
    })
    ckpt = Checkpoint(weight=weight, bias=bias, arch=current.arch, mean=current.mean,
                      std=current.std, transforms=list(current.transforms), meta=meta)
    # The gallery of misclassified test digits, as `train` makes it, for the model page.
    predicted = _predict(model, x_test)
    wrong = np.flatnonzero(predicted != data.test_labels)[:GALLERY_SIZE]
    ckpt.gallery_images = torch.from_numpy(np.ascontiguousarray(data.test_images[wrong]))
    ckpt.gallery_true = torch.from_numpy(data.test_labels[wrong].astype(np.int64))
    ckpt.gallery_pred = torch.from_numpy(predicted[wrong].astype(np.int64))
    return ckpt


@torch.no_grad()
def _predict(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    model.eval()
    predicted: np.ndarray = model(x).argmax(dim=1).numpy()
    return predicted
