"""GET /metrics: Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.deps import StateDep

router = APIRouter(tags=["operations"])

EXAMPLE = """# HELP alexnet_forward_passes_total forward passes run (warm-up excluded)
# TYPE alexnet_forward_passes_total counter
alexnet_forward_passes_total 42.0
"""


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"description": "Prometheus text format", "content": {"text/plain": {"example": EXAMPLE}}}},
)
async def get_metrics(state: StateDep) -> Response:
    """Request counts by status, latency, queue wait, batch sizes, queue depth and model load time."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
