"""What the service's ASGI layers share: JSON answers sent straight to the server, and the watch on a response.

Several layers answer below FastAPI's router (the /predict endpoint, the door's 429, the key check's 401, the
catch-all 500) and several watch what the app answers (the access line, the metrics, the catch-all): each
does it here, one way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response
from starlette.types import Message, Send


def json_bytes(content: Any) -> bytes:
    """Compact JSON as UTF-8, as Starlette's JSONResponse writes it: every JSON answer's bytes."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def json_response(body: bytes, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """JSON bytes as a response, for the routes and the exception handlers."""
    return Response(body, status_code, dict(headers or {}), media_type="application/json")


async def send_json(send: Send, body: bytes, status_code: int = 200, headers: Mapping[str, str] | None = None) -> None:
    """JSON bytes straight to the ASGI server, for what answers below the router (the /predict endpoint, the
    door, the key check, the catch-all): the same body and headers as ``json_response``."""
    raw = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if headers:
        raw += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": status_code, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class ResponseWatch:
    """An ASGI ``send`` that passes every message on, remembers the response's status once it starts (None
    before), and adds ``headers`` to it. One per request: the layers that watch a response take the one an outer
    layer made (``of``), since every message from below passes through it too."""

    __slots__ = ("headers", "send", "status")

    def __init__(self, send: Send, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        self.send = send
        self.headers = headers
        self.status: int | None = None

    @classmethod
    def of(cls, send: Send) -> ResponseWatch:
        """The watch ``send`` already is (made by an outer layer), else a new one around it: a request's
        messages pass through one watch, not one for each layer."""
        return send if isinstance(send, ResponseWatch) else cls(send)

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            if self.headers:
                message["headers"] = [*message.get("headers", ()), *self.headers]
        await self.send(message)
