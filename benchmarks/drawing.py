"""Digits drawn the way people draw on the page: a 28x28 MNIST digit re-drawn on a 280x280
canvas, rotated, scaled and placed at random (a fixed seed per digit and condition), and saved
as the page or a user would save it.

Two ways of drawing: "mnist" upscales the digit itself (bicubic) and cuts it at mid-grey with a
one-pixel anti-aliased edge, so the strokes keep MNIST's own shape and width; "brush" and
"pen" thin the digit to its centre lines (Zhang-Suen at 4x) and re-draw them with a round,
anti-aliased brush, like a finger or mouse on the page: the page's fixed brush (BRUSH in
static/js/draw.js, read from there), or a pen of a fixed multiple of MNIST's stroke.
"""

from __future__ import annotations

import base64
import io
import math
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

CANVAS = 280  # the page's export size
DRAW_JS = Path(__file__).resolve().parents[1] / "static" / "js" / "draw.js"


def page_brush_fraction(default: float = 1 / 13) -> float:
    """The page's brush width as a fraction of the canvas side: `const BRUSH = 1 / 13;` in
    static/js/draw.js, read from there so this benchmark follows the page."""
    try:
        match = re.search(r"const\s+BRUSH\s*=\s*([\d.]+)\s*(?:/\s*([\d.]+))?\s*;",
                          DRAW_JS.read_text())
    except OSError:
        return default
    if match is None:
        return default
    value = float(match.group(1)) / float(match.group(2) or 1.0)
    return value if 0.0 < value < 0.5 else default


PAGE_BRUSH = CANVAS * page_brush_fraction()  # 17.5 px with the page's 1/16
MNIST_STROKE = 2.5  # a typical MNIST stroke width, in pixels of the 28x28 field
HEIGHT_RANGE = (0.25, 0.9)  # ink height as a fraction of the canvas
MAX_ROTATION = 10.0  # degrees, either way
MARGIN = 2.0  # canvas pixels kept free around the ink
JPEG_QUALITY = 85
DEFAULT_SEED = 20240601


@dataclass(frozen=True)
class Condition:
    """How one digit is drawn: its stroke, colours and file format."""

    name: str
    stroke: str  # "mnist": the digit's own shape; "brush": the page's brush; "pen": re-drawn
    style: str  # "transparent" (RGBA, black ink in alpha), "dark-on-light", "light-on-dark"
    fmt: str  # "png" or "jpeg"
    description: str
    pen: float = 1.0  # with stroke="pen": the pen's width as a multiple of MNIST's stroke


CONDITIONS: tuple[Condition, ...] = (
    Condition("page-brush", "brush", "transparent", "png",
              "the page's round brush (static/js/draw.js), transparent PNG, as the page sends"),
    Condition("transparent", "mnist", "transparent", "png",
              "MNIST's own stroke shape, transparent PNG, black ink in alpha"),
    Condition("dark-on-light", "mnist", "dark-on-light", "png",
              "MNIST's stroke shape, black ink on white RGB PNG"),
    Condition("light-on-dark", "mnist", "light-on-dark", "png",
              "MNIST's stroke shape, white ink on black RGB PNG"),
    Condition("thin", "pen", "transparent", "png",
              "re-drawn with a pen half MNIST's stroke width, transparent PNG", pen=0.5),
    Condition("thick", "pen", "transparent", "png",
              "re-drawn with a marker twice MNIST's stroke width, transparent PNG", pen=2.0),
    Condition("jpeg", "mnist", "dark-on-light", "jpeg",
              "MNIST's stroke shape, black on white, JPEG quality 85"),
)
CONDITION_NAMES = tuple(c.name for c in CONDITIONS)


@dataclass(frozen=True)
class Drawing:
    """One rendered digit: the file bytes, its MIME type and how it was drawn."""

    data: bytes
    mime: str
    height: float  # ink height in canvas pixels
    angle: float  # degrees
    brush: float  # stroke width in canvas pixels (0 for MNIST's own shape)

    def data_url(self) -> str:
        return f"data:{self.mime};base64," + base64.b64encode(self.data).decode("ascii")


# --------------------------------------------------------------------------- geometry


def ink_box(digit: np.ndarray, level: float = 128.0) -> tuple[float, float, float, float]:
    """(top, bottom, left, right) of the pixels >= level, in continuous coordinates."""
    mask = digit >= level
    if not mask.any():
        mask = digit > 0
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return float(rows[0]), float(rows[-1] + 1), float(cols[0]), float(cols[-1] + 1)


def _neighbours(padded: np.ndarray) -> list[np.ndarray]:
    """P2..P9 of Zhang-Suen (clockwise from north) for every interior pixel of `padded`."""
    c = padded
    return [
        c[:-2, 1:-1], c[:-2, 2:], c[1:-1, 2:], c[2:, 2:],
        c[2:, 1:-1], c[2:, :-2], c[1:-1, :-2], c[:-2, :-2],
    ]


