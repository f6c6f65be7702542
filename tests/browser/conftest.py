"""Real-browser fixtures: a live server in a subprocess and Debian's Chromium via Playwright.

No browser download: Playwright drives /usr/bin/chromium (`apt-get install chromium`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.live import LiveServer

REPO = Path(__file__).resolve().parents[2]
SHIPPED_MODEL = REPO / "models" / "mnist-logreg.safetensors"
SCREENSHOTS = REPO / "tests" / "screenshots"
CHROMIUM = Path(os.environ.get("MNIST_CANVAS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
READY_TIMEOUT_S = 120.0

DESKTOP = {"viewport": {"width": 1280, "height": 800}, "device_scale_factor": 1}
PHONE = {
    "viewport": {"width": 375, "height": 667},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}


def _mnist_dir() -> Path:
    env = os.environ.get("MNIST_CANVAS_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real app on a free port, serving the shipped model or one trained at start."""
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    workdir = tmp_path_factory.mktemp("live-server")
    data_dir = _mnist_dir()
    if SHIPPED_MODEL.exists():
        model_path = SHIPPED_MODEL
    else:
        if not any((data_dir / f"train-images-idx3-ubyte{s}").exists() for s in ("", ".gz")):
            pytest.skip(f"no shipped model and MNIST is not in {data_dir}; "
                        "set MNIST_CANVAS_DATA_DIR")
        model_path = workdir / "model.safetensors"
    server = LiveServer(model_path=model_path, data_dir=data_dir,
                        log_path=workdir / "server.log", MNIST_CANVAS_TRAIN_ON_START="missing",
                        MNIST_CANVAS_LOG_LEVEL="warning")
    with server:
        try:
            server.wait_ready(timeout=READY_TIMEOUT_S)
        except (RuntimeError, TimeoutError) as exc:
            pytest.fail(str(exc)[-4000:])
        yield server.url


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the whole session (Debian's, never a downloaded one)."""
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class PageErrors(list[str]):
    """Uncaught exceptions and console errors on a page (failed requests excluded)."""


def _new_page(chromium: Any, base: str, options: dict[str, Any]) -> Iterator[Any]:
    context = chromium.new_context(base_url=base, color_scheme="light", **options)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors = PageErrors()
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on(
        "console",
        lambda msg: errors.append(f"console: {msg.text}")
        if msg.type == "error" and "Failed to load resource" not in msg.text
        else None,
    )
    page.errors = errors  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def desktop_page(chromium: Any, live_server: str) -> Iterator[Any]:
    """A 1280x800 desktop page (mouse)."""
    yield from _new_page(chromium, live_server, DESKTOP)


@pytest.fixture
def phone_page(chromium: Any, live_server: str) -> Iterator[Any]:
    """A 375x667 phone page with touch, at device pixel ratio 2."""
    yield from _new_page(chromium, live_server, PHONE)


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
