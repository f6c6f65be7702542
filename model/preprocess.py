"""Turn a drawing or an uploaded image into an MNIST-like 28x28 digit, the way MNIST was made.

MNIST's digits were scanned as black-and-white NIST images, scaled so the longer side of the
digit's bounding box is 20 pixels (aspect ratio kept, anti-aliased, hence the grey edges), and
placed in a 28x28 field so that the digit's centre of mass falls on the field's centre. A model
trained on MNIST expects exactly that, so a canvas drawing goes through the same steps:

1. ``decode_image``: bytes -> Pillow image (PNG, JPEG, GIF, BMP or WebP; first frame only),
   with the pixel count checked from the header before anything is decoded.
2. ``image_to_ink``: image -> float ink map in 0..255 with MNIST's polarity (ink high,
   background 0), from the alpha channel of a transparent drawing or else from luminance, the
   border colour deciding whether the image is dark-on-light or light-on-dark.
3. ``ink_to_mnist``: crop to the ink's bounding box, scale to 20 px on the longer side at 4x
   supersampling (80 px), normalise the stroke width to MNIST's (people draw with a fixed
   brush, so small drawings come out bold and large ones thin: marker-bold strokes are eroded
   and the digit scaled again, thin ones re-drawn wider), then area-average down to 20 px
   while placing the centre of mass at MNIST's mean (14.0, 14.0) with sub-pixel accuracy.

Everything is numpy and Pillow (no torch, no web code). For a 280x280 canvas PNG the whole
path takes about 1.0 ms on one core: Pillow's decoding about 0.55 ms, the ink map about 0.05
(read as bytes and cropped to the ink before any float conversion), ink map to 28x28 about 0.35.
"""

from __future__ import annotations

import io
import logging
import math
from typing import Final

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

#: Default limit on width * height, checked from the image header before decoding.
MAX_IMAGE_PIXELS: int = 4096 * 4096

#: Formats ``decode_image`` accepts; Pillow is told to try no other plugin.
ACCEPTED_FORMATS: Final[tuple[str, ...]] = ("PNG", "JPEG", "GIF", "BMP", "WEBP")

FIELD: Final = 28  # MNIST's field
BOX: Final = 20  # the longer side of the digit's bounding box in MNIST
SUPERSAMPLE: Final = 4  # work at 4x (an 80 px box) so stroke changes and shifts are fractional
HI_BOX: Final = BOX * SUPERSAMPLE

#: Mean centre of mass of MNIST's training digits, (row, column) in pixel-index coordinates
#: (pixel i's centre is i): 13.996 and 14.008 over the 50,000 training images. MNIST moved
#: each digit by whole pixels, so single digits lie within +-0.5 of it; here it is exact.
MNIST_CENTRE: Final = (14.0, 14.0)

#: Median of ``stroke_width`` over MNIST training digits: 2.47 over the first 5,000 (5th
#: and 95th percentiles 1.79 and 3.70, per digit class 2.25 for 5s to 2.86 for 0s).
MNIST_STROKE_WIDTH: Final = 2.47

