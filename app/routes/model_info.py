"""The model card, its weight templates and the test digits it gets wrong.

Each body is serialised once when the model loads (see app.service.build_views).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from app.deps import PredictorDep, ServiceDep
from app.schemas import ErrorBody, Gallery, ModelCard, Weights

router = APIRouter(prefix="/api/model", tags=["model"])
NOT_READY: dict[int | str, dict[str, Any]] = {503: {"model": ErrorBody}}


def json_bytes(body: bytes) -> Response:
    return Response(body, media_type="application/json")


# `predictor` is asked for so that these answer 503 until the model is ready.
@router.get("", response_model=ModelCard, responses=NOT_READY, summary="The model card")
async def model_card(service: ServiceDep, predictor: PredictorDep) -> Response:
    assert service.views is not None
    return json_bytes(service.views.card)


@router.get("/weights", response_model=Weights, responses=NOT_READY,
            summary="The ten 28x28 weight templates")
async def model_weights(service: ServiceDep, predictor: PredictorDep) -> Response:
    assert service.views is not None
    return json_bytes(service.views.weights)


@router.get("/errors", response_model=Gallery, responses=NOT_READY,
            summary="Test digits the model gets wrong")
async def model_errors(service: ServiceDep, predictor: PredictorDep) -> Response:
    assert service.views is not None
    return json_bytes(service.views.errors)
