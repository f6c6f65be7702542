"""Typed dependencies: route signatures read as plain parameters.

All `async def`: they only read app state, and a plain `def` dependency costs a threadpool hop
(about 0.1 ms) on every request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from app.metrics import Registry
from app.service import ModelService
from app.settings import Settings
from model.inference import Predictor


async def get_service(request: Request) -> ModelService:
    service: ModelService = request.app.state.service
    return service


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


async def get_predictor(service: Annotated[ModelService, Depends(get_service)]) -> Predictor:
    if service.predictor is None:
        raise HTTPException(
            503, detail=service.error or "The model is still loading or training; retry shortly.",
            headers={"Retry-After": "2"},
        )
    return service.predictor


ServiceDep = Annotated[ModelService, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
PredictorDep = Annotated[Predictor, Depends(get_predictor)]
