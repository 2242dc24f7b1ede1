"""POST /predict: uploaded images in, one prediction per image out.

One ASGI endpoint answers it (``PredictLane``, the innermost middleware, below FastAPI's router):
FastAPI's request handling (its exception layers, the router, the request/response wrapper, dependencies) was
over a quarter of the event loop's time per request without the model (py-spy, docs/benchmarks.md). The same
endpoint answers before the model is ready (503), and its OpenAPI operations are written here, from the
constants that shape its answers and errors (``path_item``, ``components``): FastAPI documents its own routes
only.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app import pipeline
from app.asgi import send_json
from app.deps import ServiceState, ready_predictor
from app.errors import (
    DeadlineExceeded,
    MethodNotAllowed,
    QueueFull,
    ServiceError,
    Unprocessable,
    send_error,
    validation_detail,
)
from app.metrics import ROUTE_LABEL
from app.request_log import IMAGES
from app.schemas import ErrorResponse, PredictResponse
from app.uploads import FIELD, NO_FILES, RAW_MEDIA_TYPES, Upload, UploadLimits, decode_uploads, read_uploads

PREDICT_PATH = "/predict"  # the route, its schema, and app/door.py's shedding before routing
TAGS = ["predict"]
DESCRIPTION = (
    "Classify images sent as multipart/form-data in the field `file` (repeat it for several), or one as the body."
)
# POST, and PUT for `curl -T cat.jpg URL` (curl's upload flag sends PUT): the same operation, the same answers
PREDICT_METHODS = ("POST", "PUT")
SUMMARIES = {"POST": "Classify uploaded images", "PUT": "Classify uploaded images (the same as POST, for curl -T)"}

# The body is read by app.uploads as a stream (limits enforced while it arrives), so FastAPI does not parse
# it; this tells the OpenAPI page what to send, which gives /docs its file picker.
FILES_DESCRIPTION = "one or more images: JPEG, PNG, WebP, BMP, GIF (first frame) or TIFF"
RAW_DESCRIPTION = (
    "one image as the whole body (JPEG, PNG, WebP, BMP, GIF or TIFF); its name, if wanted in the answer, "
    'from a `Content-Disposition: attachment; filename="cat.jpg"` header'
)


class PredictQuery(BaseModel):
    """/predict's query parameters: validated by pydantic as FastAPI would (the same 422 messages), and only when
    there is a query string; their OpenAPI entries are generated from these fields (``UPLOAD_BODY``)."""

    top_k: int | None = Field(None, ge=1, description="classes listed per image (default: the service's)")
    threshold: float | None = Field(
        None, allow_inf_nan=False, description="abstention threshold for this request (default: the model's)"
    )


def _query_parameters() -> list[dict[str, Any]]:
    properties = PredictQuery.model_json_schema()["properties"]
    return [
        {"name": name, "in": "query", "required": False, "description": schema["description"], "schema": schema}
        for name, schema in properties.items()
    ]


def query_options(request: Request) -> tuple[int | None, float | None]:
    """(top_k, threshold) from the query string; Unprocessable (422) worded as FastAPI's own validation is."""
    if not request.scope.get("query_string"):
        return None, None
    params = request.query_params
    try:
        query = PredictQuery.model_validate(
            {name: params[name] for name in PredictQuery.model_fields if name in params}
        )
    except ValidationError as exc:
        raise Unprocessable(validation_detail([{**e, "loc": ("query", *e["loc"])} for e in exc.errors()])) from None
    return query.top_k, query.threshold


UPLOAD_BODY: dict[str, Any] = {
    "parameters": _query_parameters(),
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FIELD],
                    "additionalProperties": False,  # any other field is refused (422)
                    "properties": {
                        FIELD: {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": FILES_DESCRIPTION,
                        }
                    },
                }
            },
            # The same operation with one image as the body (app/uploads.py); no Content-Type counts as
            # application/octet-stream. minLength: an empty body is refused (400).
            **{
                media_type: {"schema": {"type": "string", "format": "binary", "minLength": 1}}
                for media_type in RAW_MEDIA_TYPES
            },
        },
    },
}


def _error(description: str, example: str) -> dict[str, Any]:
    body = {"example": {"detail": example}, "schema": {"$ref": f"#/components/schemas/{ErrorResponse.__name__}"}}
    return {"description": description, "content": {"application/json": body}}


PREDICT_ERRORS: dict[str, dict[str, Any]] = {
    "400": _error(
        "a corrupt or truncated image, an empty file or body, a malformed body",
        "file 'cat.jpg': the image data is corrupt or truncated (image file is truncated)",
    ),
    "413": _error(
        "a body, a file, a pixel count or a number of files over the limits",
        "file 'huge.png': 10000x10000 is 100,000,000 pixels, over the limit of 50,000,000",
    ),
    "415": _error(
        "a file that is not a supported image, or a body other than multipart/form-data, image/* or "
        "application/octet-stream",
        "file 'notes.txt': not a supported image (accepted: JPEG, PNG, WEBP, BMP, GIF, TIFF)",
    ),
    "422": _error(
        "no files, a field other than `file`, a bad `top_k` or `threshold`",
        NO_FILES,
    ),
    "429": _error("the queue is full: retry after the `Retry-After` header's seconds", QueueFull(256, 256).detail),
    "503": _error("the model is not loaded and warmed up yet, or the service has stopped", "not ready: warming up"),
    "504": _error("the request waited for the model past its deadline", DeadlineExceeded.NOT_RUN),
}


