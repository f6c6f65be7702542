"""The verdict's parts against oracles and small known cases: facts, loops, temperature, ECE,
the "not sure" line, thresholds, and how checkpoints carry (or lack) a calibration."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import ndimage

from model.calibrate import choose_thresholds
from model.calibration import (
    fit_temperature,
    fit_temperature_ece,
    reliability,
    risk_coverage,
    softmax,
    sure_above,
)
from model.checkpoint import Checkpoint, from_bytes, to_bytes
from model.data import Mnist
from model.inference import Predictor
from model.preprocess import drawing_facts
from model.verdict import SCORES, TypicalityModel, VerdictModel, count_loops, stack_facts


def ring(size: int = 28, radius: float = 8.0, width: float = 2.0,
         centre: tuple[float, float] = (14.0, 14.0)) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - centre[0], xx - centre[1])
    return np.where(np.abs(r - radius) <= width / 2, 255.0, 0.0).astype(np.float32)


def test_stack_facts_equal_drawing_facts_on_validation_digits(mnist: Mnist) -> None:
    digits = mnist.valid_images[:1500].astype(np.float32)
    stacked = stack_facts(digits)
    for i, digit in enumerate(digits):
        one = drawing_facts(digit)
        assert stacked["aspect"][i] == pytest.approx(one.aspect)
        assert stacked["coverage"][i] == pytest.approx(one.coverage, abs=1e-5)
        assert stacked["second_piece"][i] == pytest.approx(one.second_share)


def test_loops_count_holes_like_a_brute_force_labelling() -> None:
    eight = np.maximum(ring(radius=5, centre=(8, 14)), ring(radius=5, centre=(19, 14)))
    assert count_loops(ring()) == 1
    assert count_loops(eight) == 2
    assert count_loops(np.full((28, 28), 255.0, np.float32)) == 0
    rng = np.random.default_rng(0)
    blobs = (rng.random((50, 28, 28)) > 0.55).astype(np.float32) * 255.0
    for image, loops in zip(blobs, stack_facts(blobs)["loops"], strict=True):
        labels, count = ndimage.label(np.pad(image <= 102.0, 1, constant_values=True))
        assert loops == count - 1


def test_facts_tell_two_pieces_and_a_dash() -> None:
    pair = np.zeros((28, 28), np.float32)
    pair[8:20, 4:8] = 255.0
    pair[8:20, 16:24] = 255.0
    facts = drawing_facts(pair)
    assert facts.pieces == 2 and facts.second_share > 0.3 and facts.gap > 0.3
    dash = np.zeros((56, 280), np.float32)
    dash[25:32, 10:270] = 255.0
    assert drawing_facts(dash).aspect > 30


def test_temperature_is_found_again_on_logits_made_with_it() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4000, 10)) * 3.0
    probs = softmax(logits, 2.0)
    labels = np.array([rng.choice(10, p=p) for p in probs])
    assert fit_temperature(logits, labels) == pytest.approx(2.0, rel=0.1)
    assert fit_temperature_ece(logits, labels) == pytest.approx(2.0, rel=0.15)
    # Calibrated by construction: small ECE at the true temperature, larger far from it.
    assert reliability(probs, labels).ece < 0.03
    assert reliability(softmax(logits, 0.5), labels).ece > 0.1


def test_sure_line_keeps_99_percent_right_above_it() -> None:
    rng = np.random.default_rng(2)
    confidence = rng.random(5000)
    right = rng.random(5000) < confidence  # right as often as confident
    line, coverage = sure_above(confidence, right, 0.99)
    above = confidence >= line
    assert right[above].mean() >= 0.99
    assert coverage == pytest.approx(above.mean())
    curve = risk_coverage(confidence, right)
    assert curve["coverage"][-1] == 1.0 and curve["risk"][-1] == pytest.approx(1 - right.mean())


def test_thresholds_reject_at_most_the_budget() -> None:
    rng = np.random.default_rng(3)
    scores = {k: rng.normal(size=5000) for k in SCORES}
    scores["loops"] = rng.integers(0, 4, size=5000).astype(float)  # ties, like real loops
    thresholds, rejected = choose_thresholds(scores, 0.02)
    failed = np.any([scores[k] > thresholds[k] for k in SCORES], axis=0)
    assert rejected == pytest.approx(failed.mean())
    assert 0.015 < rejected <= 0.02


def _small_verdict(ckpt: Checkpoint, mnist: Mnist) -> Checkpoint:
    predictor = Predictor(ckpt, device="cpu")
    x = predictor.normalise(predictor.model_input(mnist.train_images[:3000]))
    typicality = TypicalityModel.fit(x, mnist.train_labels[:3000], dims=5)
    info = {"model_version": ckpt.model_version, "temperature": 1.0, "sure_above": 0.9,
            "thresholds": dict.fromkeys(SCORES, 1e9)}
    return replace(ckpt, meta={**ckpt.meta, "verdict": info},
                   extra_tensors=typicality.tensors())


def test_checkpoint_carries_the_verdict_and_old_files_still_load(default_result,  # type: ignore[no-untyped-def]
                                                                  mnist: Mnist) -> None:
    plain = default_result.to_checkpoint()
    old = from_bytes(to_bytes(plain))
    assert old.extra_tensors == {}
    probs, verdicts = Predictor(old, device="cpu").assess_input(mnist.valid_images[:3])
    assert [v["reason"] for v in verdicts] == ["uncalibrated"] * 3

    calibrated = from_bytes(to_bytes(_small_verdict(plain, mnist)))
    assert calibrated.model_version == plain.model_version
    assert torch.equal(calibrated.weight, plain.weight)
    predictor = Predictor(calibrated, device="cpu")
    assert isinstance(predictor.verdicts, VerdictModel)
    probs2, verdicts = predictor.assess_input(mnist.valid_images[:3])
    np.testing.assert_allclose(probs2, probs, atol=1e-6)
    assert {v["verdict"] for v in verdicts} <= {"digit", "unsure"}
    # A calibration without the detector's tensors (made before it existed): the other tests.
    assert set(verdicts[0]["scores"]) == set(SCORES) - {"non_digit"}


def test_a_calibration_for_other_weights_is_ignored(default_result, mnist: Mnist) -> None:  # type: ignore[no-untyped-def]
    ckpt = _small_verdict(default_result.to_checkpoint(), mnist)
    other = replace(ckpt, bias=ckpt.bias + 0.01)
    assert Predictor(other, device="cpu").verdicts is None


def test_facts_before_scaling_come_with_the_same_digit() -> None:
    import io

    from PIL import Image

    from model.preprocess import decode_image, image_to_ink, preprocess_image
    from model.preprocess.pipeline import preprocess_image_with_facts

    canvas = np.zeros((280, 280), np.uint8)
    canvas[60:220, 120:150] = 255  # a tall bar: a 1
    out = io.BytesIO()
    Image.fromarray(canvas).save(out, "PNG")
    digit, facts = preprocess_image_with_facts(out.getvalue())
    np.testing.assert_array_equal(digit, preprocess_image(out.getvalue()))
    ink = image_to_ink(decode_image(out.getvalue()), crop=True)
    assert facts == drawing_facts(ink)
    assert facts.aspect == pytest.approx(30 / 160) and facts.pieces == 1
