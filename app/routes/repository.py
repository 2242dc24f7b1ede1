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
    state = service_state(request)
    ready = "READY" if state.status in ("ready", "stopping") else "UNAVAILABLE"
    return [{"name": MODEL_NAME, "version": serving_version(state), "state": ready}]


@router.post("/models/{name}/load", summary="Load a checkpoint while serving")
async def load_model(request: Request, name: str) -> dict[str, Any]:
    _controlled(request, name)
    loader: ModelLoader = request.app.state.loader
    await loader.load(await _checkpoint_named(request), "a load request")
    return {}


@router.post("/models/{name}/unload", summary="Unload a model (refused: one model always serves)")
async def unload_model(request: Request, name: str) -> dict[str, Any]:
    _controlled(request, name)
    raise AlwaysServing()


def _controlled(request: Request, name: str) -> None:
    """The model this server serves, and model control on (403 otherwise)."""
    state = service_state(request)
    check_model(name, None, state)
    if not state.settings.model_control:
        raise ControlOff()


async def _checkpoint_named(request: Request) -> str | None:
    """The checkpoint the request names, or None: the configured one again."""
    body = await request.body()
    if not body:
        return None
    try:
        parameters = json.loads(body).get("parameters") or {}
        if "config" in parameters:
            parameters = json.loads(parameters["config"])
        name = parameters.get("checkpoint")
    except (ValueError, AttributeError, TypeError):
        raise BadRequest('the load request is not {"parameters": {"checkpoint": "<file>"}} (or its config)') from None
    if name is not None and not isinstance(name, str):
        raise BadRequest("parameters.checkpoint must be a file name")
    return name
