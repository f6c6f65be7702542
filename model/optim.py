"""SGD, Adam and AdamW for the fit loop, stepped through torch's functional optimizer API.

`torch.optim.Optimizer` wraps its constructor, `zero_grad` and `step` so that TorchDynamo
leaves them alone, and the first call of any of them imports `torch._dynamo`: 1.9 s on an idle
machine, twice the default recipe's whole fit loop. The functional forms (`torch.optim.adam.adam`,
`adamw.adamw`, `sgd.sgd`, public in those modules' `__all__`) are what `step` calls inside; they
run the same kernels with the same arguments, give the same weights bit for bit (a test trains
with both), and import nothing more.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.optim.adam import adam
from torch.optim.adamw import adamw
from torch.optim.sgd import sgd

from model.config import OPTIMIZERS as OPTIMIZERS  # re-exported: written once there

BETAS = (0.9, 0.999)  # torch.optim's defaults, as the recipe always used
EPS = 1e-8


class Optimizer:
    """One parameter group, stepped by the functional API; `lr` may change between steps.

    `fused` selects torch's fused Adam kernel (one call for every parameter, about 8% of the
    default recipe's time on the CPU); otherwise torch picks its own default, as the
    `torch.optim` classes do.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        kind: str,
        *,
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        fused: bool | None = None,
    ) -> None:
        if kind not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {kind!r}")
        if kind == "sgd" and fused:
            raise ValueError("fused=True is for adam and adamw only")
        self.params = [p for p in params if p.requires_grad]
        self.kind = kind
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.fused = fused
        # Adam's per-parameter state, created as torch.optim.Adam creates it: the step count on
        # the parameter's device for the fused kernel, a CPU scalar otherwise.
        self.exp_avgs = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p) for p in self.params]
        self.steps = [
            torch.zeros((), dtype=torch.float32, device=p.device if fused else "cpu")
            for p in self.params
        ]
        self.momentum_buffers: list[torch.Tensor | None] = [None] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        present = [i for i, p in enumerate(self.params) if p.grad is not None]
        params = [self.params[i] for i in present]
        grads: list[torch.Tensor] = [p.grad for p in params]  # type: ignore[misc]
        if self.kind == "sgd":
            buffers = [self.momentum_buffers[i] for i in present] if self.momentum else []
            sgd(params, grads, buffers, weight_decay=self.weight_decay, momentum=self.momentum,
                lr=self.lr, dampening=0.0, nesterov=False, maximize=False)
            for i, buffer in zip(present, buffers, strict=False):
                self.momentum_buffers[i] = buffer  # created by the first step
            return
        if self.kind == "adam" and self.fused and len(present) == len(self.params):
            # What adam(fused=True) runs for parameters on one device, without its checks and
            # grouping (10 us of the fit loop's steps of about 100): the same two kernels.
            torch._foreach_add_(self.steps, 1)
            torch._fused_adam_(
                self.params, grads, self.exp_avgs, self.exp_avg_sqs, [], self.steps,
                lr=self.lr, beta1=BETAS[0], beta2=BETAS[1], weight_decay=self.weight_decay,
                eps=EPS, amsgrad=False, maximize=False, grad_scale=None, found_inf=None,
            )
            return
        update = adam if self.kind == "adam" else adamw
        update(
            params, grads,
            [self.exp_avgs[i] for i in present], [self.exp_avg_sqs[i] for i in present], [],
            [self.steps[i] for i in present],
            fused=self.fused, amsgrad=False, beta1=BETAS[0], beta2=BETAS[1], lr=self.lr,
            weight_decay=self.weight_decay, eps=EPS, maximize=False,
        )