#: Drawings whose strokes are thinner than LOW x MNIST_STROKE_WIDTH are re-drawn at that
#: width. Bold strokes are not thinned geometrically: thinning eats the thin joins while filled
#: loops stay filled, and cost 4 to 12 points of accuracy on bold canvas drawings. Their ink is
#: lightened instead (see ``ink_width``), which is what a linear model sums.
STROKE_BAND: Final = (0.8, math.inf)
#: Digits bolder than this times MNIST_STROKE_WIDTH are lightened to it (13% of MNIST's own
#: test digits are that bold; lightening from 1.0x or 1.15x read canvas drawings no better).
STROKE_BAND_BOLD: Final = 1.25
#: Strokes wider than ERODE_ABOVE x MNIST's (a marker, or a small digit drawn with the page's
#: brush) are first eroded to ERODE_TO x MNIST's with a grey-level disk and the digit is cropped
#: and scaled again, so its centre lines span MNIST's 20 px box. Unlike thinning by blurring and
#: thresholding, a minimum filter reopens loops that bold ink half closed. How far to erode is
#: read from the medial axis (``ridge_width``), not from 2A/P, which filled loops inflate: on all
#: 10,000 canvas digits drawn with a marker twice MNIST's stroke the loss against the 28x28
#: digits went from 5.37 (no erosion) to 2.75 points (2A/P, to 1.1x) to 1.86 (medial axis, to
#: 0.8x; the page's brush: 1.51, 1.22, 0.97). Targets of 0.7x and 0.9x read 0.1 to 0.2 worse.
ERODE_ABOVE: Final = 1.35
ERODE_TO: Final = 0.8
#: The medial axis is read only for digits whose 2A/P width is above BOLD_GATE x MNIST's, so
#: ordinary drawings skip it. 2A/P reads 95% of the benchmark's marker digits at 0.85 or more
#: of the pen's width, which is 1.75x to 2.05x MNIST's: 1.5x and more, well above the gate.
BOLD_GATE: Final = 1.2
#: Percentile of the medial axis's widths taken as the pen's width: low enough that the wide
#: middle of a filled loop or a junction does not count, high enough to skip stroke ends.
#: Over 2,000 marker digits it reads the pen's true width with a 2.5% interquartile spread
#: (2A/P: 13%).
RIDGE_PERCENTILE: Final = 25.0
#: A wider reading than MAX_ERODE_WIDTH x MNIST's is a filled shape (an 8 with both loops
#: closed has no stroke to measure), not a pen: erosion stops at that width instead of
#: shaving the shape to a sliver. The page's brush on a digit a quarter of the canvas tall
#: is 2.1x.
MAX_ERODE_WIDTH: Final = 2.5
#: stroke_width at 4x supersampling, over 4, per stroke_width of the resulting 28x28
#: (measured on re-drawn strokes: sharp 4x edges read a little thinner than averaged ones).
HI_PER_OUT: Final = 0.97
#: MNIST's stroke width as measured on the 4x supersampled digit.
MNIST_HI_WIDTH: Final = SUPERSAMPLE * MNIST_STROKE_WIDTH * HI_PER_OUT
#: Re-drawing stops when the width is within this fraction of the target, or after PASSES.
RESTROKE_TOLERANCE: Final = 0.05
RESTROKE_PASSES: Final = 4

#: An ink map whose contrast (peak over the background) is below this, of 255, is empty.
MIN_CONTRAST: Final = 10.0
#: Ink below this fraction of the peak is noise (JPEG ringing, paper grain) and is zeroed.
NOISE_FRACTION: Final = 0.05
#: Pixels above this fraction of the peak span the digit's bounding box (an anti-aliased
#: stroke's edge is at half its peak; a little less keeps faint stroke ends inside).
BBOX_FRACTION: Final = 0.4
#: Ink outside the bounding box is kept up to this fraction of the box's longer side.
CROP_REACH: Final = 0.25

ERROR_CODES: Final = ("empty_drawing", "undecodable_image", "image_too_large", "bad_pixels")
_DEFAULT_MESSAGES: Final = {
    "empty_drawing": "The drawing is empty: draw a digit (or send an image of one) first.",
    "undecodable_image": "The image could not be decoded (truncated or corrupt?): send a "
    "complete PNG, JPEG, GIF, BMP or WebP file.",
    "image_too_large": f"The image has too many pixels (limit {MAX_IMAGE_PIXELS:,}): send a "
    "smaller one; a 280x280 drawing is plenty.",
    "bad_pixels": "The pixels must be 28x28 (or 784) finite numbers in 0..255, 0 = background.",
}


class PreprocessError(ValueError):
    """An image or pixel array that cannot become a digit.

    `code` is one of ERROR_CODES, for machines; the message is a sentence telling the client
    what to fix, for people (a default one per code when none is given).
    """

    code: str

    def __init__(self, code: str, message: str | None = None) -> None:
        text = message if message is not None else _DEFAULT_MESSAGES.get(code, code)
        super().__init__(text)
        self.code = code
        self.message = text

    def __reduce__(self) -> tuple[type[PreprocessError], tuple[str, str]]:
        return (type(self), (self.code, self.message))


