"""Turning what a client sent (an upload, a data URL, a pixel list) into 28x28 MNIST-form images.

Every failure is an InputError with an HTTP status and a sentence that says what to fix.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import numpy as np

from app.metrics import timed_function
from model.preprocess import PreprocessError, image_size, preprocess_image, preprocess_pixels

DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*?)(;base64)?,", re.I)
IMAGE_MIME_PREFIX = "image/"


class InputError(ValueError):
    """A client mistake: `status` is the HTTP status, the message is the sentence to show."""

    def __init__(self, message: str, status: int = 422, code: str = "bad_input") -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    def detached(self) -> InputError:
        """The same error without its traceback, to keep in a batch's results.

        A caught exception keeps every frame it passed through alive, with their locals: a
        decoded image and its float copies, tens of megabytes. Kept in a list that its own
        traceback's frames also hold, it is a reference cycle that only the garbage collector
        frees, late: a batch of 23 empty 2048x2048 drawings left 350 MB behind per request.
        """
        return InputError(str(self), self.status, self.code)


def decode_base64_image(value: Any, max_chars: int) -> bytes:
    """The bytes of a data URL or plain base64 string."""
    if not isinstance(value, str):
        raise InputError(
            "'image' must be a string: a data URL (data:image/png;base64,...) or base64.",
            code="bad_image_field",
        )
    if not value:
        raise InputError("'image' is an empty string: send a data URL or base64 image.",
                         code="bad_image_field")
    if len(value) > max_chars:
        raise InputError("'image' is too large.", 413, "too_large")
    text = value
    if value[:5].lower() == "data:":
        match = DATA_URL.match(value)
        if match is None:
            raise InputError("'image' is not a valid data URL: expected data:image/...;base64,...",
                             code="bad_image_field")
        mime = (match.group("mime") or "").lower()
        if mime and not mime.startswith(IMAGE_MIME_PREFIX):
            raise InputError(f"'image' is a data URL of {mime}, not an image: send a PNG, JPEG, "
                             "GIF, BMP or WebP.", 415, "unsupported_media")
        if not value[: match.end()].lower().endswith(";base64,"):
            raise InputError("'image' data URL must be base64-encoded (;base64,).",
                             code="bad_image_field")
        text = value[match.end():]
    try:
        data = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError("'image' is not valid base64: check for stray characters or truncation.",
                         code="bad_base64") from exc
    if not data:
        raise InputError("'image' decodes to zero bytes: send a non-empty image.",
                         code="bad_image_field")
    return data


@timed_function("preprocess")
def image_from_bytes(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode and preprocess an uploaded image into a (28, 28) float32 digit."""
    try:
        return preprocess_image(data, max_pixels=max_pixels)
    except PreprocessError as exc:
        raise InputError(str(exc), status_for(exc.code), exc.code) from exc


def image_pixels(data: bytes, max_pixels: int) -> int:
    """Width x height of an image from its header alone (nothing decoded), within `max_pixels`."""
    try:
        width, height = image_size(data, max_pixels=max_pixels)
    except PreprocessError as exc:
        raise InputError(str(exc), status_for(exc.code), exc.code) from exc
    return width * height


def status_for(code: str) -> int:
    return {"image_too_large": 413, "undecodable_image": 415}.get(code, 422)


#: The types a JSON pixel may have: exactly these, so booleans (an int subclass) are refused.
NUMBER_TYPES = frozenset((int, float))


def pixels_array(value: Any, where: str = "'pixels'") -> np.ndarray:
    """A flat list of 784 or a 28x28 nested list of numbers 0..255 -> (28, 28) float32."""
    if not isinstance(value, list):
        raise InputError(f"{where} must be a list of 784 numbers or 28 rows of 28 numbers.",
                         code="bad_pixels")
    if len(value) == 784:
        flat = value
    elif len(value) == 28 and all(isinstance(row, list) for row in value):
        bad = [i for i, row in enumerate(value) if len(row) != 28]
        if bad:
            raise InputError(f"{where} row {bad[0]} has {len(value[bad[0]])} values; every one of "
                             "the 28 rows needs 28.", code="bad_shape")
        flat = [v for row in value for v in row]
    else:
        raise InputError(f"{where} has {len(value)} entries: send 784 numbers or 28 rows of 28.",
                         code="bad_shape")
    if not NUMBER_TYPES.issuperset(map(type, flat)):
        raise InputError(f"{where} must hold only numbers (no strings, booleans or nulls).",
                         code="bad_pixels")
    try:
        array = np.asarray(flat, dtype=np.float64)
    except OverflowError as exc:  # an integer too large for a float: 10**400
        raise InputError(f"{where} values must be between 0 and 255 (found a number too large "
                         "to represent).", code="out_of_range") from exc
    if not np.isfinite(array).all():
        raise InputError(f"{where} holds NaN or infinity; pixels are numbers from 0 to 255.",
                         code="bad_pixels")
    if array.min() < 0 or array.max() > 255:
        raise InputError(f"{where} values must be between 0 and 255 (found {array.min():g} to "
                         f"{array.max():g}).", code="out_of_range")
    return array.astype(np.float32).reshape(28, 28)


@timed_function("preprocess")
def pixels_to_digit(value: Any, preprocess: bool, where: str = "'pixels'") -> np.ndarray:
    array = pixels_array(value, where)
    if not preprocess:
        return array  # already checked: 28x28 finite numbers in 0..255
    return recentred(array)


def recentred(pixels: np.ndarray) -> np.ndarray:
    """Checked 28x28 pixels, recentred as a drawing is (the `preprocess` flag)."""
    try:
        return preprocess_pixels(pixels, recentre=True)
    except PreprocessError as exc:
        raise InputError(str(exc), status_for(exc.code), exc.code) from exc


#: The two ways a JSON body carries a drawing, each with what it holds, as the errors say it.
IMAGE_FIELD = ("image", "a data URL or base64 image")
PIXELS_FIELD = ("pixels", "784 numbers 0..255")


def one_field(payload: Any, *fields: tuple[str, str]) -> str:
    """The name of the one field of `fields` ((name, what it holds), ...) that the JSON object
    carries; 422 with a sentence if the body is not an object, or carries none or several."""
    names = [name for name, _ in fields]
    if not isinstance(payload, dict):
        raise InputError(f"The JSON body must be an object with {' or '.join(map(repr, names))}.",
                         422, "bad_json_shape")
    present = [name for name in names if name in payload]
    if len(present) != 1:
        raise InputError("Send exactly one of "
                         + " or ".join(f"{name!r} ({what})" for name, what in fields) + ".",
                         422, "missing_field")
    return present[0]


def single_from_json(payload: Any, max_chars: int) -> tuple[str, Any]:
    """('image', bytes) or ('digit', (28, 28) array) from a JSON object's 'image' or 'pixels'.

    Shared by /api/predict and /api/feedback, so a correction is read exactly as a prediction.
    """
    if one_field(payload, IMAGE_FIELD, PIXELS_FIELD) == "image":
        return "image", decode_base64_image(payload["image"], max_chars)
    recentre = check_preprocess_flag(payload.get("preprocess"))
    return "digit", pixels_to_digit(payload["pixels"], recentre)


def check_preprocess_flag(value: Any) -> bool:
    return False if value is None else check_flag(value, "preprocess")


def check_flag(value: Any, key: str) -> bool:
    """A request's true-or-false field `key` (422 for anything else)."""
    if not isinstance(value, bool):
        raise InputError(f"'{key}' must be true or false.", code="bad_flag")
    return value
