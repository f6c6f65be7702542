"""Evaluation sets for the "not a digit" verdict: drawings that are not digits, and digits drawn
the way people draw them, as the 280x280 canvas images the page sends.

Non-digits, by kind (KINDS):
- ``letter``: capital and small letters that no one would read as a digit, rendered from the
  DejaVu and Liberation fonts (Debian's fonts-dejavu-core and fonts-liberation; installed by
  ``ensure_fonts`` when missing and running as root), several faces and slants;
- ``shape``: triangles, squares, stars, hearts, arrows, smileys, drawn with the page's brush;
- ``stroke``: horizontal dashes, waves, crosses, checkmarks, spirals;
- ``scribble``: random zigzags and tangles;
- ``pair``: two validation digits side by side ("12"), as one drawing;
- ``speck``: almost-empty canvases: a dot, a tick, a short flick.

Drawn digits: validation-split digits (never MNIST's test digits) drawn under each of
``benchmarks.drawing.CONDITIONS`` (page brush, thin and thick pens, PNG/JPEG, both polarities).

Nothing here is used to fit the verdict's thresholds: they are chosen on MNIST's validation
digits alone (``model.calibration``); these sets only measure them.

    python -m benchmarks.nondigits --out /tmp/nondigits   # writes PNGs per kind, for a look
"""

from __future__ import annotations

import argparse
import io
import math
import os
import shutil
import subprocess
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from benchmarks.drawing import CANVAS, CONDITIONS, PAGE_BRUSH, Condition, brush_ink, draw, encode

KINDS = ("letter", "shape", "stroke", "scribble", "pair", "speck")
DEFAULT_SEED = 20261202  # 20261201 was looked at to choose the verdict's mixture size

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation"))
FONT_FILES = (
    "dejavu/DejaVuSans.ttf", "dejavu/DejaVuSans-Bold.ttf", "dejavu/DejaVuSerif.ttf",
    "dejavu/DejaVuSerif-Italic.ttf", "dejavu/DejaVuSansMono.ttf",
    "liberation/LiberationSans-Regular.ttf", "liberation/LiberationSerif-Regular.ttf",
    "liberation/LiberationSerif-BoldItalic.ttf", "liberation/LiberationMono-Regular.ttf",
    "liberation/LiberationSansNarrow-Regular.ttf",
)
FONT_PACKAGES = ("fonts-dejavu-core", "fonts-liberation")
# Letters that are also digits in someone's hand are left out: O o D Q (0), I i l J j (1),
# Z z (2), B (8), S s (5), G b (6), g q (9), T? kept: a T has a bar a 7 lacks below.
LETTERS = "ACEFHKMNPRTUVWXYacdefhkmnprtuvwxy"


@dataclass(frozen=True)
class Sample:
    """One evaluation drawing: PNG (or JPEG) bytes, what it is and a short name."""

    kind: str  # a KINDS entry, or "digit"
    name: str  # e.g. "letter K (DejaVuSerif-Italic)", "page-brush 7"
    data: bytes
    mime: str
    label: int | None = None  # the digit, for drawn digits


# --------------------------------------------------------------------------- fonts


def ensure_fonts() -> list[Path]:
    """The font files present, installing Debian's font packages first when any are missing
    (as root with apt-get; otherwise the letters use whatever fonts there are)."""
    base = Path("/usr/share/fonts/truetype")
    if not all((base / f).exists() for f in FONT_FILES) and os.geteuid() == 0 and shutil.which(
        "apt-get"
    ):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", *FONT_PACKAGES], check=False, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fonts = [base / f for f in FONT_FILES if (base / f).exists()]
    if not fonts:
        raise RuntimeError("No DejaVu or Liberation fonts: apt-get install "
                           + " ".join(FONT_PACKAGES))
    return fonts


# --------------------------------------------------------------------------- drawing helpers


def _rng(seed: int, kind: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(kind.encode()), index])


def _png(ink: np.ndarray) -> tuple[bytes, str]:
    return encode(np.clip(ink, 0.0, 1.0), "transparent", "png")


def _polyline(points: np.ndarray) -> np.ndarray:
    """Consecutive points (K, 2) -> segments (K-1, 2, 2)."""
    return np.stack([points[:-1], points[1:]], axis=1)


def _place(points: list[np.ndarray], rng: np.random.Generator, size_range: tuple[float, float]
           = (0.35, 0.85)) -> list[np.ndarray]:
    """Unit-box strokes ((x, y) in 0..1) scaled to a random size, rotated a little, placed."""
    size = rng.uniform(*size_range) * CANVAS
    angle = math.radians(rng.uniform(-12, 12))
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    allp = np.concatenate(points)
    centre = (allp.min(axis=0) + allp.max(axis=0)) / 2
    room = CANVAS - size - 2 * PAGE_BRUSH
    offset = np.array([rng.uniform(0, max(room, 1)), rng.uniform(0, max(room, 1))])
    offset += size / 2 + PAGE_BRUSH
    return [((p - centre) * size) @ rot.T + offset for p in points]


