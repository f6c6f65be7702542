"""POST /api/predict and /api/predict/batch: parse, call the model, shape the answer."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from anyio import to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from app.batchjson import PixelBatch, pixel_batch
from app.batchwork import (
    Batch,
    Digits,
    chunks,
    decode_items,
    needs_decoding,
    read_batch,
    read_batch_to_send,
    single_digit,
)
from app.deps import Serving, ServingDep
from app.inputs import (
    InputError,
    image_from_bytes,
    image_pixels,
    single_from_json,
)
from app.jsonio import json_response, parse_json
from app.limits import (
    INLINE_JSON_BYTES,
    LIGHT_COST,
    Work,
    WorkStopped,
    check_pixel_budget,
    json_cost,
    watch_client,
)
from app.metrics import timed, timed_function
from app.schemas import BatchResponse, ErrorBody, Prediction
from app.settings import Settings
from app.workers import WorkerPool
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


def answers(seen: np.ndarray, probs: np.ndarray, verdicts: list[dict[str, Any]] | None,
            previews: bool = True) -> list[dict[str, Any]]:
    """Predictions as the API shows them, rounded for the whole batch at once (1,000 answers:
    1.2 ms instead of 3.8 one by one); `previews=False` leaves the 28x28 previews out, and
    `verdicts=None` the verdicts."""
    digits = probs.argmax(axis=1)
    confidence = probs[np.arange(len(probs)), digits].astype(np.float64)
    rounded = np.round(probs.astype(np.float64), 6).tolist()
    out = []
    for i, digit in enumerate(digits.tolist()):
        one: dict[str, Any] = {"digit": digit, "confidence": round(float(confidence[i]), 6),
                               "probabilities": rounded[i]}
        if previews:
            one["preview"] = seen[i]  # (28, 28) uint8, written as nested lists
        if verdicts is not None:
            one["verdict"] = verdicts[i]["verdict"]
            one["verdict_detail"] = verdicts[i]
        out.append(one)
    return out


@timed_function("predict")
def run_model(predictor: Predictor, digits: np.ndarray, verdicts: bool = True
              ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]] | None]:
    """The model's input, its probabilities and (unless `verdicts` is false) its verdicts."""
    seen = predictor.model_input(digits)
    if not verdicts:
        return seen, predictor.probabilities_of_input(seen), None
    probs, judged = predictor.assess_input(seen)
    return seen, probs, judged


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
        body = await request.body()
        if len(body) > INLINE_JSON_BYTES:  # read, and its image decoded, in a worker process
            with timed("preprocess"):
                return "digit", await serving.limiter.offload(serving.work(request), single_digit,
                                                              body, serving.settings)
        return single_from_json(parse_json(body), serving.settings.max_body_bytes)
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
            with timed("preprocess"):
                digit = await serving.limiter.offload(serving.work(request), image_from_bytes,
                                                      value, settings.max_image_pixels)
        else:
            digit = image_from_bytes(value, settings.max_image_pixels)
    else:
        digit = value
    seen, probs, verdicts = run_model(predictor, digit[None])
    assert verdicts is not None
    body = answer(seen[0], probs[0], verdicts[0])
    registry.count_digits([body["digit"]])
    body["model_version"] = predictor.version
    body["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return json_response(body)


Answered = tuple[list[dict[str, Any]], list[int]]


def answer_digits(predictor: Predictor, decoded: Digits, previews: bool = True,
                  verdicts: bool = True) -> Answered:
    """The batch's answers in order (an item that failed: its error in its place) and the
    digits read."""
    results: list[dict[str, Any]] = []
    digits: list[int] = []
    if len(decoded.digits):
        seen, probs, judged = run_model(predictor, decoded.digits, verdicts)
        in_order = iter(answers(seen, probs, judged, previews))
    for i in range(decoded.size):
        item = decoded.errors.get(i)
        if item is not None:
            results.append({"error": str(item), "code": item.code, "status": item.status})
        else:
            body = next(in_order)
            digits.append(body["digit"])
            results.append(body)
    return results, digits


def answer_read(predictor: Predictor, read: PixelBatch) -> Answered:
    """A batch of raw pixels (the fast path's) answered: a matrix product, light whatever its
    size."""
    return answer_digits(predictor, Digits(read.pixels, {}), read.previews, read.verdicts)


def answer_light_batch(predictor: Predictor, body: bytes, settings: Settings) -> Answered | Batch:
    """Read and budget a small batch body (in a thread hop) and answer it at once if it is
    light (LIGHT_COST); a heavy one comes back to be decoded in a worker process."""
    read = read_batch(body, settings)
    if isinstance(read, PixelBatch):
        return answer_read(predictor, read)
    if read.cost > LIGHT_COST:
        return read
    return answer_digits(predictor, decode_items(read.items, read.has_images, read.recentre,
                                                 settings.max_image_pixels), read.previews,
                         read.verdicts)


def answer_pixel_batch(predictor: Predictor, body: bytes, settings: Settings) -> Answered | None:
    """A large body answered in this process (in a thread hop, holding a slot) if it is a
    batch of raw pixels (``pixel_batch``: simdjson copies its numbers into one array, about
    6 ms for 1,000 images, and refuses anything else before parsing it); None otherwise."""
    read = pixel_batch(body, settings.max_batch)
    return None if read is None else answer_read(predictor, read)


async def decode_batch(pool: WorkerPool, batch: Batch, max_pixels: int, work: Work) -> Digits:
    """The batch's digits, decoded in a worker process a chunk at a time (a few canvases, or
    one larger image); between chunks the deadline, the client and a shutdown are checked, so
    a batch stops early (a chunk already running finishes)."""
    if not needs_decoding(batch):  # checked pixels, as they are
        return decode_items(batch.items, False, False, max_pixels)
    parts: list[Digits] = []
    for start, end in chunks(batch):
        try:
            work.check()
        except WorkStopped as exc:
            logger.info("batch stopped after %d of %d images: %s", start, len(batch.items),
                        exc.detail)
            raise
        with timed("preprocess"):
            parts.append(await pool.call(decode_items, batch.items[start:end], batch.has_images,
                                         batch.recentre, max_pixels))
        batch.items[start:end] = [None] * (end - start)  # their bytes are not needed any more
    return Digits.join(parts)


async def answer_heavy_batch(serving: Serving, work: Work, body: bytes,
                             batch: Batch | None) -> Answered:
    """A large batch body (or a small one's Batch too heavy to answer in a thread hop): heavy
    work, it holds a worker slot. It is read in a worker process (a C parser holds the GIL
    throughout: orjson 50 ms for 8 MB, simdjson 5 ms for 1,000 flat images), where the images
    of a heavy batch are decoded too; but when it is the only heavy work, raw pixels are read
    and answered in a thread of this process, sparing the hop (about 3.5 MB each way, 10 ms
    for 1,000 images): with no other heavy work the event loop waits at most one parse, while
    16 such requests at once kept /healthz waiting up to 120 ms (benchmarks/hostile.py,
    pixels-16; 30 ms through the worker processes)."""
    predictor, settings, limiter = serving.predictor(), serving.settings, serving.limiter
    async with limiter.slot(work):
        tried = batch is None and limiter.alone()
        if tried:
            answered = await to_thread.run_sync(answer_pixel_batch, predictor, body, settings)
            if answered is not None:
                return answered
        read = batch if batch is not None else await limiter.pool.call(
            read_batch_to_send, body, settings, not tried)
        digits = (Digits(read.pixels, {}) if isinstance(read, PixelBatch) else
                  await decode_batch(limiter.pool, read, settings.max_image_pixels, work))
    return await to_thread.run_sync(answer_digits, predictor, digits, read.previews,
                                    read.verdicts)


@router.post(
    "/predict/batch",
    response_model=BatchResponse,
    responses=ERRORS,
    openapi_extra=BATCH_BODY,
    summary="Classify many digit images",
    description="`{\"images\": [...]}` or `{\"pixels\": [...]}`; answers in order. An item that "
    "fails is reported in its place with its error while the rest are answered. "
    "`\"previews\": false` leaves the 28x28 previews out of the answers; `\"verdicts\": false` "
    "leaves the verdicts out (and skips judging them, most of a batch's time).",
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
    limiter = serving.limiter
    async with watch_client(request, work):
        # A small body is read in a thread hop, and answered there if light; see
        # answer_heavy_batch for the others.
        outcome: Answered | Batch | None = None
        if json_cost(len(body)) <= LIGHT_COST:
            outcome = await limiter.run(work, answer_light_batch, predictor, body, settings,
                                        cost=json_cost(len(body)))
        if not isinstance(outcome, tuple):
            outcome = await answer_heavy_batch(serving, work, body, outcome)
    results, digits = outcome
    registry.count_digits(digits)
    return json_response({
        "predictions": results,
        "model_version": predictor.version,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 3),
    })