# --------------------------------------------------------------------------- decoding


def decode_image(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode PNG, JPEG, GIF, BMP or WebP bytes into a loaded Pillow image, first frame only.

    Width x height is read from the header and refused above `max_pixels` before any pixel
    is decoded; Pillow's own decompression-bomb guard (an error above twice its
    Image.MAX_IMAGE_PIXELS, a warning above it, an error too where warnings are errors) is
    reported the same way. Empty, truncated and undecodable data, and any other format, are
    `undecodable_image`. An EXIF orientation tag (phone photos) is applied.
    """
    if not data:
        raise PreprocessError(
            "undecodable_image",
            "The image is empty (0 bytes): send a PNG, JPEG, GIF, BMP or WebP file.",
        )
    try:
        img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_large(None, max_pixels) from exc
    except UnidentifiedImageError as exc:
        raise PreprocessError(
            "undecodable_image",
            "The file is not an image this service reads: send a PNG, JPEG, GIF, BMP or WebP.",
        ) from exc
    except Exception as exc:  # a malformed header makes Pillow's plugins raise almost anything
        logger.debug("image header rejected: %r", exc)
        raise PreprocessError("undecodable_image") from exc
    width, height = img.size
    if width <= 0 or height <= 0:
        raise PreprocessError("undecodable_image")
    if width * height > max_pixels:
        raise _too_large((width, height), max_pixels)
    try:
        img.load()  # the first frame; later frames of a GIF, APNG or WebP are never read
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_large((width, height), max_pixels) from exc
    except Exception as exc:  # truncated or corrupt data: OSError, SyntaxError, EOFError, ...
        logger.debug("image data rejected: %r", exc)
        raise PreprocessError("undecodable_image") from exc
    return _upright(img)


def _too_large(size: tuple[int, int] | None, max_pixels: int) -> PreprocessError:
    what = f"{size[0]}x{size[1]} pixels" if size else "too large to decode safely"
    return PreprocessError(
        "image_too_large",
        f"The image is {what}; the limit is {max_pixels:,} pixels in all: send a smaller "
        "image (a 280x280 drawing is plenty).",
    )


def _upright(img: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation tag says, if it has one other than 1."""
    if img.format not in ("JPEG", "MPO", "WEBP", "PNG"):
        return img
    try:
        if img.getexif().get(0x0112, 1) in (None, 1):
            return img
        return ImageOps.exif_transpose(img)
    except Exception as exc:  # a broken EXIF block is not worth refusing the image over
        logger.debug("EXIF orientation ignored: %r", exc)
        return img


# --------------------------------------------------------------------------- image -> ink


