"""POST /predict: uploaded images in, one prediction per image out."""

from __future__ import annotations

import asyncio
import copy
import warnings
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.types import Receive, Scope, Send

from app.deps import ServiceState, ready_predictor
from app.errors import DeadlineExceeded, QueueFull, ServiceError, Unprocessable, send_error, validation_detail
from app.request_log import IMAGES
from app.schemas import ErrorResponse, PredictResponse
from app.uploads import FIELD, NO_FILES, RAW_MEDIA_TYPES, UploadLimits, decode_uploads, read_uploads

router = APIRouter(tags=["predict"])
PREDICT_PATH = "/predict"  # the route, its schema, and app/door.py's shedding before routing
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
    example_body = {"application/json": {"example": {"detail": example}}}
    return {"model": ErrorResponse, "description": description, "content": example_body}


PREDICT_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error(
        "a corrupt or truncated image, an empty file or body, a malformed body",
        "file 'cat.jpg': the image data is corrupt or truncated (image file is truncated)",
    ),
    413: _error(
        "a body, a file, a pixel count or a number of files over the limits",
        "file 'huge.png': 10000x10000 is 100,000,000 pixels, over the limit of 50,000,000",
    ),
    415: _error(
        "a file that is not a supported image, or a body other than multipart/form-data, image/* or "
        "application/octet-stream",
        "file 'notes.txt': not a supported image (accepted: JPEG, PNG, WEBP, BMP, GIF, TIFF)",
    ),
    422: _error(
        "no files, a field other than `file`, a bad `top_k` or `threshold`",
        NO_FILES,
    ),
    429: _error("the queue is full: retry after the `Retry-After` header's seconds", QueueFull(256, 256).detail),
    503: _error("the model is not loaded and warmed up yet, or the service has stopped", "not ready: warming up"),
    504: _error("the request waited for the model past its deadline", DeadlineExceeded.NOT_RUN),
}


def install_schema_limits(app: FastAPI) -> None:
    """Make /openapi.json state the limits this service enforces: its settings and the loaded model's classes.

    A client (or schemathesis, in CI) reading the schema must not be able to send a request the schema calls
    valid and the service refuses: no empty or over-long file list, no top_k past the model's classes, and
    no threshold for a model without an abstention rule.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        with warnings.catch_warnings():
            # One route answers POST and PUT: FastAPI gives both operations its one ID, and warns; each gets its own
            warnings.filterwarnings("ignore", f"Duplicate Operation ID {predict_images.__name__}", UserWarning)
            schema = build()  # cached by FastAPI; changed in place, to the same values every time
        for method in PREDICT_METHODS:
            operation = schema["paths"][PREDICT_PATH][method.lower()]
            operation["operationId"] = f"{predict_images.__name__}{PREDICT_PATH.replace('/', '_')}_{method.lower()}"
            operation["summary"] = SUMMARIES[method]
            _declare_limits(operation, app.state.service)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _declare_limits(operation: dict[str, Any], state: ServiceState) -> None:
    settings = state.settings
    # FastAPI puts the one UPLOAD_BODY object into every app's schema, under POST and PUT: this app's copy
    operation["requestBody"] = content = copy.deepcopy(UPLOAD_BODY["requestBody"])
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
        # FastAPI puts the list itself into every app's schema: this app's copy, changed below
        operation["parameters"] = parameters = copy.deepcopy(operation.get("parameters", []))
        for parameter in parameters:
            if parameter["name"] == "top_k":  # int | None: the schema's integer branch
                for branch in parameter["schema"].get("anyOf", [parameter["schema"]]):
                    if branch.get("type") == "integer":
                        branch["maximum"] = len(predictor.classes)
        if predictor.info.abstention is None:
            operation["parameters"] = [p for p in parameters if p["name"] != "threshold"]


@router.api_route(
    PREDICT_PATH,
    methods=list(PREDICT_METHODS),
    response_model=PredictResponse,
    responses=PREDICT_ERRORS,
    openapi_extra=UPLOAD_BODY,
)
async def predict_images(request: Request) -> Response:
    """Classify images sent as multipart/form-data in the field `file` (repeat it for several), or one as the body."""
    # Reached only before the model is ready (503): from then on app/door.py answers /predict with answer_asgi
    return Response(await classify(request, request.app.state.service), media_type="application/json")


async def answer_asgi(scope: Scope, receive: Receive, send: Send, state: ServiceState) -> None:
    """/predict answered straight from ASGI, below the router and the framework's exception layers.

    app/door.py calls this once the model is ready: those layers were over a quarter of the event loop's time
    per request without the model (py-spy, docs/benchmarks.md). The answers are the route's to the byte: the
    same ``classify``, every ServiceError as the JSON error its handler gives, anything else raised to
    app.errors.CatchUnexpectedErrors as before.
    """
    try:
        body = await classify(Request(scope, receive), state)
    except ServiceError as exc:
        await send_error(send, exc)
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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
    batcher, loop = state.batcher, asyncio.get_running_loop()
    assert batcher is not None and state.decode_pool is not None  # set with the predictor
    # app/door.py has refused it already (429, before the body) if one more image could not be served in time
    with batcher.arriving():
        uploads = await read_uploads(request, limits, settings.body_timeout_s)
        request.scope[IMAGES] = len(uploads)  # for the access line (app/request_log.py)
        deadline = loop.time() + settings.request_timeout_s  # the body is in: from here the model's deadline runs
        with batcher.decoding():
            images = await decode_uploads(uploads, state.decode_pool, predictor.source_size, settings.max_pixels)
    rows = await batcher.submit(images, deadline)  # (n,) this request's probabilities and scores
    # The bytes, not the model: FastAPI would dump, validate and dump it again (response_model stays the schema)
    names = [u.filename for u in uploads]
    return PredictResponse.render(names, rows, predictor.info, predictor.info_json, k, threshold)
