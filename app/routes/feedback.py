"""The corrections API: POST /api/feedback, its stats, and the admin routes (list, delete, export).

A correction's drawing is read exactly as a prediction's (app.inputs, the same preprocessing),
and the 28x28 MNIST-form image is what is stored. Database work runs in the thread pool, one
transaction per call; a database that is down or locked answers 503 while predictions go on.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.corrections import (
    CorrectionFilter,
    NewCorrection,
    image_from_row,
    page,
    remove,
    stats,
    store,
)
from app.db.database import Database, DatabaseUnavailable
from app.deps import ServingDep
from app.exports import MEDIA_TYPES, SUFFIXES, export_corrections
from app.feedback_schemas import (
    FeedbackCreated,
    FeedbackDeleted,
    FeedbackJSON,
    FeedbackPage,
    FeedbackStats,
)
from app.inputs import InputError, image_from_bytes, image_pixels, single_from_json
from app.jsonio import json_response
from app.limits import parse_json_body
from app.ratelimit import RateLimiter
from app.schemas import ErrorBody
from app.settings import Settings

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/feedback", tags=["feedback"])
T = TypeVar("T")

#: The drawing kept when a person ticks "share the drawing": a canvas PNG is 2 to 10 KB.
MAX_CANVAS_BYTES = 64 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLIENT_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (503,)}
POST_ERRORS: dict[int | str, dict[str, Any]] = {
    200: {"model": FeedbackCreated, "description": "an exact duplicate: the existing id"},
    **{code: {"model": ErrorBody} for code in (400, 413, 415, 422, 429, 503)},
}
ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (401, 403, 422, 503)}
POST_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": FeedbackJSON.model_json_schema()}},
    }
}


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def get_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.feedback_limiter
    return limiter


bearer = HTTPBearer(auto_error=False, description="MNIST_CANVAS_ADMIN_TOKEN")


async def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """403 when no admin token is configured; 401 for a missing or wrong one (constant time)."""
    settings: Settings = request.app.state.settings
    if settings.admin_token is None or not settings.admin_token.get_secret_value():
        raise HTTPException(403, detail="The admin routes are off: set MNIST_CANVAS_ADMIN_TOKEN "
                            "on the server to list, delete or export corrections.")
    given = credentials.credentials.encode() if credentials else b""
    expected = settings.admin_token.get_secret_value().encode()
    if not hmac.compare_digest(given, expected):
        raise HTTPException(401, detail="Send the admin token as 'Authorization: Bearer <token>' "
                            "(the value of MNIST_CANVAS_ADMIN_TOKEN).",
                            headers={"WWW-Authenticate": "Bearer"})


DatabaseDep = Annotated[Database, Depends(get_database)]
Admin = [Depends(require_admin)]


async def in_thread(function: Callable[..., T], *args: Any) -> T:
    """Run database work in the thread pool; a database that is down becomes a 503."""
    try:
        return await run_in_threadpool(function, *args)
    except DatabaseUnavailable as exc:
        raise HTTPException(503, detail=str(exc),
                            headers={"Retry-After": str(exc.retry_after)}) from exc


def digit_field(payload: dict[str, Any], key: str, *, required: bool) -> int | None:
    if key not in payload or payload[key] is None:
        if required:
            raise InputError(f"'{key}' is missing: send the right digit as an integer from 0 "
                             "to 9.", 422, "missing_label")
        return None
    value = payload[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"'{key}' must be an integer from 0 to 9, not {value!r:.40}.",
                         422, "bad_label")
    if not 0 <= value <= 9:
        raise InputError(f"'{key}' must be a digit from 0 to 9, not {value}.", 422, "bad_label")
    return value


def text_field(payload: dict[str, Any], key: str, *, limit: int = 64) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InputError(f"'{key}' must be a string of 1 to {limit} characters.", 422,
                         f"bad_{key}")
    if key == "client_id" and not CLIENT_ID_CHARS.issuperset(value):
        raise InputError("'client_id' may hold only letters, digits, '-' and '_'.", 422,
                         "bad_client_id")
    return value


def shared_canvas(payload: dict[str, Any], kind: str, value: Any) -> bytes | None:
    share = payload.get("share_canvas", False)
    if not isinstance(share, bool):
        raise InputError("'share_canvas' must be true or false.", 422, "bad_flag")
    if not share:
        return None
    if kind != "image" or not bytes(value[:8]) == PNG_SIGNATURE:
        raise InputError("'share_canvas' keeps a PNG drawing: send the canvas as a PNG in "
                         "'image', or leave 'share_canvas' out.", 422, "bad_canvas")
    if len(value) > MAX_CANVAS_BYTES:
        raise InputError(f"The shared drawing is {len(value)} bytes; at most "
                         f"{MAX_CANVAS_BYTES} are kept. Send a smaller PNG or do not share it.",
                         413, "canvas_too_large")
    return bytes(value)


@router.post(
    "",
    status_code=201,
    response_model=FeedbackCreated,
    responses=POST_ERRORS,
    openapi_extra=POST_BODY,
    summary="Store a correction: the drawing and the right digit",
    description="The drawing is preprocessed exactly as by /api/predict and its 28x28 image is "
    "stored with the label, the model's reading, the model version, the time and the client id. "
    "201 with the new id; 200 with the existing id when the same image with the same label is "
    "already stored. Rate-limited per client id (429 with Retry-After).",
)
async def create_feedback(request: Request, serving: ServingDep,
                          database: DatabaseDep) -> Response:
    settings = serving.settings
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise InputError(f"Unsupported Content-Type {ctype or '(none)'!r}: send application/json.",
                         415, "unsupported_media")
    work = serving.work(request)
    # A large body is parsed, and a large image decoded, in the worker limiter's slot
    # (app/limits.py): never on the event loop, never more at once than /api/predict allows.
    payload = await parse_json_body(serving.limiter, work, await request.body(),
                                    settings.max_batch)
    if not isinstance(payload, dict):
        raise InputError("The JSON body must be an object with 'label' and 'image' or 'pixels'.",
                         422, "bad_json_shape")
    client_id = text_field(payload, "client_id")
    key = f"id:{client_id}" if client_id else f"ip:{request.client.host if request.client else ''}"
    wait = get_limiter(request).hit(key)
    if wait is not None:
        raise HTTPException(429, detail=f"Too many corrections from this client: at most "
                            f"{settings.feedback_per_minute} a minute. Retry in {wait} s.",
                            headers={"Retry-After": str(wait)})
    label = digit_field(payload, "label", required=True)
    predicted = digit_field(payload, "predicted", required=False)
    model_version = text_field(payload, "model_version")
    kind, value = single_from_json(payload, settings.max_body_bytes)
    canvas = shared_canvas(payload, kind, value)
    digit = (await serving.limiter.offload(
        work, image_from_bytes, value, settings.max_image_pixels,
        cost=image_pixels(value, settings.max_image_pixels)) if kind == "image" else value)
    image = np.clip(np.rint(digit), 0, 255).astype(np.uint8)
    if not image.any():
        raise InputError("The drawing is empty: draw a digit before correcting it.", 422,
                         "empty_drawing")
    probabilities: list[float] | None = None
    predictor = serving.service.predictor
    if predictor is not None:
        # The model's own reading of the stored image: what the person saw, recorded with the
        # version that produced it.
        probs = predictor.probabilities_of_input(predictor.model_input(image[None]))[0]
        probabilities = np.round(probs.astype(np.float64), 6).tolist()
        predicted, model_version = int(probs.argmax()), predictor.version
    assert label is not None
    new = NewCorrection(image=image, label=label, predicted=predicted,
                        probabilities=probabilities, model_version=model_version,
                        client_id=client_id, canvas_png=canvas)
    correction_id, created = await in_thread(store, database, new)
    return json_response(
        {"id": correction_id, "created": created, "label": label, "predicted": predicted,
         "model_version": model_version},
        status_code=201 if created else 200,
    )


@router.get("/stats", response_model=FeedbackStats, responses=ERRORS,
            summary="Counts per label and model version, and the share the model got wrong")
async def feedback_stats(database: DatabaseDep) -> dict[str, Any]:
    return await in_thread(stats, database)


@router.get("", response_model=FeedbackPage, responses=ADMIN_ERRORS, dependencies=Admin,
            summary="Page through corrections, newest first (admin)")
async def list_feedback(
    database: DatabaseDep,
    label: Annotated[int | None, Query(ge=0, le=9)] = None,
    predicted: Annotated[int | None, Query(ge=0, le=9)] = None,
    model_version: Annotated[str | None, Query(max_length=64)] = None,
    wrong: Annotated[bool, Query(description="only what the model got wrong")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 60,
    before_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> dict[str, Any]:
    where = CorrectionFilter(label=label, predicted=predicted, model_version=model_version,
                             wrong=wrong or None)
    rows, total = await in_thread(lambda: page(database, where, limit=limit,
                                               before_id=before_id))
    items = [{**row.as_dict(), "image": image_from_row(row).tolist()} for row in rows]
    more = len(rows) == limit
    return {"items": items, "total": total, "next_before_id": rows[-1].id if more else None}


@router.get("/export", responses={**ADMIN_ERRORS, 200: {"content": {
    "text/csv": {}, "application/x-ndjson": {}, "application/gzip": {}}}},
    dependencies=Admin, response_class=Response,
    summary="Every correction as CSV (Kaggle MNIST layout), ndjson, or an IDX pair (admin)")
async def export_feedback(
    database: DatabaseDep,
    format: Annotated[str, Query(pattern="^(csv|ndjson|idx)$")] = "csv",  # noqa: A002
) -> Response:
    payload, count = await in_thread(export_corrections, database, format)
    name = f"mnist-canvas-corrections.{SUFFIXES[format]}"
    return Response(payload, media_type=MEDIA_TYPES[format], headers={
        "Content-Disposition": f'attachment; filename="{name}"',
        "X-Corrections-Count": str(count),
    })


@router.delete("/{correction_id}", response_model=FeedbackDeleted,
               responses={**ADMIN_ERRORS, 404: {"model": ErrorBody}}, dependencies=Admin,
               summary="Delete one correction (admin)")
async def delete_feedback(
    database: DatabaseDep, correction_id: Annotated[int, Path(ge=1, le=2**62)]
) -> dict[str, Any]:
    if not await in_thread(remove, database, correction_id):
        raise HTTPException(404, detail=f"There is no correction {correction_id}: it may "
                            "have been deleted already.")
    return {"deleted": correction_id}