def thin(mask: np.ndarray, max_iter: int = 200) -> np.ndarray:
    """Zhang-Suen thinning of a boolean image to one-pixel-wide centre lines."""
    img = mask.astype(np.uint8)
    for _ in range(max_iter):
        changed = False
        for step in (0, 1):
            p = _neighbours(np.pad(img, 1))
            b = sum(x.astype(np.int32) for x in p)
            seq = [*p, p[0]]
            a = sum(((seq[i] == 0) & (seq[i + 1] == 1)).astype(np.int32) for i in range(8))
            p2, p4, p6, p8 = p[0], p[2], p[4], p[6]
            if step == 0:
                c1, c2 = p2 * p4 * p6, p4 * p6 * p8
            else:
                c1, c2 = p2 * p4 * p8, p2 * p6 * p8
            remove = (img == 1) & (b >= 2) & (b <= 6) & (a == 1) & (c1 == 0) & (c2 == 0)
            if remove.any():
                img[remove] = 0
                changed = True
        if not changed:
            break
    return img.astype(bool)


def centre_lines(digit: np.ndarray, factor: int = 4) -> np.ndarray:
    """The digit's centre lines as segments (M, 2, 2) of (x, y) points in 28x28 coordinates.

    The digit is upsampled `factor` times (bicubic), thresholded at mid-grey and thinned; every
    pair of 8-connected skeleton pixels becomes a segment (lone pixels a zero-length one).
    """
    size = digit.shape[0] * factor
    big = Image.fromarray(digit.astype(np.float32), "F").resize((size, size),
                                                                 Image.Resampling.BICUBIC)
    skel = thin(np.asarray(big) >= 128.0)
    ys, xs = np.nonzero(skel)
    points = np.stack([(xs + 0.5) / factor, (ys + 0.5) / factor], axis=1)
    segments: list[np.ndarray] = []
    padded = np.pad(skel, 1)
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        other = padded[1 + dy : 1 + dy + size, 1 + dx : 1 + dx + size]
        ys2, xs2 = np.nonzero(skel & other)
        a = np.stack([(xs2 + 0.5) / factor, (ys2 + 0.5) / factor], axis=1)
        b = np.stack([(xs2 + dx + 0.5) / factor, (ys2 + dy + 0.5) / factor], axis=1)
        segments.append(np.stack([a, b], axis=1))
    segments.append(np.stack([points, points], axis=1))
    return np.concatenate(segments, axis=0)


def stroke_width(condition: Condition, scale: float) -> float:
    """Brush width in canvas pixels for `condition` at `scale` canvas px per MNIST px."""
    if condition.stroke == "brush":
        return PAGE_BRUSH
    if condition.stroke == "pen":
        return condition.pen * MNIST_STROKE * scale
    return 0.0


def render_ink(digit: np.ndarray, condition: Condition,
               rng: np.random.Generator) -> tuple[np.ndarray, float, float, float]:
    """Ink coverage (280, 280) float32 in 0..1, and the ink height, rotation and brush width.

    The digit is rotated about its centre and scaled so that its rotated bounding box (of the
    pixels >= 128) is a random fraction in `HEIGHT_RANGE` of the canvas tall (less when it is
    too wide to fit), then placed at a random position. With the "mnist" stroke its own
    anti-aliased shape is upscaled (bicubic) and cut at mid-grey with a one-pixel soft edge;
    otherwise its centre lines are re-drawn with a round brush.
    """
    g = np.asarray(digit, dtype=np.float32)
    top, bottom, left, right = ink_box(g)
    centre28 = np.array([(left + right) / 2, (top + bottom) / 2])
    want = rng.uniform(*HEIGHT_RANGE) * CANVAS
    angle = rng.uniform(-MAX_ROTATION, MAX_ROTATION)
    theta = math.radians(angle)
    cos, sin = math.cos(theta), math.sin(theta)
    rot = np.array([[cos, -sin], [sin, cos]])
    corners = np.array([[left, top], [right, top], [left, bottom], [right, bottom]]) - centre28
    rotated = corners @ rot.T
    extent = rotated.max(axis=0) - rotated.min(axis=0)  # (w, h) at scale 1
    scale = want / extent[1]  # the rotated box is `want` tall
    brush = stroke_width(condition, scale)
    room = CANVAS - 2 * MARGIN
    # Shrink until the rotated box plus the brush fits the canvas.
    for _ in range(20):
        size = extent * scale + brush
        if size.max() <= room:
            break
        scale *= room / size.max()
        brush = stroke_width(condition, scale)
    size = extent * scale + brush
    lo = MARGIN + size / 2
    hi = CANVAS - MARGIN - size / 2
    centre = np.array([rng.uniform(lo[0], max(lo[0], hi[0])),
                       rng.uniform(lo[1], max(lo[1], hi[1]))])
    # Canvas point = centre + scale * rot @ (digit point - centre28) (x, y continuous coords).
    fwd = scale * rot
    ink: np.ndarray
    if condition.stroke == "mnist":
        inv = np.linalg.inv(fwd)
        offset = centre28 - inv @ centre
        coeffs = (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1])
        img = Image.fromarray(g, "F").transform((CANVAS, CANVAS), Image.Transform.AFFINE, coeffs,
                                                resample=Image.Resampling.BICUBIC)
        value = np.asarray(img, dtype=np.float32)
        # MNIST's edges ramp 0..255 over about 1.5 of its pixels: a 1-canvas-px soft edge.
        ink = np.clip((value - 128.0) * (1.5 * scale / 255.0) + 0.5, 0.0, 1.0)
    else:
        segs = (centre_lines(g) - centre28) @ fwd.T + centre
        ink = brush_ink(segs, brush)
    ys = np.flatnonzero((ink > 0.5).any(axis=1))
    height = float(ys[-1] - ys[0] + 1) if ys.size else 0.0
    return ink.astype(np.float32), height, angle, brush


