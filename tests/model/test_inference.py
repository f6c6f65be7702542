"""Predictor's normalisation: the lookup table gives the formula's float32 values exactly."""

from __future__ import annotations

import numpy as np

from model.inference import Predictor
from tests.conftest import SHIPPED_MODEL


def test_uint8_inputs_are_normalised_exactly_as_the_formula_says() -> None:
    predictor = Predictor.from_path(SHIPPED_MODEL, device="cpu")
    seen = np.resize(np.arange(256, dtype=np.uint8), (3, 28, 28))  # every value, cycled
    by_formula = (seen.reshape(3, -1).astype(np.float32) / 255.0 - predictor.mean) / predictor.std
    by_table = predictor.normalise(seen)
    assert by_table.dtype == np.float32 and by_table.shape == (3, 784)
    assert np.array_equal(by_table, by_formula)
    assert np.array_equal(predictor.normalise(seen.astype(np.float32)), by_formula)


def test_model_input_rounds_and_clips_like_mnist() -> None:
    predictor = Predictor.from_path(SHIPPED_MODEL, device="cpu")
    values = np.array([-3.0, 0.4, 0.6, 254.5, 300.0], dtype=np.float32)
    seen = predictor.model_input(np.tile(values, 784 // 5 + 1)[:784].reshape(1, 28, 28))
    assert seen.dtype == np.uint8
    assert seen.reshape(-1)[:5].tolist() == [0, 0, 1, 254, 255]
