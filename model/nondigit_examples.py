"""Generated non-digits to teach the verdict's detector what is not a digit, drawn by a
generator of its own: letters from hand-made stroke skeletons (no font files), random
polygons, stars, grids, spirals, waves, zigzags, random walks, marks with a dot, pairs of
training digits side by side and tiny specks, each drawn with a random pen on a small canvas
and sent through the server's own ``ink_to_mnist``, so they look like what a drawing becomes.

It shares nothing with ``benchmarks/nondigits.py`` (which renders letters from fonts and draws
its own shape list) except the idea, so the benchmark measures the detector on drawings it
has not seen the like of. Letters in HELD_OUT_LETTERS are never drawn here: the benchmark's
rejection of them tells whether the detector learned "not a digit" or these skeletons.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from model.preprocess.errors import PreprocessError
from model.preprocess.field import ink_to_mnist

#: Canvas side the strokes are drawn on before ``ink_to_mnist`` (cheaper than the page's 280).
SIDE: Final = 112

_P = list[tuple[float, float]]

#: Letter skeletons in a unit box (x right, y down), each a list of strokes. Letters that are
#: also digits in someone's hand (O o D Q I i l J j Z z B S s G b g q) are left out.
LETTERS: Final[dict[str, list[_P]]] = {
    "A": [[(0, 1), (0.5, 0), (1, 1)], [(0.22, 0.6), (0.78, 0.6)]],
    "C": [[(0.95, 0.15), (0.6, 0), (0.25, 0.08), (0.03, 0.5), (0.25, 0.92), (0.6, 1),
           (0.95, 0.85)]],
    "E": [[(1, 0), (0, 0), (0, 1), (1, 1)], [(0, 0.5), (0.75, 0.5)]],
    "F": [[(1, 0), (0, 0), (0, 1)], [(0, 0.5), (0.75, 0.5)]],
    "H": [[(0, 0), (0, 1)], [(1, 0), (1, 1)], [(0, 0.5), (1, 0.5)]],
    "K": [[(0, 0), (0, 1)], [(1, 0), (0, 0.55)], [(0.3, 0.4), (1, 1)]],
    "M": [[(0, 1), (0, 0), (0.5, 0.6), (1, 0), (1, 1)]],
    "N": [[(0, 1), (0, 0), (1, 1), (1, 0)]],
    "P": [[(0, 1), (0, 0), (0.7, 0), (0.95, 0.2), (0.7, 0.45), (0, 0.45)]],
    "R": [[(0, 1), (0, 0), (0.7, 0), (0.95, 0.2), (0.7, 0.45), (0, 0.45)], [(0.45, 0.45),
                                                                           (1, 1)]],
    "T": [[(0, 0), (1, 0)], [(0.5, 0), (0.5, 1)]],
    "U": [[(0, 0), (0, 0.75), (0.2, 1), (0.8, 1), (1, 0.75), (1, 0)]],
    "V": [[(0, 0), (0.5, 1), (1, 0)]],
    "W": [[(0, 0), (0.25, 1), (0.5, 0.35), (0.75, 1), (1, 0)]],
    "X": [[(0, 0), (1, 1)], [(1, 0), (0, 1)]],
    "Y": [[(0, 0), (0.5, 0.5), (1, 0)], [(0.5, 0.5), (0.5, 1)]],
    "a": [[(0.85, 0.35), (0.5, 0.3), (0.1, 0.5), (0.15, 0.9), (0.5, 1), (0.85, 0.75)],
          [(0.85, 0.3), (0.85, 1)]],
    "c": [[(0.9, 0.4), (0.5, 0.3), (0.1, 0.6), (0.2, 0.95), (0.6, 1), (0.9, 0.9)]],
    "d": [[(0.85, 0.45), (0.5, 0.35), (0.1, 0.6), (0.2, 0.95), (0.55, 1), (0.85, 0.85)],
          [(0.85, 0), (0.85, 1)]],
    "e": [[(0.1, 0.65), (0.9, 0.65), (0.75, 0.35), (0.4, 0.3), (0.1, 0.55), (0.2, 0.95),
           (0.6, 1), (0.9, 0.9)]],
    "f": [[(0.9, 0.05), (0.6, 0), (0.4, 0.15), (0.4, 1)], [(0.1, 0.4), (0.8, 0.4)]],
    "h": [[(0.1, 0), (0.1, 1)], [(0.1, 0.55), (0.5, 0.35), (0.85, 0.5), (0.85, 1)]],
    "k": [[(0.1, 0), (0.1, 1)], [(0.85, 0.35), (0.1, 0.7)], [(0.35, 0.6), (0.9, 1)]],
    "m": [[(0, 1), (0, 0.4)], [(0, 0.5), (0.25, 0.35), (0.5, 0.5), (0.5, 1)],
          [(0.5, 0.5), (0.75, 0.35), (1, 0.5), (1, 1)]],
    "n": [[(0.1, 1), (0.1, 0.35)], [(0.1, 0.5), (0.5, 0.35), (0.9, 0.5), (0.9, 1)]],
    "r": [[(0.2, 1), (0.2, 0.35)], [(0.2, 0.55), (0.5, 0.35), (0.9, 0.4)]],
    "u": [[(0.1, 0.35), (0.1, 0.85), (0.4, 1), (0.9, 0.85)], [(0.9, 0.35), (0.9, 1)]],
    "v": [[(0.1, 0.35), (0.5, 1), (0.9, 0.35)]],
    "w": [[(0, 0.35), (0.25, 1), (0.5, 0.5), (0.75, 1), (1, 0.35)]],
    "x": [[(0.1, 0.35), (0.9, 1)], [(0.9, 0.35), (0.1, 1)]],
    "y": [[(0.1, 0.3), (0.5, 0.7)], [(0.9, 0.3), (0.3, 1.2)]],
}

#: Letters never drawn here, so that the benchmark's letters include kinds the detector has
#: not been shown (reported apart by ``benchmarks/not_a_digit.py``).
HELD_OUT_LETTERS: Final = "KRWehy"

KINDS: Final = ("letter", "shape", "stroke", "scribble", "pair", "speck")


def _polygon(rng: np.random.Generator) -> list[_P]:
    n = int(rng.integers(3, 9))
    start = rng.uniform(0, 2 * math.pi)
    radius = rng.uniform(0.7, 1.0, size=n)
    t = start + np.arange(n + 1) * 2 * math.pi / n
    r = np.append(radius, radius[0])
    return [list(zip(0.5 + 0.5 * r * np.cos(t), 0.5 + 0.5 * r * np.sin(t), strict=True))]


def _shape(rng: np.random.Generator) -> list[_P]:
    which = int(rng.integers(6))
    if which == 0:
        return _polygon(rng)
    if which == 1:  # a star of 5 to 7 points drawn in one stroke
        n = int(rng.choice([5, 7]))
        t = np.arange(n + 1) * (n // 2) * 2 * math.pi / n + rng.uniform(0, 1)
        return [list(zip(0.5 + 0.5 * np.cos(t), 0.5 + 0.5 * np.sin(t), strict=True))]
    if which == 2:  # a grid: # or a window
        a, b = rng.uniform(0.2, 0.4), rng.uniform(0.6, 0.8)
        return [[(a, 0), (a, 1)], [(b, 0), (b, 1)], [(0, a), (1, a)], [(0, b), (1, b)]]
    if which == 3:  # a circle with something in it (a face, a cross, a dot)
        t = np.linspace(0, 2 * math.pi, 32)
        ring = list(zip(0.5 + 0.5 * np.cos(t), 0.5 + 0.5 * np.sin(t), strict=True))
        inner = [[(0.2, 0.2), (0.8, 0.8)], [(0.8, 0.2), (0.2, 0.8)]] if rng.random() < 0.5 \
            else [[(0.35, 0.4), (0.36, 0.41)], [(0.65, 0.4), (0.66, 0.41)],
                  [(0.3, 0.65), (0.5, 0.75), (0.7, 0.65)]]
        return [ring, *inner]
    if which == 4:  # a box with a diagonal or an arrow head
        return [[(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)], [(0, 0), (1, 1)]] \
            if rng.random() < 0.5 else [[(0, 0.5), (1, 0.5)], [(0.65, 0.2), (1, 0.5),
                                                            (0.65, 0.8)]]
    t = np.linspace(0, 2 * math.pi * rng.uniform(1.5, 3.5), 80)  # a spiral
    r = 0.5 * t / t[-1]
    return [list(zip(0.5 + r * np.cos(t), 0.5 + r * np.sin(t), strict=True))]


def _stroke(rng: np.random.Generator) -> list[_P]:
    which = int(rng.integers(4))
    if which == 0:  # a wave
        t = np.linspace(0, 1, 40)
        wave = 0.5 + rng.uniform(0.08, 0.3) * np.sin(t * rng.uniform(1.5, 5) * 2 * math.pi)
        return [list(zip(t, wave, strict=True))]
    if which == 1:  # parallel bars, flat
        n = int(rng.integers(2, 5))
        return [[(0, y), (1, y)] for y in np.linspace(0.1, 0.9, n)]
    if which == 2:  # a plus or an x, tilted at random
        a = rng.uniform(0, math.pi)
        c, s = 0.5 * math.cos(a), 0.5 * math.sin(a)
        return [[(0.5 - c, 0.5 - s), (0.5 + c, 0.5 + s)], [(0.5 + s, 0.5 - c), (0.5 - s, 0.5 + c)]]
    a = rng.uniform(-0.25, 0.25)  # a flat line (a steep one is a 1)
    return [[(0, 0.5 - a / 2), (1, 0.5 + a / 2)]]


def _scribble(rng: np.random.Generator) -> list[_P]:
    if rng.random() < 0.5:  # a zigzag
        n = int(rng.integers(4, 14))
        xs = np.linspace(0, 1, n)
        ys = (np.arange(n) % 2) * rng.uniform(0.2, 1.0) + rng.normal(0, 0.05, n)
        return [list(zip(xs, ys, strict=True))]
    walk = rng.normal(size=(int(rng.integers(20, 80)), 2)).cumsum(axis=0)
    walk = (walk - walk.min(0)) / np.ptp(walk, axis=0).clip(1e-6)
    return [[(float(x), float(y)) for x, y in walk]]


def _speck(rng: np.random.Generator) -> list[_P]:
    """A dot: no longer than the pen is wide (a longer tick, scaled up, is a 1)."""
    x, y = rng.uniform(0.3, 0.7, size=2)
    return [[(x, y), (x + 1e-3, y + 1e-3)]]


def _jitter(strokes: list[_P], rng: np.random.Generator) -> list[np.ndarray]:
    """Hand-drawn: control points moved a little, the whole slanted and stretched."""
    slant = rng.uniform(-0.3, 0.3)
    stretch = np.exp(rng.uniform(-0.35, 0.35, size=2))
    out = []
    for stroke in strokes:
        p = np.asarray(stroke, dtype=np.float64) + rng.normal(0, 0.035, (len(stroke), 2))
        p[:, 0] += slant * (0.5 - p[:, 1])
        out.append(p * stretch)
    return out


def _draw(strokes: list[np.ndarray], rng: np.random.Generator,
          tiny: bool = False) -> np.ndarray:
    """Strokes drawn with a round pen of random width on a SIDE x SIDE canvas (0..255);
    `tiny`: at most a few pen widths long (a speck), not scaled up to a digit's size."""
    allp = np.concatenate(strokes)
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    size = rng.uniform(0.0, 0.08) * SIDE if tiny \
        else rng.uniform(0.45, 0.8) * SIDE
    scale = size / max(float((hi - lo).max()), 1e-6)
    offset = (SIDE - (hi - lo) * scale) / 2
    width = int(rng.integers(4, 12))
    img = Image.new("L", (SIDE, SIDE), 0)
    pen = ImageDraw.Draw(img)
    for stroke in strokes:
        xy = [(float(x), float(y)) for x, y in (stroke - lo) * scale + offset]
        pen.line(xy, fill=255, width=width, joint="curve")
        for x, y in (xy[0], xy[-1]):
            pen.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=255)
    return np.asarray(img, dtype=np.float32)


