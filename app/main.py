"""Builds the FastAPI app: settings, lifespan, middleware, error handlers, routers, static files.

Run it with `mnist-canvas serve` (or `uvicorn app.main:app`).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.body_limit import RequestBodyLimitMiddleware

from app.errors import ContentLengthLimit, install_error_handlers
from app.lifespan import lifespan
from app.metrics import MetricsMiddleware, Registry
from app.openapi import CanvasAPI
from app.routes import health, metrics, model_info, pages, predict, v2
from app.service import ModelService
from app.settings import Settings
from model.resources import package_dir


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = CanvasAPI(
        title="mnist-canvas",
        summary="Handwritten digits read by a logistic-regression model of MNIST.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    service = app.state.service = ModelService(settings)
    registry = app.state.registry = Registry(multiprocess_dir=settings.prometheus_multiproc_dir)
    install_error_handlers(app, settings.max_body_bytes)
    for module in (health, predict, model_info, v2, metrics, pages):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=package_dir("app.static")), name="static")
    # Each middleware added wraps the ones before it (the last one added runs first).
    # Innermost, Starlette's body limit counts the bytes that arrive (chunked bodies, lying
    # clients); it answers a declared oversize Content-Length in plain text, so the layer
    # around it answers that case first, in JSON with a sentence, before reading anything.
    # Metrics outermost, so that every answer is counted, those refusals included.
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=settings.max_body_bytes)
    app.add_middleware(ContentLengthLimit, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(
        MetricsMiddleware, registry=registry,
        model_version=lambda: service.predictor.version if service.predictor else None,
    )
    return app


app = create_app()
