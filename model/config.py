"""A training run's hyperparameters and the names they choose from, without importing torch.

`mnist-canvas --help`, `download` and the server's settings read these; the modules that use
them (`model.network`, `model.optim`, `model.training`) import them from here, so the names are
written once and parsing a command line costs no `import torch` (about a second).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

ARCHITECTURES = ("sequential", "logreg")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "cosine", "step")


@dataclass
class TrainConfig:
    """Every hyperparameter of a run; stored in the checkpoint beside the weights."""

    arch: str = "sequential"
    optimizer: str = "adam"
    lr: float = 0.005
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 8
    seed: int = 0
    schedule: str = "cosine"
    deskew: bool = False
    transforms: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {ARCHITECTURES}, got {self.arch!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.lr <= 0 or self.batch_size < 1 or self.epochs < 1:
            raise ValueError("lr must be > 0, batch_size >= 1 and epochs >= 1")
        if self.deskew and "deskew" not in self.transforms:
            self.transforms = [*self.transforms, "deskew"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
