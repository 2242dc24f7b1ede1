"""Every request gets an ID and one access line; the outermost middleware, so every answer has both.

The ID is the client's ``X-Request-ID`` when it is 1 to 128 visible ASCII characters (a proxy's or a
caller's ID, to follow one request across services), else 32 new random hex digits (128 bits from the OS, as
random as a uuid4 and a sixth of its cost, which was ~3 us of a ~500 us request): whatever bytes a client sends
never reach a log line. It is set in ``app.logs.REQUEST_ID`` for the request's task, so every line logged
while handling it carries it, and it is returned in the ``X-Request-ID`` response header of every answer the
app gives: the door's 429, a 401, a 404, a 422, the catch-all 500 included.

The access line (logger ``app.access``, INFO) replaces uvicorn's: client, method, path, status, the images
the body carried (``-`` for no body read), the time from the request's head to its last byte in ms, and the
ID. Its cost is paid only when the logger is on (``alexnet-serve --no-access-log`` or a log level above
info turn it off); the ID costs a header scan, and 16 random bytes only when the client sent none.
"""

from __future__ import annotations

import logging
import os
import re
from time import perf_counter_ns
from typing import Any
from urllib.parse import quote

from starlette.types import ASGIApp, Receive, Scope, Send

from app.asgi import ResponseWatch
from app.logs import ACCESS_LOGGER, REQUEST_ID

logger = logging.getLogger(ACCESS_LOGGER)

HEADER = b"x-request-id"
MAX_ID_LENGTH = 128
_valid_id = re.compile(rb"[!-~]{1,%d}" % MAX_ID_LENGTH).fullmatch  # visible ASCII: no space, no control
IMAGES = "alexnet.images"  # scope key: how many images the body of a /predict carried (app/routes/predict.py)
_QUERY_SAFE = "!$&'()*+,;=:@/?%"  # a query string in the log as sent, but never a space or a control character


class RequestLog:
    """ASGI middleware: the request ID (context, response header) and the access line of each HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter_ns()
        sent = None
        for name, value in scope["headers"]:  # the first one counts
            if name == HEADER:
                sent = value
                break
        request_id = pick_request_id(sent)
        watch = ResponseWatch(send, ((HEADER, request_id.encode()),))
        token = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, receive, watch)
        finally:
            if logger.isEnabledFor(logging.INFO):  # 500: what the server answers if the app raised before answering
                _log_access(scope, watch.status or 500, request_id, perf_counter_ns() - start)
            REQUEST_ID.reset(token)


def pick_request_id(sent: bytes | None) -> str:
    """The ID a client sent (HTTP's ``X-Request-ID``, gRPC's ``x-request-id``) when it is 1 to 128 visible ASCII
    characters, else 32 new random hex digits."""
    return sent.decode() if sent is not None and _valid_id(sent) else os.urandom(16).hex()


def _log_access(scope: Scope, status: int, request_id: str, elapsed_ns: int) -> None:
    client = scope.get("client")
    address = f"{client[0]}:{client[1]}" if client else "-"
    path = quote(scope["path"])  # percent-decoded by the server: quoted again, so no byte reaches the log raw
    query = scope.get("query_string", b"")
    if query:
        path += "?" + quote(query.decode("latin-1"), safe=_QUERY_SAFE)
    images = scope.get(IMAGES)
    latency_ms = round(elapsed_ns / 1e6, 3)
    fields: dict[str, Any] = {
        "method": scope["method"],
        "path": path,
        "status": status,
        "images": images,
        "latency_ms": latency_ms,
        "client": address,
    }
    logger.info(
        '%s - "%s %s HTTP/%s" %d images=%s %.1f ms',
        address,
        scope["method"],
        path,
        scope.get("http_version", "1.1"),
        status,
        "-" if images is None else images,
        latency_ms,
        extra={"request_id": request_id, "fields": fields},
    )
