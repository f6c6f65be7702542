"""Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from app.deps import RegistryDep

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=PlainTextResponse,
            summary="Prometheus text: requests, latency, predictions per digit")
async def metrics(registry: RegistryDep) -> PlainTextResponse:
    return PlainTextResponse(registry.render(), media_type="text/plain; version=0.0.4")
