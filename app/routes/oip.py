"""Open Inference Protocol v2 over REST ("KServe v2"), beside /predict: what Triton's and KServe's clients speak.

Same model, same limits, same batcher as /predict, through the same request pipeline (app/pipeline.py): an
OIP request's body is read with the limits of app/uploads.py, its images decoded as /predict's uploads are,
and its pass shared with /predict's requests. Errors are OIP's ``{"error": ...}`` with the service's own
status codes (docs/oip.md). Tensors: app/oip_tensors.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from app import pipeline
from app.asgi import json_response
from app.deps import ServiceState, ready_predictor
from app.errors import BadRequest, NotFound, NotReady, ServiceError, error_body
from app.oip_tensors import (
    HEADER_LENGTH,
    IMAGES,
    PIXELS,
    InferRequest,
    Limits,
    OutputTensor,
    encode_response,
    parse_request,
    split_body,
)
from app.predictor import MODEL_NAME, Predictor
from app.request_log import IMAGES as LOGGED_IMAGES
from app.uploads import INLINE_MAX_BYTES, Upload, decode_uploads, read_body

PLATFORM = "pytorch"
EXTENSIONS = ["binary_tensor_data"]
MODELS_PREFIX = "/v2/models/"


def is_infer_path(path: str) -> bool:
    """/v2/models/{name}/infer or /v2/models/{name}/versions/{version}/infer, for app/door.py's shedding."""
    return path.startswith(MODELS_PREFIX) and path.endswith("/infer")


def infer_path(versioned: bool) -> str:
    """The template of the infer route, with or without a version: its metrics label."""
    return MODELS_PREFIX + ("{name}/versions/{version}/infer" if versioned else "{name}/infer")


class OIPRoute(APIRoute):
    """A route answering the service's errors as ``{"error": ...}``: only these routes, /predict keeps ``detail``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except ServiceError as exc:
                return json_response(error_body(exc, "error"), exc.status_code, exc.headers)

        return handle


# Not in /openapi.json: OIP is specified by its own document (docs/oip.md), its errors are not the schema's
# ErrorResponse, and the schema is this service's /predict contract, fuzzed as such (tests/app/test_fuzz.py).
router = APIRouter(prefix="/v2", tags=["open inference protocol"], route_class=OIPRoute, include_in_schema=False)


def service_state(request: Request) -> ServiceState:
    return request.app.state.service


def serving_version(state: ServiceState) -> str:
    """The version OIP names: the serving model's (1 at start, one more with each load while serving)."""
    return str(state.predictor.info.version) if state.predictor is not None else "1"


def check_model(name: str, version: str | None, state: ServiceState) -> None:
    if name != MODEL_NAME:
        raise NotFound(f"unknown model {name!r}: this server serves {MODEL_NAME!r}")
    serving = serving_version(state)
    if version is not None and version != serving:
        raise NotFound(f"unknown version {version!r} of model {name!r}: it serves version {serving!r}")


@router.get("", summary="Server metadata")
async def server_metadata(request: Request) -> dict[str, Any]:
    return {"name": request.app.title, "version": request.app.version, "extensions": EXTENSIONS}


@router.get("/health/live", summary="Server liveness")
async def server_live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", summary="Server readiness")
async def server_ready(request: Request) -> JSONResponse:
    ready = service_state(request).ready
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


def _model_ready(request: Request, name: str, version: str | None) -> JSONResponse:
    state = service_state(request)
    check_model(name, version, state)
    ready = state.ready
    return JSONResponse({"name": name, "ready": ready}, status_code=200 if ready else 503)


@router.get("/models/{name}/ready", summary="Model readiness")
async def model_ready(request: Request, name: str) -> JSONResponse:
    return _model_ready(request, name, None)


@router.get("/models/{name}/versions/{version}/ready", summary="Model version readiness")
async def model_version_ready(request: Request, name: str, version: str) -> JSONResponse:
    return _model_ready(request, name, version)


def _metadata(request: Request, name: str, version: str | None) -> dict[str, Any]:
    return metadata_of(service_state(request), name, version)


def metadata_of(state: ServiceState, name: str, version: str | None) -> dict[str, Any]:
    """The model's OIP metadata (REST's JSON; gRPC's message is built from it)."""
    check_model(name, version, state)
    predictor = state.predictor
    if predictor is None:
        raise NotReady("not ready: the model is not loaded yet")
    s, classes = predictor.source_size, len(predictor.classes)
    outputs = [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, classes]},
        {"name": "labels", "datatype": "BYTES", "shape": [-1]},
    ]
    if predictor.info.abstention is not None:
        outputs += [
            {"name": "confident", "datatype": "BOOL", "shape": [-1]},
            {"name": "ood_score", "datatype": "FP32", "shape": [-1]},
        ]
    return {
        "name": MODEL_NAME,
        "versions": [serving_version(state)],
        "platform": PLATFORM,
        # Alternatives: a request sends exactly one of them
        "inputs": [
            {"name": IMAGES, "datatype": "BYTES", "shape": [-1]},
            {"name": PIXELS, "datatype": "UINT8", "shape": [-1, s, s, 3]},
        ],
        "outputs": outputs,
        "parameters": {"classes": list(predictor.classes), "weights_sha256": predictor.info.weights_sha256},
    }


