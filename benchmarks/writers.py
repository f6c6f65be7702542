"""Simulated writers: digits drawn from stroke skeletons, each writer with a hand of their own.

Not MNIST: every digit is a few strokes (lines and elliptic arcs) in a unit box. A writer picks
once a slant, a width, a rotation, a pen (thin to marker-bold), a size on the canvas, a
wobble and a style for each digit (a 1 with or without a flag and base, a 7 with a crossbar, an
open or closed 4, a straight or curled 9 ...); every drawing then jitters the points a little.
The drawing is rendered on a 280x280 transparent canvas like the page's and sent through the
server's own preprocessing (`model.preprocess.preprocess_image`), so the 28x28 digit is what
the served model would see.

    images, labels, writer_ids = draw_writers(range(100), per_writer=10, seed=1)
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from model.preprocess import preprocess_image

CANVAS = 280
Stroke = list[tuple[float, float]]


def arc(cx: float, cy: float, rx: float, ry: float, start: float, stop: float,
        steps: int = 24) -> Stroke:
    """Points of an elliptic arc, angles in degrees, y down (-90 is the top)."""
    angles = np.radians(np.linspace(start, stop, steps))
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


# Each digit: a list of styles; each style a list of strokes in the unit box (y down).
STYLES: dict[int, list[list[Stroke]]] = {
    0: [[arc(0.5, 0.5, 0.4, 0.5, -90, 270)],
        [arc(0.5, 0.5, 0.4, 0.5, -90, 270), [(0.85, 0.05), (0.15, 0.95)]],
        [arc(0.5, 0.5, 0.45, 0.5, -100, 275)]],
    1: [[[(0.5, 0.0), (0.5, 1.0)]],
        [[(0.25, 0.22), (0.55, 0.0), (0.55, 1.0)]],
        [[(0.25, 0.22), (0.55, 0.0), (0.55, 1.0)], [(0.25, 1.0), (0.85, 1.0)]]],
    2: [[arc(0.5, 0.28, 0.4, 0.28, 190, 380) + [(0.05, 1.0), (0.95, 1.0)]],
        [arc(0.5, 0.28, 0.4, 0.28, 190, 390) + [(0.15, 0.9)]
         + arc(0.25, 0.9, 0.1, 0.1, 270, 0) + [(0.95, 1.0)]]],
    3: [[arc(0.5, 0.25, 0.35, 0.25, -160, 90), arc(0.5, 0.73, 0.4, 0.27, -90, 160)],
        [[(0.1, 0.0), (0.85, 0.0), (0.45, 0.42)] + arc(0.5, 0.7, 0.4, 0.3, -90, 160)]],
    4: [[[(0.65, 0.0), (0.05, 0.65), (0.95, 0.65)], [(0.7, 0.3), (0.7, 1.0)]],
        [[(0.7, 1.0), (0.7, 0.0), (0.05, 0.65), (0.95, 0.65)]],
        [[(0.1, 0.0), (0.1, 0.6), (0.95, 0.6)], [(0.75, 0.0), (0.75, 1.0)]]],
    5: [[[(0.85, 0.0), (0.2, 0.0), (0.15, 0.45)] + arc(0.5, 0.68, 0.38, 0.32, -130, 150)],
        [[(0.2, 0.0), (0.15, 0.45)] + arc(0.5, 0.68, 0.38, 0.32, -130, 150),
         [(0.2, 0.0), (0.85, 0.0)]]],
    6: [[[(0.75, 0.0), (0.45, 0.15), (0.2, 0.45), (0.15, 0.7)]
         + arc(0.5, 0.72, 0.35, 0.28, 180, 540)],
        [arc(0.9, 0.7, 0.75, 0.7, -100, -180) + arc(0.5, 0.72, 0.35, 0.28, 180, 530)]],
    7: [[[(0.05, 0.0), (0.95, 0.0), (0.35, 1.0)]],
        [[(0.05, 0.0), (0.95, 0.0), (0.35, 1.0)], [(0.3, 0.5), (0.85, 0.5)]],
        [[(0.05, 0.18), (0.05, 0.0), (0.95, 0.0), (0.55, 0.5), (0.45, 1.0)]],
        [[(0.05, 0.0), (0.95, 0.0), (0.35, 1.0)], [(0.15, 0.55), (0.9, 0.45)]]],
    8: [[arc(0.5, 0.25, 0.3, 0.25, 90, 450), arc(0.5, 0.73, 0.38, 0.27, -90, 270)],
        [arc(0.5, 0.25, 0.32, 0.25, 40, 320) + arc(0.5, 0.73, 0.38, 0.27, -90, 270)]],
    9: [[arc(0.5, 0.3, 0.38, 0.3, 0, 360), [(0.88, 0.3), (0.85, 1.0)]],
        [arc(0.5, 0.3, 0.38, 0.3, 0, 360), [(0.88, 0.3), (0.8, 0.8), (0.5, 1.0)]],
        [arc(0.5, 0.3, 0.38, 0.3, -20, 340) + arc(0.55, 0.65, 0.33, 0.35, -10, 120)]],
}


@dataclass(frozen=True)
class Writer:
    """One person's hand, fixed across everything they draw."""

    writer_id: int
    slant: float  # shear: x += slant * (0.5 - y)
    width: float  # width of the box relative to its height
    rotation: float  # degrees
    pen: float  # brush diameter in canvas pixels
    size: float  # digit height as a share of the canvas
    wobble: float  # per-point jitter, in units of the box
    styles: tuple[int, ...]  # one style index per digit

    @classmethod
    def sample(cls, writer_id: int, seed: int) -> Writer:
        rng = np.random.default_rng([seed, writer_id])
        return cls(
            writer_id=writer_id,
            slant=float(rng.uniform(-0.6, 0.6)),
            width=float(rng.uniform(0.45, 1.2)),
            rotation=float(rng.uniform(-18, 18)),
            pen=float(rng.choice([5.0, 9.0, 16.0, 26.0])),
            size=float(rng.uniform(0.35, 0.85)),
            wobble=float(rng.uniform(0.0, 0.04)),
            styles=tuple(int(rng.integers(len(STYLES[d]))) for d in range(10)),
        )


