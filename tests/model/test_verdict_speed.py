"""The verdict's one-drawing path and its parts against oracles: ``judge_one`` against the
batch ``judge``, ``one_image_facts`` against ``stack_facts``, the typicality model's subspace
iteration against a full eigendecomposition, and the threshold choice with the detector."""

from __future__ import annotations

import numpy as np
import pytest

from model.calibrate import _failed, choose_thresholds
from model.data import Mnist
from model.inference import Predictor
from model.verdict import SCORES, _top_eigen, one_image_facts, stack_facts
from tests.conftest import SHIPPED_MODEL


@pytest.fixture(scope="module")
def shipped() -> Predictor:
    return Predictor.from_path(SHIPPED_MODEL, device="cpu")


def test_one_image_facts_equal_the_stacked_facts(mnist: Mnist) -> None:
    rng = np.random.default_rng(0)
    blobs = ((rng.random((200, 28, 28)) > 0.55) * 255).astype(np.uint8)
    images = np.concatenate([mnist.valid_images[:1000], blobs, np.zeros((1, 28, 28), np.uint8)])
    stacked = stack_facts(images)
    for i, image in enumerate(images):
        aspect, coverage, second, loops = one_image_facts(image)
        assert aspect == pytest.approx(stacked["aspect"][i])
        assert coverage == pytest.approx(stacked["coverage"][i], abs=1e-6)
        assert second == pytest.approx(stacked["second_piece"][i])
        assert loops == stacked["loops"][i]


def test_one_drawing_gets_the_batch_verdict_and_probabilities(shipped: Predictor,
                                                              mnist: Mnist) -> None:
    from model.preprocess import preprocess_image
    from tests.app.conftest import canvas_png

    drawings = [preprocess_image(canvas_png(d, scale=6, offset=(30, 40)))
                for d in mnist.valid_images[:20]]
    seen = shipped.model_input(np.concatenate([mnist.valid_images[:300], np.stack(drawings)]))
    probs, batch = shipped.assess_input(seen)
    assert "non_digit" in batch[0]["scores"]
    for i in range(len(seen)):
        one_probs, [one] = shipped.assess_input(seen[i : i + 1])
        np.testing.assert_allclose(one_probs, probs[i : i + 1], atol=1e-5)
        assert (one["verdict"], one["failed"], one["candidates"]) == (
            batch[i]["verdict"], batch[i]["failed"], batch[i]["candidates"])
        for key, value in one["scores"].items():
            # float32 products summed in another order: atypicality (~100s) within 0.1%
            assert value == pytest.approx(batch[i]["scores"][key], rel=1e-3, abs=1e-2), key


def test_subspace_iteration_finds_the_top_eigenpairs(mnist: Mnist) -> None:
    x = mnist.train_images[:2000].reshape(2000, -1) / 255.0
    cov = np.cov(x.T)
    lam, vec = _top_eigen(cov, 10, np.random.default_rng(0))
    full_lam, full_vec = np.linalg.eigh(cov)
    np.testing.assert_allclose(lam, full_lam[::-1][:10], rtol=1e-6)
    overlap = np.abs((vec * full_vec[:, ::-1][:, :10].T).sum(axis=1))
    np.testing.assert_allclose(overlap, 1.0, atol=1e-6)


def test_the_detector_gets_the_share_that_catches_most_within_the_budget() -> None:
    rng = np.random.default_rng(4)
    digits = {k: rng.normal(size=4000) for k in SCORES}
    redrawn = {k: rng.normal(size=1000) for k in SCORES}
    # Non-digits stand out on the detector alone: it should get most of the budget.
    fakes = {k: rng.normal(size=1000) for k in SCORES}
    fakes["non_digit"] = rng.normal(loc=2.5, size=1000)
    even, _ = choose_thresholds(digits, 0.02, also=(redrawn,))
    chosen, rejected = choose_thresholds(digits, 0.02, also=(redrawn,), non_digits=fakes)
    assert rejected <= 0.02 and _failed(redrawn, chosen).mean() <= 0.02
    assert _failed(fakes, chosen).mean() > _failed(fakes, even).mean() + 0.1


def test_the_shipped_model_carries_its_detector(shipped: Predictor) -> None:
    assert shipped.verdicts is not None and shipped.verdicts.detector is not None
    info = shipped.checkpoint.meta["verdict"]
    assert set(info["thresholds"]) == set(SCORES)
    assert info["valid_rejection"] <= 0.02 and info["redrawn_valid_rejection"] <= 0.02
