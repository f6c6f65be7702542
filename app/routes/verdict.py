"""GET /api/model/verdict: how the served model decides "not a digit" and "not sure", and how
well calibrated it is (the data behind the model page's reliability and risk-coverage charts)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.deps import PredictorDep
from app.inputs import InputError
from app.schemas import ErrorBody, VerdictInfo

router = APIRouter(prefix="/api/model", tags=["model"])


@router.get("/verdict", response_model=VerdictInfo,
            responses={404: {"model": ErrorBody}, 503: {"model": ErrorBody}},
            summary="The verdict's thresholds, temperature, reliability and rejected examples")
def model_verdict(predictor: PredictorDep) -> dict[str, Any]:
    info = predictor.checkpoint.meta.get("verdict")
    if predictor.verdicts is None or not isinstance(info, dict):
        raise InputError("This model has no verdict calibration: run `mnist-canvas calibrate "
                         "--model PATH` and restart the server.", 404, "no_calibration")
    return info