def _pair(rng: np.random.Generator, digits: np.ndarray) -> np.ndarray:
    i, j = rng.integers(0, len(digits), size=2)
    gap = int(rng.integers(-2, 6))
    canvas = np.zeros((28, 56 + gap + 4), dtype=np.float32)
    canvas[:, 0:28] = digits[i]
    canvas[:, 28 + gap : 56 + gap] = np.maximum(canvas[:, 28 + gap : 56 + gap], digits[j])
    return canvas


def non_digit_examples(count: int, digits: np.ndarray, seed: int,
                       kinds: tuple[str, ...] = KINDS) -> tuple[np.ndarray, np.ndarray]:
    """`count` generated non-digits in MNIST form (N, 28, 28) float32 0..255 and their kind
    index into `kinds`; `digits` (training digits, 0..255) make the pairs."""
    rng = np.random.default_rng(seed)
    letters = [k for k in LETTERS if k not in HELD_OUT_LETTERS]
    images: list[np.ndarray] = []
    which: list[int] = []
    while len(images) < count:
        kind = int(rng.integers(len(kinds)))
        name = kinds[kind]
        if name == "pair":
            ink = _pair(rng, digits)
        else:
            if name == "letter":
                strokes = LETTERS[letters[int(rng.integers(len(letters)))]]
            elif name == "shape":
                strokes = _shape(rng)
            elif name == "stroke":
                strokes = _stroke(rng)
            elif name == "scribble":
                strokes = _scribble(rng)
            else:
                strokes = _speck(rng)
            ink = _draw(_jitter(strokes, rng), rng, tiny=name == "speck")
        try:
            images.append(ink_to_mnist(ink))
        except PreprocessError:
            continue
        which.append(kind)
    return np.stack(images).astype(np.float32), np.array(which)


