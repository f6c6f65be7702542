"""Accuracy, mean NLL, per-class precision and recall and the confusion matrix."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from model.network import N_CLASSES


@dataclass
class Metrics:
    accuracy: float
    loss: float
    n: int
    precision: list[float]
    recall: list[float]
    confusion: list[list[int]]  # confusion[true][predicted]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Metrics:
        return cls(**data)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 10_000) -> Metrics:
    """Evaluate `model` (log-probabilities out) on normalised inputs `x` and labels `y`."""
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), dtype=torch.float64, device=x.device)
    preds = []
    for start in range(0, x.shape[0], batch):
        logp = model(x[start : start + batch])
        yb = y[start : start + batch]
        total_loss += nn.functional.nll_loss(logp, yb, reduction="sum").double()
        preds.append(logp.argmax(dim=1))
    model.train(was_training)
    predicted = torch.cat(preds).cpu()
    truth = y.cpu()
    return metrics_from_predictions(truth, predicted, float(total_loss) / max(len(truth), 1))


def metrics_from_predictions(truth: torch.Tensor, predicted: torch.Tensor, loss: float) -> Metrics:
    confusion = torch.bincount(truth * N_CLASSES + predicted, minlength=N_CLASSES**2).reshape(
        N_CLASSES, N_CLASSES
    )
    diag = confusion.diag().double()
    predicted_counts = confusion.sum(dim=0).double()
    true_counts = confusion.sum(dim=1).double()
    precision = torch.where(predicted_counts > 0, diag / predicted_counts.clamp_min(1), 0.0)
    recall = torch.where(true_counts > 0, diag / true_counts.clamp_min(1), 0.0)
    n = int(truth.numel())
    return Metrics(
        accuracy=float(diag.sum()) / max(n, 1),
        loss=loss,
        n=n,
        precision=[round(float(v), 6) for v in precision],
        recall=[round(float(v), 6) for v in recall],
        confusion=confusion.tolist(),
    )


def format_report(metrics: Metrics, title: str) -> str:
    """A terminal-readable report: accuracy, per-class table and confusion matrix."""
    lines = [
        f"{title}: accuracy {metrics.accuracy:.4f}  mean NLL {metrics.loss:.4f}  (n={metrics.n})",
        "",
        "digit  precision  recall  support",
    ]
    for d in range(N_CLASSES):
        support = sum(metrics.confusion[d])
        precision, recall = metrics.precision[d], metrics.recall[d]
        lines.append(f"{d:>5}  {precision:>9.4f}  {recall:>6.4f}  {support:>7}")
    lines += ["", "confusion matrix (rows: true digit, columns: predicted)"]
    lines.append("     " + "".join(f"{d:>6}" for d in range(N_CLASSES)))
    for d, row in enumerate(metrics.confusion):
        lines.append(f"{d:>4} " + "".join(f"{v:>6}" for v in row))
    return "\n".join(lines)
