"""Reading an Open Inference Protocol v2 request (app/routes/v2.py), as it runs in a worker
process (app/workers.py) for a large body: the JSON parsed and its tensor checked into (N, 28, 28)
pixels 0..255. Nothing here imports torch or the model. Errors are V2Failure (a 400 {"error"}).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.inputs import InputError
from app.jsonio import parse_json
from app.limits import check_json_counts
from app.v2binary import NO_BINARY, binary_inputs, split_body, tensor_from_bytes, wants_binary

OUTPUTS = ("probabilities", "digit", "verdict")


class V2Failure(InputError):
    """A protocol error: answered as {"error": ...} by the app's error handler (path /v2)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message, status, "v2")


def _flatten(data: Any, count: int) -> np.ndarray:
    """Row-major data (flat or nested) holding exactly `count` numbers -> float32 array."""
    if not isinstance(data, list):
        raise V2Failure("'data' must be a list of numbers.")
    flat: list[Any] = data
    while flat and isinstance(flat[0], list):
        if not all(isinstance(row, list) for row in flat):
            raise V2Failure("'data' mixes lists and numbers at one level: send it flat, or "
                            "nested evenly in the tensor's shape.")
        flat = [v for row in flat for v in row]
    if len(flat) != count:
        raise V2Failure(f"'data' holds {len(flat)} numbers but the shape needs {count}.")
    if not all(type(v) is int or type(v) is float for v in flat):
        raise V2Failure("'data' must hold only numbers.")
    try:
        array = np.asarray(flat, dtype=np.float64)
    except OverflowError as exc:
        raise V2Failure("FP32 pixels must be between 0 and 1 (MNIST form, light digit on "
                        "dark).") from exc
    return _in_range(array).astype(np.float32)


def _in_range(array: np.ndarray) -> np.ndarray:
    """`array` if every pixel is a number from 0 to 1 (min and max see NaN and infinity too)."""
    low, high = array.min(), array.max()
    if not (low >= 0 and high <= 1):
        if not np.isfinite(array).all():
            raise V2Failure("The input holds NaN or infinity; pixels are numbers from 0 to 1.")
        raise V2Failure("FP32 pixels must be between 0 and 1 (MNIST form, light digit on dark).")
    return array


def parse_infer(payload: Any, max_batch: int, binary: memoryview = NO_BINARY
                ) -> tuple[np.ndarray, list[tuple[str, bool]], str | None]:
    """Pixels 0..255 (N, 28, 28), the outputs asked for (name, in binary?) and the request id."""
    if not isinstance(payload, dict):
        raise V2Failure("The request must be a JSON object with 'inputs'.")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise V2Failure("'inputs' must be a list holding one tensor.")
    tensor = inputs[0]
    chunk = binary_inputs(inputs, binary)[0]
    if tensor.get("datatype") != "FP32":
        raise V2Failure(f"Input datatype must be FP32, got {tensor.get('datatype')!r}.")
    shape = tensor.get("shape")
    if not (isinstance(shape, list) and all(type(v) is int and v > 0 for v in shape)
            and len(shape) in (2, 3) and (shape[1:] == [784] or shape[1:] == [28, 28])):
        raise V2Failure(f"Input shape must be [N, 784] or [N, 28, 28] with N >= 1, got {shape}.")
    if shape[0] > max_batch:
        raise V2Failure(f"N = {shape[0]} exceeds the maximum batch of {max_batch}.")
    if chunk is None:
        pixels = _flatten(tensor.get("data"), shape[0] * 784).reshape(shape[0], 28, 28)
    else:
        pixels = _in_range(tensor_from_bytes(chunk, "FP32", (shape[0], 28, 28)))
    wanted = payload.get("outputs")
    outputs = [(name, wants_binary(payload, None)) for name in OUTPUTS]
    if wanted is not None:
        if not isinstance(wanted, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in wanted
        ):
            raise V2Failure("'outputs' must be a list of objects with a 'name'.")
        outputs = [(o["name"], wants_binary(payload, o)) for o in wanted]
        unknown = [name for name, _ in outputs if name not in OUTPUTS]
        if unknown:
            raise V2Failure(f"Unknown outputs {unknown}; available: {list(OUTPUTS)}.")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise V2Failure("'id' must be a string.")
    return pixels * np.float32(255.0), outputs, request_id


def read_infer(raw: bytes, header_length: str | None, max_batch: int
               ) -> tuple[np.ndarray, list[tuple[str, bool]], str | None]:
    """The request's pixels, the outputs asked for and its id. The body is split and its JSON
    parsed here, off the event loop: a 1,000-image body is 4 MB."""
    check_json_counts(raw, max_batch, json_length(len(raw), header_length))  # before parsing
    try:
        header, binary = split_body(raw, header_length)
        payload = parse_json(header)
    except InputError as exc:
        raise V2Failure(str(exc)) from exc
    return parse_infer(payload, max_batch, binary)


def json_length(size: int, header_length: str | None) -> int:
    """The bytes of a body's JSON part: all of it, or the binary extension's header."""
    text = (header_length or "").strip()
    return min(int(text), size) if text.isascii() and text.isdigit() else size
