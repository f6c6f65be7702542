"""Facts about a drawing's ink that the 28x28 digit alone hides or blurs: the shape of its box,
how much of the box is ink, and how many separate pieces of ink there are and how far apart.

They feed the "not a digit" verdict (``model.verdict``): a dash is far wider than any digit, a
filled blob covers its box, "12" is two big pieces side by side. Every fact is a ratio, so it
reads the same on a 280x280 canvas crop as on a 28x28 MNIST digit, which is where the verdict's
thresholds are fitted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Final

import numpy as np
from scipy import ndimage

#: Ink above this fraction of the peak is "ink" for the box and the pieces (as in ``field``).
INK_FRACTION: Final = 0.4

#: A piece holding less than this share of the ink is a speck, not a piece of the drawing.
MIN_PIECE_SHARE: Final = 0.05

#: Masks are max-pooled to at most this many pixels on the longer side before the pieces are
#: labelled: pooling never splits a stroke, and a canvas crop costs what a 28x28 digit does.
MAX_SIDE: Final = 64

_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class DrawingFacts:
    """Scale-free facts about one drawing's ink."""

    aspect: float  # width / height of the ink's bounding box (a dash: large; a 1: small)
    coverage: float  # mean ink over the box, 0..1 (a stroke: ~0.2; a filled blob: ~1)
    pieces: int  # separate pieces of ink holding at least MIN_PIECE_SHARE of it
    second_share: float  # share of the ink in the second-largest piece (0 with one piece)
    gap: float  # widest gap between the two largest pieces' boxes over the box's longer side

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def _pool(mask: np.ndarray) -> np.ndarray:
    """Block-max-pool a boolean mask so its longer side is at most MAX_SIDE."""
    factor = math.ceil(max(mask.shape) / MAX_SIDE)
    if factor <= 1:
        return mask
    h, w = mask.shape
    padded = np.zeros((math.ceil(h / factor) * factor, math.ceil(w / factor) * factor), bool)
    padded[:h, :w] = mask
    blocks = padded.reshape(padded.shape[0] // factor, factor, -1, factor)
    return np.asarray(blocks.any(axis=(1, 3)))


def drawing_facts(ink: np.ndarray) -> DrawingFacts:
    """Facts of a 2-D ink map (ink high, any scale). An inkless map gives all zeros."""
    arr = np.asarray(ink, dtype=np.float32)
    peak = float(arr.max()) if arr.size else 0.0
    if not peak > 0.0:
        return DrawingFacts(0.0, 0.0, 0, 0.0, 0.0)
    mask = arr > INK_FRACTION * peak
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    height, width = bottom - top, right - left
    coverage = float(arr[top:bottom, left:right].mean()) / peak
    pooled = _pool(mask[top:bottom, left:right])
    labels, count = ndimage.label(pooled, structure=_EIGHT)
    if count <= 1:
        return DrawingFacts(width / height, coverage, 1, 0.0, 0.0)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:].astype(np.float64)
    shares = sizes / sizes.sum()
    pieces = int((shares >= MIN_PIECE_SHARE).sum())
    first, second = np.argsort(shares)[::-1][:2]
    boxes = ndimage.find_objects(labels)
    a, b = boxes[first], boxes[second]
    gap_y = max(a[0].start - b[0].stop, b[0].start - a[0].stop, 0)
    gap_x = max(a[1].start - b[1].stop, b[1].start - a[1].stop, 0)
    gap = math.hypot(gap_y, gap_x) / max(pooled.shape)
    return DrawingFacts(width / height, coverage, max(pieces, 1), float(shares[second]), gap)