def brush_ink(segments: np.ndarray, width: float) -> np.ndarray:
    """Anti-aliased round-brush strokes of `width` along `segments` (M, 2, 2) on the canvas."""
    radius = width / 2
    pad = int(math.ceil(radius)) + 2
    x0 = max(0, int(math.floor(segments[..., 0].min())) - pad)
    y0 = max(0, int(math.floor(segments[..., 1].min())) - pad)
    x1 = min(CANVAS, int(math.ceil(segments[..., 0].max())) + pad)
    y1 = min(CANVAS, int(math.ceil(segments[..., 1].max())) + pad)
    lines = Image.new("1", (x1 - x0, y1 - y0), 0)
    draw = ImageDraw.Draw(lines)
    # Pillow's coordinates name pixel centres; ours are continuous (centre = i + 0.5).
    for (ax, ay), (bx, by) in segments:
        draw.line((ax - x0 - 0.5, ay - y0 - 0.5, bx - x0 - 0.5, by - y0 - 0.5), fill=1, width=1)
    dist = ndimage.distance_transform_edt(~np.asarray(lines, dtype=bool))
    ink = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    ink[y0:y1, x0:x1] = np.clip(radius + 0.5 - dist, 0.0, 1.0)
    return ink


def encode(ink: np.ndarray, style: str, fmt: str) -> tuple[bytes, str]:
    """Ink coverage -> image bytes in `style` and `fmt` ("png" or "jpeg"), and the MIME type."""
    level = np.rint(ink * 255.0).astype(np.uint8)
    if style == "transparent":
        rgba = np.zeros((*ink.shape, 4), dtype=np.uint8)
        rgba[..., 3] = level  # the page's export: opaque black strokes, transparent elsewhere
        image = Image.fromarray(rgba, "RGBA")
    elif style == "dark-on-light":
        image = Image.fromarray(np.repeat((255 - level)[..., None], 3, axis=2), "RGB")
    elif style == "light-on-dark":
        image = Image.fromarray(np.repeat(level[..., None], 3, axis=2), "RGB")
    else:
        raise ValueError(f"unknown style {style!r}")
    out = io.BytesIO()
    if fmt == "jpeg":
        if image.mode == "RGBA":
            raise ValueError("JPEG has no alpha channel")
        image.save(out, "JPEG", quality=JPEG_QUALITY)
        return out.getvalue(), "image/jpeg"
    image.save(out, "PNG")
    return out.getvalue(), "image/png"


def digit_rng(seed: int, condition: Condition, digit_index: int) -> np.random.Generator:
    """The generator for one (digit, condition): results depend on neither order nor --limit,
    nor on which other conditions exist (the condition enters by its name)."""
    return np.random.default_rng([seed, zlib.crc32(condition.name.encode()), digit_index])


def draw(digit: np.ndarray, condition: Condition, rng: np.random.Generator) -> Drawing:
    """Draw one 28x28 MNIST digit (uint8, light on dark) on a canvas under `condition`."""
    ink, height, angle, brush = render_ink(digit, condition, rng)
    data, mime = encode(ink, condition.style, condition.fmt)
    return Drawing(data=data, mime=mime, height=height, angle=angle, brush=brush)


def draw_indexed(digit: np.ndarray, index: int, condition: Condition,
                 seed: int = DEFAULT_SEED) -> Drawing:
    """Digit number `index` of its split drawn under `condition`, the same in every run."""
    return draw(digit, condition, digit_rng(seed, condition, index))


def draw_chunk(args: tuple[np.ndarray, np.ndarray, Condition, int]) -> list[tuple[str, float]]:
    digits, indices, condition, seed = args
    return [(d.data_url(), d.height) for d in (
        draw_indexed(digit, int(index), condition, seed)
        for digit, index in zip(digits, indices, strict=True))]
