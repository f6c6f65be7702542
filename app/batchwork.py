"""The heavy half of a prediction request, as it runs in a worker process (app.workers).

Every function here takes bytes or small arrays and gives back small arrays: the 28x28 digits
of the items (float32) and the InputError of each item that failed (without its traceback).
Nothing here imports torch or the model. `InputError` crosses the process boundary as it is
(pickled with its status and code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.batchjson import PixelBatch, pixel_batch
from app.inputs import (
    InputError,
    check_flag,
    check_preprocess_flag,
    decode_base64_image,
    image_from_bytes,
    image_pixels,
    one_field,
    pixels_to_digit,
    recentred,
    single_from_json,
)
from app.jsonio import parse_json
from app.limits import check_json_counts, check_pixel_budget
from app.settings import Settings

#: Items sent to a worker in one call: about ten 280x280 canvases (10 ms), or one larger
#: image. Between calls the request checks its deadline, its client and a shutdown.
CHUNK_COST = 10 * 280 * 280
CANVAS_COST = 280 * 280  # what recentring 28x28 pixels costs, like a canvas's decoding


@dataclass
class Batch:
    """A batch request checked and budgeted, nothing decoded yet."""

    items: list[Any]  # image bytes, or (28, 28) float32 pixels, or the item's InputError
    has_images: bool
    recentre: bool
    cost: int  # decoded pixels, or their equivalent for pixel items
    previews: bool = True  # False: the answers leave the 28x28 previews out
    costs: list[int] | None = None  # each item's cost (None: CANVAS_COST each)
    verdicts: bool = True  # False: no verdicts judged or answered


@dataclass
class Digits:
    """What decoding a batch (or a chunk of it) gives: the digits of the items that decoded,
    in order, and the error of each item that did not, by its index."""

    digits: np.ndarray  # (n, 28, 28) float32 (uint8: whole-number pixels of read_batch)
    errors: dict[int, InputError]

    @property
    def size(self) -> int:
        return len(self.digits) + len(self.errors)

    def ordered(self) -> list[np.ndarray | InputError]:
        good = iter(self.digits)
        return [self.errors[i] if i in self.errors else next(good) for i in range(self.size)]

    @classmethod
    def join(cls, parts: list[Digits]) -> Digits:
        """The parts (chunks of a batch, in order) as one."""
        errors: dict[int, InputError] = {}
        offset = 0
        for part in parts:
            errors.update((offset + i, error) for i, error in part.errors.items())
            offset += part.size
        digits = [part.digits for part in parts]
        return cls(np.concatenate(digits) if digits else stack([]), errors)


def budget_images(items: list[Any], max_pixels: int, max_chars: int,
                  max_request_pixels: int) -> tuple[list[bytes | InputError], list[int]]:
    """The bytes of every image (or its error) and each one's pixels, refused as a whole
    (413) past `max_request_pixels`: nothing is decoded before that is known."""
    blobs: list[bytes | InputError] = []
    costs: list[int] = []
    for item in items:
        try:
            data = decode_base64_image(item, max_chars)
            costs.append(image_pixels(data, max_pixels))
            blobs.append(data)
        except InputError as exc:
            blobs.append(exc.detached())
            costs.append(0)
    check_pixel_budget(sum(costs), max_request_pixels)
    return blobs, costs


def checked_pixels(items: list[Any]) -> list[np.ndarray | InputError]:
    """Each pixel item as a (28, 28) float32 array, or its error."""
    out: list[np.ndarray | InputError] = []
    for i, item in enumerate(items):
        try:
            out.append(pixels_to_digit(item, False, where=f"'pixels'[{i}]"))  # timed
        except InputError as exc:
            out.append(exc.detached())
    return out


def prepare_batch(body: bytes, settings: Settings) -> Batch:
    """Parse and check a batch body; read the images' headers and refuse the request (413) if
    they hold more than the request's pixel budget. Nothing is decoded."""
    payload = parse_json(body)
    key = one_field(payload, ("images", "a list of data URLs or base64 images"),
                    ("pixels", "a list of 784-number images"))
    has_images = key == "images"
    items = payload[key]
    if not isinstance(items, list):
        raise InputError(f"'{key}' must be a list.", 422, "bad_json_shape")
    if not items:
        raise InputError(f"'{key}' is empty: send at least one image.", 422, "empty_batch")
    if len(items) > settings.max_batch:
        raise InputError(f"The batch has {len(items)} images; the maximum is "
                         f"{settings.max_batch}. Split it into smaller batches.", 413,
                         "batch_too_large")
    recentre = check_preprocess_flag(payload.get("preprocess"))
    previews, verdicts = (check_flag(payload.get(key, True), key)
                          for key in ("previews", "verdicts"))
    if has_images:
        blobs, costs = budget_images(items, settings.max_image_pixels, settings.max_body_bytes,
                                     settings.max_request_pixels)
        return Batch(blobs, True, recentre, sum(costs), previews, costs, verdicts)
    # Recentring 28x28 pixels costs about what a canvas's decoding does; a plain matrix row, not.
    return Batch(checked_pixels(items), False, recentre,
                 len(items) * (CANVAS_COST if recentre else 28 * 28), previews, None, verdicts)


