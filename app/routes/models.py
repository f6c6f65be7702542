"""GET /api/models: the model registry's history, newest first, the current version marked."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from app.db import registry as model_registry
from app.db.database import Database, DatabaseUnavailable
from app.schemas import ErrorBody

router = APIRouter(prefix="/api/models", tags=["models"])


class Promotion(BaseModel):
    action: str = Field(description="register, promote or rollback")
    actor: str = Field(description="who or what: startup, finetune (gate), cli ...")
    at: str


class ModelVersionInfo(BaseModel):
    id: int = Field(description="the version's number in the registry")
    model_version: str = Field(description="hash of the weights, as every answer names it")
    parent: str | None
    created_at: str
    source: str = Field(description="shipped, finetune ...")
    current: bool
    size_bytes: int
    metrics: dict[str, Any]
    gate_report: dict[str, Any] | None = Field(
        description="fine-tuned versions: both models on both sets, counts, weight, decision")
    corrections_seen: int | None
    promotions: list[Promotion]


class ModelHistory(BaseModel):
    current: str | None = Field(description="the model version the registry names current")
    served: str | None = Field(description="the model version this worker serves now")
    versions: list[ModelVersionInfo]


def read_history(database: Database) -> list[dict[str, Any]]:
    with database.session() as session:
        return model_registry.history(session)


@router.get("", response_model=ModelHistory, responses={503: {"model": ErrorBody}},
            summary="Every model version, its numbers and promotions")
async def models(request: Request) -> dict[str, Any]:
    database: Database = request.app.state.database
    try:
        versions = await run_in_threadpool(read_history, database)
    except DatabaseUnavailable as exc:
        raise HTTPException(503, detail=f"The model history is unavailable: {exc}",
                            headers={"Retry-After": str(exc.retry_after)}) from exc
    predictor = request.app.state.service.predictor
    return {
        "current": next((v["model_version"] for v in versions if v["current"]), None),
        "served": predictor.version if predictor is not None else None,
        "versions": versions,
    }