def render(writer: Writer, digit: int, rng: np.random.Generator) -> bytes:
    """One drawing of `digit` by `writer` as the page's PNG: black ink on transparency."""
    strokes = STYLES[digit][writer.styles[digit]]
    height = CANVAS * writer.size * rng.uniform(0.9, 1.1)
    angle = math.radians(writer.rotation + rng.uniform(-4, 4))
    cos, sin = math.cos(angle), math.sin(angle)
    centre = CANVAS / 2 + rng.uniform(-0.12, 0.12, size=2) * CANVAS
    image = Image.new("LA", (CANVAS, CANVAS), (0, 0))
    pen = ImageDraw.Draw(image)
    radius = writer.pen / 2
    for stroke in strokes:
        points = np.asarray(stroke, dtype=np.float64)
        points = points + rng.normal(0.0, writer.wobble, size=points.shape)
        x = (points[:, 0] - 0.5 + writer.slant * (0.5 - points[:, 1])) * writer.width
        y = points[:, 1] - 0.5
        px = centre[0] + height * (x * cos - y * sin)
        py = centre[1] + height * (x * sin + y * cos)
        path = list(zip(px.tolist(), py.tolist(), strict=True))
        pen.line(path, fill=(0, 255), width=max(1, round(writer.pen)), joint="curve")
        for cx, cy in (path[0], path[-1]):  # round caps, as the page's brush draws them
            pen.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=(0, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def draw_writers(writer_ids: Iterable[int], *, per_writer: int, seed: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`per_writer` digits from each writer (labels cycle through 0..9 from a random start),
    as the server sees them: uint8 (N, 28, 28), labels (N,), writer ids (N,) as strings."""
    images, labels, owners = [], [], []
    for writer_id in writer_ids:
        writer = Writer.sample(writer_id, seed)
        rng = np.random.default_rng([seed, writer_id, 1])
        first = int(rng.integers(10))
        for k in range(per_writer):
            digit = (first + k) % 10
            seen = preprocess_image(render(writer, digit, rng))
            images.append(np.clip(np.rint(seen), 0, 255).astype(np.uint8))
            labels.append(digit)
            owners.append(f"writer-{seed}-{writer_id}")
    return (np.stack(images), np.asarray(labels, dtype=np.int64),
            np.asarray(owners, dtype=object))