def _range_to_255(arr: np.ndarray) -> np.ndarray:
    """Samples of a 16-bit, 32-bit or float image -> float32 0..255.

    0..1 floats are scaled by 255, values within 0..255 kept, 16-bit values (up to 65535)
    divided by 257; anything else is stretched from its own minimum and maximum.
    """
    values = arr.astype(np.float32)
    lo, hi = float(values.min()), float(values.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise PreprocessError(
            "bad_pixels", "The image holds NaN or infinite samples: send ordinary pixels."
        )
    if lo >= 0.0 and hi <= 1.0 and arr.dtype.kind == "f":
        return values * 255.0
    if lo >= 0.0 and hi <= 255.0:
        return values
    if lo >= 0.0 and hi <= 65535.0:
        return values * (1.0 / 257.0)
    span = hi - lo
    return (values - lo) * (255.0 / span) if span > 0.0 else np.zeros_like(values)


def _channels(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """(luminance, alpha or None) of any Pillow mode as float32 0..255 arrays."""
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _range_to_255(np.asarray(img)), None
    if mode == "1":
        img, mode = img.convert("L"), "L"
    if mode == "L":
        return np.asarray(img, dtype=np.float32), None
    if mode == "LA":
        arr = np.asarray(img, dtype=np.float32)
        return arr[..., 0], arr[..., 1]
    if mode != "RGB" and mode != "RGBA":  # P, PA, CMYK, YCbCr, RGBX, RGBa, La, ...
        has_alpha = "A" in mode or "a" in mode or img.has_transparency_data
        try:
            img = img.convert("RGBA" if has_alpha else "RGB")
        except (ValueError, OSError) as exc:
            raise PreprocessError(
                "undecodable_image",
                f"Images in Pillow mode {mode!r} cannot be read: send RGB or greyscale.",
            ) from exc
    lum = np.asarray(img.convert("L"), dtype=np.float32)  # ITU-R 601-2 luma
    if img.mode == "RGBA":
        return lum, np.asarray(img.getchannel("A"), dtype=np.float32)
    return lum, None


def _border(arr: np.ndarray) -> np.ndarray:
    """The 1-px border of a 2-D array, flattened."""
    if arr.shape[0] <= 2 or arr.shape[1] <= 2:
        return arr.ravel()
    return np.concatenate((arr[0], arr[-1], arr[1:-1, 0], arr[1:-1, -1]))


def image_to_ink(img: Image.Image, *, crop: bool = False) -> np.ndarray:
    """Ink map of an image: float32 HxW in 0..255, ink high, background ~0, ink peak 255.

    A transparent drawing (an alpha channel whose 1-px border is mostly transparent) is read
    from alpha alone: ink is wherever the image is opaque, whatever colour its strokes are.
    Anything else is read from luminance (transparent pixels composited over white); the
    median of the 1-px border is the background, and a light background means dark ink, so
    the image is inverted. The background level is subtracted and the rest stretched so the
    ink peaks at 255; a contrast under MIN_CONTRAST (of 255) is an empty drawing rather than
    noise to amplify.

    crop=True returns only the bounding box of the nonzero ink, all that ``ink_to_mnist``
    reads (it gives the same digit either way), and converts only that box to floats: on a
    280x280 canvas about 0.15 ms less.
    """
    if img.width <= 0 or img.height <= 0:
        raise PreprocessError("undecodable_image", "The image has no pixels: send a drawing.")
    if img.mode in ("RGBA", "LA"):
        # What a canvas exports: read alpha first (as bytes), and skip luminance when alpha
        # decides.
        first = np.asarray(img.getchannel("A"))
        background = _background(first)
        if background < 128.0:
            return _stretch(first, background, dark_on_light=False, crop=crop)
    lum, alpha = _channels(img)
    if alpha is not None:
        background = _background(alpha)
        if background < 128.0:
            return _stretch(alpha, background, dark_on_light=False, crop=crop)
        lum = 255.0 - (255.0 - lum) * (alpha * (1.0 / 255.0))
    background = _background(lum)
    return _stretch(lum, background, dark_on_light=background >= 128.0, crop=crop)


def _background(signal: np.ndarray) -> float:
    """The background level of a channel: the median of its 1-px border."""
    return float(np.median(_border(signal)))


def _stretch(signal: np.ndarray, background: float, *, dark_on_light: bool,
             crop: bool = False) -> np.ndarray:
    """Ink from a signal (bytes or floats): `background` to 0, the ink's peak to 255; with
    `crop`, only the bounding box of the ink beyond the background."""
    if crop:
        box = _bounding_box(signal < background if dark_on_light else signal > background)
        if box is None:
            raise PreprocessError("empty_drawing")
        top, bottom, left, right = box
        signal = signal[top:bottom, left:right]
    ink = signal.astype(np.float32)  # always a new array: changed in place below
    if dark_on_light:
        np.subtract(np.float32(background), ink, out=ink)
    elif background != 0.0:
        np.subtract(ink, np.float32(background), out=ink)
    np.maximum(ink, 0.0, out=ink)
    contrast = float(ink.max())
    if contrast < MIN_CONTRAST:
        raise PreprocessError("empty_drawing")
    if contrast != 255.0:
        ink *= 255.0 / contrast
    return ink


# --------------------------------------------------------------------------- ink -> MNIST


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
    x = np.pad(np.asarray(img28, dtype=np.float32), 1)
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
    """Separable Gaussian blur (zero outside), as shifted multiply-adds.

    Deliberately not a matrix product: multi-threaded BLAS on small matrices stalls badly
    when the cores are busy (30 ms instead of 0.1 ms for a 150x150 product under load).
    """
    radius = math.ceil(3.0 * sigma)
    taps = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-(taps * taps) / np.float32(2.0 * sigma * sigma))
    kernel /= kernel.sum()
    rows, cols = arr.shape
    padded = np.pad(arr, ((radius, radius), (0, 0)))
    out = kernel[0] * padded[0:rows]
    for k in range(1, 2 * radius + 1):
        out += kernel[k] * padded[k : k + rows]
    padded = np.pad(out, ((0, 0), (radius, radius)))
    out = kernel[0] * padded[:, 0:cols]
    for k in range(1, 2 * radius + 1):
        out += kernel[k] * padded[:, k : k + cols]
    return out


def erode(img: np.ndarray, radius: float) -> np.ndarray:
    """Grey-level erosion by a disk: each pixel becomes the minimum of `img` over the pixels
    within `radius` of it (dy^2 + dx^2 <= radius^2; zero outside the image).

    Decomposed into horizontal segments, one per row of the disk: the minima over the
    segments [-h, h] are built up for h = 1..R, then combined over the disk's rows, about 4R
    array operations instead of one per pixel of the disk.
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
    padded = np.pad(np.asarray(img, dtype=np.float32), size)
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
    centre (0 on False pixels; outside the array counts as False), float32.

    Exact and vectorised: the distance along each column comes from running maxima/minima
    of background row indices, then each row takes min over k of k^2 + column distance^2 at
    x + k, for |k| up to the largest distance found so far.
    """
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    rows = np.arange(m.shape[0], dtype=np.int32)[:, None]
    far = np.int32(4 * m.shape[0])
    above = np.maximum.accumulate(np.where(m, -far, rows), axis=0)
    below = np.minimum.accumulate(np.where(m, far, rows)[::-1], axis=0)[::-1]
    column = np.minimum(rows - above, below - rows).astype(np.float32)
    col2 = column * column
    d2 = col2.copy()
    k = 1
    while k * k < float(d2.max()):
        np.minimum(d2[:, :-k], col2[:, k:] + np.float32(k * k), out=d2[:, :-k])
        np.minimum(d2[:, k:], col2[:, :-k] + np.float32(k * k), out=d2[:, k:])
        k += 1
    return np.sqrt(d2[1:-1, 1:-1])


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
    peak = -erode(-dist, math.sqrt(2.0))  # the maximum over each 3x3 neighbourhood
    ridge = np.sort(dist[mask & (dist >= peak)])
    # The percentile, interpolated as np.percentile does (which takes 10x longer here).
    pos = (ridge.size - 1) * RIDGE_PERCENTILE / 100.0
    low = math.floor(pos)
    high = min(low + 1, ridge.size - 1)
    value = float(ridge[low]) + (pos - low) * float(ridge[high] - ridge[low])
    return max(0.0, 2.0 * value - 1.0)


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
    padded = np.pad(hi * (1.0 / 255.0), margin)
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


def _bounding_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right), bottom and right exclusive, of the True pixels, or None."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _to_field(hi: np.ndarray, origin: tuple[float, float]) -> np.ndarray:
    """Area-average the supersampled `hi` into the 28x28 field whose (0, 0) corner is at
    `origin` (continuous coordinates of `hi`): each output pixel averages the 4x4 block of
    `hi` area it covers. The fractional part of the origin is a linear interpolation of
    neighbours, which for square pixels is exactly the area they share.
    """
    size = FIELD * SUPERSAMPLE
    oy, ox = origin
    iy, ix = math.floor(oy), math.floor(ox)
    fy, fx = oy - iy, ox - ix
    window = np.zeros((size + 1, size + 1), dtype=np.float32)
    top, left = max(iy, 0), max(ix, 0)
    bottom, right = min(iy + size + 1, hi.shape[0]), min(ix + size + 1, hi.shape[1])
    if bottom > top and right > left:
        window[top - iy : bottom - iy, left - ix : right - ix] = hi[top:bottom, left:right]
    rows = (1.0 - fy) * window[:-1] + fy * window[1:]
    shifted = (1.0 - fx) * rows[:, :-1] + fx * rows[:, 1:]
    return shifted.reshape(FIELD, SUPERSAMPLE, FIELD, SUPERSAMPLE).mean(axis=(1, 3))


