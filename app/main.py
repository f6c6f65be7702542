"""Builds the FastAPI app: settings, lifespan, middleware, error handlers, routers, static files.

Run it with `mnist-canvas serve` (or `uvicorn app.main:app`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app.errors import ContentLengthLimit, install_error_handlers
from app.lifespan import lifespan
from app.metrics import MetricsMiddleware, Registry
from app.routes import health, metrics, model_info, pages, predict, v2, verdict
from app.schemas import BatchJSON, PredictJSON, PredictUpload, V2InferRequest
from app.service import ModelService
from app.settings import Settings

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
# Schemas referenced by hand-written request bodies (routes that accept several content types).
EXTRA_SCHEMAS = (PredictJSON, PredictUpload, BatchJSON, V2InferRequest)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = FastAPI(
        title="mnist-canvas",
        summary="Handwritten digits read by a logistic-regression model of MNIST.",
        version="0.1.0",
        lifespan=lifespan,
        max_body_size=settings.max_body_bytes,
    )
    app.state.settings = settings
    app.state.service = ModelService(settings)
    app.state.registry = Registry()
    install_error_handlers(app, settings.max_body_bytes)
    for module in (health, predict, model_info, verdict, v2, metrics, pages):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # FastAPI's body limit counts the bytes that arrive (chunked bodies, lying clients) but
    # answers a declared oversize Content-Length in plain text; this outermost layer answers
    # that case first, in JSON with a sentence.
    # Metrics outermost, so that every answer is counted, those refusals included.
    build_stack = app.build_middleware_stack
    registry = app.state.registry
    app.build_middleware_stack = lambda: MetricsMiddleware(  # type: ignore[method-assign]
        ContentLengthLimit(build_stack(), max_body_bytes=settings.max_body_bytes),
        registry=registry,
    )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, summary=app.summary,
                                 routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in EXTRA_SCHEMAS:
                found = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(found.pop("$defs", {}))
                components[model.__name__] = found
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


app = create_app()