@router.get("/models/{name}", summary="Model metadata")
async def model_metadata(request: Request, name: str) -> dict[str, Any]:
    return _metadata(request, name, None)


@router.get("/models/{name}/versions/{version}", summary="Model version metadata")
async def model_version_metadata(request: Request, name: str, version: str) -> dict[str, Any]:
    return _metadata(request, name, version)


@router.post("/models/{name}/infer", summary="Inference (JSON or binary tensor data)")
async def infer(request: Request, name: str) -> Response:
    return await _infer(request, name, None)


@router.post("/models/{name}/versions/{version}/infer", summary="Inference on a model version")
async def infer_version(request: Request, name: str, version: str) -> Response:
    return await _infer(request, name, version)


async def _infer(request: Request, name: str, version: str | None) -> Response:
    state = service_state(request)
    check_model(name, version, state)
    predictor = ready_predictor(state)  # 503 before the model is ready, as /predict
    settings = state.settings
    limits = Limits(settings.max_files, settings.max_file_bytes, predictor.source_size)

    async def read() -> tuple[bytes, bytes]:
        body = await read_body(request, settings.max_body_bytes, "empty body: send an inference request (docs/oip.md)")
        return split_body(body, request.headers.get(HEADER_LENGTH))

    async def prepare(parts: tuple[bytes, bytes]) -> tuple[InferRequest, np.ndarray]:
        parsed = await parse_request_off_loop(state, len(parts[0]), len(parts[1]), parse_request, *parts, limits)
        request.scope[LOGGED_IMAGES] = parsed.input.count  # for the access line (app/request_log.py)
        check_outputs(parsed, predictor)
        return parsed, await decode_images(parsed, state, predictor)

    parsed, rows = await pipeline.run(state, predictor, read, prepare)
    return _answer(parsed, rows, predictor)


# A request is parsed on the event loop when its JSON is this small and its binary part at most INLINE_MAX_BYTES:
# then the hop to a thread costs more than the parse (tens of microseconds), as for a small image's decode.
INLINE_JSON_BYTES = 4096


async def parse_request_off_loop(
    state: ServiceState, json_bytes: int, binary_bytes: int, parse: Callable[..., InferRequest], *args: Any
) -> InferRequest:
    """``parse(*args)`` for a request with ``json_bytes`` of JSON and ``binary_bytes`` of binary data: in the decode
    threads, since JSON of up to max_body_bytes takes a while to parse; on the event loop when both are small."""
    if json_bytes <= INLINE_JSON_BYTES and binary_bytes <= INLINE_MAX_BYTES:
        return parse(*args)
    assert state.decode_pool is not None
    return await asyncio.get_running_loop().run_in_executor(state.decode_pool, parse, *args)


async def decode_images(parsed: InferRequest, state: ServiceState, predictor: Predictor) -> np.ndarray:
    """The request's images at the model's source size: its pixels, or its files decoded as /predict's uploads."""
    tensor = parsed.input
    if tensor.pixels is not None:
        return tensor.pixels
    # Exactly as /predict's uploads: the same decoder, pixel limit and errors, named images[i]
    uploads = [Upload(filename=f"{IMAGES}[{i}]", index=i + 1, data=data) for i, data in enumerate(tensor.files)]
    assert state.decode_pool is not None
    return await decode_uploads(uploads, state.decode_pool, predictor.source_size, state.settings.max_pixels)


def output_tensors(rows: np.ndarray, predictor: Predictor) -> list[OutputTensor]:
    """Every output of the model for the request's rows, in the metadata's order."""
    probabilities = rows["probabilities"]  # (n, C) float32, unrounded
    labels = np.array([predictor.classes[i].encode() for i in probabilities.argmax(axis=1)], dtype=object)
    outputs = [OutputTensor("probabilities", "FP32", probabilities), OutputTensor("labels", "BYTES", labels)]
    rule = predictor.info.abstention
    if rule is not None:
        scores = rows["score"]
        outputs += [
            OutputTensor("confident", "BOOL", scores >= rule.threshold),
            OutputTensor("ood_score", "FP32", scores),
        ]
    return outputs


def _output_names(predictor: Predictor) -> list[str]:
    names = ["probabilities", "labels"]
    return [*names, "confident", "ood_score"] if predictor.info.abstention is not None else names


def check_outputs(parsed: InferRequest, predictor: Predictor) -> None:
    """Before the pass: an output this model does not have is the client's mistake, not worth a pass."""
    names = _output_names(predictor)
    unknown = [n for n in parsed.outputs or () if n not in names]
    if unknown:
        raise BadRequest(f"unknown output(s) {unknown}: this model answers {names}")


def _answer(parsed: InferRequest, rows: np.ndarray, predictor: Predictor) -> Response:
    available = {t.name: t for t in output_tensors(rows, predictor)}
    if parsed.outputs is None:
        chosen = [(t, parsed.binary_default) for t in available.values()]
    else:
        chosen = [(available[n], binary) for n, binary in parsed.outputs.items()]
    head: dict[str, Any] = {"model_name": MODEL_NAME, "model_version": str(predictor.info.version)}
    if parsed.id is not None:
        head["id"] = parsed.id
    body, header_length = encode_response(head, chosen)
    if header_length is None:
        return Response(body, media_type="application/json")
    return Response(
        body, media_type="application/octet-stream", headers={"Inference-Header-Content-Length": str(header_length)}
    )
