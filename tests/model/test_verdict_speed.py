"""The verdict's fast paths and their parts against oracles: ``judge_one`` and the batch's
``assess`` against ``judge``, ``one_image_facts`` and ``stack_facts`` against a 3-D labelling
and (N, H, W) windows, the typicality model's subspace iteration against a full
eigendecomposition, and the threshold choice with the detector."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from model.calibrate import _failed, choose_thresholds
from model.data import Mnist
from model.inference import Predictor
from model.verdict import INK_FRACTION, SCORES, _top_eigen, one_image_facts, stack_facts
from tests.conftest import SHIPPED_MODEL


def plain_facts(seen: np.ndarray) -> dict[str, np.ndarray]:
    """The verdict's facts the plain way: image by image, a 2-D labelling, the ink's box by
    slicing and the Euler number from (H + 1, W + 1) windows."""
    out: dict[str, list[float]] = {"aspect": [], "coverage": [], "second_piece": [],
                                   "loops": []}
    for image in np.asarray(seen, dtype=np.float32):
        peak = float(image.max())
        mask = image > np.float32(INK_FRACTION) * np.float32(peak)
        if not mask.any():
            for key in out:
                out[key].append(0.0)
            continue
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
        sizes = np.sort(np.bincount(labels.ravel())[1:])
        padded = np.pad(mask, 1).astype(int)
        a, b, c, d = padded[:-1, :-1], padded[:-1, 1:], padded[1:, :-1], padded[1:, 1:]
        total = a + b + c + d
        euler = ((total == 1).sum() - (total == 3).sum()
                 - 2 * ((total == 2) & (a == d)).sum()) / 4
        out["aspect"].append(box.shape[1] / box.shape[0])
        out["coverage"].append(float(box.sum(dtype=np.float64)) / box.size / peak)
        out["second_piece"].append(float(sizes[-2] / sizes.sum()) if count > 1 else 0.0)
        out["loops"].append(max(count - euler, 0.0))
    return {key: np.array(values) for key, values in out.items()}


def test_stacked_facts_equal_the_plain_ones(mnist: Mnist) -> None:
    rng = np.random.default_rng(3)
    sparse = ((rng.random((300, 28, 28)) < 0.12) * 255).astype(np.uint8)  # many pieces, loops
    faint = (rng.random((300, 28, 28)) * (rng.random((300, 28, 28)) < 0.4)).astype(np.float32)
    edges = np.zeros((4, 28, 28), np.uint8)
    edges[1, :, 0] = 255  # ink on the first column and the last row: the words' edges
    edges[2, 27, :] = 255
    edges[3] = 255  # all ink
    for images in (mnist.valid_images[:2000], sparse, faint, edges,
                   np.zeros((3, 28, 28), np.float32)):
        stacked, plain = stack_facts(images), plain_facts(images)
        for key in plain:
            np.testing.assert_allclose(stacked[key], plain[key], rtol=1e-6, atol=1e-7,
                                       err_msg=key)


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


def test_the_batch_product_gets_judges_verdicts(shipped: Predictor, mnist: Mnist) -> None:
    rng = np.random.default_rng(5)
    scribbles = ((rng.random((100, 28, 28)) < 0.1) * 255).astype(np.uint8)
    seen = shipped.model_input(np.concatenate([mnist.valid_images[:1500], scribbles]))
    verdicts = shipped.verdicts
    assert verdicts is not None
    x = shipped.normalise(seen)
    logits = x.astype(np.float64) @ shipped.weight.numpy().T.astype(np.float64) \
        + shipped.bias.numpy()
    plain = verdicts.judge(seen, x, logits)
    probs, judged = verdicts.assess(seen, x)
    fast = verdicts.details(judged)
    np.testing.assert_allclose(probs, shipped.probabilities_of_input(seen), atol=1e-5)
    assert verdicts.words(judged) == [v["verdict"] for v in fast]
    assert {v["verdict"] for v in fast} == {"digit", "unsure", "not_a_digit"}
    for one, other in zip(fast, plain, strict=True):
        assert (one["verdict"], one["reason"], one["failed"], one["message"],
                one["candidates"]) == (other["verdict"], other["reason"], other["failed"],
                                       other["message"], other["candidates"])
        assert one.keys() == other.keys() and one["thresholds"] == other["thresholds"]
        assert one["calibrated_confidence"] == pytest.approx(other["calibrated_confidence"],
                                                             abs=1e-5)
        for key, value in one["scores"].items():
            # float32 products summed in another order, as for judge_one above
            assert value == pytest.approx(other["scores"][key], rel=1e-3, abs=1e-2), key


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
