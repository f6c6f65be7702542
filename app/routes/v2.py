"""The Open Inference Protocol v2 (KServe / Triton / Seldon REST), so standard clients work.

Input: one FP32 tensor of shape [N, 784] or [N, 28, 28], pixels 0..1 in MNIST form (light digit
on dark). Outputs: `probabilities` FP32 [N, 10], `digit` INT64 [N] and `verdict` BYTES [N]
("digit", "unsure" or "not_a_digit", see model/verdict.py). Errors: 400 {"error"}.
Tensors travel in JSON or, with the binary tensor data extension, as raw bytes after a JSON
header (see app.v2binary).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from app.deps import ServiceDep, ServingDep
from app.inputs import InputError
from app.jsonio import json_response, parse_json
from app.limits import check_json_counts, watch_client
from app.metrics import timed
from app.schemas import (
    V2Error,
    V2InferResponse,
    V2Live,
    V2ModelMetadata,
    V2ModelReady,
    V2Ready,
    V2ServerMetadata,
)
from app.v2binary import (
    BINARY_CONTENT_TYPE,
    HEADER,
    NO_BINARY,
    binary_inputs,
    binary_output,
    encode,
    split_body,
    tensor_from_bytes,
    wants_binary,
)
from model.inference import Predictor

MODEL_NAME = "mnist-logreg"
# Content types the infer route reads: JSON, and the binary tensor extension's octet-stream.
# Anything else (text/plain, forms: what a hostile page may post cross-site) is a 415.
INFER_TYPES = ("application/json", "application/octet-stream")
OUTPUTS = ("probabilities", "digit", "verdict")
DATATYPES = {"probabilities": "FP32", "digit": "INT64", "verdict": "BYTES"}
EXTENSIONS = ["binary_tensor_data"]
BINARY_BODY = {"schema": {"type": "string", "format": "binary"}}
router = APIRouter(prefix="/v2", tags=["inference protocol v2"])
ERRORS: dict[int | str, dict[str, Any]] = {400: {"model": V2Error}, 404: {"model": V2Error},
                                           503: {"model": V2Error}}


class V2Failure(InputError):
    """A protocol error: answered as {"error": ...} by the app's error handler (path /v2)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message, status, "v2")


def _server_version() -> str:
    try:
        return version("mnist-canvas")
    except PackageNotFoundError:
        return "0"


def _predictor(service: ServiceDep, name: str) -> Predictor:
    if name != MODEL_NAME:
        raise V2Failure(f"Unknown model {name!r}; this server serves {MODEL_NAME!r}.", 404)
    if service.predictor is None:
        raise V2Failure("The model is not ready yet; retry shortly.", 503)
    return service.predictor


@router.get("", response_model=V2ServerMetadata, summary="Server metadata")
async def server_metadata() -> dict[str, Any]:
    return {"name": "mnist-canvas", "version": _server_version(), "extensions": EXTENSIONS}


@router.get("/health/live", response_model=V2Live, summary="Server liveness")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", response_model=V2Ready, responses={503: {"model": V2Ready}},
            summary="Server readiness")
async def ready(service: ServiceDep) -> JSONResponse:
    return JSONResponse({"ready": service.ready}, status_code=200 if service.ready else 503)


@router.get("/models/{name}", response_model=V2ModelMetadata, responses=ERRORS,
            summary="Model metadata")
async def model_metadata(name: str, service: ServiceDep) -> dict[str, Any]:
    predictor = _predictor(service, name)
    return {
        "name": MODEL_NAME,
        "versions": [predictor.version],
        "platform": "pytorch",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 784]}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
            {"name": "digit", "datatype": "INT64", "shape": [-1]},
            {"name": "verdict", "datatype": "BYTES", "shape": [-1]},
        ],
    }


@router.get("/models/{name}/ready", response_model=V2ModelReady, responses=ERRORS,
            summary="Model readiness")
async def model_ready(name: str, service: ServiceDep) -> JSONResponse:
    if name != MODEL_NAME:
        raise V2Failure(f"Unknown model {name!r}; this server serves {MODEL_NAME!r}.", 404)
    return JSONResponse({"name": MODEL_NAME, "ready": service.ready},
                        status_code=200 if service.ready else 503)


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


