"""Reusing a verdict's models of the inputs (`model.calibrate.stored_input_models`): only for a
checkpoint with the same inputs, so that `train` never carries a typicality model or detector
fitted for other inputs into a new checkpoint."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from model.calibrate import inputs_key, stored_input_models
from model.checkpoint import load_checkpoint
from model.data import Mnist
from tests.conftest import SHIPPED_MODEL


def test_the_shipped_model_is_found_for_its_own_inputs(mnist: Mnist, tmp_path: Path) -> None:
    shipped = load_checkpoint(SHIPPED_MODEL)
    assert shipped.meta["verdict"]["inputs_key"] == inputs_key(shipped, mnist)
    other_weights = replace(shipped, weight=shipped.weight * 0.5)  # the key ignores weights
    found = stored_input_models([tmp_path / "missing.safetensors", SHIPPED_MODEL],
                                other_weights, mnist)
    assert found is not None and found[2] == SHIPPED_MODEL
    typicality, detector, _ = found
    assert detector.w1.shape[0] == 784 and typicality is not None


def test_other_inputs_never_reuse_them(mnist: Mnist) -> None:
    shipped = load_checkpoint(SHIPPED_MODEL)
    others = [
        replace(shipped, transforms=["deskew"]),
        replace(shipped, mean=shipped.mean + 1e-3),
        replace(shipped, std=shipped.std * 1.01),
    ]
    for ckpt in others:
        assert inputs_key(ckpt, mnist) != inputs_key(shipped, mnist)
        assert stored_input_models([SHIPPED_MODEL], ckpt, mnist) is None
    fewer_digits = replace(mnist, train_images=mnist.train_images[:1000],
                           train_labels=mnist.train_labels[:1000])
    assert stored_input_models([SHIPPED_MODEL], shipped, fewer_digits) is None


def test_a_checkpoint_without_the_key_is_passed_over(mnist: Mnist, tmp_path: Path) -> None:
    from model.checkpoint import save_checkpoint

    shipped = load_checkpoint(SHIPPED_MODEL)
    verdict = {k: v for k, v in shipped.meta["verdict"].items() if k != "inputs_key"}
    old = save_checkpoint(replace(shipped, meta={**shipped.meta, "verdict": verdict}),
                          tmp_path / "old.safetensors")
    assert stored_input_models([old], shipped, mnist) is None
