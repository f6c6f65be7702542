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
   brush, so small drawings come out bold and large ones thin), then area-average down to
   20 px while placing the centre of mass at MNIST's mean (14.0, 14.0) with sub-pixel accuracy.

Everything is numpy and Pillow; a 280x280 canvas takes well under a millisecond.
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

_UPSAMPLE = Image.Resampling.BOX
FIELD: Final = 28  # MNIST's field
BOX: Final = 20  # the longer side of the digit's bounding box in MNIST
SUPERSAMPLE: Final = 4  # work at 4x (80 px box) so stroke changes and shifts are fractional
HI_BOX: Final = BOX * SUPERSAMPLE

#: Mean centre of mass of MNIST's training digits in (row, column) pixel-index coordinates:
#: 13.996 and 14.008 measured over the 50,000 training images (MNIST translated by whole
#: pixels to put it at 14, so individual digits lie within +-0.5 of it).
MNIST_CENTRE: Final = (14.0, 14.0)

#: Median of ``stroke_width`` over MNIST training digits (2.47 over the first 5,000; the 5th
#: and 95th percentiles are 1.79 and 3.70).
MNIST_STROKE_WIDTH: Final = 2.47

#: Stroke widths within [LOW, HIGH] x MNIST_STROKE_WIDTH are left alone (MNIST's own digits
#: vary that much); outside it they are brought to the nearest end of that band.
STROKE_BAND: Final = (0.8, 1.25)

#: An ink map whose contrast (max - background) is below this, of 255, holds no drawing.
MIN_CONTRAST: Final = 10.0
#: Ink below this fraction of the peak is noise (JPEG ringing, paper grain) and is zeroed.
NOISE_FRACTION: Final = 0.08
#: Pixels above this fraction of the peak define the digit's bounding box.
BBOX_FRACTION: Final = 0.2


class PreprocessError(ValueError):
    """An image or pixel array that cannot become a digit; the message says what to fix."""

    code: str

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _empty() -> PreprocessError:
    return PreprocessError(
        "empty_drawing", "The drawing is empty: draw a digit (or send an image with one) first."
    )


# --------------------------------------------------------------------------- decoding


