"""The service's error vocabulary: a few statuses, each with a JSON {"detail": ...} a client can act on.

Anything else is a bug: it is logged with its traceback and answered with a bare 500 that leaks nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from app.asgi import ResponseWatch, json_bytes, json_response, send_json

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """An error with its HTTP status; the message is shown to the client as ``detail``."""

    status_code = 500

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class BadRequest(ServiceError):
    """400: a corrupt or truncated image, an empty file or body, a malformed multipart body."""

    status_code = 400


class PayloadTooLarge(ServiceError):
    """413: a body, a file, a pixel count or a number of files over the limits."""

    status_code = 413


class Unauthorized(ServiceError):
    """401: an API key is required (app/access.py) and the request has none, or not that key."""

    status_code = 401

    def __init__(self, detail: str, challenge: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class NotFound(ServiceError):
    """404: what was asked for does not exist here (the report page of the loaded weights)."""

    status_code = 404


class MethodNotAllowed(ServiceError):
    """405: a method the path does not answer; ``Allow`` lists those it does."""

    status_code = 405

    def __init__(self, allowed: tuple[str, ...]) -> None:
        super().__init__("Method Not Allowed", headers={"Allow": ", ".join(allowed)})


class UnsupportedMedia(ServiceError):
    """415: a file that is not a supported image, or a body neither multipart/form-data nor one image (image/*)."""

    status_code = 415


class Unprocessable(ServiceError):
    """422: a request without files, a misnamed field, a bad query parameter."""

    status_code = 422


class QueueFull(ServiceError):
    """429: more images waiting than the queue holds; retry after the given seconds."""

    status_code = 429

    def __init__(self, waiting: int, limit: int, retry_after_s: int = 1) -> None:
        detail = f"the queue is full ({waiting} images waiting, limit {limit}); retry in {retry_after_s} s"
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)})


class Overloaded(ServiceError):
    """429: the model could not answer this request before its deadline at the rate it is draining now."""

    status_code = 429

    def __init__(self, expected_wait_s: float, time_left_s: float, retry_after_s: int) -> None:
        detail = (
            f"overloaded: this request would wait about {expected_wait_s:.1f} s for the model, more than its "
            f"{time_left_s:.1f} s allow; retry in {retry_after_s} s"
        )
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)})


class BodyTimeout(ServiceError):
    """408: the request body did not arrive in time; the connection is closed, its buffers freed."""

    status_code = 408

    def __init__(self, seconds: float) -> None:
        detail = f"the request body did not arrive within {seconds:g} s"
        super().__init__(detail, headers={"Connection": "close"})


class NotReady(ServiceError):
    """503: the model is not loaded and warmed up yet, or the service is shutting down."""

    status_code = 503


class DeadlineExceeded(ServiceError):
    """504: the request waited longer than its deadline; if it was still queued, it never reached the model."""

    status_code = 504
    NOT_RUN = "the request waited for the model past its deadline and was not run"
    LATE = "the model did not answer before the deadline"
    BEFORE_QUEUE = "the request passed its deadline before it reached the queue"


class InternalError(ServiceError):
    """500 for a failure already logged where it happened (a failed forward pass): nothing leaks."""

    status_code = 500

    def __init__(self) -> None:
        super().__init__("internal server error")


def error_body(exc: ServiceError, key: str = "detail") -> bytes:
    """``{"detail": ...}``; the Open Inference Protocol's errors say ``{"error": ...}``."""
    return json_bytes({key: exc.detail})


async def send_error(send: Send, exc: ServiceError, key: str = "detail") -> None:
    """``exc`` answered straight to the ASGI server, below the router."""
    await send_json(send, error_body(exc, key), exc.status_code, exc.headers)


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return json_response(error_body(exc), exc.status_code, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    # One sentence like every other error, e.g. "query parameter top_k: Input should be greater than or
    # equal to 1"; the input values are left out: they may be large or private.
    assert isinstance(exc, RequestValidationError)
    return json_response(json_bytes({"detail": validation_detail(exc.errors())}), 422)


def validation_detail(errors: Sequence[dict[str, Any]]) -> str:
    """pydantic's errors as the one sentence of a 422, FastAPI's own and app/routes/predict.py's alike."""
    return "; ".join(_describe(error) for error in errors)


def _describe(error: dict[str, Any]) -> str:
    where, *name = [str(part) for part in error.get("loc", ())] or ["request"]
    place = {"query": "query parameter", "path": "path parameter", "header": "header"}.get(where, where)
    message = error.get("msg", "invalid")
    return f"{place} {'.'.join(name)}: {message}" if name else f"{place}: {message}"


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return json_response(json_bytes({"detail": exc.detail}), exc.status_code, exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every known error as JSON; catch everything else in a middleware that leaks nothing."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_middleware(CatchUnexpectedErrors)


class CatchUnexpectedErrors:
    """An unexpected exception: log it once with its traceback, answer a generic 500 if nothing was sent yet."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        watch = ResponseWatch.of(send)
        try:
            await self.app(scope, receive, watch)
        except Exception:
            logger.exception("unexpected error in %s %s", scope.get("method"), scope.get("path"))
            if watch.status is not None:
                raise  # too late to answer: let the server drop the connection
            await send_error(send, InternalError())
