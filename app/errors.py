"""Every error a client can cause becomes a 4xx JSON body with a sentence that says what to fix.

Paths under /v2 answer in the Open Inference Protocol's form, {"error": "..."}; everything else
answers {"detail": "..."}. An unexpected error is logged with context and answered with a
generic 500 that leaks nothing.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from app.inputs import InputError

logger = logging.getLogger(__name__)


def error_response(request: Request | Scope, status: int, sentence: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    path = request.url.path if isinstance(request, Request) else request.get("path", "")
    if path.startswith("/v2"):
        # The protocol reports client errors as 400 with {"error": ...}; a 415 stays a 415, so
        # that a cross-site post of the wrong type reads as what it is.
        status = 400 if status in (413, 422) else status
        return JSONResponse({"error": sentence}, status_code=status, headers=headers)
    return JSONResponse({"detail": sentence}, status_code=status, headers=headers)


def too_large_sentence(limit: int) -> str:
    return (f"The request body is larger than the limit of {limit} bytes: send a smaller image "
            "or fewer items (MNIST_CANVAS_MAX_BODY_BYTES sets the limit).")


def http_sentence(request: Request, exc: StarletteHTTPException, limit: int) -> str:
    if exc.status_code == 404 and exc.detail == "Not Found":
        return f"There is nothing at {request.url.path}: see /docs for the API."
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return (f"{request.method} is not allowed on {request.url.path}"
                + (f"; use {allowed}." if allowed else "."))
    if exc.status_code == 413:
        return too_large_sentence(limit)
    if exc.status_code == 400 and str(exc.detail).lower().startswith("there was an error parsing"):
        return ("The multipart form could not be parsed: send the image in a form field "
                "named 'file'.")
    return str(exc.detail)


def validation_sentence(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{loc or 'request'}: {err.get('msg', 'is invalid')}")
    return "The request is invalid: " + "; ".join(parts) + "."


def install_error_handlers(app: FastAPI, max_body_bytes: int) -> None:
    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError) -> JSONResponse:
        return error_response(request, exc.status, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        return error_response(request, exc.status_code, http_sentence(request, exc, max_body_bytes),
                              headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request, 422, validation_sentence(exc))

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
        logger.info("client disconnected before the body of %s %s was complete",
                    request.method, request.url.path)
        return error_response(request, 400, "The connection closed before the request body "
                              "was complete.")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "Internal error: the server logged it; please retry.")


class ContentLengthLimit:
    """Refuse a declared Content-Length over the limit (or a malformed one) before reading.

    FastAPI's own `max_body_size` still counts the bytes that arrive, which covers chunked
    bodies and clients that lie about their length; this answers the honest case in JSON.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = [v for k, v in scope["headers"] if k == b"content-length"]
            problem: tuple[int, str] | None = None
            if len(declared) > 1 and len(set(declared)) > 1:
                problem = (400, "The request has conflicting Content-Length headers.")
            elif declared:
                text = declared[0].decode("latin-1").strip()
                if not text.isdigit():
                    problem = (400, f"Content-Length {text!r} is not a byte count.")
                elif int(text) > self.max_body_bytes:
                    problem = (413, too_large_sentence(self.max_body_bytes))
            if problem is not None:
                body: dict[str, Any] = (
                    {"error": problem[1]} if scope["path"].startswith("/v2")
                    else {"detail": problem[1]}
                )
                status = 400 if scope["path"].startswith("/v2") else problem[0]
                await send({"type": "http.response.start", "status": status, "headers": [
                    (b"content-type", b"application/json"), (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": json.dumps(body).encode()})
                return
        await self.app(scope, receive, send)
