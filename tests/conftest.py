"""Shared fixtures: the real MNIST (through the data-directory setting) and trained models."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import torch

from model.data import Mnist, load_mnist

REPO = Path(__file__).resolve().parents[1]
SHIPPED_MODEL = REPO / "models" / "mnist-logreg.safetensors"

torch.set_num_threads(1)

# `database_url` (SQLite and a real PostgreSQL server) for any test; see tests/postgres.py.
pytest_plugins = ["tests.postgres"]


def mnist_dir() -> Path:
    env = os.environ.get("MNIST_CANVAS_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    directory = mnist_dir()
    if not (directory / "train-images-idx3-ubyte.gz").exists() and not (
        directory / "train-images-idx3-ubyte"
    ).exists():
        pytest.skip(f"MNIST is not in {directory}; set MNIST_CANVAS_DATA_DIR")
    return directory


@pytest.fixture(scope="session")
def mnist(data_dir: Path) -> Mnist:
    return load_mnist(data_dir, download=False)


@pytest.fixture(scope="session")
def default_result(mnist: Mnist):  # type: ignore[no-untyped-def]
    """The default recipe, trained once per session (a few seconds)."""
    from model.training import train

    return train(mnist, device="cpu", threads=1, out=io.StringIO())


@pytest.fixture(scope="session")
def default_model_path(default_result, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    from model.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("models") / "default.safetensors"
    save_checkpoint(default_result.to_checkpoint(), path)
    return path
