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

Each step is a module of its own: ``decode``, ``ink``, ``stroke`` (width measured and
changed), ``field`` (placing in the 28x28 field), with ``pipeline`` joining them. Everything
is numpy, scipy.ndimage and Pillow (no torch, no web code). For a 280x280 canvas PNG the whole
path takes about 0.9 ms of one core (`python -m benchmarks.preprocess`): Pillow's decoding about
0.4 ms, the ink map about 0.1 (read as bytes and cropped to the ink before any float
conversion), ink map to 28x28 about 0.35; a bold drawing, eroded, about 1.3 ms (its medial axis
0.2 ms, the erosion 0.06, scaling it again 0.1).
"""

from __future__ import annotations

from model.preprocess.decode import ACCEPTED_FORMATS, MAX_IMAGE_PIXELS, decode_image, image_size
from model.preprocess.errors import ERROR_CODES, PreprocessError
from model.preprocess.facts import DrawingFacts, drawing_facts
from model.preprocess.field import (
    BBOX_FRACTION,
    BOLD_GATE,
    CROP_REACH,
    ERODE_ABOVE,
    ERODE_TO,
    MAX_ERODE_WIDTH,
    NOISE_FRACTION,
    ink_to_mnist,
)
from model.preprocess.geometry import BOX, FIELD, HI_BOX, MNIST_CENTRE, SUPERSAMPLE
from model.preprocess.ink import MIN_CONTRAST, image_to_ink
from model.preprocess.pipeline import (
    preprocess_image,
    preprocess_image_with_facts,
    preprocess_pixels,
)
from model.preprocess.stroke import (
    MNIST_HI_WIDTH,
    MNIST_STROKE_WIDTH,
    STROKE_BAND,
    STROKE_BAND_BOLD,
    distance_to_background,
    erode,
    erode_smoothly,
    ink_width,
    ridge_width,
    stroke_width,
)

__all__ = [
    "ACCEPTED_FORMATS", "BBOX_FRACTION", "DrawingFacts", "drawing_facts",
    "preprocess_image_with_facts", "BOLD_GATE", "BOX", "CROP_REACH", "ERODE_ABOVE",
    "ERODE_TO", "ERROR_CODES", "FIELD", "HI_BOX", "MAX_ERODE_WIDTH", "MAX_IMAGE_PIXELS",
    "MIN_CONTRAST", "MNIST_CENTRE", "MNIST_HI_WIDTH", "MNIST_STROKE_WIDTH", "NOISE_FRACTION",
    "STROKE_BAND", "STROKE_BAND_BOLD", "SUPERSAMPLE", "PreprocessError", "decode_image",
    "distance_to_background", "erode", "erode_smoothly", "image_size", "image_to_ink",
    "ink_to_mnist", "ink_width", "preprocess_image", "preprocess_pixels", "ridge_width",
    "stroke_width",
]