def infer_sync(predictor: Predictor, raw: bytes, header_length: str | None,
               max_batch: int) -> tuple[dict[str, Any], list[bytes], np.ndarray]:
    """The answer's JSON, the bytes of its binary outputs (in order) and the digits. The body
    is split and its JSON parsed here, in the worker thread: a 1,000-image body is 4 MB."""
    check_json_counts(raw, max_batch, json_length(len(raw), header_length))  # before parsing
    try:
        header, binary = split_body(raw, header_length)
        payload = parse_json(header)
    except InputError as exc:
        raise V2Failure(str(exc)) from exc
    pixels, outputs, request_id = parse_infer(payload, max_batch, binary)
    with timed("predict"):
        probs, verdicts = predictor.assess_input(predictor.model_input(pixels))
    digits = probs.argmax(axis=1)
    n = len(pixels)
    words = [v["verdict"] for v in verdicts]
    arrays = {"probabilities": probs, "digit": digits,
              "verdict": np.array([w.encode() for w in words], dtype=object)}
    json_tensors = {
        "probabilities": lambda: {"name": "probabilities", "datatype": "FP32", "shape": [n, 10],
                                  "data": [round(float(v), 7) for v in probs.reshape(-1)]},
        "digit": lambda: {"name": "digit", "datatype": "INT64", "shape": [n],
                          "data": digits.tolist()},
        "verdict": lambda: {"name": "verdict", "datatype": "BYTES", "shape": [n],
                            "data": words},
    }
    chunks: list[bytes] = []
    tensors = [binary_output(name, DATATYPES[name], arrays[name], chunks) if in_binary
               else json_tensors[name]() for name, in_binary in outputs]
    body: dict[str, Any] = {"model_name": MODEL_NAME, "model_version": predictor.version,
                            "outputs": tensors}
    if request_id is not None:
        body["id"] = request_id
    return body, chunks, digits


@router.post(
    "/models/{name}/infer",
    response_model=V2InferResponse,
    responses={**ERRORS, 200: {"content": {BINARY_CONTENT_TYPE: BINARY_BODY}}},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/V2InferRequest"}},
        BINARY_CONTENT_TYPE: BINARY_BODY}}},
    summary="Inference",
    description="JSON tensors, or the binary tensor data extension: a JSON header of "
    "`Inference-Header-Content-Length` bytes followed by the inputs' raw bytes; outputs asked "
    "for in binary follow the answer's JSON header the same way.",
)
async def infer(name: str, request: Request, serving: ServingDep) -> Response:
    predictor = _predictor(serving.service, name)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    header_length = request.headers.get(HEADER)
    # Triton's client sends no Content-Type, only Inference-Header-Content-Length; a browser
    # cannot send that header cross-site without a CORS preflight (which is never granted), so
    # a body without a type is read only when it comes with it.
    readable = ctype in INFER_TYPES or ctype.endswith("+json") or (
        not ctype and header_length is not None)
    if not readable:
        raise V2Failure(f"Unsupported Content-Type {ctype or '(none)'!r}: send application/json "
                        "(or the binary tensor extension's application/octet-stream with "
                        f"{HEADER}).", 415)
    raw = await request.body()
    max_batch = serving.settings.max_batch
    work = serving.work(request)
    async with watch_client(request, work):
        # Reading JSON numbers costs about what decoding two pixels per byte does (4 MB for
        # 1,000 tensors, about 0.1 s); binary tensors are copied, not read: a small request
        # takes no worker slot, a large one waits for one.
        body, chunks, digits = await serving.limiter.run(
            work, infer_sync, predictor, raw, header_length, max_batch,
            cost=infer_cost(len(raw), header_length))
    serving.registry.count_digits(digits.tolist())
    if not chunks:
        return json_response(body)
    content, headers = encode(body, chunks)
    return Response(content, media_type=BINARY_CONTENT_TYPE, headers=headers)


def infer_cost(size: int, header_length: str | None) -> int:
    """What a body costs to read, in the limiter's units (decoded pixels)."""
    json_bytes = json_length(size, header_length)
    return 2 * json_bytes + (size - json_bytes) // 4


def json_length(size: int, header_length: str | None) -> int:
    """The bytes of a body's JSON part: all of it, or the binary extension's header."""
    text = (header_length or "").strip()
    return min(int(text), size) if text.isascii() and text.isdigit() else size