def _brush(strokes: list[np.ndarray], width: float = PAGE_BRUSH) -> np.ndarray:
    segments = np.concatenate([_polyline(s) for s in strokes])
    return brush_ink(segments, width)


def _circle(cx: float, cy: float, r: float, start: float = 0.0, stop: float = 2 * math.pi,
            n: int = 48) -> np.ndarray:
    t = np.linspace(start, stop, n)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


# --------------------------------------------------------------------------- non-digits


def _letter(index: int, rng: np.random.Generator, fonts: list[Path]) -> tuple[np.ndarray, str]:
    char = LETTERS[index % len(LETTERS)]
    font_path = fonts[int(rng.integers(len(fonts)))]  # every letter in a mix of faces
    size = int(rng.uniform(0.35, 0.85) * CANVAS)
    font = ImageFont.truetype(str(font_path), size)
    img = Image.new("L", (CANVAS * 2, CANVAS * 2), 0)
    ImageDraw.Draw(img).text((CANVAS // 2, CANVAS // 4), char, fill=255, font=font)
    img = img.rotate(rng.uniform(-10, 10), resample=Image.Resampling.BICUBIC)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    ys, xs = np.nonzero(arr > 0.1)
    crop = arr[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = crop.shape
    if max(h, w) > CANVAS - 8:
        scale = (CANVAS - 8) / max(h, w)
        crop = np.asarray(Image.fromarray(crop, "F").resize(
            (max(1, int(w * scale)), max(1, int(h * scale))), Image.Resampling.BOX))
        h, w = crop.shape
    ink = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    top = int(rng.integers(4, max(5, CANVAS - h - 3)))
    left = int(rng.integers(4, max(5, CANVAS - w - 3)))
    ink[top : top + h, left : left + w] = crop
    return ink, f"letter {char} ({font_path.stem})"


def _shape(index: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    which = ("triangle", "square", "star", "heart", "arrow", "smiley", "house", "diamond")[
        index % 8]
    if which == "triangle":
        strokes = [np.array([[0.5, 0.0], [1.0, 0.9], [0.0, 0.9], [0.5, 0.0]])]
    elif which == "square":
        strokes = [np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]], dtype=float)]
    elif which == "star":
        t = np.arange(6) * 4 * math.pi / 5 - math.pi / 2
        strokes = [np.stack([0.5 + 0.5 * np.cos(t), 0.5 + 0.5 * np.sin(t)], axis=1)]
    elif which == "heart":
        t = np.linspace(0, 2 * math.pi, 60)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        strokes = [np.stack([(x + 17) / 34, (y + 17) / 34], axis=1)]
    elif which == "arrow":
        strokes = [np.array([[0, 0.5], [1, 0.5]]), np.array([[0.7, 0.25], [1, 0.5], [0.7, 0.75]])]
    elif which == "smiley":
        strokes = [_circle(0.5, 0.5, 0.5), _circle(0.33, 0.35, 0.04, n=8),
                   _circle(0.67, 0.35, 0.04, n=8), _circle(0.5, 0.5, 0.3, 0.4, math.pi - 0.4)]
    elif which == "house":
        strokes = [np.array([[0, 0.4], [0.5, 0], [1, 0.4], [1, 1], [0, 1], [0, 0.4], [1, 0.4]])]
    else:
        strokes = [np.array([[0.5, 0], [1, 0.5], [0.5, 1], [0, 0.5], [0.5, 0]], dtype=float)]
    return _brush(_place(strokes, rng)), which


def _stroke(index: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    which = ("dash", "wave", "cross", "check", "spiral", "plus", "equals")[index % 7]
    if which == "dash":
        strokes = [np.array([[0, 0.5], [1, 0.5 + rng.uniform(-0.05, 0.05)]])]
    elif which == "wave":
        t = np.linspace(0, 1, 40)
        strokes = [np.stack([t, 0.5 + 0.12 * np.sin(t * rng.uniform(2, 4) * 2 * math.pi)], 1)]
    elif which == "cross":
        strokes = [np.array([[0, 0], [1, 1]], dtype=float), np.array([[1, 0], [0, 1]], dtype=float)]
    elif which == "check":
        strokes = [np.array([[0, 0.55], [0.35, 0.9], [1, 0.0]])]
    elif which == "spiral":
        t = np.linspace(0, 3 * 2 * math.pi, 120)
        r = 0.05 + 0.45 * t / t[-1]
        strokes = [np.stack([0.5 + r * np.cos(t), 0.5 + r * np.sin(t)], 1)]
    elif which == "plus":
        strokes = [np.array([[0, 0.5], [1, 0.5]]), np.array([[0.5, 0], [0.5, 1]])]
    else:
        strokes = [np.array([[0, 0.35], [1, 0.35]]), np.array([[0, 0.65], [1, 0.65]])]
    return _brush(_place(strokes, rng)), which


def _scribble(index: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    if index % 2 == 0:  # zigzag across
        n = int(rng.integers(5, 12))
        xs = np.linspace(0, 1, n)
        ys = np.where(np.arange(n) % 2 == 0, 0.0, 1.0) * rng.uniform(0.3, 1.0)
        strokes, name = [np.stack([xs, ys], 1)], "zigzag"
    else:  # tangle: a smooth random walk
        steps = rng.normal(size=(60, 2)).cumsum(axis=0)
        strokes, name = [(steps - steps.min(0)) / np.ptp(steps, axis=0).clip(1e-6)], "tangle"
    return _brush(_place(strokes, rng, (0.5, 0.9))), name


def _pair(index: int, rng: np.random.Generator, digits: np.ndarray,
          labels: np.ndarray) -> tuple[np.ndarray, str]:
    i, j = rng.integers(0, len(digits), size=2)
    two = np.concatenate([digits[i][:, 2:-2], digits[j][:, 2:-2]], axis=1).astype(np.float32)
    size = rng.uniform(0.2, 0.45) * CANVAS  # the pair is twice as wide as tall
    img = Image.fromarray(two, "F").resize((int(size * 2), int(size)), Image.Resampling.BICUBIC)
    arr = np.clip((np.asarray(img) - 128.0) / 64.0 + 0.5, 0.0, 1.0)
    ink = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    h, w = arr.shape
    top = int(rng.integers(0, CANVAS - h + 1))
    left = int(rng.integers(0, CANVAS - w + 1))
    ink[top : top + h, left : left + w] = arr
    return ink, f"pair {labels[i]}{labels[j]}"


def _speck(index: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    centre = rng.uniform(0.2, 0.8, size=2)
    which = ("dot", "tick", "flick")[index % 3]
    if which == "dot":
        pts = [np.array([centre, centre + 0.005])]
    elif which == "tick":
        pts = [np.array([centre, centre + rng.uniform(-0.04, 0.04, size=2)])]
    else:
        pts = [np.array([centre, centre + [0.06, 0.02], centre + [0.07, 0.06]])]
    return _brush([p * CANVAS for p in pts]), which


def non_digits(per_kind: int, digits: np.ndarray, labels: np.ndarray,
               seed: int = DEFAULT_SEED, kinds: tuple[str, ...] = KINDS) -> Iterator[Sample]:
    """`per_kind` drawings of each kind (the same every run for a seed). `digits` and `labels`
    (validation digits) make the pairs."""
    fonts = ensure_fonts() if "letter" in kinds else []
    for kind in kinds:
        for index in range(per_kind):
            rng = _rng(seed, kind, index)
            if kind == "letter":
                ink, name = _letter(index, rng, fonts)
            elif kind == "shape":
                ink, name = _shape(index, rng)
            elif kind == "stroke":
                ink, name = _stroke(index, rng)
            elif kind == "scribble":
                ink, name = _scribble(index, rng)
            elif kind == "pair":
                ink, name = _pair(index, rng, digits, labels)
            else:
                ink, name = _speck(index, rng)
            data, mime = _png(ink)
            yield Sample(kind=kind, name=name, data=data, mime=mime)


def drawn_digits(per_condition: int, digits: np.ndarray, labels: np.ndarray,
                 seed: int = DEFAULT_SEED,
                 conditions: tuple[Condition, ...] = CONDITIONS) -> Iterator[Sample]:
    """The first `per_condition` of `digits` (validation digits) drawn under each condition."""
    for condition in conditions:
        for index in range(min(per_condition, len(digits))):
            rng = np.random.default_rng([seed, zlib.crc32(condition.name.encode()), index])
            drawing = draw(digits[index], condition, rng)
            yield Sample(kind="digit", name=f"{condition.name} {labels[index]}",
                         data=drawing.data, mime=drawing.mime, label=int(labels[index]))


def main(argv: list[str] | None = None) -> int:
    from model.data import load_mnist

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the PNGs")
    parser.add_argument("--per-kind", type=int, default=16)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    data = load_mnist(args.data_dir, download=False)
    args.out.mkdir(parents=True, exist_ok=True)
    samples = [*non_digits(args.per_kind, data.valid_images, data.valid_labels),
               *drawn_digits(args.per_kind, data.valid_images, data.valid_labels)]
    for n, sample in enumerate(samples):
        ext = "jpg" if sample.mime == "image/jpeg" else "png"
        safe = "".join(c if c.isalnum() else "_" for c in sample.name)
        Image.open(io.BytesIO(sample.data)).save(args.out / f"{sample.kind}-{n:04d}-{safe}.{ext}")
    print(f"wrote {len(samples)} drawings to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
