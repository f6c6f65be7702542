"""Serving-time prediction: a checkpoint's weights applied to MNIST-form images.

Deliberately light: it imports no training code (no optimizers), so a server starts fast.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import Checkpoint, load_checkpoint
from model.device import resolve_device
from model.transforms import apply_transforms

logger = logging.getLogger(__name__)


class Predictor:
    """Classifies 28x28 MNIST-form images (light digit on dark, pixels 0..255)."""

    def __init__(self, checkpoint: Checkpoint, *, device: str = "auto") -> None:
        self.checkpoint = checkpoint
        self.device = resolve_device(device)
        self.weight = checkpoint.weight.to(self.device)  # (10, 784)
        self.bias = checkpoint.bias.to(self.device)
        self.mean = checkpoint.mean
        self.std = checkpoint.std
        self.transforms = tuple(checkpoint.transforms)
        self.version = checkpoint.model_version

    @classmethod
    def from_path(cls, path: Path | str, *, device: str = "auto") -> Predictor:
        return cls(load_checkpoint(path), device=device)

    def model_input(self, images: np.ndarray) -> np.ndarray:
        """What the model sees: its input transforms (e.g. deskew) on (N, 28, 28) pixels 0..255,
        rounded to uint8 like MNIST itself. This is the preview a client is shown."""
        transformed = apply_transforms(np.asarray(images, dtype=np.float32), self.transforms)
        return np.clip(np.rint(transformed), 0, 255).astype(np.uint8)

    def normalise(self, seen: np.ndarray) -> np.ndarray:
        """(N, 28, 28) model input -> (N, 784) float32 normalised with the training mean/std."""
        flat = np.asarray(seen, dtype=np.float32).reshape(len(seen), -1)
        return (flat / 255.0 - self.mean) / self.std

    @torch.no_grad()
    def probabilities_of_input(self, seen: np.ndarray) -> np.ndarray:
        """(N, 28, 28) model input (see `model_input`) -> (N, 10) probabilities."""
        x = torch.from_numpy(self.normalise(seen)).to(self.device)
        logits = x @ self.weight.T + self.bias
        return torch.softmax(logits, dim=1).cpu().numpy()

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, 28, 28) MNIST-form pixels 0..255 -> (N, 10) probabilities."""
        return self.probabilities_of_input(self.model_input(images))
