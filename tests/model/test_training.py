"""The fit loop on synthetic data (fast) and the recipes on real MNIST (a few seconds each)."""

from __future__ import annotations

import copy
import io
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from model.data import Mnist
from model.network import build_model, get_linear, linear_parameters
from model.training import (
    LinearStep,
    Pixels,
    Progress,
    TrainConfig,
    fit,
    lr_factor,
    make_optimizer,
    model_inputs,
    to_inputs,
    train,
)


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


def autograd_reference(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                       config: TrainConfig) -> None:
    """The textbook loop fit replaces: the seeded shuffled order, autograd, the same optimizer."""
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = make_optimizer(model, config)
    steps = math.ceil(len(x) / config.batch_size)
    step = 0
    for _ in range(config.epochs):
        order = torch.randperm(len(x), generator=generator)
        assert not torch.equal(order, torch.arange(len(x)))  # shuffled, not in file order
        for i in range(steps):
            optimizer.lr = config.lr * lr_factor(config, step, steps * config.epochs)
            idx = order[i * config.batch_size : (i + 1) * config.batch_size]
            loss = nn.functional.nll_loss(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1


@pytest.mark.parametrize("arch", ["sequential", "logreg"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_fit_is_the_autograd_loop_over_the_seeded_shuffled_batches(arch: str,
                                                                   optimizer: str) -> None:
    # 105 rows in batches of 10: the last batch is smaller, as MNIST's (50,000 = 390 x 128 + 80).
    data = synthetic(210)
    x = to_inputs(data.train_images, 0.1, 0.3, [])
    y = torch.from_numpy(data.train_labels)
    config = TrainConfig(arch=arch, optimizer=optimizer, epochs=2, batch_size=10, lr=0.01,
                         momentum=0.9 if optimizer == "sgd" else 0.0, schedule="cosine")
    torch.manual_seed(0)
    ours = build_model(arch)
    reference = copy.deepcopy(ours)
    history = fit(ours, (x, y), (x, y), config, out=io.StringIO())
    autograd_reference(reference, x, y, config)
    start = build_model(arch)
    for a, b, before in zip(get_linear(ours), get_linear(reference), get_linear(start),
                            strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(a, before)  # it did learn
    assert history[-1].trn_loss < history[0].trn_loss


@pytest.mark.parametrize("arch", ["sequential", "logreg"])
def test_hand_derived_gradients_equal_autograds(arch: str) -> None:
    torch.manual_seed(1)
    model = build_model(arch)
    x, y = torch.randn(37, 784), torch.randint(0, 10, (37,))
    loss = nn.functional.nll_loss(model(x), y)
    loss.backward()
    expected = [p.grad.clone() for p in linear_parameters(model)[:2]]  # type: ignore[union-attr]
    step = LinearStep(model)
    batch = step.batch(37)
    batch.x.copy_(x)
    batch.y.copy_(y)
    with torch.no_grad():
        likelihood = step(batch)
    got = [p.grad for p in linear_parameters(model)[:2]]
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(-likelihood / 37, loss.detach())


def test_pixels_gives_the_same_float32_inputs_as_to_inputs_bit_for_bit() -> None:
    images = synthetic(300).train_images
    pixels = Pixels(images, 0.1307, 0.3081)
    assert isinstance(model_inputs(images, 0.1307, 0.3081, []), Pixels)
    idx = torch.randperm(len(images))[:64]
    raw, out = torch.empty((64, 784), dtype=torch.uint8), torch.empty((64, 784))
    expected = to_inputs(images, 0.1307, 0.3081, [])[idx]
    assert torch.equal(pixels.take(idx, raw, out), expected)
    # Transformed or float images are normalised whole, as before.
    assert isinstance(model_inputs(images, 0.1307, 0.3081, ["deskew"]), torch.Tensor)


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
