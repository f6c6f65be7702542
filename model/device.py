"""Choosing the torch device and thread count from settings."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:  # imported where a device is chosen: the settings and `--help` need no torch
    import torch

logger = logging.getLogger(__name__)

Device = Literal["auto", "cpu", "cuda", "mps"]
DEVICES: tuple[Device, ...] = get_args(Device)


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit device must be available."""
    if name not in DEVICES:
        raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but CUDA is not available; use auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was asked for but MPS is not available; use auto or cpu")
    return torch.device(name)


def set_threads(threads: int) -> None:
    """Set torch's intra-op threads; 0 keeps torch's default (one per core).

    A small default matters: with one thread per core on busy cores an epoch was seen to
    slow from 0.3 s to 20 s, and a 784x10 model gains little from more threads.
    """
    if threads < 0:
        raise ValueError(f"torch threads must be >= 0, got {threads}")
    import torch

    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
        logger.debug("torch threads set to %d", threads)
