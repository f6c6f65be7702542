"""The model card, its weight templates and the test digits it gets wrong."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from app.deps import PredictorDep, ServiceDep
from app.schemas import ErrorBody, Gallery, ModelCard, Weights

router = APIRouter(prefix="/api/model", tags=["model"])
NOT_READY: dict[int | str, dict[str, Any]] = {503: {"model": ErrorBody}}


def _views(service: ServiceDep) -> tuple[bytes, bytes, bytes]:
    assert service.views is not None
    return service.views.card, service.views.weights, service.views.errors


@router.get("", response_model=ModelCard, responses=NOT_READY, summary="The model card")
def model_card(service: ServiceDep, predictor: PredictorDep) -> Response:
    return Response(_views(service)[0], media_type="application/json")


@router.get("/weights", response_model=Weights, responses=NOT_READY,
            summary="The ten 28x28 weight templates")
def model_weights(service: ServiceDep, predictor: PredictorDep) -> Response:
    return Response(_views(service)[1], media_type="application/json")


@router.get("/errors", response_model=Gallery, responses=NOT_READY,
            summary="Test digits the model gets wrong")
def model_errors(service: ServiceDep, predictor: PredictorDep) -> Response:
    return Response(_views(service)[2], media_type="application/json")
