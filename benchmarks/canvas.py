"""Canvas fidelity: MNIST test digits drawn the way people draw on the page, read by a live server.

Every test digit is re-drawn on a 280x280 canvas under each condition below (a fixed seed per
digit and condition), rotated by up to +-10 degrees, scaled so the rotated digit is from a
quarter to nine tenths of the canvas tall, placed at a random position, and sent to a real
`mnist-canvas serve` process through POST /api/predict/batch as JSON data URLs, the form the
page sends to /api/predict. The first --single-check drawings of each condition also go one by
one through POST /api/predict and must get the same digit, preview and probabilities. The same
digits as 28x28 pixels (JSON, no preprocessing) give the reference accuracy in the same run.

Two ways of drawing: "mnist" upscales the digit itself (bicubic) and cuts it at mid-grey with a
one-pixel anti-aliased edge, so the strokes keep MNIST's own shape and width; "brush" and
"pen" thin the digit to its centre lines (Zhang-Suen at 4x) and re-draw them with a round,
anti-aliased brush, like a finger or mouse on the page: the page's fixed brush (BRUSH in
static/js/draw.js: 1/16 of the canvas, 17.5 px, whatever the digit's size), or a pen of a
fixed multiple of MNIST's stroke.

Conditions (CONDITIONS): page-brush (exactly what the page sends: transparent PNG, opaque black
ink), transparent / dark-on-light / light-on-dark PNGs of the digit's own strokes, thin (0.5x
MNIST's stroke) and thick (2x) pens, and a JPEG (quality 85) dark-on-light image. Accuracy is
also reported by size, thirds of the height range (small, medium, large).

Run from the repository root:

    python -m benchmarks.canvas              # all 10,000 test digits x 7 conditions (minutes)
    python -m benchmarks.canvas --quick      # 500 digits
    python -m benchmarks.canvas --limit 2000 --json out.json --save-examples /tmp/canvas

Environment: MNIST_CANVAS_DATA_DIR (default ../shared/data/mnist). The goal: every condition
within 2 points of the 28x28 accuracy of the same digits.
"""

from __future__ import annotations

import argparse
import base64
import io
import math
import multiprocessing as mp
import os
import re
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

if __package__ in (None, ""):  # run as a file: import from the repository root, and keep
    # benchmarks/http.py from shadowing the standard library's `http`
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

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
    """Test digit number `index` drawn under `condition`, the same in every run."""
    return draw(digit, condition, digit_rng(seed, condition, index))


def _draw_chunk(args: tuple[np.ndarray, np.ndarray, Condition, int]) -> list[tuple[str, float]]:
    digits, indices, condition, seed = args
    return [(d.data_url(), d.height) for d in (
        draw_indexed(digit, int(index), condition, seed)
        for digit, index in zip(digits, indices, strict=True))]


# --------------------------------------------------------------------------- scoring


SIZE_BANDS = (("small", 0.25, 0.4833), ("medium", 0.4833, 0.7167), ("large", 0.7167, 0.91))


@dataclass
class ConditionResult:
    name: str
    description: str
    n: int
    accuracy: float
    reference: float  # 28x28 accuracy of the same digits
    delta_points: float
    by_size: dict[str, float]  # accuracy by ink height, thirds of HEIGHT_RANGE
    reference_by_size: dict[str, float]
    errors: int  # drawings the API refused (counted as wrong)
    ok: bool