def _centre_of_mass(arr: np.ndarray) -> tuple[float, float]:
    """Centre of mass in continuous coordinates (pixel i spans [i, i + 1))."""
    total = float(arr.sum())
    cy = float((arr.sum(axis=1) * (np.arange(arr.shape[0]) + 0.5)).sum()) / total
    cx = float((arr.sum(axis=0) * (np.arange(arr.shape[1]) + 0.5)).sum()) / total
    return cy, cx


def _supersample(arr: np.ndarray) -> tuple[np.ndarray, float]:
    """Steps 1 and 2 of ink_to_mnist: the digit at 4x (its box's longer side 80 px) and its
    stroke width there, from a non-empty 2-D ink map."""
    peak = float(arr.max())
    if not math.isfinite(peak):
        raise PreprocessError("bad_pixels", "The ink holds NaN or infinity: send 0..255 values.")
    if peak < MIN_CONTRAST:
        raise PreprocessError("empty_drawing")
    box = _bounding_box(arr > BBOX_FRACTION * peak)
    if box is None:  # cannot happen: the peak itself is in it
        raise PreprocessError("empty_drawing")
    top, bottom, left, right = box
    long_side = max(bottom - top, right - left)
    scale = HI_BOX / long_side
    # Faint ink just outside the box still belongs to the digit (the box decides the scale).
    reach = math.ceil(CROP_REACH * long_side)
    top, left = max(0, top - reach), max(0, left - reach)
    bottom, right = min(arr.shape[0], bottom + reach), min(arr.shape[1], right + reach)
    crop = arr[top:bottom, left:right] * (255.0 / peak)
    crop[~(crop >= NOISE_FRACTION * 255.0)] = 0.0  # noise, negative values and NaN
    ink_top, ink_bottom, ink_left, ink_right = _bounding_box(crop > 0.0) or (0, 0, 0, 0)
    crop = np.ascontiguousarray(crop[ink_top:ink_bottom, ink_left:ink_right])
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    hi = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BOX), dtype=np.float32)
    return hi, _measure_width(crop, hi, scale)


