"""Bytes -> Pillow image: PNG, JPEG, GIF, BMP or WebP, first frame only, with the pixel count
checked from the header before anything is decoded and the EXIF orientation applied.

``image_size`` reads the header alone (tens of microseconds), so a caller can budget the
pixels of a whole request before it decodes any of them."""

from __future__ import annotations

import io
import logging
from typing import Final

from PIL import (  # noqa: F401 - the five readers registered now; see ACCEPTED_FORMATS
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageOps,
    JpegImagePlugin,
    PngImagePlugin,
    UnidentifiedImageError,
    WebPImagePlugin,
)

from model.limits import MAX_IMAGE_PIXELS as MAX_IMAGE_PIXELS  # written once there
from model.preprocess.errors import PreprocessError

logger = logging.getLogger(__name__)


#: Formats ``decode_image`` accepts; Pillow is told to try no other plugin. Their readers are
#: imported above: Pillow registers WebP only in `Image.init()`, which imports all its ~45
#: plugins (30-40 ms) the first time an image is not PNG, JPEG, GIF or BMP, and the header
#: probe that triggers it runs on the server's event loop.
ACCEPTED_FORMATS: Final[tuple[str, ...]] = ("PNG", "JPEG", "GIF", "BMP", "WEBP")


def decode_image(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode PNG, JPEG, GIF, BMP or WebP bytes into a loaded Pillow image, first frame only.

    Width x height is read from the header and refused above `max_pixels` before any pixel
    is decoded; Pillow's own decompression-bomb guard (an error above twice its
    Image.MAX_IMAGE_PIXELS, a warning above it, an error too where warnings are errors) is
    reported the same way. Empty, truncated and undecodable data, and any other format, are
    `undecodable_image`. An EXIF orientation tag (phone photos) is applied.
    """
    img = _open(data, max_pixels)
    try:
        img.load()  # the first frame; later frames of a GIF, APNG or WebP are never read
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_large(img.size, max_pixels) from exc
    except Exception as exc:  # truncated or corrupt data: OSError, SyntaxError, EOFError, ...
        logger.debug("image data rejected: %r", exc)
        raise PreprocessError("undecodable_image") from exc
    return _upright(img)


def image_size(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """(width, height) of an image from its header alone, checked as ``decode_image`` checks it.

    Nothing is decoded: a caller budgets a request's pixels with this before decoding any.
    Raises the same PreprocessError as ``decode_image`` for what the header already shows
    (empty, not an image, over `max_pixels`).
    """
    img = _open(data, max_pixels)
    try:
        return img.size
    finally:
        img.close()


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """The image with its header read and its size checked; no pixel decoded yet."""
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
    return img


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