def read_batch(body: bytes, settings: Settings, try_fast: bool = True) -> Batch | PixelBatch:
    """A batch body read: the raw-pixel fast path's pixels and flags, or the checked, budgeted
    Batch to decode item by item (at once with `try_fast` false: the fast path declined it)."""
    containers = check_json_counts(body, settings.max_batch)  # before parsing: 8 ms for 5 MB
    # Raw pixels, checked as one array (batchjson), when the body can be one: an object and
    # an array per image. Others (28x28 rows) skip its parse, 15 ms of GIL for 5 MB.
    if try_fast and containers <= settings.max_batch + 2:
        fast = pixel_batch(body, settings.max_batch)
        if fast is not None:
            return fast
    return prepare_batch(body, settings)


def read_batch_to_send(body: bytes, settings: Settings, try_fast: bool = True
                       ) -> Batch | PixelBatch:
    """``read_batch`` in a worker process: whole-number pixels go back as bytes, a quarter of
    the copying."""
    read = read_batch(body, settings, try_fast)
    if isinstance(read, PixelBatch):
        whole = read.pixels.astype(np.uint8)
        if np.array_equal(whole, read.pixels):
            return read._replace(pixels=whole)
    return read


def needs_decoding(batch: Batch) -> bool:
    """Whether the batch's items need a worker (images, or pixels to recentre)."""
    return batch.has_images or batch.recentre


def chunks(batch: Batch) -> list[tuple[int, int]]:
    """[start, end) ranges of the batch's items, each about CHUNK_COST (or one larger item)."""
    costs = batch.costs or [CANVAS_COST] * len(batch.items)
    out: list[tuple[int, int]] = []
    start, total = 0, 0
    for i, cost in enumerate(costs):
        total += cost
        if total >= CHUNK_COST:
            out.append((start, i + 1))
            start, total = i + 1, 0
    if start < len(costs):
        out.append((start, len(costs)))
    return out


def decode_items(items: list[Any], has_images: bool, recentre: bool,
                 max_pixels: int) -> Digits:
    """Decode image bytes (or recentre pixel arrays); an InputError item stays as it is."""
    digits: list[np.ndarray] = []
    errors: dict[int, InputError] = {}
    for i, item in enumerate(items):
        try:
            if isinstance(item, InputError):
                errors[i] = item
            elif has_images:
                digits.append(image_from_bytes(item, max_pixels))
            else:
                digits.append(recentred(item) if recentre else item)
        except InputError as exc:
            errors[i] = exc.detached()
    return Digits(stack(digits), errors)


def stack(digits: list[np.ndarray]) -> np.ndarray:
    if not digits:
        return np.empty((0, 28, 28), np.float32)
    return np.stack(digits).astype(np.float32, copy=False)


def single_digit(body: bytes, settings: Settings) -> np.ndarray:
    """/api/predict's large JSON body read in a worker, and its image decoded there: the
    (28, 28) digit. The count check comes before parsing, the pixel budget before decoding."""
    check_json_counts(body, settings.max_batch)
    kind, value = single_from_json(parse_json(body), settings.max_body_bytes)
    if kind == "digit":
        digit: np.ndarray = value
        return digit
    check_pixel_budget(image_pixels(value, settings.max_image_pixels),
                       settings.max_request_pixels)
    return image_from_bytes(value, settings.max_image_pixels)
