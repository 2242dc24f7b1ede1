"""Health: /health/live (the process answers), /health and /health/ready (the model can serve)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.deps import ServiceState, StateDep
from app.schemas import HealthResponse, LiveResponse

router = APIRouter(tags=["health"])

NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {
        "model": HealthResponse,
        "description": "starting, warming up, shutting down, or the warm-up failed",
        "content": {
            "application/json": {
                "example": {
                    "status": "warming_up",
                    "ready": False,
                    "device": "cpu",
                    "model": None,
                    "detail": "warming up",
                }
            }
        },
    }
}


def _readiness(state: ServiceState) -> JSONResponse:
    predictor = state.predictor
    body = HealthResponse(
        status=state.status,
        ready=state.ready,
        device=str(predictor.device) if predictor else None,
        model=predictor.info if predictor else None,  # type: ignore[arg-type]
        detail=state.detail,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.ready else 503)


@router.get("/health", summary="Readiness, model and device", response_model=HealthResponse, responses=NOT_READY)
async def get_health(state: StateDep) -> JSONResponse:
    """Whether the model is loaded and warmed up (200) or not (503), with the model and its device."""
    return _readiness(state)


@router.get("/health/ready", summary="Readiness probe", response_model=HealthResponse, responses=NOT_READY)
async def get_ready(state: StateDep) -> JSONResponse:
    """The same answer as /health, for orchestrators' readiness probes."""
    return _readiness(state)


@router.get("/health/live", summary="Liveness probe", response_model=LiveResponse)
async def get_live() -> LiveResponse:
    """200 whenever the process answers, ready or not."""
    return LiveResponse()


# HEAD too: some probes and uptime checkers send it, and got 405. uvicorn answers HEAD with GET's status and
# headers and no body. Kept out of the OpenAPI schema: a second operation per path would share the GET's
# operation ID (FastAPI warns) and add nothing a reader of /docs needs.
for _route in list(router.routes):
    router.add_api_route(_route.path, _route.endpoint, methods=["HEAD"], include_in_schema=False)  # type: ignore[attr-defined]
del _route
