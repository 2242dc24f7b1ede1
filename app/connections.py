"""The HTTP connection itself: a request head must arrive whole, small and soon, or the connection is closed.

uvicorn waits for a request's head (the request line and headers) for as long as a client likes and for as
many bytes as it sends: a client that opens a connection and sends half a header line holds a socket and
a parser forever, and one that sends headers without end grows a buffer without end. This protocol is
uvicorn's own (httptools) with two bounds added while a head is awaited: ``header_timeout_s`` from the
connection's start (or from the previous response, on a kept-alive connection) to the end of the head, and
``MAX_HEAD_BYTES`` for the head's size (answered 431, then closed). The body has its own deadline, in the
route that reads it (``app.uploads``). The shipped nginx configuration enforces the same at the edge
(deploy/nginx/alexnet.conf: client_header_timeout, client_body_timeout, large_client_header_buffers).

A third addition throttles clients that retry a 429 at once on the same connection (a retry storm): when the
app marks a response with ``HOLD_READING_S`` in its scope (the door does, with the ``Retry-After`` it sent),
the connection is not read again until those seconds have passed. The client's next request waits in the
kernel's socket buffer, then TCP's window, at no CPU cost to the service; a client that honours
``Retry-After`` never notices. uvicorn's keep-alive timer is stopped for the hold and started again after it,
so a request sent during the hold is read, not dropped with the connection (docs/reliability.md, "Retry storms").
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import Settings
from app.logs import uvicorn_log_config

HOLD_READING_S = "alexnet.hold_reading_s"  # scope key: seconds to leave the connection unread after this response
MAX_HEAD_BYTES = 64 * 1024  # nginx's default large_client_header_buffers is 4 x 8 KiB; leave room past a proxy


def _head_too_large() -> bytes:
    body = b'{"detail":"the request head is over the limit of %d bytes"}' % MAX_HEAD_BYTES
    head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\nconnection: close\r\n"
    return head + b"content-length: %d\r\n\r\n" % len(body) + body


HEAD_TOO_LARGE = _head_too_large()


def guarded_protocol(header_timeout_s: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a deadline and a size cap on each request head (``Config(http=...)``)."""

    class GuardedHttpTools(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None
        _head_pending = False  # a head has begun (or the connection is new) and has not ended yet
        _head_bytes = 0
        _hold_timer: asyncio.TimerHandle | None = None

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

        def on_message_complete(self) -> None:
            super().on_message_complete()
            # The rest of a body that came after its answer (the door's 429 and the key check's 401 answer
            # after the head): its bytes cancelled uvicorn's keep-alive timer, and uvicorn does not start it
            # again, so the idle connection would stay open for good.
            idle = self.cycle is not None and self.cycle.response_complete and not self.pipeline
            if idle and self.timeout_keep_alive_task is None and not self.transport.is_closing():
                self._await_next_request()

        def on_response_complete(self) -> None:
            hold_s = self.scope.get(HOLD_READING_S)
            super().on_response_complete()
            # Not with pipelined requests waiting: they are already read, and uvicorn has just started the next.
            if hold_s and not self.pipeline and not self.transport.is_closing():
                self._unset_keepalive_if_required()  # its timer would close the connection with a request unread
                self.flow.pause_reading()
                self._hold_timer = self.loop.call_later(hold_s, self._end_hold)

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_waiting()
            if self._hold_timer is not None:
                self._hold_timer.cancel()
            super().connection_lost(exc)

        def _end_hold(self) -> None:
            self._hold_timer = None
            if not self.transport.is_closing():
                self._await_next_request()  # first: what the client sent meanwhile may arrive within resume_reading
                self.flow.resume_reading()

        def _await_next_request(self) -> None:
            """uvicorn's keep-alive timer, as it starts it after a response: closes the connection if it stays idle."""
            handler = self.timeout_keep_alive_handler
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, handler)

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