def decode_image(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode PNG, JPEG, GIF, BMP or WebP bytes into a loaded Pillow image (first frame).

    The pixel count is read from the header and refused above `max_pixels` before the image
    is decoded; Pillow's own decompression-bomb guard is mapped to the same error. JPEG/WebP
    EXIF orientation is applied so a phone photo comes out upright.
    """
    if not data:
        raise PreprocessError(
            "undecodable_image", "The image is empty (0 bytes): send a PNG, JPEG, GIF, BMP or "
            "WebP file."
        )
    try:
        img = Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_large(None, max_pixels) from exc
    except UnidentifiedImageError as exc:
        raise PreprocessError(
            "undecodable_image",
            "The file is not an image this service reads: send a PNG, JPEG, GIF, BMP or WebP.",
        ) from exc
    except Exception as exc:  # malformed headers make Pillow's plugins raise almost anything
        logger.debug("image header rejected: %r", exc)
        raise _undecodable() from exc
    width, height = img.size
    if width <= 0 or height <= 0:
        raise _undecodable()
    if width * height > max_pixels:
        raise _too_large((width, height), max_pixels)
    try:
        img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_large((width, height), max_pixels) from exc
    except Exception as exc:  # truncated or corrupt data: OSError, SyntaxError, EOFError, ...
        logger.debug("image data rejected: %r", exc)
        raise _undecodable() from exc
    return _upright(img)


def _undecodable() -> PreprocessError:
    return PreprocessError(
        "undecodable_image",
        "The image could not be decoded (truncated or corrupt?): send a complete PNG, JPEG, "
        "GIF, BMP or WebP file.",
    )


def _too_large(size: tuple[int, int] | None, max_pixels: int) -> PreprocessError:
    what = f"{size[0]}x{size[1]} pixels" if size else "too large to decode safely"
    return PreprocessError(
        "image_too_large",
        f"The image is {what}; the limit is {max_pixels:,} pixels in all: send a smaller "
        "image (a 280x280 drawing is plenty).",
    )


def _upright(img: Image.Image) -> Image.Image:
    """Apply an EXIF orientation tag, if there is one (JPEG and WebP photos)."""
    if img.format not in ("JPEG", "WEBP"):
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
    """Integer or float samples of unknown range -> float32 0..255."""
    values = arr.astype(np.float32)
    if not np.isfinite(values).all():
        raise PreprocessError(
            "bad_pixels", "The image holds non-finite values (NaN or infinity): send real pixels."
        )
    lo, hi = float(values.min()), float(values.max())
    if lo >= 0.0 and hi <= 1.0 and values.dtype.kind == "f" and arr.dtype.kind == "f":
        return values * 255.0  # a float image in 0..1
    if lo >= 0.0 and hi <= 255.0:
        return values
    if lo >= 0.0 and hi <= 65535.0:
        return values / 257.0  # 16-bit samples
    span = hi - lo
    return (values - lo) * (255.0 / span) if span > 0 else np.zeros_like(values)


def _channels(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """(luminance, alpha or None) as float32 0..255 arrays for any Pillow mode."""
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _range_to_255(np.asarray(img)), None
    if mode in ("1", "L"):
        return np.asarray(img.convert("L") if mode == "1" else img, dtype=np.float32), None
    if mode == "LA":
        arr = np.asarray(img, dtype=np.float32)
        return arr[..., 0], arr[..., 1]
    if mode == "P":
        img = img.convert("RGBA" if img.has_transparency_data else "RGB")
    elif mode not in ("RGB", "RGBA"):
        try:
            has_alpha = "A" in mode or "a" in mode or img.has_transparency_data
            img = img.convert("RGBA" if has_alpha else "RGB")
        except ValueError as exc:
            raise PreprocessError(
                "bad_pixels", f"Images in Pillow mode {mode!r} are not supported: send RGB or "
                "greyscale."
            ) from exc
    lum = np.asarray(img.convert("L"), dtype=np.float32)
    if img.mode == "RGBA":
        return lum, np.asarray(img.getchannel("A"), dtype=np.float32)
    return lum, None


def _border(arr: np.ndarray) -> np.ndarray:
    """The 1-px border of a 2-D array, flattened."""
    if arr.shape[0] <= 2 or arr.shape[1] <= 2:
        return arr.ravel()
    return np.concatenate((arr[0], arr[-1], arr[1:-1, 0], arr[1:-1, -1]))


def image_to_ink(img: Image.Image) -> np.ndarray:
    """Ink map (float32 HxW, 0..255, ink high, background ~0, the ink's peak at 255).

    A transparent drawing (an alpha channel whose border is mostly transparent) is read from
    alpha alone: whatever colour the strokes are, ink is where the image is opaque. Anything
    else is read from luminance (transparent pixels over white); the median of the 1-px
    border is the background, and a light background means dark ink, so the image is
    inverted. The background level is subtracted and the rest stretched so the ink peaks at
    255; a contrast under MIN_CONTRAST of 255 is an empty drawing, not ink to amplify.
    """
    lum, alpha = _channels(img)
    if alpha is not None and float(np.median(_border(alpha))) < 128.0:
        signal = alpha
        dark_on_light = False
    else:
        if alpha is not None:  # opaque background: composite any transparent pixels on white
            lum = 255.0 - (255.0 - lum) * (alpha / 255.0)
        signal = lum
        dark_on_light = float(np.median(_border(lum))) >= 128.0
    background = float(np.median(_border(signal)))
    ink = (background - signal) if dark_on_light else (signal - background)
    np.maximum(ink, 0.0, out=ink)
    contrast = float(ink.max()) if ink.size else 0.0
    if contrast < MIN_CONTRAST:
        raise _empty()
    ink *= 255.0 / contrast
    return ink


# --------------------------------------------------------------------------- ink -> MNIST


def stroke_width(img28: np.ndarray) -> float:
    """Estimated stroke width in pixels of a digit image (any 2-D ink map, ink high).

    Twice the ink area over its perimeter (a stroke of width w and length L has area wL and
    perimeter about 2L), with area = sum of ink / peak and perimeter = total variation /
    peak, the gradient taken on 2x2 cells so that slanted edges count like straight ones.
    Anti-aliased edges and grey levels are handled naturally; an empty image gives 0.0.
    Measured this way, MNIST's median is MNIST_STROKE_WIDTH.
    """
    x = np.pad(np.asarray(img28, dtype=np.float32), 1)
    a, b, c, d = x[:-1, :-1], x[:-1, 1:], x[1:, :-1], x[1:, 1:]
    gx = b - a + d - c
    gy = c - a + d - b
    perimeter = float(np.sqrt(gx * gx + gy * gy).sum())  # 2x the cell gradient
    if perimeter <= 0.0:
        return 0.0
    return 4.0 * float(x.sum()) / perimeter


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


def _gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """n x n matrix that blurs a length-n signal with a Gaussian (mass kept, zero outside)."""
    idx = np.arange(n, dtype=np.float32)
    radius = math.ceil(3.0 * sigma)
    taps = np.arange(-radius, radius + 1, dtype=np.float32)
    norm = float(np.exp(-(taps * taps) / (2 * sigma * sigma)).sum())
    diff = idx[:, None] - idx[None, :]
    return np.exp(-(diff * diff) / (2 * sigma * sigma)) / norm


def _restroke(hi: np.ndarray, width: float, target: float) -> np.ndarray:
    """Re-draw strokes of `width` (supersampled px) at `target` width: blur, then threshold.

    Blurring with a Gaussian and thresholding at level t moves every edge by the same
    distance; t is the level a straight stroke of `width`, so blurred, has at target/2 from
    its axis. The threshold is soft over about one supersampled pixel, so after the 4x area
    average the edges are anti-aliased like MNIST's with a saturated core.
    """
    sigma = max(1.0, 0.5 * abs(target - width))
    level, slope = _stroke_profile(target / 2.0, width, sigma)
    soft = max(abs(slope), 1e-3)  # value change across one supersampled pixel
    h, w = hi.shape
    blurred = _gaussian_matrix(h, sigma) @ (hi * (1.0 / 255.0)) @ _gaussian_matrix(w, sigma).T
    out = (blurred - level) * (1.0 / soft) + 0.5
    np.clip(out, 0.0, 1.0, out=out)
    return out * 255.0


def _area_matrix(n_out: int, n_in: int, offset: float, factor: int) -> np.ndarray:
    """Weights averaging input cells [offset + f*i, offset + f*(i+1)) into output cell i."""
    lo = offset + factor * np.arange(n_out, dtype=np.float64)[:, None]
    hi = lo + factor
    j = np.arange(n_in, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(j + 1.0, hi) - np.maximum(j, lo), 0.0, None)
    return (overlap / factor).astype(np.float32)


def _centre_of_mass(arr: np.ndarray) -> tuple[float, float]:
    """Centre of mass in continuous coordinates (pixel i spans [i, i + 1))."""
    total = float(arr.sum())
    rows = arr.sum(axis=1)
    cols = arr.sum(axis=0)
    cy = float(rows @ (np.arange(arr.shape[0]) + 0.5)) / total
    cx = float(cols @ (np.arange(arr.shape[1]) + 0.5)) / total
    return cy, cx


def _measure_width(crop: np.ndarray, hi: np.ndarray, scale: float) -> float:
    """Stroke width of the drawing in supersampled pixels.

    Measured on the supersampled image when its strokes are wide enough to be resolved there,
    else on the crop at (nearly) its own resolution, where a thin brush is still several
    pixels wide, and scaled.
    """
    width = stroke_width(hi)
    if width >= 2.5 or scale >= 1.0:
        return width
    long_side = max(crop.shape)
    factor = max(1, long_side // 256)
    src = crop
    if factor > 1:
        src = np.asarray(Image.fromarray(crop).reduce(factor), dtype=np.float32)
    return stroke_width(src) * scale * factor


def ink_to_mnist(ink: np.ndarray) -> np.ndarray:
    """MNIST's normalisation of an ink map (HxW, ink high): float32 (28, 28) in 0..255.

    Noise under NOISE_FRACTION of the peak is zeroed; the bounding box of the ink above
    BBOX_FRACTION of the peak is scaled (aspect kept, area-averaged) to 80 px on its longer
    side, i.e. 20 px at 4x supersampling; strokes are re-drawn at MNIST's width when clearly
    thinner or thicker; then 4x4 area averaging with a sub-pixel offset brings it to 28x28
    with its centre of mass at MNIST_CENTRE. Raises PreprocessError("empty_drawing") when
    there is no ink.
    """
    arr = np.asarray(ink, dtype=np.float32)
    if arr.ndim != 2 or arr.size == 0:
        raise PreprocessError("bad_pixels", "The ink map must be a non-empty 2-D array.")
    if not np.isfinite(arr).all():
        raise PreprocessError("bad_pixels", "The pixels hold NaN or infinity: send 0..255.")
    peak = float(arr.max())
    if peak < MIN_CONTRAST:
        raise _empty()
    arr = arr * (255.0 / peak)
    arr[arr < NOISE_FRACTION * 255.0] = 0.0

    mask = arr > BBOX_FRACTION * 255.0
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise _empty()
    crop = np.ascontiguousarray(arr[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
    height, width = crop.shape
    scale = HI_BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    hi = np.asarray(Image.fromarray(crop).resize(size, _UPSAMPLE if scale > 1 else Image.Resampling.BOX), dtype=np.float32)

    measured = _measure_width(crop, hi, scale)
    wanted = SUPERSAMPLE * MNIST_STROKE_WIDTH
    target = min(max(measured, STROKE_BAND[0] * wanted), STROKE_BAND[1] * wanted)
    if measured > 0.0 and abs(target - measured) > 1e-6:
        margin = math.ceil(3.0 * max(1.0, 0.5 * abs(target - measured)) + target) + 2
        hi = _restroke(np.pad(hi, margin), measured, target)
        logger.debug("stroke width %.2f -> %.2f (4x px)", measured, target)
    if float(hi.max()) <= 0.0:  # thinned away entirely (cannot happen for real strokes)
        raise _empty()

    cy, cx = _centre_of_mass(hi)
    oy = cy - SUPERSAMPLE * (MNIST_CENTRE[0] + 0.5)
    ox = cx - SUPERSAMPLE * (MNIST_CENTRE[1] + 0.5)
    ry = _area_matrix(FIELD, hi.shape[0], oy, SUPERSAMPLE)
    rx = _area_matrix(FIELD, hi.shape[1], ox, SUPERSAMPLE)
    out = ry @ hi @ rx.T
    top = float(out.max())
    if top <= 0.0:
        raise _empty()
    out *= 255.0 / top
    np.clip(out, 0.0, 255.0, out=out)
    return out.astype(np.float32, copy=False)


# --------------------------------------------------------------------------- entry points


def preprocess_image(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Image bytes -> MNIST-like float32 (28, 28) in 0..255: decode, ink, normalise."""
    return ink_to_mnist(image_to_ink(decode_image(data, max_pixels=max_pixels)))


def preprocess_pixels(pixels: np.ndarray, *, recentre: bool) -> np.ndarray:
    """Pixels already in MNIST form (28x28 or 784 values in 0..255, light digit on dark).

    recentre=False returns them as a float32 (28, 28) copy; recentre=True sends them through
    ink_to_mnist (crop, scale, stroke width, centre of mass), where all-zero is an empty
    drawing.
    """
    try:
        arr = np.array(pixels, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise PreprocessError(
            "bad_pixels", "The pixels must be numbers: 28x28 (or 784) values in 0..255."
        ) from exc
    if arr.size != FIELD * FIELD or arr.ndim not in (1, 2) or (arr.ndim == 2 and arr.shape[0] != FIELD):
        raise PreprocessError(
            "bad_pixels",
            f"The pixels must be 28x28 (or 784) values; got shape {tuple(arr.shape)}.",
        )
    if not np.isfinite(arr).all() or float(arr.min()) < 0.0 or float(arr.max()) > 255.0:
        raise PreprocessError(
            "bad_pixels", "Every pixel must be a finite number in 0..255 (0 = background)."
        )
    arr = arr.reshape(FIELD, FIELD)
    if not recentre:
        return arr
    return ink_to_mnist(arr)
