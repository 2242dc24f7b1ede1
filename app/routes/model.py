"""GET /model (the loaded model's report page) and GET /model.json (its metadata and metrics)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from app.deps import PredictorDep
from app.errors import NotFound
from app.schemas import ErrorResponse
from models.checkpoint import REPORT_FILE

router = APIRouter(tags=["model"])

NO_REPORT = f"no {REPORT_FILE} for these weights beside the checkpoint: alexnet-evaluate --checkpoint F writes one"


@router.get(
    "/model",
    summary="The model's report",
    response_class=HTMLResponse,
    responses={
        200: {"description": "one self-contained page", "content": {"text/html": {"example": "<!doctype html>..."}}},
        404: {
            "model": ErrorResponse,
            "description": "no report page for the loaded weights",
            "content": {"application/json": {"example": {"detail": NO_REPORT}}},
        },
    },
)
async def get_model_report(predictor: PredictorDep) -> HTMLResponse:
    """Accuracy, calibration, out-of-distribution scores, the hardest test images and how the model was trained."""
    if predictor.report is None:
        raise NotFound(NO_REPORT)
    return HTMLResponse(predictor.report)


@router.get(
    "/model.json",
    summary="The model's metadata and metrics",
    responses={200: {"content": {"application/json": {"example": {"model": {"name": "alexnet"}, "metrics": {}}}}}},
)
async def get_model_metadata(predictor: PredictorDep) -> dict[str, Any]:
    """What the checkpoint says of itself: model, preprocessing, calibration, abstention, training config, metrics."""
    return predictor.metadata
