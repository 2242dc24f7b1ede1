"""What the lifespan builds and the routes receive, through typed dependencies."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from app.batcher import Batcher
from app.config import Settings
from app.errors import NotReady
from app.metrics import Metrics
from app.predictor import Predictor
from app.schemas import Status


@dataclass
class ServiceState:
    """One per app: its settings and metrics from the start, the model and its machinery once loaded."""

    settings: Settings
    metrics: Metrics
    status: Status = "starting"
    detail: str | None = "loading the model"
    predictor: Predictor | None = None
    batcher: Batcher | None = None
    decode_pool: Executor | None = None

    @property
    def ready(self) -> bool:
        """Ready for inference: what /health/ready, OIP's readiness (REST and gRPC) and grpc.health.v1 say."""
        return self.status == "ready"

    @property
    def serving(self) -> bool:
        """A model loaded and answering: ready, or stopping while what is in flight is finished (the repository's
        READY; what ``ready_predictor`` lets through)."""
        return self.status in ("ready", "stopping")

    def set_status(self, status: Status, detail: str | None = None) -> None:
        self.status, self.detail = status, detail
        self.metrics.ready.set(1 if self.ready else 0)


async def get_state(request: Request) -> ServiceState:
    return request.app.state.service


def ready_predictor(state: ServiceState) -> Predictor:
    """The loaded, warmed-up predictor; 503 before that.

    While stopping, requests the server has already received are still served ("finish what is in
    flight"); /health says 503 so that no new ones are routed here, and the batcher refuses work once
    it has stopped.
    """
    if not state.serving or state.predictor is None:
        raise NotReady(f"not ready: {state.detail or state.status}")
    return state.predictor


async def get_predictor(request: Request) -> Predictor:
    """``ready_predictor`` as a dependency (async: FastAPI would run a plain function in a thread)."""
    return ready_predictor(request.app.state.service)


StateDep = Annotated[ServiceState, Depends(get_state)]
PredictorDep = Annotated[Predictor, Depends(get_predictor)]
