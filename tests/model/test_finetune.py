"""Fine-tune behind the gate, on a small slice of the real MNIST (a few seconds each)."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest

from model.checkpoint import Checkpoint, from_bytes, to_bytes
from model.data import Mnist
from model.finetune import (
    Corrections,
    FinetuneConfig,
    finetune,
    recipe_of,
    split_corrections,
)
from model.gate import gate
from model.training import TrainConfig, train

RECIPE = TrainConfig(epochs=4, batch_size=64)


@pytest.fixture(scope="module")
def small(mnist: Mnist) -> Mnist:
    """8,000 training digits, the whole validation split, 2,000 test digits."""
    return replace(mnist, train_images=mnist.train_images[:8000],
                   train_labels=mnist.train_labels[:8000],
                   test_images=mnist.test_images[:2000], test_labels=mnist.test_labels[:2000])


@pytest.fixture(scope="module")
def current(small: Mnist) -> Checkpoint:
    ckpt = train(small, RECIPE, device="cpu", out=io.StringIO()).to_checkpoint()
    ckpt.meta["calibration"] = {"temperature": 1.3}  # a field finetune does not recompute
    return ckpt


def corner_digits(mnist: Mnist, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Training digits (never validation or test) halved and moved to the top-left corner:
    a hand the MNIST model reads poorly, in pixels MNIST hardly uses."""
    images = mnist.train_images[start : start + n]
    small = images.reshape(n, 14, 2, 14, 2).max(axis=(2, 4))
    out = np.zeros_like(images)
    out[:, :14, :14] = small
    return out, mnist.train_labels[start : start + n]


def clients(n: int, writers: int) -> np.ndarray:
    return np.array([f"writer-{i % writers}" for i in range(n)], dtype=object)


def test_split_never_puts_one_client_on_both_sides() -> None:
    ids = clients(200, 10)
    split = split_corrections(ids, fraction=0.25, min_clients=4, seed=3)
    assert split.method == "client"
    train_ids, held_ids = set(ids[split.train]), set(ids[split.holdout])
    assert train_ids and held_ids and not train_ids & held_ids
    assert len(split.train) + len(split.holdout) == 200
    assert 40 <= len(split.holdout) <= 60


def test_split_falls_back_to_random_with_too_few_clients() -> None:
    ids = clients(100, 2)
    split = split_corrections(ids, fraction=0.2, min_clients=4)
    assert split.method == "random"
    assert len(split.holdout) == 20 and len(split.train) == 80
    assert not set(split.train) & set(split.holdout)


def test_gate_refuses_without_held_out_corrections() -> None:
    numbers = {"valid_accuracy": 0.9, "holdout_accuracy": 0.0, "holdout_loss": 0.0,
               "test_accuracy": 0.9}
    ok, reason = gate(numbers, numbers, holdout=0, max_valid_drop=0.003)
    assert not ok and "no held-out corrections" in reason


def test_finetune_promotes_when_corrections_help(mnist: Mnist, small: Mnist,
                                                 current: Checkpoint) -> None:
    images, labels = corner_digits(mnist, 20_000, 600)  # not among the 8,000 trained on
    result = finetune(current, small, Corrections(images, labels, clients(600, 30)),
                      FinetuneConfig(correction_weight=1))
    report = result.report
    assert report.promoted, report.format()
    assert report.split == "client" and report.holdout_corrections > 0
    assert report.candidate["holdout_accuracy"] > report.current["holdout_accuracy"] + 0.2
    assert report.current["valid_accuracy"] - report.candidate["valid_accuracy"] <= 0.003
    # The candidate is a verified checkpoint that names its parent and keeps the fields it does
    # not recompute; the report travels with it.
    ckpt = from_bytes(to_bytes(result.candidate))
    assert ckpt.meta["parent_version"] == current.model_version
    assert ckpt.meta["calibration"] == {"temperature": 1.3}
    assert ckpt.meta["finetune"]["promoted"] is True
    assert recipe_of(ckpt).epochs == RECIPE.epochs and ckpt.mean == current.mean


def test_finetune_refuses_a_poisoned_set_that_costs_mnist_accuracy(
    small: Mnist, current: Checkpoint
) -> None:
    # Ordinary training digits with wrong labels, from many clients: the held-out ones are
    # "read better" only by learning the lie, and MNIST validation accuracy pays for it.
    images = np.ascontiguousarray(small.train_images[:600])
    wrong = (small.train_labels[:600] + 1) % 10
    result = finetune(current, small, Corrections(images, wrong, clients(600, 30)),
                      FinetuneConfig(correction_weight=5))
    report = result.report
    assert not report.promoted
    assert "MNIST validation accuracy would fall" in report.reason
    assert report.candidate["valid_accuracy"] < report.current["valid_accuracy"] - 0.003


def test_corrections_must_be_digits_in_mnist_form() -> None:
    with pytest.raises(ValueError, match="0..9"):
        Corrections(np.zeros((1, 28, 28), np.uint8), np.array([10]), np.array(["a"]))
    with pytest.raises(ValueError, match="28, 28"):
        Corrections(np.zeros((1, 20, 20), np.uint8), np.array([1]), np.array(["a"]))
