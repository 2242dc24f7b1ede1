"""gRPC's standard health service (grpc.health.v1) beside OIP's calls: what Kubernetes' ``grpc`` probes,
grpc-health-probe and gRPC load balancers ask. The generated code is grpcio-health-checking's (the ``grpc`` extra).

Two names, read from the service's state at each call (one home for readiness, as /health/live and /health/ready):

- ``""`` (the server): SERVING while the process serves gRPC, NOT_SERVING once it is stopping. The manifests'
  liveness probe asks this one: it answers from the same event loop as both protocols.
- ``inference.GRPCInferenceService`` (OIP's service): SERVING when the model is ready for inference (REST's
  /health/ready), NOT_SERVING while warming up, after a failed warm-up and from SIGTERM on.

Any other name is NOT_FOUND, as the protocol says. Watch sends the status and then each change (looked at every
``WATCH_EVERY_S``); its stream ends once the service is stopping, so that an open Watch never holds up the drain.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from app.deps import ServiceState

SERVER = ""
INFERENCE = "inference.GRPCInferenceService"
WATCH_EVERY_S = 0.5
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ServiceHealth(health_pb2_grpc.HealthServicer):
    """grpc.health.v1's Check, List and Watch from ``state``."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state

    def statuses(self) -> dict[str, int]:
        status = self.state.status
        return {
            SERVER: NOT_SERVING if status == "stopping" else SERVING,
            INFERENCE: SERVING if status == "ready" else NOT_SERVING,
        }

    async def Check(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        status = self.statuses().get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def List(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        statuses = {name: health_pb2.HealthCheckResponse(status=status) for name, status in self.statuses().items()}
        return health_pb2.HealthListResponse(statuses=statuses)

    async def Watch(self, request: Any, context: grpc.aio.ServicerContext) -> None:
        last = None
        while True:
            status = self.statuses().get(request.service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            if status != last:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                last = status
            if self.state.status == "stopping":
                return
            await asyncio.sleep(WATCH_EVERY_S)


def add_health(server: grpc.aio.Server, state: ServiceState) -> None:
    health_pb2_grpc.add_HealthServicer_to_server(ServiceHealth(state), server)
