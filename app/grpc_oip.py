"""The Open Inference Protocol over gRPC (``ALEXNET_GRPC_PORT``): Triton's and KServe's gRPC clients, unchanged.

The same process and event loop as the REST service, the same door, request pipeline and batcher (a gRPC and
an HTTP request share forward passes), the same limits and the same words in errors. A ModelInfer message is
turned into the REST form, the JSON header and binary tail of the binary tensor data extension, and parsed by
app/oip_tensors.py like any REST request; the outputs go back as ``raw_output_contents``, as Triton answers.
The wire code is the generated code tritonclient ships (``tritonclient.grpc.service_pb2``, the OIP v2
``inference`` package); its server side is used here. ServiceErrors become gRPC status codes (``STATUS``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable
from time import perf_counter_ns
from typing import Any

import grpc
import numpy as np
from fastapi import FastAPI
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from app import pipeline
from app.deps import ServiceState, ready_predictor
from app.errors import BadRequest, ServiceError
from app.logs import ACCESS_LOGGER, REQUEST_ID
from app.oip_tensors import InferRequest, Limits, length_prefixed, parse_request, raw_bytes
from app.predictor import MODEL_NAME, Predictor
from app.request_log import pick_request_id
from app.routes.oip import (
    EXTENSIONS,
    check_model,
    check_outputs,
    decode_images,
    metadata_of,
    output_tensors,
    parse_request_off_loop,
)
from app.routes.repository import AlwaysServing, check_control, checkpoint_in, repository_models

logger = logging.getLogger(__name__)
access_log = logging.getLogger(ACCESS_LOGGER)

STATUS = {  # the service's HTTP statuses, as gRPC codes
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    409: grpc.StatusCode.FAILED_PRECONDITION,  # a load refused (the old model serves on), an unload
    413: grpc.StatusCode.INVALID_ARGUMENT,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


class OIPServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The OIP v2 calls the REST side answers, the model repository's too; the others (statistics, trace, logging,
    shared memory) stay the generated base's UNIMPLEMENTED."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    @property
    def state(self) -> ServiceState:
        return self.app.state.service

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self._answer("ServerLive", context, lambda: pb.ServerLiveResponse(live=True))

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self._answer("ServerReady", context, lambda: pb.ServerReadyResponse(ready=self.state.ready))

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Ready or not; a model or version this server does not serve is not ready (Triton's answer: tritonclient's
        ``is_model_ready`` says False, as over REST, where that is a 404)."""

        def ready() -> bool:
            try:
                check_model(request.name, request.version or None, self.state)
            except ServiceError:
                return False
            return self.state.ready

        return pb.ModelReadyResponse(ready=await self._answer("ModelReady", context, ready))

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        answer = pb.ServerMetadataResponse(name=self.app.title, version=self.app.version, extensions=EXTENSIONS)
        return await self._answer("ServerMetadata", context, lambda: answer)

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        metadata = await self._answer(
            "ModelMetadata", context, lambda: metadata_of(self.state, request.name, request.version or None)
        )
        tensors = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=metadata["name"],
            versions=metadata["versions"],
            platform=metadata["platform"],
            inputs=[tensors(**t) for t in metadata["inputs"]],
            outputs=[tensors(**t) for t in metadata["outputs"]],
        )

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self._answer("ModelInfer", context, lambda: self._infer(request, context))

    async def RepositoryIndex(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        models = await self._answer("RepositoryIndex", context, lambda: repository_models(self.state))
        return pb.RepositoryIndexResponse(models=[pb.RepositoryIndexResponse.ModelIndex(**model) for model in models])

    async def RepositoryModelLoad(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._answer("RepositoryModelLoad", context, lambda: self._load(request))
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def refuse() -> None:
            check_control(self.state, request.model_name)
            raise AlwaysServing()

        await self._answer("RepositoryModelUnload", context, refuse)

    async def _load(self, request: Any) -> None:
        """REST's load request (app/routes/repository.py): its parameters are typed values here."""
        check_control(self.state, request.model_name)
        parameters = {}
        for name, value in request.parameters.items():
            choice = value.WhichOneof("parameter_choice")
            parameters[name] = getattr(value, choice) if choice else None
        await self.app.state.loader.load(checkpoint_in(parameters), "a gRPC load request")

    async def _answer(self, method: str, context: grpc.aio.ServicerContext, call: Callable[[], Any]) -> Any:
        """``call()``'s result (awaited if a coroutine), under the call's request ID, counted and logged as REST's
        requests are (app/request_log.py); a ServiceError ends the call with its gRPC code and its words."""
        start, code = perf_counter_ns(), grpc.StatusCode.OK
        request_id = call_id(context.invocation_metadata())
        token = REQUEST_ID.set(request_id)
        context.set_trailing_metadata((("x-request-id", request_id),))
        try:
            result = call()
            return await result if isinstance(result, Awaitable) else result
        except ServiceError as exc:
            code = STATUS.get(exc.status_code, grpc.StatusCode.INTERNAL)
            retry_after = (exc.headers or {}).get("Retry-After")
            extra = (("retry-after", retry_after),) if retry_after is not None else ()
            context.set_trailing_metadata((("x-request-id", request_id), *extra))
            await context.abort(code, exc.detail)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED  # the client's deadline passed or it went away
            raise
        except Exception:  # a bug, as REST's 500: logged with its traceback, answered without a detail that leaks
            code = grpc.StatusCode.INTERNAL
            logger.exception("gRPC %s failed", method)
            await context.abort(code, "internal error (logged with this call's request ID)")
        finally:
            self._account(method, code, context.peer(), request_id, perf_counter_ns() - start)
            REQUEST_ID.reset(token)

    def _account(self, method: str, code: grpc.StatusCode, peer: str, request_id: str, elapsed_ns: int) -> None:
        metrics = self.state.metrics
        metrics.grpc_requests.labels(method, code.name).inc()
        metrics.grpc_latency.labels(method).observe(elapsed_ns / 1e9)
        if access_log.isEnabledFor(logging.INFO):
            fields = {"method": method, "status": code.name, "latency_ms": round(elapsed_ns / 1e6, 3), "client": peer}
            line = '%s - "gRPC %s" %s %.1f ms'
            extra = {"request_id": request_id, "fields": fields}
            access_log.info(line, peer, method, code.name, fields["latency_ms"], extra=extra)

    async def _infer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        state = self.state
        check_model(request.model_name, request.model_version or None, state)
        predictor = ready_predictor(state)
        remaining = context.time_remaining()  # None: the client set no deadline
        time_left = min(state.settings.request_timeout_s, math.inf if remaining is None else remaining)
        assert state.batcher is not None
        state.batcher.admit_arrival(time_left)  # the door: refused at once if it cannot be answered in time
        limits = Limits(state.settings.max_files, state.settings.max_file_bytes, predictor.source_size)

        async def read() -> Any:
            return request  # grpc has received the whole message, within its size limit

        async def prepare(message: Any) -> tuple[InferRequest, np.ndarray]:
            json_bytes, binary_bytes = message_weight(message)
            parsed = await parse_request_off_loop(state, json_bytes, binary_bytes, parse_message, message, limits)
            check_outputs(parsed, predictor)
            return parsed, await decode_images(parsed, state, predictor)

        parsed, rows = await pipeline.run(state, predictor, read, prepare, time_left)
        return infer_response(parsed, rows, predictor)


def parse_message(message: Any, limits: Limits) -> InferRequest:
    """A ModelInferRequest, checked exactly as the same request over REST (app/oip_tensors.py)."""
    header, binary = rest_form(message)
    return parse_request(header, binary, limits)


def message_weight(message: Any) -> tuple[float, int]:
    """What parsing the message will cost, as (JSON-like bytes, binary bytes), without serializing it (protobuf's
    ByteSize does: 30-40 ms for a 32 MB message): typed ``contents`` become Python values one by one, as JSON
    does (counted as too heavy for the event loop); ``raw_input_contents`` are only sliced."""
    if any(tensor.HasField("contents") for tensor in message.inputs):
        return math.inf, 0
    return 0, sum(map(len, message.raw_input_contents))


def rest_form(message: Any) -> tuple[bytes, bytes]:
    """The message as REST's binary tensor data extension: (JSON header, binary tail)."""
    inputs, tail = [], []
    for index, tensor in enumerate(message.inputs):
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        raw = message.raw_input_contents[index] if index < len(message.raw_input_contents) else typed_contents(tensor)
        if raw is not None:
            entry["parameters"] = {"binary_data_size": len(raw)}
            tail.append(raw)
        inputs.append(entry)
    header: dict[str, Any] = {"inputs": inputs, "parameters": {"binary_data_output": True}}
    if message.id:
        header["id"] = message.id
    if message.outputs:
        header["outputs"] = [{"name": output.name} for output in message.outputs]
    return json.dumps(header).encode(), b"".join(tail)


def typed_contents(tensor: Any) -> bytes | None:
    """``contents`` (the typed fields) as raw bytes: BYTES length-prefixed, UINT8 from ``uint_contents``."""
    contents = tensor.contents
    if contents.bytes_contents:
        return length_prefixed(contents.bytes_contents)
    if contents.uint_contents:
        values = np.asarray(contents.uint_contents, dtype=np.uint32)
        if values.max() > 255:
            raise BadRequest(f"input {tensor.name!r}: UINT8 values must be 0 to 255, got {int(values.max())}")
        return values.astype(np.uint8).tobytes()
    return None  # no data: the parser says so, as for REST


def infer_response(parsed: InferRequest, rows: np.ndarray, predictor: Predictor) -> Any:
    available = {tensor.name: tensor for tensor in output_tensors(rows, predictor)}
    chosen = list(available.values()) if parsed.outputs is None else [available[name] for name in parsed.outputs]
    response = pb.ModelInferResponse(model_name=MODEL_NAME, model_version=str(predictor.info.version))
    if parsed.id is not None:
        response.id = parsed.id
    for tensor in chosen:
        response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=list(tensor.values.shape))
        response.raw_output_contents.append(raw_bytes(tensor))
    return response


def call_id(metadata: Any) -> str:
    """The call's ID from its first ``x-request-id``, by REST's rule (app/request_log.py)."""
    sent = next((value for name, value in metadata or () if name == "x-request-id"), None)
    return pick_request_id(sent.encode() if isinstance(sent, str) else None)
