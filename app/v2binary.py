"""The v2 protocol's binary tensor data extension: what Triton's own clients send by default.

A request may carry a JSON header of `Inference-Header-Content-Length` bytes followed by the raw
bytes of its inputs: an input whose `parameters` hold `binary_data_size` has no `data` in JSON,
and its bytes follow the header in input order (little-endian, row-major). Outputs come back the
same way when an output asks for it (`parameters: {"binary_data": true}`) or the request does for
all of them (`parameters: {"binary_data_output": true}`, which Triton's client sends when it names
no outputs): the answer is the JSON header, each binary output marked with its
`binary_data_size`, then their bytes, and the header `Inference-Header-Content-Length` says where
the JSON ends. A 1,000-image request is then 3 MB of floats read in place instead of 6 MB of
decimal text parsed into 784,000 Python floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from app.inputs import InputError

HEADER = "inference-header-content-length"
NO_BINARY = memoryview(b"")  # the binary section of a request without one
BINARY_CONTENT_TYPE = "application/octet-stream"
#: Byte layouts of the datatypes this server reads or writes in binary (little-endian).
DTYPES: dict[str, np.dtype[Any]] = {"FP32": np.dtype("<f4"), "INT64": np.dtype("<i8")}


def failure(message: str) -> InputError:
    """A protocol error: the app's handler answers it as 400 {"error": ...} under /v2."""
    return InputError(message, 400, "v2")


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """The JSON header and the binary section of a request body (empty without the header)."""
    if header_length is None:
        return body, NO_BINARY
    text = header_length.strip()
    if not (text.isascii() and text.isdigit()):  # "²".isdigit() is true, int("²") fails
        raise failure(f"Inference-Header-Content-Length {header_length!r} is not a byte count.")
    length = int(text)
    if length == 0 or length > len(body):
        raise failure(f"Inference-Header-Content-Length is {length} but the body holds "
                      f"{len(body)} bytes: it must be the length of the JSON part, from 1 to "
                      "the body's length.")
    view = memoryview(body)
    return body[:length], view[length:]


def binary_size(tensor: dict[str, Any], what: str) -> int | None:
    """`parameters.binary_data_size` of a tensor, or None when its data is in the JSON."""
    parameters = tensor.get("parameters")
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        raise failure(f"{what}: 'parameters' must be an object.")
    size = parameters.get("binary_data_size")
    if size is None:
        return None
    if type(size) is not int or size < 0:
        raise failure(f"{what}: 'binary_data_size' must be a byte count (an integer >= 0).")
    return size


def binary_inputs(inputs: Sequence[Any], binary: memoryview) -> list[memoryview | None]:
    """Each input's bytes (None for an input with JSON data), checked against the body."""
    chunks: list[memoryview | None] = []
    offset = 0
    for i, tensor in enumerate(inputs):
        size = binary_size(tensor, f"input {i}") if isinstance(tensor, dict) else None
        if size is None:
            chunks.append(None)
            continue
        if "data" in tensor:
            raise failure(f"input {i} has both 'data' and 'binary_data_size': send one.")
        chunks.append(binary[offset: offset + size])
        offset += size
    if offset != len(binary):
        raise failure(f"The inputs' binary_data_size add up to {offset} bytes but "
                      f"{len(binary)} bytes follow the JSON header.")
    return chunks


def tensor_from_bytes(chunk: memoryview, datatype: str, shape: Sequence[int]) -> np.ndarray:
    """A read-only array over `chunk` (no copy), of `shape`, checked for its size."""
    dtype = DTYPES.get(datatype)
    if dtype is None:
        raise failure(f"Binary data of datatype {datatype!r} is not supported; send FP32.")
    count = int(np.prod(shape))
    if len(chunk) != count * dtype.itemsize:
        raise failure(f"The input's binary data is {len(chunk)} bytes but shape {list(shape)} "
                      f"of {datatype} needs {count * dtype.itemsize}.")
    return np.frombuffer(chunk, dtype=dtype).reshape(shape)


def wants_binary(payload: dict[str, Any], requested: dict[str, Any] | None) -> bool:
    """Whether one output goes in binary: its own `binary_data`, else the request's default."""
    own = requested.get("parameters") if requested is not None else None
    if own is not None and not isinstance(own, dict):
        raise failure("An output's 'parameters' must be an object.")
    if own is not None and "classification" in own:
        raise failure("This server does not support the classification extension: ask for "
                      "'probabilities' and 'digit' without class_count.")
    if own is not None and "binary_data" in own:
        flag = own["binary_data"]
        if not isinstance(flag, bool):
            raise failure("An output's 'binary_data' must be true or false.")
        return flag
    parameters = payload.get("parameters")
    flag = parameters.get("binary_data_output", False) if isinstance(parameters, dict) else False
    if not isinstance(flag, bool):
        raise failure("'binary_data_output' must be true or false.")
    return flag


def binary_output(name: str, datatype: str, array: np.ndarray,
                  chunks: list[bytes]) -> dict[str, Any]:
    """An output tensor's JSON for a binary answer; its bytes are appended to `chunks`.

    BYTES elements (an array of bytes objects) are written as the protocol serialises them:
    each one's length as a 4-byte little-endian integer, then its bytes."""
    if datatype == "BYTES":
        data = b"".join(len(item).to_bytes(4, "little") + item for item in array.reshape(-1))
    else:
        data = np.ascontiguousarray(array, dtype=DTYPES[datatype]).tobytes()
    chunks.append(data)
    return {"name": name, "datatype": datatype, "shape": list(array.shape),
            "parameters": {"binary_data_size": len(data)}}


def encode(body: dict[str, Any], chunks: list[bytes]) -> tuple[bytes, dict[str, str]]:
    """A binary answer's bytes (the JSON header, then the outputs' bytes) and its header."""
    header = orjson.dumps(body)
    return b"".join([header, *chunks]), {"Inference-Header-Content-Length": str(len(header))}
