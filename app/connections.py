"""The HTTP connection itself: a request head must arrive whole, small and soon, or the connection is closed.

uvicorn waits for a request's head (the request line and headers) for as long as a client likes and for as
many bytes as it sends: a client that opens a connection and sends half a header line holds a socket and
a parser forever, and one that sends headers without end grows a buffer without end. This protocol is
uvicorn's own (httptools) with two bounds added while a head is awaited: ``header_timeout_s`` from the
connection's start (or from the previous response, on a kept-alive connection) to the end of the head, and
``MAX_HEAD_BYTES`` for the head's size (answered 431, then closed). The body has its own deadline, in the
route that reads it (``app.uploads``). The shipped nginx configuration enforces the same at the edge
(deploy/nginx/alexnet.conf: client_header_timeout, client_body_timeout, large_client_header_buffers).

What becomes of a connection after a request answered before its body was read (the hold of a refused one
included) is app/early_answers.py's, which this protocol extends.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import Settings
from app.early_answers import EarlyAnswers
from app.logs import uvicorn_log_config

MAX_HEAD_BYTES = 64 * 1024  # nginx's default large_client_header_buffers is 4 x 8 KiB; leave room past a proxy


def _head_too_large() -> bytes:
    body = b'{"detail":"the request head is over the limit of %d bytes"}' % MAX_HEAD_BYTES
    head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\nconnection: close\r\n"
    return head + b"content-length: %d\r\n\r\n" % len(body) + body


HEAD_TOO_LARGE = _head_too_large()


def guarded_protocol(header_timeout_s: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a deadline and a size cap on each request head (``Config(http=...)``)."""

    class GuardedHttpTools(EarlyAnswers):
        _head_timer: asyncio.TimerHandle | None = None
        _head_pending = False  # a head has begun (or the connection is new) and has not ended yet
        _head_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._await_head()

        def data_received(self, data: bytes) -> None:
            # Counted only when the head was already pending before this chunk: a chunk that ends the
            # previous request's body and starts the next head is not, which lets at most one read (256 KiB)
            # past the cap, and never counts a body as a head.
            counted = self._head_pending
            super().data_received(data)
            if not (counted and self._head_pending) or self.transport.is_closing():
                return
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._stop_waiting()
                self.transport.write(HEAD_TOO_LARGE)
                self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if not self._head_pending:
                self._await_head()  # a kept-alive connection starting its next request

        def on_headers_complete(self) -> None:
            self._stop_waiting()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_waiting()
            super().connection_lost(exc)

        def _await_head(self) -> None:
            self._head_pending, self._head_bytes = True, 0
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_late)

        def _stop_waiting(self) -> None:
            self._head_pending, self._head_bytes = False, 0
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_late(self) -> None:
            self._head_timer = None
            if self._head_pending and not self.transport.is_closing():
                self.transport.close()

    return GuardedHttpTools


def server_config(app: ASGIApp, settings: Settings, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for this service: ``alexnet-serve``'s, and the tests' servers' (``options`` on top)."""
    values: dict[str, Any] = {
        "lifespan": "on",
        "log_level": settings.log_level,
        "http": guarded_protocol(settings.header_timeout_s),  # a head must arrive whole and soon
        "limit_concurrency": settings.max_connections,  # bounds the sockets and tasks a flood of clients holds
        "timeout_graceful_shutdown": settings.request_timeout_s + 5,  # in-flight requests end by their deadline
        "log_config": uvicorn_log_config(settings.log_format),  # uvicorn's lines in the service's format
    }
    # Always off: the service writes one access line per request itself (app/request_log.py), with its ID.
    return uvicorn.Config(app, **(values | options | {"access_log": False}))
