"""Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response

from app.deps import RegistryDep

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=PlainTextResponse,
            summary="Prometheus text: requests, latency, predictions per digit, every worker")
def metrics(registry: RegistryDep) -> Response:
    # A plain `def`: in multiprocess mode collecting reads every worker's files.
    body, content_type = registry.render()
    return Response(body, media_type=content_type)
