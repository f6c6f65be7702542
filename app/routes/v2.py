"""The Open Inference Protocol v2 (KServe / Triton / Seldon REST), so standard clients work.

Input: one FP32 tensor of shape [N, 784] or [N, 28, 28], pixels 0..1 in MNIST form (light digit
on dark). Outputs: `probabilities` FP32 [N, 10] and `digit` INT64 [N]. Errors: 400 {"error"}.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from app.deps import ServiceDep, ServingDep
from app.inputs import InputError
from app.jsonio import json_response, parse_json
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
from model.inference import Predictor

MODEL_NAME = "mnist-logreg"
OUTPUTS = ("probabilities", "digit")
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
    return {"name": "mnist-canvas", "version": _server_version(), "extensions": []}


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
    if not np.isfinite(array).all():
        raise V2Failure("'data' holds NaN or infinity; pixels are numbers from 0 to 1.")
    if array.min() < 0 or array.max() > 1:
        raise V2Failure("FP32 pixels must be between 0 and 1 (MNIST form, light digit on dark).")
    return array.astype(np.float32)


def parse_infer(payload: Any, max_batch: int) -> tuple[np.ndarray, list[str], str | None]:
    if not isinstance(payload, dict):
        raise V2Failure("The request must be a JSON object with 'inputs'.")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise V2Failure("'inputs' must be a list holding one tensor.")
    tensor = inputs[0]
    if tensor.get("datatype") != "FP32":
        raise V2Failure(f"Input datatype must be FP32, got {tensor.get('datatype')!r}.")
    shape = tensor.get("shape")
    if not (isinstance(shape, list) and all(type(v) is int and v > 0 for v in shape)
            and len(shape) in (2, 3) and (shape[1:] == [784] or shape[1:] == [28, 28])):
        raise V2Failure(f"Input shape must be [N, 784] or [N, 28, 28] with N >= 1, got {shape}.")
    if shape[0] > max_batch:
        raise V2Failure(f"N = {shape[0]} exceeds the maximum batch of {max_batch}.")
    pixels = _flatten(tensor.get("data"), shape[0] * 784).reshape(shape[0], 28, 28)
    wanted = payload.get("outputs")
    names = list(OUTPUTS)
    if wanted is not None:
        if not isinstance(wanted, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in wanted
        ):
            raise V2Failure("'outputs' must be a list of objects with a 'name'.")
        names = [o["name"] for o in wanted]
        unknown = [n for n in names if n not in OUTPUTS]
        if unknown:
            raise V2Failure(f"Unknown outputs {unknown}; available: {list(OUTPUTS)}.")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise V2Failure("'id' must be a string.")
    return pixels * 255.0, names, request_id


def infer_sync(predictor: Predictor, payload: Any, max_batch: int) -> tuple[dict[str, Any],
                                                                             list[int]]:
    pixels, names, request_id = parse_infer(payload, max_batch)
    with timed("predict"):
        probs = predictor.probabilities(pixels)
    digits = probs.argmax(axis=1)
    n = len(pixels)
    tensors = {
        "probabilities": {"name": "probabilities", "datatype": "FP32", "shape": [n, 10],
                          "data": [round(float(v), 7) for v in probs.reshape(-1)]},
        "digit": {"name": "digit", "datatype": "INT64", "shape": [n],
                  "data": [int(d) for d in digits]},
    }
    body: dict[str, Any] = {"model_name": MODEL_NAME, "model_version": predictor.version,
                            "outputs": [tensors[name] for name in names]}
    if request_id is not None:
        body["id"] = request_id
    return body, [int(d) for d in digits]


@router.post(
    "/models/{name}/infer",
    response_model=V2InferResponse,
    responses=ERRORS,
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/V2InferRequest"}}}}},
    summary="Inference",
)
async def infer(name: str, request: Request, serving: ServingDep) -> Response:
    predictor = _predictor(serving.service, name)
    try:
        payload = parse_json(await request.body())
    except InputError as exc:
        raise V2Failure(str(exc)) from exc
    max_batch = serving.settings.max_batch
    body, digits = await run_in_threadpool(infer_sync, predictor, payload, max_batch)
    serving.registry.count_digits(digits)
    return json_response(body)
