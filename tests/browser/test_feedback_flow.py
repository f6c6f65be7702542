"""The correction loop in a real browser: draw, mark wrong, pick the digit, see it on /data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import CHROMIUM, DESKTOP, REPO, _mnist_dir, _new_page
from tests.browser.drawing import ONE, ZERO, draw_mouse, shown_digit, wait_idle
from tests.conftest import SHIPPED_MODEL
from tests.live import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]
TOKEN = "browser-admin-token"


@pytest.fixture(scope="module")
def feedback_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A live server with its own empty SQLite database and an admin token."""
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    if not SHIPPED_MODEL.exists():
        pytest.skip("the shipped model is missing")
    workdir = tmp_path_factory.mktemp("feedback-server")
    server = LiveServer(model_path=SHIPPED_MODEL, data_dir=_mnist_dir(),
                        log_path=workdir / "server.log", MNIST_CANVAS_TRAIN_ON_START="never",
                        MNIST_CANVAS_DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}",
                        MNIST_CANVAS_ADMIN_TOKEN=TOKEN, MNIST_CANVAS_LOG_LEVEL="warning")
    with server:
        server.wait_ready()
        yield server.url


@pytest.fixture
def page(chromium: Any, feedback_server: str) -> Iterator[Any]:
    yield from _new_page(chromium, feedback_server, DESKTOP)


def open_draw(page: Any) -> None:
    page.goto("/")
    page.wait_for_function("() => document.body.dataset.ready === 'true'")


def draw_and_wait(page: Any, strokes: Any) -> int:
    draw_mouse(page, strokes)
    wait_idle(page)
    page.wait_for_function("() => !document.getElementById('feedback-right').disabled")
    digit = shown_digit(page)
    assert digit is not None
    return digit


def wait_sent(page: Any) -> str:
    page.wait_for_function(
        "() => ['sent', 'error'].includes(document.getElementById('feedback').dataset.state)")
    assert page.locator("#feedback").get_attribute("data-state") == "sent", \
        page.locator("#feedback-status").inner_text()
    return str(page.locator("#feedback-status").inner_text())


def test_draw_mark_wrong_pick_the_digit_and_see_it_on_the_data_page(page: Any) -> None:
    open_draw(page)
    assert page.locator("#feedback-status").get_attribute("aria-live") == "polite"
    assert page.locator(".feedback-digit").count() == 10
    assert page.locator(".feedback-digit:not([disabled])").count() == 0  # nothing to correct yet
    assert "Never your IP address" in page.locator("#feedback-privacy").inner_text()

    predicted = draw_and_wait(page, ONE)
    preview = json.loads(page.locator("#preview").get_attribute("data-pixels"))
    label = (predicted + 3) % 10  # "wrong, it's a ..."
    page.locator(f".feedback-digit[data-digit='{label}']").click()
    status = wait_sent(page)
    assert f"stored as a{'n' if label == 8 else ''} {label}" in status and "1 answer" in status
    # What is stored is exactly the image the page showed as the model's input (the shipped
    # model has no input transforms; with deskewing the preview would be the deskewed image).
    listing = page.request.get(f"/api/feedback?label={label}",
                               headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert [item["image"] for item in listing["items"]] == [preview]
    assert page.locator(".feedback-digit:not([disabled])").count() == 0  # one answer a drawing

    # The keyboard: a new drawing, then the digit key.
    page.keyboard.press("Escape")
    predicted_zero = draw_and_wait(page, ZERO)
    page.locator("body").press(str(predicted_zero))
    assert f"{predicted_zero} confirmed" in wait_sent(page)

    page.goto("/data")
    page.wait_for_function("() => document.body.dataset.ready === 'true'")
    page.wait_for_function("() => document.getElementById('stats').dataset.state === 'ready'")
    assert page.locator("#stats-summary").inner_text().startswith("2 corrections stored")
    assert page.locator("#per-label li").count() == 10
    page.fill("#token", TOKEN)
    page.click("#token-form button[type=submit]")
    page.wait_for_selector("#grid .tile")
    tile = page.locator(f"#grid .tile[data-label='{label}']")
    assert tile.count() == 1
    assert f"read {predicted}" in tile.inner_text()
    assert tile.get_attribute("data-wrong") == "true"

    # Filters: only what the model got wrong.
    page.check("#f-wrong")
    page.wait_for_function("() => document.querySelectorAll('#grid .tile').length === 1")

    # Delete asks first, then removes the tile and updates the counts.
    page.once("dialog", lambda dialog: dialog.accept())
    tile.locator("button").click()
    page.wait_for_function("() => document.querySelectorAll('#grid .tile').length === 0")
    page.wait_for_function(
        "() => document.getElementById('stats-summary').textContent.startsWith('1 correction ')")
    assert page.errors == []


def test_the_dont_store_switch_sends_nothing_and_is_remembered(page: Any) -> None:
    open_draw(page)
    page.check("#feedback-off")
    draw_mouse(page, ONE)
    wait_idle(page)
    assert page.locator(".feedback-digit:not([disabled])").count() == 0
    assert "Storing is off" in page.locator("#feedback-status").inner_text()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/api/feedback" in r.url else None)
    page.locator("body").press("4")
    page.wait_for_timeout(300)
    assert requests == []
    page.reload()
    page.wait_for_function("() => document.body.dataset.ready === 'true'")
    assert page.locator("#feedback-off").is_checked()
    assert page.errors == []


def test_pages_use_no_inline_script_or_style() -> None:
    """Another branch adds a strict CSP (script-src 'self'): nothing inline may depend on it."""
    for name in ("feedback.html", "data.html"):
        text = (REPO / "templates" / name).read_text()
        assert "<script>" not in text and " style=" not in text and " onclick=" not in text
    assert Path(REPO / "static" / "js" / "data.js").exists()