def path_item(state: ServiceState) -> dict[str, Any]:
    """/predict's OpenAPI operations (POST, and PUT for ``curl -T``), stating the limits this service enforces:
    its settings and the loaded model's classes. A client (or schemathesis, in CI) reading the schema must not
    be able to send a request the schema calls valid and the service refuses: no empty or over-long file list,
    no top_k past the model's classes, and no threshold for a model without an abstention rule."""
    success = {"$ref": f"#/components/schemas/{PredictResponse.__name__}"}
    item = {}
    for method in PREDICT_METHODS:
        operation = {
            "tags": TAGS,
            "summary": SUMMARIES[method],
            "description": DESCRIPTION,
            "operationId": f"predict_images{PREDICT_PATH.replace('/', '_')}_{method.lower()}",
            "parameters": UPLOAD_BODY["parameters"],
            "requestBody": UPLOAD_BODY["requestBody"],
            "responses": {
                "200": {"description": "Successful Response", "content": {"application/json": {"schema": success}}},
                **PREDICT_ERRORS,
            },
        }
        _declare_limits(operation, state)
        item[method.lower()] = operation
    return item


def components() -> dict[str, Any]:
    """The schemas /predict's operations refer to, as FastAPI would write them for its own routes."""
    _, schema = models_json_schema(
        [(PredictResponse, "serialization"), (ErrorResponse, "serialization")],
        ref_template="#/components/schemas/{model}",
    )
    return schema["$defs"]


def _declare_limits(operation: dict[str, Any], state: ServiceState) -> None:
    settings = state.settings
    operation["requestBody"] = content = copy.deepcopy(UPLOAD_BODY["requestBody"])  # this operation's own copy
    files = content["content"]["multipart/form-data"]["schema"]["properties"][FIELD]
    files.update(minItems=1, maxItems=settings.max_files)
    files["items"]["minLength"] = 1
    # The byte limits go in words: schemathesis takes maxLength on a binary string for characters and
    # "violates" it with a real image (it substitutes images for binary fields).
    limits = f"at most {settings.max_file_bytes:,} bytes each and {settings.max_body_bytes:,} in all"
    files["description"] = f"{FILES_DESCRIPTION}; 1 to {settings.max_files} files, {limits}"
    raw_limit = min(settings.max_file_bytes, settings.max_body_bytes)
    for media_type in RAW_MEDIA_TYPES:
        content["content"][media_type]["schema"]["description"] = f"{RAW_DESCRIPTION}; at most {raw_limit:,} bytes"
    predictor = state.predictor
    if predictor is not None:
        operation["parameters"] = parameters = copy.deepcopy(operation["parameters"])  # its own, changed below
        for parameter in parameters:
            if parameter["name"] == "top_k":  # int | None: the schema's integer branch
                for branch in parameter["schema"].get("anyOf", [parameter["schema"]]):
                    if branch.get("type") == "integer":
                        branch["maximum"] = len(predictor.classes)
        if predictor.info.abstention is None:
            operation["parameters"] = [p for p in parameters if p["name"] != "threshold"]


class PredictLane:
    """ASGI middleware, the innermost, and /predict's one endpoint: /predict, every method, is answered here (the
    answer's JSON, or the error's); anything else goes on to FastAPI's router. Below the router and its exception
    layers, which were over a quarter of the event loop's time per request without the model (py-spy,
    docs/benchmarks.md); the same endpoint before the model is ready (503) and after. Each request is labelled
    with the route for app/metrics.py, as the router would."""

    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PREDICT_PATH:
            await self.app(scope, receive, send)
            return
        scope[ROUTE_LABEL] = PREDICT_PATH
        try:
            if scope["method"] not in PREDICT_METHODS:
                raise MethodNotAllowed(PREDICT_METHODS)
            body = await classify(Request(scope, receive), self.state)
        except ServiceError as exc:
            await send_error(send, exc)
            return
        await send_json(send, body)  # anything else raised goes to app.errors.CatchUnexpectedErrors


async def classify(request: Request, state: ServiceState) -> bytes:
    """The whole of /predict: the query, the body, decoding, the model; the answer's JSON bytes, or a ServiceError."""
    predictor = ready_predictor(state)  # 503 until loaded and warmed up
    top_k, threshold = query_options(request)
    settings = state.settings
    k = min(settings.top_k, len(predictor.classes)) if top_k is None else top_k
    if k > len(predictor.classes):
        raise Unprocessable(f"top_k is {k} but the model has {len(predictor.classes)} classes")
    if threshold is not None and predictor.info.abstention is None:
        raise Unprocessable("threshold: this model has no abstention score to compare it with")
    limits = UploadLimits(settings.max_files, settings.max_file_bytes, settings.max_body_bytes)
    assert state.decode_pool is not None  # set with the predictor

    async def decode(uploads: list[Upload]) -> tuple[list[str], Any]:
        request.scope[IMAGES] = len(uploads)  # for the access line (app/request_log.py)
        images = await decode_uploads(uploads, state.decode_pool, predictor.source_size, settings.max_pixels)
        return [u.filename for u in uploads], images

    names, rows = await pipeline.run(state, predictor, lambda: read_uploads(request, limits), decode)
    # The bytes, not the model: pydantic would dump, validate and dump it again (PredictResponse stays the schema)
    return PredictResponse.render(names, rows, predictor.info, predictor.info_json, k, threshold)
