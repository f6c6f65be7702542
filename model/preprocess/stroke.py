"""Stroke width: measuring it (2A/P, the medial axis) and changing it (grey erosion for bold
pens, blur-and-threshold re-drawing for thin ones), on the supersampled digit."""

from __future__ import annotations

import logging
import math
from typing import Final

import numpy as np
from PIL import Image
from scipy import ndimage

from model.preprocess.geometry import HI_BOX, SUPERSAMPLE

logger = logging.getLogger(__name__)

#: Median of ``stroke_width`` over MNIST training digits: 2.47 over the first 5,000 (5th
#: and 95th percentiles 1.79 and 3.70, per digit class 2.25 for 5s to 2.86 for 0s).
MNIST_STROKE_WIDTH: Final = 2.47


#: Drawings whose strokes are thinner than LOW x MNIST_STROKE_WIDTH are re-drawn at that
#: width. Bold strokes are not thinned geometrically: thinning eats the thin joins while filled
#: loops stay filled, and cost 4 to 12 points of accuracy on bold canvas drawings. Their ink is
#: lightened instead (see ``ink_width``), which is what a linear model sums.
STROKE_BAND: Final = (0.8, math.inf)


#: Digits bolder than this times MNIST_STROKE_WIDTH are lightened to it. On validation drawings
#: (see ``field.ERODE_ABOVE``) the marker loses 2.67, 2.07, 1.87, 1.67, 1.67 points with 1.0,
#: 1.15, 1.25, 1.4, 1.6, all conditions together reading within 0.1 point of each other.
STROKE_BAND_BOLD: Final = 1.25


#: Percentile of the medial axis's widths taken as the pen's width: low enough that the wide
#: middle of a filled loop or a junction does not count, high enough to skip stroke ends.
#: Over 2,000 marker digits it reads the pen's true width with a 2.5% interquartile spread
#: (2A/P: 13%). On validation drawings 15 to 30 read within 0.15 points; 40 loses 0.33 more.
RIDGE_PERCENTILE: Final = 25.0


#: stroke_width at 4x supersampling, over 4, per stroke_width of the resulting 28x28
#: (measured on re-drawn strokes: sharp 4x edges read a little thinner than averaged ones).
HI_PER_OUT: Final = 0.97


#: MNIST's stroke width as measured on the 4x supersampled digit.
MNIST_HI_WIDTH: Final = SUPERSAMPLE * MNIST_STROKE_WIDTH * HI_PER_OUT


#: Re-drawing stops when the width is within this fraction of the target, or after PASSES.
RESTROKE_TOLERANCE: Final = 0.05


RESTROKE_PASSES: Final = 4


def zero_border(arr: np.ndarray, margin: int, dtype: type = np.float32) -> np.ndarray:
    """A copy of the 2-D `arr` as `dtype` inside a border of zeros `margin` wide: what
    ``np.pad(arr, margin)`` gives, in 3 us instead of 30 (it is called several times a drawing).
    """
    arr = np.asarray(arr)
    rows, cols = arr.shape
    out = np.zeros((rows + 2 * margin, cols + 2 * margin), dtype=dtype)
    out[margin : margin + rows, margin : margin + cols] = arr
    return out


def stroke_width(img28: np.ndarray) -> float:
    """Estimated stroke width, in pixels, of a digit image (any 2-D ink map, ink high).

    Twice the ink's area over its perimeter: a stroke of width w and length L has area wL
    and perimeter about 2L (a little more for its ends, so short strokes read thinner).
    Area is the sum of the ink and perimeter its total variation, both in units of the
    peak, so anti-aliased edges count fractionally, with the gradient taken on 2x2 cells so
    that slanted edges count like straight ones. Scaling the intensities changes nothing;
    an empty image reads 0.0. Measured this way the
    median MNIST digit is MNIST_STROKE_WIDTH wide; strokes narrower than about 2 px read
    too wide (a 1 px line looks like a fainter 2 px one), so thin strokes are measured at
    4x inside ink_to_mnist.
    """
    x = zero_border(img28, 1)
    a, b, c, d = x[:-1, :-1], x[:-1, 1:], x[1:, :-1], x[1:, 1:]
    gx = b - a + d - c  # twice the cell's mean x-gradient
    gy = c - a + d - b
    perimeter = float(np.sqrt(gx * gx + gy * gy).sum())
    if perimeter <= 0.0:
        return 0.0
    return 4.0 * float(x.sum()) / perimeter


