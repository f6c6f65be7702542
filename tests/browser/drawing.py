"""Drawing digits on the page's canvas with a mouse or a finger (CDP touch events)."""

from __future__ import annotations

import math
from typing import Any

Stroke = list[tuple[float, float]]  # points as fractions of the canvas side (0..1)

# A slightly slanted "1", like most handwritten ones.
ONE: list[Stroke] = [[(0.54 - 0.06 * t, 0.14 + 0.72 * t) for t in (i / 24 for i in range(25))]]
# A closed, slightly tall "0".
ZERO: list[Stroke] = [
    [
        (0.5 + 0.22 * math.sin(2 * math.pi * t), 0.5 - 0.32 * math.cos(2 * math.pi * t))
        for t in (i / 48 for i in range(52))
    ]
]
# A horizontal bar across the top: drawn after a "1" it makes a "7"-ish shape; undo removes it.
BAR: list[Stroke] = [[(0.22 + 0.56 * t, 0.16) for t in (i / 16 for i in range(17))]]


def _touch(x: float, y: float) -> dict[str, float]:
    return {"x": x, "y": y, "id": 1, "radiusX": 4, "radiusY": 4, "force": 1}


def canvas_box(page: Any) -> dict[str, float]:
    box = page.locator("#canvas").bounding_box()
    assert box is not None, "the canvas is not visible"
    return box


def to_page(box: dict[str, float], x: float, y: float) -> tuple[float, float]:
    return box["x"] + x * box["width"], box["y"] + y * box["height"]


def draw_mouse(page: Any, strokes: list[Stroke], *, pause_ms: float = 0) -> None:
    """Draw each stroke as mouse down, moves, up (real input events through Chromium)."""
    box = canvas_box(page)
    for stroke in strokes:
        x, y = to_page(box, *stroke[0])
        page.mouse.move(x, y)
        page.mouse.down()
        for point in stroke[1:]:
            page.mouse.move(*to_page(box, *point), steps=2)
            if pause_ms:
                page.wait_for_timeout(pause_ms)
        page.mouse.up()


def draw_touch(page: Any, strokes: list[Stroke], *, pause_ms: float = 0) -> None:
    """Draw each stroke with one finger: CDP Input.dispatchTouchEvent start, moves, end."""
    cdp = page.context.new_cdp_session(page)
    box = canvas_box(page)
    try:
        for stroke in strokes:
            x, y = to_page(box, *stroke[0])
            cdp.send("Input.dispatchTouchEvent",
                     {"type": "touchStart", "touchPoints": [_touch(x, y)]})
            for point in stroke[1:]:
                x, y = to_page(box, *point)
                cdp.send("Input.dispatchTouchEvent",
                         {"type": "touchMove", "touchPoints": [_touch(x, y)]})
                if pause_ms:
                    page.wait_for_timeout(pause_ms)
            cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    finally:
        cdp.detach()


def wait_idle(page: Any, timeout: float = 15_000) -> None:
    """Wait until no prediction is due or in flight and the newest answer is on screen."""
    page.wait_for_function("() => window.mnistCanvas && window.mnistCanvas.idle()", timeout=timeout)


def shown_digit(page: Any) -> int | None:
    value = page.locator("#answer").get_attribute("data-digit")
    return None if value is None else int(value)


def probabilities(page: Any) -> list[float]:
    values = page.locator(".prob-bar").evaluate_all("els => els.map(e => e.dataset.value)")
    return [float(v) for v in values]


def percent_texts(page: Any) -> list[str]:
    return page.locator(".prob-value").all_inner_texts()
