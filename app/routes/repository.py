"""The Open Inference Protocol's model repository extension: what Triton's ``load_model``,
``get_model_repository_index`` and ``unload_model`` call, as in Triton's explicit model-control mode.

    POST /v2/repository/index                     -> [{"name": "alexnet", "version": "3", "state": "READY"}]
    POST /v2/repository/models/alexnet/load       -> {} once the checkpoint serves (app/model_loader.py)
    POST /v2/repository/models/alexnet/unload     -> 409: this server always serves its one model

Loading is off unless ALEXNET_MODEL_CONTROL is set (403 otherwise), and needs the API key when one is set. The
file is the configured checkpoint, or one named in the request's parameters, inside the checkpoint's folder:
``{"parameters": {"checkpoint": "other.safetensors"}}``, or as tritonclient sends a model's configuration,
``{"parameters": {"config": "{\\"checkpoint\\": \\"other.safetensors\\"}"}}`` (``load_model(name, config=...)``).
Errors are OIP's ``{"error": ...}``.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request

from app.deps import ServiceState
from app.errors import BadRequest, ServiceError
from app.model_loader import ModelLoader
from app.predictor import MODEL_NAME
from app.routes.oip import OIPRoute, check_model, service_state, serving_version

router = APIRouter(
    prefix="/v2/repository", tags=["open inference protocol"], route_class=OIPRoute, include_in_schema=False
)


class ControlOff(ServiceError):
    """403: model control by request is off (ALEXNET_MODEL_CONTROL)."""

    status_code = 403

    def __init__(self) -> None:
        super().__init__("model control is off: set ALEXNET_MODEL_CONTROL=true to load checkpoints by request")


class AlwaysServing(ServiceError):
    """409: unloading would leave nothing to serve."""

    status_code = 409

    def __init__(self) -> None:
        super().__init__("this server always serves its one model: load another checkpoint instead of unloading")


@router.post("/index", summary="The models in the repository")
async def repository_index(request: Request) -> list[dict[str, str]]:
    return repository_models(service_state(request))


@router.post("/models/{name}/load", summary="Load a checkpoint while serving")
async def load_model(request: Request, name: str) -> dict[str, Any]:
    check_control(service_state(request), name)
    loader: ModelLoader = request.app.state.loader
    await loader.load(checkpoint_in(await _parameters(request)), "a load request")
    return {}


@router.post("/models/{name}/unload", summary="Unload a model (refused: one model always serves)")
async def unload_model(request: Request, name: str) -> dict[str, Any]:
    check_control(service_state(request), name)
    raise AlwaysServing()


def repository_models(state: ServiceState) -> list[dict[str, str]]:
    """The repository index: the one model, its version and whether it serves (REST and gRPC)."""
    return [
        {"name": MODEL_NAME, "version": serving_version(state), "state": "READY" if state.serving else "UNAVAILABLE"}
    ]


def check_control(state: ServiceState, name: str) -> None:
    """The model this server serves, and model control on (403 otherwise)."""
    check_model(name, None, state)
    if not state.settings.model_control:
        raise ControlOff()


def checkpoint_in(parameters: dict[str, Any]) -> str | None:
    """The checkpoint a load request's parameters name, or None: the configured one again. Either
    ``{"checkpoint": "<file>"}`` or, as tritonclient sends a model's configuration, ``{"config": "<JSON of that>"}``."""
    if "config" in parameters:
        try:
            parameters = json.loads(parameters["config"])
        except (ValueError, TypeError):
            raise BadRequest(f"parameters.config is not JSON: {parameters['config']!r:.80}") from None
        if not isinstance(parameters, dict):
            raise BadRequest('parameters.config is not {"checkpoint": "<file>"}')
    name = parameters.get("checkpoint")
    if name is not None and not isinstance(name, str):
        raise BadRequest("parameters.checkpoint must be a file name")
    return name


async def _parameters(request: Request) -> dict[str, Any]:
    """A REST load request's ``parameters`` (none when the body is empty)."""
    body = await request.body()
    if not body:
        return {}
    try:
        parameters = json.loads(body).get("parameters") or {}
    except (ValueError, AttributeError):
        parameters = None
    if not isinstance(parameters, dict):
        raise BadRequest('the load request is not {"parameters": {"checkpoint": "<file>"}} (or its config)')
    return parameters
