"""Load or train the model when the app starts; never at import."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.db import Database
from app.looplag import LoopLagProbe
from app.rollout import ModelWatcher
from app.service import ModelService, StartupError
from app.shutdown import install_drain

logger = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    service: ModelService = app.state.service
    database: Database = app.state.database
    try:
        service.start()
    except StartupError as exc:
        logger.error("startup failed: %s", exc)
        raise
    database.start()  # migrates in the background; feedback answers 503 until it is ready
    pool = app.state.limiter.pool
    pool.start()  # the worker processes that decode (app/workers.py), started before requests
    watcher = ModelWatcher(service, database, app.state.registry,
                           interval=app.state.settings.model_poll_seconds,
                           finetune_after=app.state.settings.finetune_after_corrections)
    watcher.start()  # hot reload from the model registry (issue 13)
    # SIGTERM drains first (readiness 503, requests in flight finish), then the server stops.
    undo = install_drain(app.state.drain, service.settings.shutdown_grace_s)
    # What startup made (torch, the app, the model: about a million objects) is never garbage:
    # frozen, the collector's full passes skip it. They took 100 ms each, the GIL held, three
    # times a second under a flood of large JSON batches (app/looplag.py showed the loop wait).
    gc.collect()
    gc.freeze()
    lag = app.state.loop_lag = LoopLagProbe(service.settings.loop_lag_interval_s)
    lag.start()  # /metrics: how long requests wait for the event loop (app/looplag.py)
    try:
        yield
    finally:
        await lag.stop()
        gc.unfreeze()
        undo()
        pool.shutdown()  # after the drain: the requests in flight have had their answers
        watcher.stop()
        database.dispose()
        app.state.registry.worker_exit()
