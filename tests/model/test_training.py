"""The fit loop on synthetic data (fast) and the recipes on real MNIST (a few seconds each)."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
import torch

from model.data import Mnist
from model.network import build_model
from model.training import Progress, TrainConfig, fit, train


def synthetic(n: int = 600, seed: int = 0) -> Mnist:
    """Ten separable 'digits': class k lights up rows 2k..2k+3."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n)
    images = rng.integers(0, 30, size=(n, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        images[i, 2 * k + 4 : 2 * k + 8, 6:22] = 255
    return Mnist(images[: n // 2], labels[: n // 2], images[n // 2 :], labels[n // 2 :],
                 images[n // 2 :], labels[n // 2 :], "synthetic")


def test_fit_prints_the_lessons_table_one_line_per_epoch_without_a_terminal() -> None:
    out = io.StringIO()
    result = train(synthetic(), TrainConfig(epochs=3, batch_size=32), device="cpu", out=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["epoch", "trn_loss", "val_loss", "accuracy"]
    assert len(lines) == 4 and "\r" not in out.getvalue()
    assert [int(line.split()[0]) for line in lines[1:]] == [0, 1, 2]
    assert result.valid.accuracy > 0.95
    assert len(result.history) == 3


def test_progress_bar_redraws_one_line_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = Progress(10, stream, "epoch 0")
    for i in range(1, 11):
        bar.update(i, 0.5)
    bar.close()
    assert "\n" not in stream.getvalue() and "\r" in stream.getvalue()


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("arch", ["sequential", "logreg"])
def test_every_optimizer_and_form_learns(optimizer: str, arch: str) -> None:
    config = TrainConfig(arch=arch, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 0.01,
                         momentum=0.9 if optimizer == "sgd" else 0.0, epochs=3, batch_size=32,
                         weight_decay=1e-4, schedule="step")
    result = train(synthetic(), config, device="cpu", out=io.StringIO())
    assert result.valid.accuracy > 0.9


def test_training_is_deterministic_for_a_seed_on_cpu() -> None:
    a = train(synthetic(), TrainConfig(epochs=2, seed=7), device="cpu", out=io.StringIO())
    b = train(synthetic(), TrainConfig(epochs=2, seed=7), device="cpu", out=io.StringIO())
    c = train(synthetic(), TrainConfig(epochs=2, seed=8), device="cpu", out=io.StringIO())
    sa, sb, sc = (dict(r.model.state_dict()) for r in (a, b, c))
    for key in sa:
        assert torch.equal(sa[key], sb[key])
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_the_device_setting_is_honoured() -> None:
    result = train(synthetic(), TrainConfig(epochs=1), device="cpu", out=io.StringIO())
    assert result.device == "cpu"
    with pytest.raises(ValueError, match="device"):
        train(synthetic(), TrainConfig(epochs=1), device="tpu", out=io.StringIO())
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            train(synthetic(), TrainConfig(epochs=1), device="cuda", out=io.StringIO())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_trains_on_cuda() -> None:
    result = train(synthetic(), TrainConfig(epochs=2), device="cuda", out=io.StringIO())
    assert result.device.startswith("cuda") and result.valid.accuracy > 0.9


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="arch"):
        TrainConfig(arch="mlp")


def test_fit_draws_batches_from_device_tensors_in_shuffled_order() -> None:
    data = synthetic(200)
    x = torch.from_numpy(data.train_images.reshape(100, -1).astype(np.float32) / 255)
    y = torch.from_numpy(data.train_labels)
    seen: list[torch.Tensor] = []
    model = build_model("sequential")
    original = model.forward

    def spy(inp: torch.Tensor) -> torch.Tensor:
        if model.training:
            seen.append(inp)
        return original(inp)

    model.forward = spy  # type: ignore[method-assign]
    fit(model, (x, y), (x, y), TrainConfig(epochs=1, batch_size=10), out=io.StringIO())
    first = torch.cat(seen)
    assert first.shape == x.shape
    assert not torch.equal(first, x)  # shuffled, not in file order


@pytest.mark.slow
def test_default_recipe_reaches_the_target_on_the_test_set(default_result) -> None:  # type: ignore[no-untyped-def]
    assert default_result.test.accuracy >= 0.925
    assert default_result.valid.accuracy >= 0.925
    assert default_result.config == TrainConfig()
    assert default_result.train_size == 50_000


@pytest.mark.slow
def test_deskewing_recipe_reaches_095(mnist: Mnist) -> None:
    result = train(mnist, TrainConfig(deskew=True), device="cpu", out=io.StringIO())
    assert result.test is not None and result.test.accuracy >= 0.95
    assert result.to_checkpoint().transforms == ["deskew"]


@pytest.mark.slow
def test_the_lessons_setting_lands_near_its_091(mnist: Mnist) -> None:
    config = TrainConfig(arch="sequential", optimizer="sgd", lr=0.01, batch_size=64, epochs=1,
                         schedule="none")
    result = train(mnist, config, device="cpu", out=io.StringIO())
    assert result.valid.accuracy == pytest.approx(0.9091, abs=0.01)


@pytest.mark.slow
def test_the_lessons_logreg_with_adam_lands_near_its_0921(mnist: Mnist) -> None:
    config = TrainConfig(arch="logreg", optimizer="adam", lr=0.001, batch_size=64, epochs=1,
                         schedule="none")
    result = train(replace(mnist), config, device="cpu", out=io.StringIO())
    assert result.valid.accuracy == pytest.approx(0.9215, abs=0.012)