def ink_width(img28: np.ndarray) -> float:
    """The stroke width in full-intensity pixels: ``stroke_width`` times the peak over 255.

    It is the ink per unit of stroke length, what a linear model's score grows with. For
    MNIST digits (peak 255) it equals ``stroke_width``; a bold drawing lightened by
    ``ink_to_mnist`` reads as MNIST_STROKE_WIDTH.
    """
    arr = np.asarray(img28, dtype=np.float32)
    return stroke_width(arr) * float(arr.max(initial=0.0)) / 255.0


def _stroke_profile(x: float, width: float, sigma: float) -> tuple[float, float]:
    """Value and slope at offset x of a unit stroke of `width` blurred by a Gaussian `sigma`."""
    k = 1.0 / (math.sqrt(2.0) * sigma)
    value = 0.5 * (math.erf((x + width / 2) * k) - math.erf((x - width / 2) * k))
    g = 1.0 / (math.sqrt(2.0 * math.pi) * sigma)
    slope = g * (
        math.exp(-((x + width / 2) ** 2) / (2 * sigma**2))
        - math.exp(-((x - width / 2) ** 2) / (2 * sigma**2))
    )
    return value, slope


def _blur(arr: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (zero outside), truncated at ceil(3 sigma), by ``scipy.ndimage``."""
    return ndimage.gaussian_filter(arr, sigma, mode="constant", cval=0.0,
                                   radius=math.ceil(3.0 * sigma))


def erode(img: np.ndarray, radius: float) -> np.ndarray:
    """Grey-level erosion by a disk: each pixel becomes the minimum of `img` over the pixels
    within `radius` of it (dy^2 + dx^2 <= radius^2; zero outside the image).

    Decomposed into horizontal segments, one per row of the disk: the minima over the
    segments [-h, h] are built up for h = 1..R, then combined over the disk's rows, about 4R
    array operations instead of one per pixel of the disk. Hand-written because
    ``scipy.ndimage.grey_erosion`` with the same disk footprint visits every pixel of the disk:
    on the canvas path's 4x digits it takes 0.13 ms at radius 3 and 0.54 ms at radius 6
    against 0.04 and 0.06 ms here (tests check the two agree exactly).
    """
    return _erode_disks(img, (radius,))[0]


def erode_smoothly(img: np.ndarray, radius: float) -> np.ndarray:
    """``erode`` for any real radius: between whole radii, the blend of the two disks around it.

    A disk's pixels change only at whole-number steps of the radius, so a plain erosion jumps
    there; the blend makes the result move steadily with the measured stroke width.
    """
    low = math.floor(radius)
    frac = np.float32(radius - low)
    if frac == 0.0:
        return erode(img, low)
    inner, outer = _erode_disks(img, (low, low + 1))
    inner *= np.float32(1.0) - frac
    inner += frac * outer
    return inner


def _erode_disks(img: np.ndarray, radii: tuple[float, ...]) -> list[np.ndarray]:
    """``erode`` by each of `radii`, sharing the horizontal segments' minima between them."""
    size = math.floor(max(radii))
    if size < 1:
        return [np.array(img, dtype=np.float32) for _ in radii]
    rows_, cols = img.shape
    padded = zero_border(img, size)
    segments = [padded[:, size : size + cols]]
    for h in range(1, size + 1):
        left, right = padded[:, size - h : size - h + cols], padded[:, size + h : size + h + cols]
        segments.append(np.minimum(segments[-1], np.minimum(left, right)))
    outs = []
    for radius in radii:
        reach = math.floor(radius)
        out = segments[reach][size : size + rows_].copy()  # dy = 0: the widest segment
        for dy in range(1, reach + 1):
            h = math.floor(math.sqrt(max(radius * radius - dy * dy, 0.0)))
            np.minimum(out, segments[h][size - dy : size - dy + rows_], out=out)
            np.minimum(out, segments[h][size + dy : size + dy + rows_], out=out)
        outs.append(out)
    return outs


def distance_to_background(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance from every True pixel of `mask` to the nearest False one, centre to
    centre (0 on False pixels; outside the array counts as False), float32."""
    padded = zero_border(mask, 1, dtype=bool)  # the outside is background
    return ndimage.distance_transform_edt(padded)[1:-1, 1:-1].astype(np.float32)


def ridge_width(hi: np.ndarray) -> float:
    """Stroke width of a bold digit, in its pixels, read from its medial axis.

    The ink above half its peak is the shape; on its ridge (the pixels whose distance to the
    background is a local maximum) that distance is half the local stroke width. The
    RIDGE_PERCENTILE-th percentile of the ridge's widths is the pen's: junctions and filled
    loops read wider, stroke ends thinner. Distances run between pixel centres, so a stroke n
    pixels wide reads n + 1: one pixel is taken off. 0.0 for empty ink.
    """
    mask = hi > 0.5 * float(hi.max(initial=0.0))
    if not mask.any():
        return 0.0
    dist = distance_to_background(mask)
    ridge = np.sort(dist[mask & (dist >= ndimage.maximum_filter(dist, size=3))])
    return max(0.0, 2.0 * _percentile(ridge, RIDGE_PERCENTILE) - 1.0)


def _percentile(ascending: np.ndarray, q: float) -> float:
    """np.percentile(ascending, q) of sorted values, interpolated linearly as it does.

    Hand-written because np.percentile's checks cost 0.02 ms on an idle core and 0.07 ms on a
    busy one, 5% of a bold drawing's preprocessing, against 0.002 ms here (a test compares).
    """
    pos = (ascending.size - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, ascending.size - 1)
    return float(ascending[low]) + (pos - low) * float(ascending[high] - ascending[low])


def _normalise_width(hi: np.ndarray, measured: float) -> np.ndarray:
    """Bring the strokes of the supersampled digit `hi` into MNIST's band of widths.

    A drawing whose stroke width (supersampled px, `measured`) is inside STROKE_BAND is
    returned as it is. Otherwise its strokes are re-drawn at the nearer end of the band by
    blurring and thresholding: blurring with a Gaussian and thresholding at level t moves
    every edge by the same distance, and t starts as the level that a straight stroke of
    the measured width, so blurred, has at target/2 from its axis, which thickens a thin
    stroke or thins a bold one by a fraction of a final pixel. 2A/P under-reads blobby or
    short strokes, so the result is measured and the level corrected (a Newton step on the
    stroke model's slope, then secant steps) until the width is within RESTROKE_TOLERANCE,
    for at most RESTROKE_PASSES thresholds of the same blurred image. The threshold is
    soft over about one supersampled pixel, so after the 4x area average the edges are
    anti-aliased like MNIST's around a saturated core.
    """
    target = min(max(measured, STROKE_BAND[0] * MNIST_HI_WIDTH), STROKE_BAND[1] * MNIST_HI_WIDTH)
    if measured <= 0.0 or abs(target - measured) < 1e-6:
        return hi
    sigma = max(1.0, 0.5 * abs(target - measured))
    margin = math.ceil(3.0 * sigma + target) + 2  # room for the thickened strokes
    padded = zero_border(hi, margin)
    padded *= np.float32(1.0 / 255.0)
    blurred = _blur(padded, sigma)
    top = float(blurred.max())
    level, slope = _stroke_profile(target / 2.0, measured, sigma)
    soft = max(abs(slope), 1e-3)  # change of the blurred value over one pixel at the edge
    best: tuple[float, np.ndarray] | None = None
    tried: list[tuple[float, float]] = []
    for attempt in range(RESTROKE_PASSES):
        out = (blurred - level) * (1.0 / soft) + 0.5
        np.clip(out, 0.0, 1.0, out=out)
        got = stroke_width(out)
        miss = got - target
        logger.debug(
            "stroke width %.2f -> %.2f: pass %d at level %.4f gives %.2f",
            measured,
            target,
            attempt,
            level,
            got,
        )
        if best is None or abs(miss) < best[0]:
            best = (abs(miss), out)
        if abs(miss) <= RESTROKE_TOLERANCE * target:
            break
        tried.append((level, got))
        if len(tried) >= 2 and abs(tried[-1][1] - tried[-2][1]) > 1e-6:
            (l0, g0), (l1, g1) = tried[-2], tried[-1]
            level = l1 + (target - g1) * (l1 - l0) / (g1 - g0)
        else:  # each edge has to move by half the miss
            level += soft * miss / 2.0
        level = min(max(level, 0.02 * top), 0.98 * top)
    assert best is not None
    return best[1] * 255.0


def _measure_width(crop: np.ndarray, hi: np.ndarray, scale: float) -> float:
    """Stroke width of the drawing in supersampled pixels.

    Read on the supersampled image when its strokes are wide enough to be resolved there;
    a thin brush is read where it is still a few pixels wide, on the crop area-averaged to
    at most twice the supersampled size, and scaled.
    """
    width = stroke_width(hi)
    if width >= 2.5 or scale >= 1.0:
        return width
    long_side = max(crop.shape)
    if long_side <= 2 * HI_BOX:
        return stroke_width(crop) * scale
    shrink = 2 * HI_BOX / long_side
    size = (max(1, round(crop.shape[1] * shrink)), max(1, round(crop.shape[0] * shrink)))
    src = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BOX))
    return stroke_width(src) * scale / shrink
