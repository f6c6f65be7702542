"""The fit loop's optimizers: torch.optim's updates, bit for bit, without importing TorchDynamo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from model.optim import Optimizer

REPO = Path(__file__).resolve().parents[2]
TORCH_OPTIM = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def trained(kind: str, ours: bool, steps: int = 25, **options: float | bool) -> list[torch.Tensor]:
    """A small softmax regression after `steps` updates, with a learning rate that changes."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 5), nn.LogSoftmax(dim=1))
    x, y = torch.randn(64, 20), torch.randint(0, 5, (64,))
    fused = options.pop("fused", None)
    opt: Optimizer | torch.optim.Optimizer
    if ours:
        opt = Optimizer(model.parameters(), kind, lr=0.01, fused=fused,  # type: ignore[arg-type]
                        **options)  # type: ignore[arg-type]
    else:
        extra = {} if kind == "sgd" else {"fused": fused}
        opt = TORCH_OPTIM[kind](model.parameters(), lr=0.01, **options, **extra)
    for step in range(steps):
        lr = 0.01 * (1 - step / (2 * steps))
        if isinstance(opt, Optimizer):
            opt.lr = lr
        else:
            for group in opt.param_groups:
                group["lr"] = lr
        loss = nn.functional.nll_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize(("kind", "options"), [
    ("adam", {"fused": True}),
    ("adam", {"weight_decay": 0.01}),
    ("adamw", {"weight_decay": 0.1}),
    ("sgd", {}),
    ("sgd", {"momentum": 0.9, "weight_decay": 0.01}),
])
def test_updates_equal_torch_optim_bit_for_bit(kind: str, options: dict[str, float]) -> None:
    ours = trained(kind, True, **dict(options))
    reference = trained(kind, False, **dict(options))
    before = trained(kind, True, steps=0)
    for a, b, start in zip(ours, reference, before, strict=True):
        assert torch.equal(a, b)
        assert not torch.equal(a, start)  # it did move


def test_unknown_optimizer_is_refused() -> None:
    with pytest.raises(ValueError, match="optimizer must be one of"):
        Optimizer([nn.Parameter(torch.zeros(3))], "rmsprop", lr=0.1)


def test_training_command_never_imports_torch_dynamo(data_dir: Path) -> None:
    # torch.optim.Optimizer's first call imports torch._dynamo: 1.9 s of a 7 s process.
    code = (
        "import sys\n"
        "from app.cli import main\n"
        f"rc = main(['train', '--dry-run', '--data-dir', {str(data_dir)!r}, '--no-download',"
        " '--device', 'cpu', '--threads', '1'])\n"
        "print('dynamo imported:', 'torch._dynamo' in sys.modules)\n"
        "raise SystemExit(rc)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert "dry run: nothing saved" in run.stdout
    assert "dynamo imported: False" in run.stdout