def ink_to_mnist(ink: np.ndarray) -> np.ndarray:
    """MNIST's normalisation of an ink map (2-D, ink high): float32 (28, 28) in 0..255.

    1. The ink is scaled to peak at 255 and ink under NOISE_FRACTION of that is zeroed; the
       bounding box is that of the ink above BBOX_FRACTION of the peak (none: an empty
       drawing, as is a peak under MIN_CONTRAST).
    2. The box, with faint ink up to CROP_REACH of its size around it, is area-averaged
       (Pillow's BOX filter, aspect ratio kept) so the box's longer side is 80 px: MNIST's
       20 px at 4x supersampling. Smaller inputs are enlarged the same way, pixel as
       square, so a 28x28 digit goes through unblurred.
    3. The stroke width is measured (2A/P). A bold digit's pen is read again from its medial
       axis (``ridge_width``); a pen wider than ERODE_ABOVE x MNIST's is eroded to ERODE_TO x
       MNIST's (``erode_smoothly``) and steps 1 and 2 run again on the result, so the
       thinner digit fills the 20 px box again. Strokes thinner than STROKE_BAND allows are
       re-drawn at the band's lower end (``_normalise_width``), at 4x so the change is
       fractional.
    4. 4x4 area averaging, offset by a fraction of a pixel, gives the 28x28 field with the
       centre of mass at MNIST_CENTRE (within 0.05 px); the peak is scaled to 255, then a
       bold digit's ink is lightened so that its ``ink_width`` is MNIST's.
    """
    arr = np.asarray(ink, dtype=np.float32)
    if arr.ndim != 2 or arr.size == 0:
        raise PreprocessError(
            "bad_pixels", f"The ink map must be a non-empty 2-D array, not {arr.shape}."
        )
    hi, width = _supersample(arr)
    if width > BOLD_GATE * MNIST_HI_WIDTH:
        pen = min(ridge_width(hi), MAX_ERODE_WIDTH * MNIST_HI_WIDTH)
        if pen > ERODE_ABOVE * MNIST_HI_WIDTH:
            thinner = erode_smoothly(np.pad(hi, 1), (pen - ERODE_TO * MNIST_HI_WIDTH) / 2.0)
            if float(thinner.max()) >= MIN_CONTRAST:  # something thicker than the erosion is left
                logger.debug("pen %.2f eroded towards %.2f", pen, ERODE_TO * MNIST_HI_WIDTH)
                hi, width = _supersample(thinner)
    hi = _normalise_width(hi, width)

    total = float(hi.sum())
    if not total > 0.0:
        raise PreprocessError("empty_drawing")
    cy, cx = _centre_of_mass(hi)
    # Output pixel i covers [4i, 4i + 4) of the field, its centre of mass in pixel-index
    # coordinates c sits at 4(c + 0.5) in supersampled continuous ones.
    out = _to_field(
        hi,
        (cy - SUPERSAMPLE * (MNIST_CENTRE[0] + 0.5), cx - SUPERSAMPLE * (MNIST_CENTRE[1] + 0.5)),
    )
    out_peak = float(out.max())
    if not out_peak > 0.0:
        raise PreprocessError("empty_drawing")
    out *= 255.0 / out_peak
    # A bold stroke keeps its shape but carries the ink of an MNIST-width one.
    width, widest = stroke_width(out), STROKE_BAND_BOLD * MNIST_STROKE_WIDTH
    if width > widest:
        out *= widest / width
    np.clip(out, 0.0, 255.0, out=out)
    return out.astype(np.float32, copy=False)


