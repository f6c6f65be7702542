"""The drawing page in a real browser: mouse and touch drawing, live predictions, clear, undo,
throttling, error recovery, and the model's input as the server computes it."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from tests.browser.drawing import (
    BAR,
    ONE,
    ZERO,
    draw_mouse,
    draw_touch,
    percent_texts,
    probabilities,
    shown_digit,
    wait_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def open_draw(page: Any) -> None:
    page.goto("/")
    page.wait_for_function("() => document.body.dataset.ready === 'true'")


def assert_ten_bars_sum_to_100(page: Any) -> None:
    probs = probabilities(page)
    assert len(probs) == 10
    assert sum(probs) == pytest.approx(1.0, abs=1e-4)
    texts = percent_texts(page)
    assert len(texts) == 10 and all(t.endswith("%") for t in texts)
    shown = sum(0.0 if t.startswith("<") else float(t.rstrip("%")) for t in texts)
    assert shown == pytest.approx(100.0, abs=1.0)  # each value is rounded to 0.1%
    assert page.locator(".prob-row.is-top").count() == 1


def assert_empty_state(page: Any) -> None:
    answer = page.locator("#answer")
    assert answer.get_attribute("data-state") == "empty"
    assert answer.get_attribute("data-digit") is None
    assert page.locator("#digit").inner_text() == "?"
    assert "Draw a digit" in page.locator("#confidence").inner_text()
    assert probabilities(page) == [0.0] * 10
    assert page.locator("#preview").get_attribute("data-pixels") is None
    assert page.locator("#undo").is_disabled() and page.locator("#clear").is_disabled()
    assert page.evaluate("() => window.mnistCanvas.strokes().length") == 0


def no_horizontal_scroll(page: Any) -> bool:
    return page.evaluate(
        "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )


def test_mouse_drawn_one_and_zero(desktop_page: Any, screenshots: Any) -> None:
    page = desktop_page
    open_draw(page)
    assert_empty_state(page)
    page.screenshot(path=str(screenshots / "draw-desktop-empty.png"))

    draw_mouse(page, ONE)
    wait_idle(page)
    assert shown_digit(page) == 1
    assert page.locator("#digit").inner_text() == "1"
    assert_ten_bars_sum_to_100(page)
    assert page.locator(".prob-row.is-top").get_attribute("data-digit") == "1"
    assert page.locator("#announce").get_attribute("aria-live") == "polite"
    assert "Prediction: 1" in page.locator("#announce").inner_text()
    assert page.locator("#error").is_hidden()

    page.locator("#clear").click()
    assert_empty_state(page)
    draw_mouse(page, ZERO)
    wait_idle(page)
    assert shown_digit(page) == 0
    assert_ten_bars_sum_to_100(page)
    # Why it decided: the template, contribution and runner-up maps are drawn.
    assert page.locator("#panels").get_attribute("data-state") == "ready"
    assert page.locator("#template-title").inner_text() == "Template for 0"
    assert "Score for 0" in page.locator("#scores").inner_text()
    assert no_horizontal_scroll(page)
    assert page.errors == []  # type: ignore[attr-defined]
    page.screenshot(path=str(screenshots / "draw-desktop.png"), full_page=True)


def test_clear_returns_to_empty_state(desktop_page: Any) -> None:
    page = desktop_page
    open_draw(page)
    for key in ("clear-button", "Escape", "c"):
        draw_mouse(page, ONE)
        wait_idle(page)
        assert shown_digit(page) == 1
        if key == "clear-button":
            page.locator("#clear").click()
        else:
            page.keyboard.press(key)
        assert_empty_state(page)
    # A blank canvas: every pixel of the drawing surface is transparent again.
    assert page.evaluate(
        """() => { const c = document.getElementById('canvas');
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   return d.every(v => v === 0); }"""
    )


def test_undo_removes_last_stroke(desktop_page: Any) -> None:
    page = desktop_page
    open_draw(page)
    draw_mouse(page, ONE)
    wait_idle(page)
    one_image = page.evaluate("() => window.mnistCanvas.exportImage()")
    one_probs = probabilities(page)

    draw_mouse(page, BAR)
    wait_idle(page)
    assert page.evaluate("() => window.mnistCanvas.strokes().length") == 2
    assert probabilities(page) != one_probs

    page.locator("#undo").click()
    wait_idle(page)
    assert page.evaluate("() => window.mnistCanvas.strokes().length") == 1
    assert page.evaluate("() => window.mnistCanvas.exportImage()") == one_image
    assert shown_digit(page) == 1
    assert probabilities(page) == pytest.approx(one_probs, abs=1e-6)

    page.keyboard.press("Control+z")  # the keyboard shortcut undoes the last stroke too
    assert_empty_state(page)


def test_touch_drawing_on_a_phone_does_not_scroll(phone_page: Any, screenshots: Any) -> None:
    page = phone_page
    open_draw(page)
    assert page.evaluate("() => matchMedia('(pointer: coarse)').matches")
    touch_action = "() => getComputedStyle(document.getElementById('canvas')).touchAction"
    assert page.evaluate(touch_action) == "none"
    page.evaluate(
        """() => { window.pointerTypes = new Set();
                   document.getElementById('canvas').addEventListener('pointerdown',
                     e => window.pointerTypes.add(e.pointerType)); }"""
    )
    # Scroll a little, so the page could scroll either way if touch-action let it.
    page.evaluate("() => window.scrollTo(0, 40)")
    page.wait_for_timeout(100)
    start = page.evaluate("() => window.scrollY")
    assert start > 0, "the phone page should be taller than the screen"
    box = page.locator("#canvas").bounding_box()

    # Drag upward then downward: on a page that scrolled with the finger, scrollY would change.
    draw_touch(page, [list(reversed(ONE[0]))], pause_ms=5)
    wait_idle(page)
    assert page.evaluate("() => [...window.pointerTypes]") == ["touch"]
    assert page.evaluate("() => window.scrollY") == start
    assert shown_digit(page) == 1
    assert_ten_bars_sum_to_100(page)

    page.locator("#clear").tap()
    assert_empty_state(page)
    draw_touch(page, ZERO, pause_ms=5)
    wait_idle(page)
    assert page.evaluate("() => window.scrollY") == start
    assert page.locator("#canvas").bounding_box() == box  # no layout shift under the finger
    assert shown_digit(page) == 0
    assert page.locator("#mini-answer").is_visible()
    assert no_horizontal_scroll(page)
    assert page.errors == []  # type: ignore[attr-defined]
    page.evaluate("() => window.scrollTo(0, 0)")
    page.screenshot(path=str(screenshots / "draw-phone.png"), full_page=True)


def test_preview_equals_the_servers_preview(desktop_page: Any, live_server: str) -> None:
    page = desktop_page
    open_draw(page)
    draw_mouse(page, ZERO)
    wait_idle(page)
    shown = json.loads(page.locator("#preview").get_attribute("data-pixels"))
    drawn = page.evaluate(
        """() => { const c = document.getElementById('preview');
                   const d = c.getContext('2d').getImageData(0, 0, 28, 28).data;
                   return Array.from({length: 784}, (_, i) => d[4 * i]); }"""
    )
    image = page.evaluate("() => window.mnistCanvas.exportImage()")
    assert image.startswith("data:image/png;base64,")

    request = urllib.request.Request(
        f"{live_server}/api/predict",
        data=json.dumps({"image": image}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        server = json.loads(response.read())

    assert shown == server["preview"]
    assert drawn == [v for row in server["preview"] for v in row]  # the pixels on screen, too
    assert probabilities(page) == pytest.approx(server["probabilities"], abs=1e-6)
    assert shown_digit(page) == server["digit"]
    # The page recomputes the scores from the preview and the weights: a linear model, shown.
    mine = json.loads(page.locator("#scores").get_attribute("data-probabilities"))
    assert mine == pytest.approx(server["probabilities"], abs=0.02)


def test_no_request_for_an_empty_canvas_and_throttled_while_drawing(desktop_page: Any) -> None:
    page = desktop_page
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.url.endswith("/api/predict") else None)
    open_draw(page)
    page.locator("#canvas").focus()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+z")
    page.evaluate("() => { window.mnistCanvas.clear(); window.mnistCanvas.undo(); }")
    page.wait_for_timeout(400)
    assert sent == []

    # About two seconds of continuous drawing: at most ~10 requests a second.
    started = page.evaluate("() => performance.now()")
    draw_mouse(page, ZERO, pause_ms=15)
    elapsed_s = (page.evaluate("() => performance.now()") - started) / 1000
    wait_idle(page)
    assert elapsed_s > 1.0
    assert 2 <= len(sent) <= 10 * elapsed_s + 2
    assert page.evaluate("() => window.mnistCanvas.requests()") == len(sent)

    page.locator("#clear").click()
    page.wait_for_timeout(300)
    count = len(sent)
    page.locator("#undo").click(force=True)  # disabled: nothing happens, nothing is sent
    page.wait_for_timeout(300)
    assert len(sent) == count


def test_latest_answer_wins(desktop_page: Any) -> None:
    """A slow answer to an old request never replaces the answer to a newer one."""
    page = desktop_page
    open_draw(page)
    page.evaluate(
        """() => {
          const real = window.fetch.bind(window);
          let calls = 0;
          window.fetch = async (url, options) => {
            if (String(url).endsWith('/api/predict') && calls++ === 0) {
              await new Promise(r => setTimeout(r, 2500));  // the first answer arrives last...
              setTimeout(() => { window.slowAnswered = true; }, 50);
              const probabilities = Array(10).fill(0.01); probabilities[3] = 0.91;
              return new Response(JSON.stringify({digit: 3, confidence: 0.91, probabilities,
                preview: Array.from({length: 28}, () => Array(28).fill(0)), model_version: 'old',
                elapsed_ms: 1}), {status: 200, headers: {'Content-Type': 'application/json'}});
            }
            return real(url, options);
          };
        }"""
    )
    draw_mouse(page, ONE, pause_ms=10)
    page.wait_for_function("() => window.mnistCanvas.idle() === false")  # the slow one is out
    assert shown_digit(page) == 1  # the newer answers arrived first
    page.wait_for_function("() => window.slowAnswered === true")
    wait_idle(page)
    assert page.evaluate("() => window.mnistCanvas.requests()") >= 2
    assert shown_digit(page) == 1  # ...and the old one is dropped
    meta = page.locator("#meta").inner_text()
    assert meta.startswith("Model ") and "old" not in meta


def test_server_errors_are_shown_and_the_page_recovers(desktop_page: Any) -> None:
    page = desktop_page
    open_draw(page)

    def fail_422(route: Any) -> None:
        route.fulfill(status=422, content_type="application/json",
                      body=json.dumps({"detail": "The image could not be read: try again."}))

    page.route("**/api/predict", fail_422)
    draw_mouse(page, ONE)
    wait_idle(page)
    error = page.locator("#error")
    assert error.is_visible()
    assert error.inner_text() == "The image could not be read: try again."
    assert error.get_attribute("role") == "alert"
    assert page.locator("#answer").get_attribute("data-state") == "error"
    page.unroute("**/api/predict", fail_422)

    # A 500 without a JSON body still gives a readable message.
    page.route("**/api/predict",
               lambda route: route.fulfill(status=500, body="Internal Server Error"))
    draw_mouse(page, BAR)
    wait_idle(page)
    assert "500" in error.inner_text()
    page.unroute("**/api/predict")

    # Drawing again works and the message goes away.
    page.locator("#clear").click()
    assert error.is_hidden()
    draw_mouse(page, ONE)
    wait_idle(page)
    assert error.is_hidden()
    assert shown_digit(page) == 1
    assert_ten_bars_sum_to_100(page)


def test_no_horizontal_scroll_and_crisp_canvas(desktop_page: Any, phone_page: Any) -> None:
    for page, ratio in ((desktop_page, 1), (phone_page, 2)):
        open_draw(page)
        assert no_horizontal_scroll(page)
        size = page.evaluate(
            """() => { const c = document.getElementById('canvas');
                       const r = c.getBoundingClientRect();
                       return [c.width, c.height, r.width, r.height]; }"""
        )
        assert size[0] == size[1] and size[2] == pytest.approx(size[3], abs=1)
        assert size[0] == round(size[2] * ratio)  # backing store = CSS size x devicePixelRatio
        assert 240 <= size[2] <= 400
