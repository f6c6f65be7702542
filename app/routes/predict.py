"""POST /api/predict and /api/predict/batch: parse, call the model, shape the answer."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from app.deps import ServingDep
from app.inputs import (
    InputError,
    check_preprocess_flag,
    decode_base64_image,
    image_from_bytes,
    pixels_to_digit,
)
from app.jsonio import json_response, parse_json
from app.metrics import timed_function
from app.schemas import BatchResponse, ErrorBody, Prediction
from model.inference import Predictor

router = APIRouter(prefix="/api", tags=["predict"])

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 413, 415, 422, 503)
}
PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/PredictJSON"}},
            "multipart/form-data": {"schema": {"$ref": "#/components/schemas/PredictUpload"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchJSON"}}},
    }
}
JSON_TYPES = ("application/json",)
INLINE_IMAGE_BYTES = 64 * 1024  # a 280x280 canvas PNG is 2 to 10 KB


def answer(seen: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """One prediction as the API shows it, from the model's input and its probabilities."""
    digit = int(probs.argmax())
    return {
        "digit": digit,
        "confidence": round(float(probs[digit]), 6),
        "probabilities": np.round(probs.astype(np.float64), 6).tolist(),
        "preview": seen,  # (28, 28) uint8, written as nested lists
    }


@timed_function("predict")
def run_model(predictor: Predictor, digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    seen = predictor.model_input(digits)
    return seen, predictor.probabilities_of_input(seen)


async def read_single(request: Request, max_chars: int) -> tuple[str, Any]:
    """('image', bytes) or ('digit', (28, 28) array) from any of the accepted body forms."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=10)
        except Exception as exc:  # the multipart parser's many error types
            if getattr(exc, "status_code", 400) == 413:
                raise
            raise InputError("The multipart form could not be parsed: send the image in a form "
                             "field named 'file'.", 400, "bad_form") from exc
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InputError("Send the image in a multipart form field named 'file'.",
                             422, "missing_field")
        return "image", await upload.read()
    if ctype.startswith("image/"):
        return "image", await request.body()
    if ctype in JSON_TYPES or ctype.endswith("+json"):
        payload = parse_json(await request.body())
        if not isinstance(payload, dict):
            raise InputError("The JSON body must be an object with 'image' or 'pixels'.",
                             422, "bad_json_shape")
        has_image, has_pixels = "image" in payload, "pixels" in payload
        if has_image == has_pixels:
            raise InputError("Send exactly one of 'image' (a data URL or base64 image) or "
                             "'pixels' (784 numbers 0..255).", 422, "missing_field")
        if has_image:
            return "image", decode_base64_image(payload["image"], max_chars)
        recentre = check_preprocess_flag(payload.get("preprocess"))
        return "digit", pixels_to_digit(payload["pixels"], recentre)
    raise InputError(
        f"Unsupported Content-Type {ctype or '(none)'!r}: send application/json, "
        "multipart/form-data with a 'file' field, or an image/* body.", 415, "unsupported_media")


@router.post(
    "/predict",
    response_model=Prediction,
    responses=ERRORS,
    openapi_extra=PREDICT_BODY,
    summary="Classify one digit image",
    description="JSON `{\"image\": data URL}` or `{\"pixels\": [...784]}`, a multipart upload "
    "in field `file`, or a raw image/* body. Answers the digit, all ten probabilities and the "
    "28x28 image the model saw.",
)
async def predict(
    request: Request, serving: ServingDep
) -> Response:
    started = time.perf_counter()
    predictor, settings, registry = serving.predictor(), serving.settings, serving.registry
    kind, value = await read_single(request, settings.max_body_bytes)
    if kind == "image" and len(value) > INLINE_IMAGE_BYTES:
        # Decoding a big image can take a while: keep it off the event loop.
        digit = await run_in_threadpool(image_from_bytes, value, settings.max_image_pixels)
    elif kind == "image":
        # A canvas-sized image takes about a millisecond: the threadpool hop and its
        # contention for the GIL cost more than they save.
        digit = image_from_bytes(value, settings.max_image_pixels)
    else:
        digit = value
    seen, probs = run_model(predictor, digit[None])
    body = answer(seen[0], probs[0])
    registry.count_digits([body["digit"]])
    body["model_version"] = predictor.version
    body["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return json_response(body)


def batch_digits(payload: dict[str, Any], max_batch: int, max_pixels: int,
                 max_chars: int) -> list[np.ndarray | InputError]:
    has_images, has_pixels = "images" in payload, "pixels" in payload
    if has_images == has_pixels:
        raise InputError("Send exactly one of 'images' (a list of data URLs or base64 images) or "
                         "'pixels' (a list of 784-number images).", 422, "missing_field")
    key = "images" if has_images else "pixels"
    items = payload[key]
    if not isinstance(items, list):
        raise InputError(f"'{key}' must be a list.", 422, "bad_json_shape")
    if not items:
        raise InputError(f"'{key}' is empty: send at least one image.", 422, "empty_batch")
    if len(items) > max_batch:
        raise InputError(f"The batch has {len(items)} images; the maximum is {max_batch}. "
                         "Split it into smaller batches.", 413, "batch_too_large")
    recentre = check_preprocess_flag(payload.get("preprocess"))
    out: list[np.ndarray | InputError] = []
    for i, item in enumerate(items):
        try:
            if has_images:
                data = decode_base64_image(item, max_chars)
                out.append(image_from_bytes(data, max_pixels))
            else:
                out.append(pixels_to_digit(item, recentre, where=f"'pixels'[{i}]"))
        except InputError as exc:
            out.append(exc)
    return out


def predict_batch_sync(predictor: Predictor, payload: Any, max_batch: int, max_pixels: int,
                       max_chars: int) -> tuple[list[dict[str, Any]], list[int]]:
    if not isinstance(payload, dict):
        raise InputError("The JSON body must be an object with 'images' or 'pixels'.",
                         422, "bad_json_shape")
    parsed = batch_digits(payload, max_batch, max_pixels, max_chars)
    good = [i for i, d in enumerate(parsed) if not isinstance(d, InputError)]
    results: list[dict[str, Any]] = []
    digits: list[int] = []
    if good:
        stack = np.stack([parsed[i] for i in good])  # type: ignore[misc]
        seen, probs = run_model(predictor, stack)
        answers = iter(answer(s, p) for s, p in zip(seen, probs, strict=True))
    for item in parsed:
        if isinstance(item, InputError):
            results.append({"error": str(item), "code": item.code, "status": item.status})
        else:
            body = next(answers)
            digits.append(body["digit"])
            results.append(body)
    return results, digits


@router.post(
    "/predict/batch",
    response_model=BatchResponse,
    responses=ERRORS,
    openapi_extra=BATCH_BODY,
    summary="Classify many digit images",
    description="`{\"images\": [...]}` or `{\"pixels\": [...]}`; answers in order. An item that "
    "fails is reported in its place with its error while the rest are answered.",
)
async def predict_batch(
    request: Request, serving: ServingDep
) -> Response:
    started = time.perf_counter()
    predictor, settings, registry = serving.predictor(), serving.settings, serving.registry
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in JSON_TYPES and not ctype.endswith("+json"):
        raise InputError(f"Unsupported Content-Type {ctype or '(none)'!r}: send application/json.",
                         415, "unsupported_media")
    payload = parse_json(await request.body())
    results, digits = await run_in_threadpool(
        predict_batch_sync, predictor, payload, settings.max_batch, settings.max_image_pixels,
        settings.max_body_bytes,
    )
    registry.count_digits(digits)
    return json_response({
        "predictions": results,
        "model_version": predictor.version,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 3),
    })