# --------------------------------------------------------------------------- entry points


def preprocess_image(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Image bytes -> MNIST-like float32 (28, 28) in 0..255: decode, ink map, normalise."""
    return ink_to_mnist(image_to_ink(decode_image(data, max_pixels=max_pixels), crop=True))


def preprocess_pixels(pixels: np.ndarray, *, recentre: bool) -> np.ndarray:
    """Pixels already in MNIST form -> float32 (28, 28) in 0..255.

    `pixels` are 28x28 (or 784) numbers in 0..255, a light digit on a dark background.
    recentre=False returns them unchanged as a float32 copy; recentre=True sends them
    through ink_to_mnist (crop, scale, stroke width, centre of mass), where an all-zero
    field is an empty drawing. Anything else is `bad_pixels`.
    """
    try:
        arr = np.array(pixels, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise PreprocessError("bad_pixels") from exc
    if arr.shape not in ((FIELD, FIELD), (FIELD * FIELD,)):
        raise PreprocessError(
            "bad_pixels", f"The pixels must be 28x28 (or 784) values, not {arr.shape}."
        )
    if not np.isfinite(arr).all() or float(arr.min()) < 0.0 or float(arr.max()) > 255.0:
        raise PreprocessError(
            "bad_pixels", "Every pixel must be a finite number in 0..255 (0 = background)."
        )
    arr = arr.reshape(FIELD, FIELD)
    return ink_to_mnist(arr) if recentre else arr
