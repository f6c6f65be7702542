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
from anyio import to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from app.deps import ServiceDep, ServingDep
from app.jsonio import json_response
from app.limits import LIGHT_COST, watch_client
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
    binary_output,
    encode,
)
from app.v2parse import V2Failure, json_length, read_infer
from model.inference import Predictor

MODEL_NAME = "mnist-logreg"
# Content types the infer route reads: JSON, and the binary tensor extension's octet-stream.
# Anything else (text/plain, forms: what a hostile page may post cross-site) is a 415.
INFER_TYPES = ("application/json", "application/octet-stream")
DATATYPES = {"probabilities": "FP32", "digit": "INT64", "verdict": "BYTES"}
EXTENSIONS = ["binary_tensor_data"]
BINARY_BODY = {"schema": {"type": "string", "format": "binary"}}
router = APIRouter(prefix="/v2", tags=["inference protocol v2"])
ERRORS: dict[int | str, dict[str, Any]] = {400: {"model": V2Error}, 404: {"model": V2Error},
                                           503: {"model": V2Error}}


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


def infer_sync(predictor: Predictor, raw: bytes, header_length: str | None,
               max_batch: int) -> tuple[dict[str, Any], list[bytes], np.ndarray]:
    """A light request read and answered in one thread hop."""
    return answer_infer(predictor, *read_infer(raw, header_length, max_batch))


def answer_infer(predictor: Predictor, pixels: np.ndarray, outputs: list[tuple[str, bool]],
                 request_id: str | None) -> tuple[dict[str, Any], list[bytes], np.ndarray]:
    """The answer's JSON, the bytes of its binary outputs (in order) and the digits."""
    # The verdict costs about 13 us an image in a batch, five times the rest: it is judged
    # only when the request asks for it (a request that names no outputs asks for all three).
    with timed("predict"):
        seen = predictor.model_input(pixels)
        if any(name == "verdict" for name, _ in outputs):
            probs, words = predictor.assess_words(seen)
        else:
            probs, words = predictor.probabilities_of_input(seen), []
    digits = probs.argmax(axis=1)
    n = len(pixels)
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
        # takes no worker slot, a large one waits for one. A large JSON part is read in a
        # worker process (app/workers.py); binary tensors after a small JSON header are
        # read in this process's thread hop (a copy: sending them to a worker took longer).
        limiter, cost = serving.limiter, infer_cost(len(raw), header_length)
        if 2 * json_length(len(raw), header_length) <= LIGHT_COST:
            body, chunks, digits = await limiter.run(work, infer_sync, predictor, raw,
                                                     header_length, max_batch, cost=cost)
        else:
            async with limiter.slot(work):
                read = await limiter.pool.call(read_infer, raw, header_length, max_batch)
            del raw
            body, chunks, digits = await to_thread.run_sync(answer_infer, predictor, *read)
    serving.registry.count_digits(digits.tolist())
    if not chunks:
        return json_response(body)
    content, headers = encode(body, chunks)
    return Response(content, media_type=BINARY_CONTENT_TYPE, headers=headers)


def infer_cost(size: int, header_length: str | None) -> int:
    """What a body costs to read, in the limiter's units (decoded pixels)."""
    json_bytes = json_length(size, header_length)
    return 2 * json_bytes + (size - json_bytes) // 4
