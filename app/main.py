"""Builds the FastAPI app: settings, lifespan, middleware, error handlers, routers, static files.

Run it with `mnist-canvas serve` (or `uvicorn app.main:app`).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.body_limit import RequestBodyLimitMiddleware

from app.db import Database, database_url
from app.errors import ContentLengthLimit, install_error_handlers
from app.lifespan import lifespan
from app.limits import RequestDeadline, limiter_for
from app.metrics import MetricsMiddleware, Registry
from app.openapi import CanvasAPI
from app.ratelimit import RateLimiter
from app.routes import (
    data_page,
    docs,
    feedback,
    health,
    metrics,
    model_info,
    pages,
    predict,
    v2,
    verdict,
)
from app.routes import models as model_history
from app.security import SecurityHeaders
from app.service import ModelService
from app.settings import Settings
from app.shutdown import Drain, DrainMiddleware
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
        docs_url=None,  # app/routes/docs.py serves it without a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    service = app.state.service = ModelService(settings)
    registry = app.state.registry = Registry(multiprocess_dir=settings.prometheus_multiproc_dir)
    app.state.limiter = limiter_for(settings)
    app.state.drain = Drain()
    # Corrections: nothing connects until the lifespan starts (the server starts without it).
    app.state.database = Database(database_url(settings.database_url, settings.data_dir),
                                  migrate=settings.database_migrate)
    app.state.feedback_limiter = RateLimiter(settings.feedback_per_minute)
    install_error_handlers(app, settings.max_body_bytes)
    for module in (health, predict, model_info, verdict, v2, metrics, pages, docs, feedback,
                   data_page, model_history):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=package_dir("app.static")), name="static")
    # Each middleware added wraps the ones before it (the last one added runs first).
    # Innermost, Starlette's body limit counts the bytes that arrive (chunked bodies, lying
    # clients). The deadline starts when a request arrives, and the drain counts it.
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=settings.max_body_bytes)
    app.add_middleware(RequestDeadline, timeout_s=settings.request_timeout_s)
    app.add_middleware(DrainMiddleware, drain=app.state.drain)
    # Starlette's body limit answers a declared oversize Content-Length in plain text, so this
    # layer answers that case first, in JSON with a sentence, before reading anything.
    app.add_middleware(ContentLengthLimit, max_body_bytes=settings.max_body_bytes)
    # Every answer (the drain's and the size limit's refusals included) carries the headers.
    app.add_middleware(SecurityHeaders)
    # Metrics outermost, so that every answer is counted, those refusals included.
    app.add_middleware(
        MetricsMiddleware, registry=registry,
        model_version=lambda: service.predictor.version if service.predictor else None,
    )
    return app


app = create_app()
