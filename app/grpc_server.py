"""The gRPC server beside the REST one (``ALEXNET_GRPC_PORT``; off when 0): grpcio's asyncio server in the same
event loop, started and stopped by the app's lifespan, with REST's limits and API key.

- Message size: a request may be as large as a REST body (``ALEXNET_MAX_BODY_BYTES``); larger is refused by grpc
  itself (RESOURCE_EXHAUSTED) before it is read whole.
- The API key (app/access.py's rule): sent as ``authorization: Bearer <key>`` or ``x-api-key: <key>`` metadata;
  the health calls (ServerLive, ServerReady, ModelReady and grpc.health.v1's, app/grpc_health.py) are open, like
  /health.
- On shutdown: new calls are refused, calls under way get the request deadline to finish.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from fastapi import FastAPI
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from app.access import INVALID, MISSING, key_digest, presented_keys, valid_key
from app.config import Settings
from app.grpc_health import ServiceHealth, add_health
from app.grpc_oip import OIPServicer

logger = logging.getLogger(__name__)

SERVICE = "/inference.GRPCInferenceService/"
HEALTH = "/grpc.health.v1.Health/"
OPEN_METHODS = frozenset(
    [SERVICE + name for name in ("ServerLive", "ServerReady", "ModelReady")]
    + [HEALTH + name for name in ("Check", "List", "Watch")]
)


@dataclass(frozen=True)
class GrpcService:
    """The running gRPC server and its health service, stopped together."""

    server: grpc.aio.Server
    health: ServiceHealth

    async def stop(self, grace_s: float) -> None:
        """New calls refused, calls under way given ``grace_s`` to finish, Watch streams ended first."""
        self.health.close()
        await self.server.stop(grace_s)


async def start_grpc(app: FastAPI, settings: Settings) -> GrpcService:
    """The OIP gRPC server on ``grpc_port``, listening and serving (the lifespan calls it only when it is set)."""
    interceptors = [RequireApiKey(key_digest(settings.api_key))] if settings.api_key is not None else []
    limit = settings.max_body_bytes
    options = [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
    server = grpc.aio.server(options=options, interceptors=interceptors)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(OIPServicer(app), server)
    health = add_health(server, app.state.service)
    address = f"{settings.host}:{settings.grpc_port}"
    try:
        server.add_insecure_port(address)
    except RuntimeError as exc:  # grpcio's words: "Failed to bind to address ..."
        raise RuntimeError(f"gRPC could not listen on {address}: {exc}") from None
    await server.start()
    logger.info("Open Inference Protocol over gRPC on %s", address)
    return GrpcService(server, health)


class RequireApiKey(grpc.aio.ServerInterceptor):
    """A call to a method that is not open ends UNAUTHENTICATED unless its metadata carries the key."""

    def __init__(self, digest: bytes) -> None:
        self.digest = digest

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if details.method in OPEN_METHODS:
            return await continuation(details)
        metadata = [
            (name.encode(), value.encode())
            for name, value in details.invocation_metadata or ()
            if isinstance(value, str)
        ]
        presented = presented_keys(metadata)
        if valid_key(presented, self.digest):
            return await continuation(details)
        return _refusal(INVALID if presented else MISSING)


def _refusal(words: str) -> grpc.RpcMethodHandler:
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, words)

    return grpc.unary_unary_rpc_method_handler(refuse)
