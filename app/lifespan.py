"""Load or train the model when the app starts; never at import."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.service import ModelService, StartupError

logger = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    service: ModelService = app.state.service
    try:
        service.start()
    except StartupError as exc:
        logger.error("startup failed: %s", exc)
        raise
    yield
    app.state.registry.worker_exit()
