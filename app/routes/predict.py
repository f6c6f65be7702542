"""POST /api/predict and /api/predict/batch: parse, call the model, shape the answer."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from app.batchjson import pixel_batch
from app.deps import Serving, ServingDep
from app.inputs import (
    InputError,
    check_preprocess_flag,
    decode_base64_image,
    image_from_bytes,
    image_pixels,
    one_field,
    pixels_to_digit,
    single_from_json,
)
from app.jsonio import json_response, parse_json
from app.limits import (
    LIGHT_COST,
    Work,
    WorkStopped,
    check_json_counts,
    check_pixel_budget,
    json_cost,
    parse_json_body,
    watch_client,
)
from app.metrics import timed_function
from app.schemas import BatchResponse, ErrorBody, Prediction
from app.settings import Settings
from model.inference import Predictor

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["predict"])

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 408, 413, 415, 422, 503, 504)
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
# Images up to this many pixels are read on the event loop: a 280x280 canvas takes about a
# millisecond, less than a thread hop and its contention for the GIL. Larger ones, decided by
# the pixels in their header and never by their compressed size, go to a worker thread.
INLINE_PIXELS = 400 * 400


def answer(seen: np.ndarray, probs: np.ndarray, verdict: dict[str, Any]) -> dict[str, Any]:
    """One prediction as the API shows it, from the model's input, its probabilities and the
    verdict on it."""
    return answers(seen[None], probs[None], [verdict])[0]


def answers(seen: np.ndarray, probs: np.ndarray, verdicts: list[dict[str, Any]],
            previews: bool = True) -> list[dict[str, Any]]:
    """Predictions as the API shows them, rounded for the whole batch at once (1,000 answers:
    1.2 ms instead of 3.8 one by one); `previews=False` leaves the 28x28 previews out."""
    digits = probs.argmax(axis=1)
    confidence = probs[np.arange(len(probs)), digits].astype(np.float64)
    rounded = np.round(probs.astype(np.float64), 6).tolist()
    out = []
    for i, digit in enumerate(digits.tolist()):
        one: dict[str, Any] = {"digit": digit, "confidence": round(float(confidence[i]), 6),
                               "probabilities": rounded[i]}
        if previews:
            one["preview"] = seen[i]  # (28, 28) uint8, written as nested lists
        one["verdict"] = verdicts[i]["verdict"]
        one["verdict_detail"] = verdicts[i]
        out.append(one)
    return out


@timed_function("predict")
def run_model(predictor: Predictor,
              digits: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    seen = predictor.model_input(digits)
    probs, verdicts = predictor.assess_input(seen)
    return seen, probs, verdicts


async def read_single(request: Request, serving: Serving) -> tuple[str, Any]:
    """('image', bytes) or ('digit', (28, 28) array) from any of the accepted body forms."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=10)
        except Exception as exc:  # the multipart parser's many error types
            if getattr(exc, "status_code", 400) in (408, 413):
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
        payload = await parse_json_body(serving.limiter, serving.work(request),
                                        await request.body(), serving.settings.max_batch)
        return single_from_json(payload, serving.settings.max_body_bytes)
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
    "in field `file`, or a raw image/* body. Answers the digit, all ten probabilities, the "
    "28x28 image the model saw and a verdict: `digit`, `unsure` or `not_a_digit`, with the "
    "scores and thresholds behind it in `verdict_detail`.",
)
async def predict(
    request: Request, serving: ServingDep
) -> Response:
    started = time.perf_counter()
    predictor, settings, registry = serving.predictor(), serving.settings, serving.registry
    kind, value = await read_single(request, serving)
    if kind == "image":
        # What decoding will cost, from the header (413 over the limits), before any decoding.
        pixels = image_pixels(value, settings.max_image_pixels)
        check_pixel_budget(pixels, settings.max_request_pixels)
        if pixels > INLINE_PIXELS:
            digit = await serving.limiter.run(serving.work(request), image_from_bytes, value,
                                              settings.max_image_pixels)
        else:
            digit = image_from_bytes(value, settings.max_image_pixels)
    else:
        digit = value
    seen, probs, verdicts = run_model(predictor, digit[None])
    body = answer(seen[0], probs[0], verdicts[0])
    registry.count_digits([body["digit"]])
    body["model_version"] = predictor.version
    body["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return json_response(body)


def budget_images(items: list[Any], max_pixels: int, max_chars: int,
                  max_request_pixels: int) -> tuple[list[bytes | InputError], int]:
    """The bytes of every image (or its error) and their pixels in all, refused as a whole
    (413) past `max_request_pixels`: nothing is decoded before that is known."""
    blobs: list[bytes | InputError] = []
    total = 0
    for item in items:
        try:
            data = decode_base64_image(item, max_chars)
            total += image_pixels(data, max_pixels)
            blobs.append(data)
        except InputError as exc:
            blobs.append(exc.detached())
    check_pixel_budget(total, max_request_pixels)
    return blobs, total


@dataclass
class Batch:
    """A batch request checked and budgeted, nothing decoded yet."""

    items: list[Any]  # image bytes (or their InputError), or pixel lists
    has_images: bool
    recentre: bool
    cost: int  # decoded pixels, or their equivalent for pixel items
    previews: bool = True  # False: the answers leave the 28x28 previews out


def prepare_batch(body: bytes, settings: Settings) -> Batch:
    """Parse and check a batch body; read the images' headers and refuse the request (413) if
    they hold more than the request's pixel budget. Cheap: nothing is decoded."""
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
    previews = payload.get("previews", True)
    if not isinstance(previews, bool):
        raise InputError("'previews' must be true or false.", code="bad_flag")
    if has_images:
        blobs, pixels = budget_images(items, settings.max_image_pixels, settings.max_body_bytes,
                                      settings.max_request_pixels)
        return Batch(blobs, True, recentre, pixels, previews)
    # Recentring 28x28 pixels costs about what a canvas's decoding does; a plain matrix row, not.
    return Batch(items, False, recentre, len(items) * (280 * 280 if recentre else 28 * 28),
                 previews)


def batch_digits(batch: Batch, max_pixels: int, work: Work) -> list[np.ndarray | InputError]:
    items = batch.items
    out: list[np.ndarray | InputError] = []
    for i, item in enumerate(items):
        try:
            work.check()  # the deadline, the client, the shutdown: stop between items
        except WorkStopped as exc:
            logger.info("batch stopped after %d of %d images: %s", i, len(items), exc.detail)
            raise
        try:
            if isinstance(item, InputError):
                out.append(item)
            elif batch.has_images:
                out.append(image_from_bytes(item, max_pixels))
                items[i] = None  # its bytes are not needed any more
            else:
                out.append(pixels_to_digit(item, batch.recentre, where=f"'pixels'[{i}]"))
        except InputError as exc:
            out.append(exc.detached())
    return out


def predict_batch_sync(predictor: Predictor, batch: Batch, max_pixels: int,
                       work: Work) -> tuple[list[dict[str, Any]], list[int]]:
    parsed = batch_digits(batch, max_pixels, work)
    good = [i for i, d in enumerate(parsed) if not isinstance(d, InputError)]
    results: list[dict[str, Any]] = []
    digits: list[int] = []
    if good:
        stack = np.stack([parsed[i] for i in good])  # type: ignore[misc]
        seen, probs, verdicts = run_model(predictor, stack)
        in_order = iter(answers(seen, probs, verdicts, batch.previews))
    for item in parsed:
        if isinstance(item, InputError):
            results.append({"error": str(item), "code": item.code, "status": item.status})
        else:
            body = next(in_order)
            digits.append(body["digit"])
            results.append(body)
    return results, digits


def answer_light_batch(predictor: Predictor, body: bytes, settings: Settings, work: Work,
                       holds_slot: bool = False
                       ) -> tuple[list[dict[str, Any]], list[int]] | Batch:
    """Parse and budget the batch (8 MB of JSON is tens of ms: in a thread, as this is); answer
    it at once if it is light (LIGHT_COST) or this thread holds a worker slot already, or
    return it to wait for one."""
    containers = check_json_counts(body, settings.max_batch)  # 8 ms for 5 MB: off the loop
    # Raw pixels, checked as one array (batchjson), when the body can be one: an object and
    # an array per image. Others (28x28 rows) skip its parse, 15 ms of GIL for 5 MB.
    fast = (pixel_batch(body, settings.max_batch) if containers <= settings.max_batch + 2
            else None)
    if fast is not None:  # a matrix product: light whatever its size
        seen, probs, verdicts = run_model(predictor, fast[0])
        answered = answers(seen, probs, verdicts, previews=fast[1])
        return answered, [one["digit"] for one in answered]
    batch = prepare_batch(body, settings)
    if batch.cost > LIGHT_COST and not holds_slot:
        return batch
    return predict_batch_sync(predictor, batch, settings.max_image_pixels, work)


@router.post(
    "/predict/batch",
    response_model=BatchResponse,
    responses=ERRORS,
    openapi_extra=BATCH_BODY,
    summary="Classify many digit images",
    description="`{\"images\": [...]}` or `{\"pixels\": [...]}`; answers in order. An item that "
    "fails is reported in its place with its error while the rest are answered. "
    "`\"previews\": false` leaves the 28x28 previews out of the answers.",
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
    body = await request.body()
    work = serving.work(request)
    async with watch_client(request, work):
        # Reading a large body is heavy work of its own (orjson holds the GIL throughout): it
        # takes a worker slot, and the batch is answered in it. A small body is read in a
        # thread hop, and answered there if light; a heavy one comes back to wait for a slot.
        cost = json_cost(len(body))
        outcome = await serving.limiter.run(work, answer_light_batch, predictor, body, settings,
                                            work, cost > LIGHT_COST, cost=cost)
        if isinstance(outcome, Batch):
            outcome = await serving.limiter.run(work, predict_batch_sync, predictor, outcome,
                                                settings.max_image_pixels, work)
    results, digits = outcome
    registry.count_digits(digits)
    return json_response({
        "predictions": results,
        "model_version": predictor.version,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 3),
    })
