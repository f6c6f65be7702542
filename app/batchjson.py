"""A JSON batch of raw pixels read straight into one array: the fast path of /api/predict/batch.

orjson turns a 1,000-image body into 784,000 Python ints (13.5 ms), and checking them one image
at a time took 40 ms more. simdjson parses the same body and copies every number of `pixels`
into one float64 buffer (`as_buffer`, which refuses booleans, strings and nulls) in about 7 ms;
range is then checked once on the whole array. The fast path takes only what it can check
exactly: an object whose keys are `pixels` (flat images of 784 numbers), `preprocess` (false)
and `previews` (true or false), with no string value and no array but `pixels` and its images,
which the body's counts of '"' and '[' prove (no key, number or boolean holds either). Anything
else returns None and goes the exact per-image way, so every answer and error stays the same.

Its counts come before the parse too (quotes, brackets and commas: about 2.5 ms for 3.5 MB),
so what simdjson is given is bounded: no more numbers than the largest batch holds.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import simdjson

FAST_KEYS = frozenset({"pixels", "preprocess", "previews", "verdicts"})
PIXELS = 784
#: What simdjson raises for a body or a value it will not read (the exact path explains it).
SIMDJSON_ERRORS = (ValueError, TypeError, RuntimeError, OverflowError, MemoryError)


class PixelBatch(NamedTuple):
    """A batch of raw pixels read by the fast path, and what its answers leave out."""

    pixels: np.ndarray  # (N, 28, 28) float32 0..255 (read_batch: uint8 when whole numbers)
    previews: bool = True  # False: the answers leave the 28x28 previews out
    verdicts: bool = True  # False: no verdicts judged or answered


def pixel_batch(body: bytes, max_batch: int) -> PixelBatch | None:
    """The pixels of a batch body and its flags, or None (the exact path reads it)."""
    quotes = body.count(b'"')
    if quotes > 2 * len(FAST_KEYS):  # strings beyond the keys (a batch of images): declined
        return None  # before parsing, so such a body is parsed once, by the exact path
    brackets = body.count(b"[")
    if brackets > max_batch + 1 or body.count(b",") > max_batch * PIXELS + len(FAST_KEYS):
        return None  # more than the largest batch of flat images: the exact path refuses it
    try:
        doc = simdjson.Parser().parse(body)  # a parser per call: requests run in threads
    except SIMDJSON_ERRORS:  # not JSON, or numbers it does not hold (beyond 64 bits)
        return None
    if not isinstance(doc, simdjson.Object):
        return None
    keys = list(doc.keys())
    if "pixels" not in keys or not FAST_KEYS.issuperset(keys) or len(set(keys)) != len(keys):
        return None
    previews, verdicts = doc.get("previews", True), doc.get("verdicts", True)
    if doc.get("preprocess", False) is not False or not isinstance(previews, bool) \
            or not isinstance(verdicts, bool):
        return None
    items = doc["pixels"]
    if not isinstance(items, simdjson.Array) or not 1 <= len(items) <= max_batch:
        return None
    n = len(items)
    # Quotes: only the keys'. Brackets: `pixels` and one per image, so no image nests another
    # array and every one of its 784 elements is a number (as_buffer refuses anything else).
    if quotes != 2 * len(keys) or brackets != 1 + n:
        return None
    if not all(isinstance(item, simdjson.Array) and len(item) == PIXELS for item in items):
        return None
    try:
        flat = np.frombuffer(items.as_buffer(of_type="d"), dtype=np.float64)
    except SIMDJSON_ERRORS:
        return None
    if flat.size != n * PIXELS:
        return None
    pixels = flat.astype(np.float32)  # what is out of range stays out of range
    low, high = pixels.min(), pixels.max()
    if not (low >= 0 and high <= 255):  # the exact path says which image is wrong
        return None
    return PixelBatch(pixels.reshape(n, 28, 28), previews, verdicts)
