"""gRPC's standard health service (grpc.health.v1) beside OIP's calls: what Kubernetes' ``grpc`` probes,
grpc-health-probe and gRPC load balancers ask. The generated code is grpcio-health-checking's (the ``grpc`` extra).

Two names, read from the service's state at each call (one home for readiness, as /health/live and /health/ready):

- ``""`` (the server): SERVING while the process serves gRPC, NOT_SERVING once it is stopping. The manifests'
  liveness probe asks this one: it answers from the same event loop as both protocols.
- ``inference.GRPCInferenceService`` (OIP's service): SERVING when the model is ready for inference (REST's
  /health/ready), NOT_SERVING while warming up, after a failed warm-up and from SIGTERM on.

Any other name is NOT_FOUND, as the protocol says. Watch sends the status and then each change (looked at every
``WATCH_EVERY_S``, and at once when the gRPC server begins to stop); its stream ends when the gRPC server stops
(``close``), not at SIGTERM: while HTTP drains, a watcher holds its stream and sees NOT_SERVING, instead of being
sent away to reconnect at once; and an open Watch never holds up the gRPC server's own drain.
"""

from __future__ import annotations

import asyncio
import contextlib
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
        self.closing = asyncio.Event()

    def close(self) -> None:
        """The gRPC server is about to stop: Watch streams send their last status and end."""
        self.closing.set()

    def statuses(self) -> dict[str, int]:
        return {
            SERVER: NOT_SERVING if self.state.status == "stopping" else SERVING,
            INFERENCE: SERVING if self.state.ready else NOT_SERVING,
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
            closing = self.closing.is_set()  # read before the status: the last status sent is the one at closing
            status = self.statuses().get(request.service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            if status != last:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                last = status
            if closing:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), WATCH_EVERY_S)


def add_health(server: grpc.aio.Server, state: ServiceState) -> ServiceHealth:
    health = ServiceHealth(state)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    return health
