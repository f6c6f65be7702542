"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.deps import ServiceDep
from app.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="200 while the process lives")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "the model is not ready yet"}},
    summary="200 with the model version once the model is ready, 503 before",
)
async def readyz(service: ServiceDep) -> JSONResponse:
    status, body = service.readiness()
    return JSONResponse(body, status_code=status)
