"""benchmarks/drawing.py: digits drawn on canvases the way people draw on the page."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from benchmarks.drawing import (
    CANVAS,
    CONDITIONS,
    HEIGHT_RANGE,
    Condition,
    draw_indexed,
    render_ink,
    thin,
)


def test_thin_leaves_a_one_pixel_line() -> None:
    mask = np.zeros((20, 40), dtype=bool)
    mask[8:13, 5:35] = True  # a bar 5 px thick
    skeleton = thin(mask)
    assert skeleton.any()
    assert skeleton.sum(axis=0).max() == 1  # one pixel thick everywhere
    rows = np.flatnonzero(skeleton.any(axis=1))
    assert rows.min() >= 8 and rows.max() <= 12


def _digit() -> np.ndarray:
    """A synthetic '0': a ring 20 px tall in a 28x28 field."""
    yy, xx = np.mgrid[0:28, 0:28]
    r = np.hypot((yy - 13.5) / 10.0, (xx - 13.5) / 7.0)
    return np.clip((1.0 - np.abs(r - 0.85) * 6) * 255, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("condition", CONDITIONS, ids=lambda c: c.name)
def test_drawings_are_decodable_canvases_of_the_promised_kind(condition: Condition) -> None:
    drawing = draw_indexed(_digit(), 7, condition)
    image = Image.open(io.BytesIO(drawing.data))
    assert image.size == (CANVAS, CANVAS)
    assert image.format == condition.fmt.upper()
    assert image.mode == ("RGBA" if condition.style == "transparent" else "RGB")
    assert drawing.data_url().startswith(f"data:{drawing.mime};base64,")
    low, high = HEIGHT_RANGE
    # The ink's own height: the box of pixels >= 128 plus anti-aliasing or a round brush.
    assert low * CANVAS * 0.8 <= drawing.height <= high * CANVAS + 0.1 * CANVAS


def test_drawing_is_deterministic_and_stays_inside_the_canvas() -> None:
    condition = CONDITIONS[0]
    assert draw_indexed(_digit(), 3, condition).data == draw_indexed(_digit(), 3, condition).data
    assert draw_indexed(_digit(), 3, condition).data != draw_indexed(_digit(), 4, condition).data
    for seed in range(20):
        ink, _h, angle, _b = render_ink(_digit(), condition, np.random.default_rng(seed))
        assert abs(angle) <= 10.0
        assert ink[:2].max() == 0 and ink[-2:].max() == 0  # a margin is kept
        assert ink[:, :2].max() == 0 and ink[:, -2:].max() == 0