def redrawn_digits(digits: np.ndarray, seed: int) -> np.ndarray:
    """Digits drawn again as a drawing would reach the server, then sent through
    ``ink_to_mnist``: upscaled 2x to 5x, turned up to 10 degrees, and either kept grey, cut
    at mid-grey with a sharp edge, or cut after a thicker or thinner pen (a grey dilation or
    erosion). The detector learns from them that the server's path is no sign of a
    non-digit (canvas digits take it; MNIST's own do not), and the thresholds keep them in
    the same budget as the validation digits."""
    rng = np.random.default_rng(seed)
    out = []
    for digit in digits:
        size = int(rng.integers(56, 141))
        big = Image.fromarray(digit.astype(np.float32), "F").resize(
            (size, size), Image.Resampling.BICUBIC).rotate(float(rng.uniform(-10, 10)),
                                                          resample=Image.Resampling.BILINEAR)
        ink = np.asarray(big, dtype=np.float32)
        style = int(rng.integers(4))
        if style:
            if style > 1:
                reach = 1 + int(rng.integers(1, max(2, size // 28)))
                pen = ndimage.grey_dilation if style == 2 else ndimage.grey_erosion
                ink = pen(ink, size=(reach, reach))
            ink = np.clip((ink - 128.0) / 32.0 + 0.5, 0.0, 1.0) * 255.0
        try:
            out.append(ink_to_mnist(ink))
        except PreprocessError:
            continue
    return np.stack(out).astype(np.float32)
