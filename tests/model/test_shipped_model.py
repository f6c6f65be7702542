"""The model committed in models/ is what its metadata says, and scores what it records."""

from __future__ import annotations

import numpy as np
import pytest

from model.checkpoint import load_checkpoint, model_version
from model.data import Mnist
from model.inference import Predictor
from model.training import TrainConfig
from tests.conftest import SHIPPED_MODEL


def test_shipped_model_metadata_matches_its_weights() -> None:
    ckpt = load_checkpoint(SHIPPED_MODEL)  # verifies shapes, schema and the weight hash
    assert ckpt.model_version == model_version(ckpt.weight, ckpt.bias)
    assert ckpt.meta["config"] == TrainConfig().to_dict()  # the default recipe and seed
    assert ckpt.meta["train_size"] == 50_000
    assert ckpt.mean == pytest.approx(0.13096, abs=5e-5)
    assert ckpt.std == pytest.approx(0.30849, abs=5e-5)
    assert len(ckpt.meta["history"]) == TrainConfig().epochs
    assert ckpt.meta["test"]["accuracy"] >= 0.925


def test_shipped_model_scores_the_accuracy_it_records(mnist: Mnist) -> None:
    predictor = Predictor.from_path(SHIPPED_MODEL, device="cpu")
    meta = predictor.checkpoint.meta
    assert meta["data_sha256"] == mnist.sha256
    for split, images, labels in (("valid", mnist.valid_images, mnist.valid_labels),
                                  ("test", mnist.test_images, mnist.test_labels)):
        predicted = predictor.probabilities(images).argmax(axis=1)
        assert float(np.mean(predicted == labels)) == pytest.approx(meta[split]["accuracy"],
                                                                    abs=1e-4)
        confusion = np.zeros((10, 10), dtype=int)
        np.add.at(confusion, (labels, predicted), 1)
        assert confusion.tolist() == meta[split]["confusion"]
