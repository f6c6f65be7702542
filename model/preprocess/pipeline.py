"""The two entry points: image bytes, or pixels already in MNIST form, -> the 28x28 digit."""

from __future__ import annotations

import numpy as np

from model.preprocess.decode import MAX_IMAGE_PIXELS, decode_image
from model.preprocess.errors import PreprocessError
from model.preprocess.facts import DrawingFacts, drawing_facts
from model.preprocess.field import ink_to_mnist
from model.preprocess.geometry import FIELD
from model.preprocess.ink import image_to_ink


def preprocess_image(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Image bytes -> MNIST-like float32 (28, 28) in 0..255: decode, ink map, normalise.

    The decoded image is closed as soon as its ink is cropped out of it: under a flood of
    large images, memory holds each one only while it is being read.
    """
    img = decode_image(data, max_pixels=max_pixels)
    try:
        ink = image_to_ink(img, crop=True)
    finally:
        img.close()
    del img
    return ink_to_mnist(ink)


def preprocess_image_with_facts(
    data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS
) -> tuple[np.ndarray, DrawingFacts]:
    """`preprocess_image`, and the facts of the drawing's ink before it was scaled (its box's
    aspect, coverage, pieces): what the 28x28 digit no longer shows at the drawing's scale."""
    ink = image_to_ink(decode_image(data, max_pixels=max_pixels), crop=True)
    return ink_to_mnist(ink), drawing_facts(ink)


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
