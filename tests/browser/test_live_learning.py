"""Live learning in a real browser: the page's gradient step equals PyTorch's, and a correction
teaches the page's own copy of the model (the server's is untouched) until "reset"."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from model.checkpoint import load_checkpoint
from model.data import Mnist
from tests.browser.conftest import CHROMIUM, DESKTOP, _mnist_dir, _new_page
from tests.browser.drawing import ONE, draw_mouse, shown_digit, wait_idle
from tests.conftest import SHIPPED_MODEL
from tests.live import LiveServer, get_json

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STEP = """async ([pixels, label, lr, steps]) => {
  const m = await import("/static/js/live-learning.js");
  const body = await (await fetch("/api/model/weights")).json();
  const weight = Float64Array.from(body.weights.flat(2));
  const bias = Float64Array.from(body.bias);
  const x = m.normalise(pixels, body.mean, body.std);
  for (let s = 0; s < steps; s++) m.sgdStep(weight, bias, x, label, lr);
  return {weight: Array.from(weight), bias: Array.from(bias)};
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    workdir = tmp_path_factory.mktemp("live-learning")
    with LiveServer(model_path=SHIPPED_MODEL, data_dir=_mnist_dir(),
                    log_path=workdir / "server.log", MNIST_CANVAS_TRAIN_ON_START="never",
                    MNIST_CANVAS_DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}",
                    MNIST_CANVAS_MODEL_POLL_SECONDS="0.2",
                    MNIST_CANVAS_LOG_LEVEL="warning") as live:
        live.wait_ready()
        yield live.url


@pytest.fixture
def page(chromium: Any, server: str) -> Iterator[Any]:
    yield from _new_page(chromium, server, DESKTOP)


def torch_steps(pixels: np.ndarray, label: int, lr: float, steps: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """The same steps as the lesson's fit loop, in PyTorch: cross-entropy, backward, SGD."""
    ckpt = load_checkpoint(SHIPPED_MODEL)
    linear = nn.Linear(784, 10)
    with torch.no_grad():
        linear.weight.copy_(ckpt.weight)
        linear.bias.copy_(ckpt.bias)
    x = (torch.from_numpy(pixels.astype(np.float32)).reshape(1, 784) / 255 - ckpt.mean) / ckpt.std
    optimizer = torch.optim.SGD(linear.parameters(), lr=lr)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(linear(x), torch.tensor([label]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return linear.weight.detach().numpy(), linear.bias.detach().numpy()


@pytest.mark.parametrize("steps", [1, 5])
def test_the_page_step_equals_pytorchs(page: Any, mnist: Mnist, steps: int) -> None:
    page.goto("/")
    pixels = mnist.valid_images[7]
    label, lr = (int(mnist.valid_labels[7]) + 4) % 10, 0.002  # a wrong label: a big step
    got = page.evaluate(STEP, [pixels.reshape(-1).tolist(), label, lr, steps])
    weight, bias = torch_steps(pixels, label, lr, steps)
    assert np.abs(np.asarray(got["weight"]).reshape(10, 784) - weight).max() < 1e-5
    assert np.abs(np.asarray(got["bias"]) - bias).max() < 1e-5
    assert np.abs(weight - load_checkpoint(SHIPPED_MODEL).weight.numpy()).max() > 1e-3


def test_a_correction_teaches_the_copy_and_reset_restores_it(page: Any, server: str) -> None:
    page.goto("/")
    page.wait_for_function("() => document.body.dataset.ready === 'true'")
    page.wait_for_function("() => document.getElementById('live').dataset.state === 'ready'")
    served = page.evaluate("() => window.mnistLiveLearning.copy()")
    draw_mouse(page, ONE)
    wait_idle(page)
    page.wait_for_function("() => !document.getElementById('feedback-right').disabled")
    predicted = shown_digit(page)
    assert predicted is not None
    label = (predicted + 6) % 10
    page.keyboard.press(str(label))  # "wrong, it's a ..." by its digit key
    page.wait_for_function("() => document.getElementById('live').dataset.state === 'learned'")
    status = page.locator("#live-status").inner_text()
    assert "Your copy" in status and "reads this as" in status
    assert page.evaluate("() => window.mnistLiveLearning.steps()") == 5
    taught = page.evaluate("() => window.mnistLiveLearning.copy()")
    assert np.abs(np.subtract(taught["weight"], served["weight"])).max() > 1e-4
    # The server's model is untouched: same version, same answer.
    assert get_json(server + "/api/model")[1]["model_version"] == load_checkpoint(
        SHIPPED_MODEL).model_version
    page.click("#live-reset")
    assert page.evaluate("() => window.mnistLiveLearning.steps()") == 0
    assert page.evaluate("() => window.mnistLiveLearning.copy()") == served
    assert page.errors == []  # type: ignore[attr-defined]


def test_the_model_page_shows_the_version_history(page: Any) -> None:
    page.goto("/model")
    page.wait_for_function(
        "() => ['ready', 'error'].includes(document.getElementById('history').dataset.state)")
    assert page.locator("#history").get_attribute("data-state") == "ready"
    shipped = load_checkpoint(SHIPPED_MODEL).model_version
    row = page.locator(f"#history tr[data-version='{shipped}']")
    assert "current" in row.inner_text() and "shipped" in row.inner_text()
    assert page.errors == []  # type: ignore[attr-defined]


# Last in this module: it promotes a new version on the module's server.
def test_the_page_notices_a_new_version_in_its_answers(page: Any, server: str,
                                                      tmp_path_factory: Any) -> None:
    from app.db import Database
    from app.db import registry as model_registry

    page.goto("/")
    page.wait_for_function("() => document.getElementById('live').dataset.state === 'ready'")
    draw_mouse(page, ONE)
    wait_idle(page)
    history = get_json(server + "/api/models")[1]  # the shipped model is registered, current
    assert history["current"] == load_checkpoint(SHIPPED_MODEL).model_version
    db_path = next(tmp_path_factory.getbasetemp().glob("live-learning*/db.sqlite3"))
    database = Database(f"sqlite:///{db_path}")
    new = load_checkpoint(SHIPPED_MODEL)
    new.bias = new.bias + torch.linspace(-1, 1, 10)
    with database.session() as session:
        row = model_registry.add_version(session, new, source="test")
        model_registry.set_current(session, row, action="promote", actor="test")
    database.dispose()
    page.wait_for_function(
        f"async () => (await (await fetch('/readyz')).json()).model_version === "
        f"'{new.model_version}'")
    page.click("#clear")
    draw_mouse(page, ONE)
    wait_idle(page)
    page.wait_for_selector("#live-notice:not([hidden])")
    assert new.model_version in page.locator("#live-notice").inner_text()
    assert page.errors == []  # type: ignore[attr-defined]
