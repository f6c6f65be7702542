"""The two logistic-regression forms of the lesson, sharing one parameter layout.

`sequential`: nn.Sequential(nn.Linear(784, 10), nn.LogSoftmax(dim=1)).
`logreg`: the lesson's hand-written module, x @ W + b and its own (stable) log-softmax.
Both take (N, 784) or (N, 28, 28) normalised pixels and return (N, 10) log-probabilities.
"""

from __future__ import annotations

import torch
from torch import nn

from model.config import ARCHITECTURES as ARCHITECTURES  # re-exported: written once there

N_PIXELS = 28 * 28
N_CLASSES = 10


def get_weights(*dims: int) -> nn.Parameter:
    """The lesson's initialisation: standard normal scaled by the fan-in."""
    return nn.Parameter(torch.randn(dims) / dims[0])


def log_softmax(x: torch.Tensor) -> torch.Tensor:
    """log(softmax(x)) computed stably: subtract the row max before exponentiating."""
    shifted = x - x.max(dim=1, keepdim=True).values
    return shifted - torch.log(torch.exp(shifted).sum(dim=1, keepdim=True))


class LogReg(nn.Module):
    """The lesson's logistic regression written by hand: weights (784, 10), bias (10,)."""

    def __init__(self) -> None:
        super().__init__()
        self.l1_w = get_weights(N_PIXELS, N_CLASSES)
        self.l1_b = get_weights(N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.size(0), -1)
        return log_softmax(x @ self.l1_w + self.l1_b)


def build_model(arch: str) -> nn.Module:
    """A fresh, randomly initialised model of the named architecture."""
    if arch == "sequential":
        return nn.Sequential(nn.Flatten(), nn.Linear(N_PIXELS, N_CLASSES), nn.LogSoftmax(dim=1))
    if arch == "logreg":
        return LogReg()
    raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHITECTURES}")


def linear_parameters(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """The model's own weight and bias parameters, and whether the weight is (10, 784)."""
    if isinstance(model, LogReg):
        return model.l1_w, model.l1_b, False
    if isinstance(model, nn.Sequential):
        linear = model[1]
        assert isinstance(linear, nn.Linear)
        return linear.weight, linear.bias, True
    raise TypeError(f"not a logistic-regression model: {type(model).__name__}")


def get_linear(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's weights as (10, 784) and bias (10,): the one layout checkpoints store."""
    weight, bias, classes_first = linear_parameters(model)
    weight = weight.detach()
    return (weight.clone() if classes_first else weight.t().contiguous()), bias.detach().clone()


def set_linear(model: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Load (10, 784) weights and (10,) bias into either form."""
    if tuple(weight.shape) != (N_CLASSES, N_PIXELS) or tuple(bias.shape) != (N_CLASSES,):
        raise ValueError(
            f"weights must be ({N_CLASSES}, {N_PIXELS}) and bias ({N_CLASSES},); "
            f"got {tuple(weight.shape)} and {tuple(bias.shape)}"
        )
    target, target_bias, classes_first = linear_parameters(model)
    with torch.no_grad():
        target.copy_(weight if classes_first else weight.t())
        target_bias.copy_(bias)