@dataclass
class CanvasReport:
    """Everything one fidelity run measured."""

    digits: int
    reference: float
    overall: float
    conditions: list[ConditionResult]
    single_checked: int = 0
    single_digit_mismatches: int = 0
    single_preview_mismatches: int = 0
    single_max_probability_diff: float = 0.0
    tolerance: float = 2.0

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.conditions) and self.single_consistent

    @property
    def single_consistent(self) -> bool:
        # Probabilities are rounded to 6 decimals; a batch's matrix product may differ from a
        # single image's in the last bit, so allow two units of the 6th decimal, counted in
        # those units (0.123457 - 0.123455 is 2.0000000000575e-06 in floating point).
        return (self.single_digit_mismatches == 0 and self.single_preview_mismatches == 0
                and round(self.single_max_probability_diff * 1e6) <= 2)

    def table(self) -> str:
        lines = [
            f"{'condition':<14} {'n':>6} {'accuracy':>9} {'28x28':>7} {'delta':>7}  "
            f"{'small':>6} {'medium':>6} {'large':>6}  goal(>= -{self.tolerance:g} pt)",
        ]
        for r in self.conditions:
            sizes = " ".join(f"{100 * r.by_size.get(b, float('nan')):>6.2f}"
                             for b, _l, _h in SIZE_BANDS)
            lines.append(
                f"{r.name:<14} {r.n:>6} {100 * r.accuracy:>8.2f}% {100 * r.reference:>6.2f}% "
                f"{r.delta_points:>+7.2f}  {sizes}  {'ok' if r.ok else 'FAIL'}"
            )
        lines.append(f"{'28x28 (same digits, through the API)':<36} {100 * self.reference:>6.2f}%")
        lines.append(f"{'all conditions':<36} {100 * self.overall:>6.2f}%  "
                     f"({len(self.conditions)} conditions x {self.digits} digits)")
        lines.append(
            f"single /api/predict vs batch on {self.single_checked} drawings: "
            f"{self.single_digit_mismatches} digit and {self.single_preview_mismatches} preview "
            f"differences, probabilities within {self.single_max_probability_diff:.1e} "
            f"{'ok' if self.single_consistent else 'FAIL'}"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        out["table"] = self.table()
        return out


def size_band(height: float) -> str:
    frac = height / CANVAS
    for name, _lo, hi in SIZE_BANDS:
        if frac < hi:
            return name
    return SIZE_BANDS[-1][0]


def score(condition: Condition, predicted: np.ndarray, heights: np.ndarray, labels: np.ndarray,
          reference_correct: np.ndarray, tolerance: float) -> ConditionResult:
    correct = predicted == labels
    accuracy = float(correct.mean())
    reference = float(reference_correct.mean())
    bands = np.array([size_band(h) for h in heights])
    by_size = {b: round(float(correct[bands == b].mean()), 4)
               for b, _lo, _hi in SIZE_BANDS if (bands == b).any()}
    ref_size = {b: round(float(reference_correct[bands == b].mean()), 4)
                for b, _lo, _hi in SIZE_BANDS if (bands == b).any()}
    delta = 100.0 * (accuracy - reference)
    return ConditionResult(name=condition.name, description=condition.description,
                           n=int(len(labels)), accuracy=round(accuracy, 4),
                           reference=round(reference, 4), delta_points=round(delta, 2),
                           by_size=by_size, reference_by_size=ref_size,
                           errors=int((predicted < 0).sum()), ok=delta >= -tolerance)


# --------------------------------------------------------------------------- the live run


class Client(Protocol):
    """What evaluate() needs of a client: httpx.Client(base_url=...) or FastAPI's TestClient."""

    def post(self, url: str, *, json: Any = ...) -> Any: ...


def rendered(images: np.ndarray, indices: np.ndarray, condition: Condition, seed: int,
             chunk: int, pool: Executor | None) -> Iterator[list[tuple[str, float]]]:
    """Data URLs (and ink heights) of `images` under one condition, in chunks, in order."""
    tasks = [(images[i : i + chunk], indices[i : i + chunk], condition, seed)
             for i in range(0, len(images), chunk)]
    if pool is None:
        yield from map(_draw_chunk, tasks)
    else:
        yield from pool.map(_draw_chunk, tasks)


def _post_ok(client: Client, url: str, body: dict[str, Any]) -> Any:
    response = client.post(url, json=body)
    if response.status_code != 200:
        raise RuntimeError(f"POST {url} answered {response.status_code}: {response.text[:300]}")
    return response.json()


def evaluate(client: Client, images: np.ndarray, labels: np.ndarray,
             conditions: Sequence[Condition] = CONDITIONS, *, seed: int = DEFAULT_SEED,
             batch: int = 100, jobs: int = 1, single_check: int = 100,
             tolerance: float = 2.0, progress: bool = False) -> CanvasReport:
    """Accuracy of the API on `images` drawn under each condition, next to the 28x28 images.

    Drawings go to POST /api/predict/batch as {"images": [data URLs]} in chunks of `batch`;
    the first `single_check` of each condition also go one by one to POST /api/predict, the
    page's route, whose digit, preview and probabilities must match the batch answer's.
    A drawing the API refuses counts as wrong.
    """
    count = len(images)
    ref_pred = np.empty(count, dtype=np.int64)
    for i in range(0, count, batch):
        body = {"pixels": images[i : i + batch].reshape(-1, 784).tolist()}
        answers = _post_ok(client, "/api/predict/batch", body)["predictions"]
        ref_pred[i : i + batch] = [p["digit"] for p in answers]
    ref_correct = ref_pred == labels
    report = CanvasReport(digits=count, reference=round(float(ref_correct.mean()), 4),
                          overall=float("nan"), conditions=[], tolerance=tolerance)
    if progress:
        print(f"28x28 accuracy of {count} test digits through the API: "
              f"{100 * report.reference:.2f}%", flush=True)
    all_correct: list[np.ndarray] = []
    pool = (ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"))
            if jobs > 1 else None)
    try:
        for condition in conditions:
            _evaluate_condition(client, images, labels, condition, ref_correct, report,
                                all_correct, seed=seed, batch=batch, pool=pool,
                                single_check=single_check, progress=progress)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if all_correct:
        report.overall = round(float(np.concatenate(all_correct).mean()), 4)
    return report


def _evaluate_condition(client: Client, images: np.ndarray, labels: np.ndarray,
                        condition: Condition, ref_correct: np.ndarray, report: CanvasReport,
                        all_correct: list[np.ndarray], *, seed: int, batch: int,
                        pool: Executor | None, single_check: int, progress: bool) -> None:
    count = len(images)
    indices = np.arange(count)
    started = time.perf_counter()
    predicted = np.full(count, -1, dtype=np.int64)
    heights = np.empty(count, dtype=np.float64)
    pos = 0
    for chunk in rendered(images, indices, condition, seed, batch, pool):
        urls = [u for u, _h in chunk]
        answers = _post_ok(client, "/api/predict/batch", {"images": urls})["predictions"]
        for k, answer in enumerate(answers):
            if "error" not in answer:
                predicted[pos + k] = answer["digit"]
        heights[pos : pos + len(chunk)] = [h for _u, h in chunk]
        for k in range(min(len(urls), max(0, single_check - pos))):
            _compare_single(client, urls[k], answers[k], report)
        pos += len(chunk)
    result = score(condition, predicted, heights, labels, ref_correct, report.tolerance)
    report.conditions.append(result)
    all_correct.append(predicted == labels)
    if progress:
        print(f"  {condition.name:<14} {100 * result.accuracy:6.2f}%  "
              f"({result.delta_points:+.2f} pt, {time.perf_counter() - started:.1f} s)",
              flush=True)


def _compare_single(client: Client, url: str, batch_answer: dict[str, Any],
                    report: CanvasReport) -> None:
    report.single_checked += 1
    response = client.post("/api/predict", json={"image": url})
    if response.status_code != 200 or "error" in batch_answer:
        same_error = response.status_code != 200 and "error" in batch_answer
        report.single_digit_mismatches += int(not same_error)
        return
    one = response.json()
    report.single_digit_mismatches += int(one["digit"] != batch_answer["digit"])
    report.single_preview_mismatches += int(one["preview"] != batch_answer["preview"])
    diff = float(np.max(np.abs(np.asarray(one["probabilities"])
                               - np.asarray(batch_answer["probabilities"]))))
    report.single_max_probability_diff = max(report.single_max_probability_diff, diff)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from benchmarks.common import REPO, ServerProcess, bench_env, data_dir, machine_info
    from model.data import load_mnist

    data = load_mnist(data_dir(), download=False)
    count = min(args.limit, len(data.test_images))
    images, labels = data.test_images[:count], data.test_labels[:count]
    conditions = [c for c in CONDITIONS if not args.conditions or c.name in args.conditions]
    started = time.perf_counter()
    env = bench_env()
    with ServerProcess(model=args.model, workers=1, env=env) as server, \
            httpx.Client(base_url=server.url, timeout=300.0) as client:
        report = evaluate(client, images, labels, conditions, seed=args.seed, batch=args.batch,
                          jobs=args.jobs, single_check=args.single_check,
                          tolerance=args.tolerance, progress=True)
        if args.save_examples:
            for condition in conditions:
                save_examples(Path(args.save_examples), condition, images, labels, client,
                              args.seed)
    elapsed = time.perf_counter() - started
    table = report.table()
    print()
    print(table)
    print(f"elapsed {elapsed:.1f} s")
    model = Path(args.model).resolve()
    return {
        "benchmark": "canvas",
        "command": " ".join([sys.executable, "-m", "benchmarks.canvas", *sys.argv[1:]]),
        "machine": machine_info(),
        "model": str(model.relative_to(REPO) if model.is_relative_to(REPO) else model),
        "seed": args.seed,
        "seconds": round(elapsed, 1),
        **report.to_dict(),
    }


def save_examples(directory: Path, condition: Condition, images: np.ndarray, labels: np.ndarray,
                  client: Client, seed: int, count: int = 12) -> None:
    """Write drawings next to the original and the server's 28x28 preview, misreads first:
    DIR/<condition>-<index>-true<d>-pred<d>.png (canvas | original x4 | preview x4)."""
    directory.mkdir(parents=True, exist_ok=True)
    answers = []
    for index in range(min(len(images), 10 * count)):
        drawing = draw_indexed(images[index], index, condition, seed)
        body = client.post("/api/predict", json={"image": drawing.data_url()}).json()
        answers.append((index, drawing, body))
    answers.sort(key=lambda a: a[2].get("digit") == labels[a[0]])  # misreads first
    for index, drawing, body in answers[:count]:
        preview = np.asarray(body.get("preview", np.zeros((28, 28))), dtype=np.uint8)
        canvas = Image.open(io.BytesIO(drawing.data)).convert("RGBA")
        flat = Image.new("RGBA", canvas.size, (200, 200, 255, 255))
        flat.alpha_composite(canvas)
        tile = Image.new("L", (CANVAS + 2 * 116, CANVAS), 128)
        tile.paste(flat.convert("L"), (0, 0))
        tile.paste(Image.fromarray(images[index]).resize((112, 112), Image.Resampling.NEAREST),
                   (CANVAS + 4, 0))
        tile.paste(Image.fromarray(preview).resize((112, 112), Image.Resampling.NEAREST),
                   (CANVAS + 120, 0))
        name = f"{condition.name}-{index:05d}-true{labels[index]}-pred{body.get('digit')}.png"
        tile.save(directory / name)
    print(f"  examples of {condition.name} in {directory} (canvas | original | preview)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="500 digits instead of 10,000")
    parser.add_argument("--limit", type=int, default=None, help="number of test digits")
    parser.add_argument("--conditions", nargs="*", choices=CONDITION_NAMES, default=None,
                        help="only these conditions (default: all)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--batch", type=int, default=100, help="images per batch request")
    parser.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)),
                        help="rendering processes")
    parser.add_argument("--single-check", type=int, default=100,
                        help="per condition, this many images also go through /api/predict")
    parser.add_argument("--tolerance", type=float, default=2.0,
                        help="allowed accuracy drop in points")
    parser.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    parser.add_argument("--save-examples", default=None, metavar="DIR",
                        help="write example drawings with the server's previews here")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the results here")
    return parser


def main(argv: list[str] | None = None) -> int:
    from benchmarks.common import SHIPPED_MODEL, finish, limit_threads

    args = build_parser().parse_args(argv)
    limit_threads()
    if args.limit is None:
        args.limit = 500 if args.quick else 10_000
    if args.model is None:
        args.model = str(SHIPPED_MODEL)
    return finish(args, run(args))


if __name__ == "__main__":
    raise SystemExit(main())
