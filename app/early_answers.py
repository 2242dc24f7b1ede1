"""A connection after a request answered before its body was read (the door's 429, the key check's 401, a 413
from Content-Length): the rest of the body is read and dropped under a timer, and a refused connection is held.

**The hold** (a retry storm: clients that send the same request again at once after a 429). When the app marks
a response with ``HOLD_READING_S`` in its scope (the door does, with the ``Retry-After`` it sent), the connection
is not read again until those seconds have passed. The client's next request waits in the kernel's socket
buffer, then in TCP's window, at no CPU cost to the service; a client that honours ``Retry-After`` never
notices. The hold starts once the refused request's body is in, so a client that sends its whole body before
it reads the answer (most do) is never held mid-upload; a request that comes in the same read as that body's
end waits out the hold too. uvicorn's keep-alive timer is stopped for the hold and
started after it, so a request sent during the hold is read, not dropped with the connection.
(docs/reliability.md, "Retry storms".)

**The late body.** uvicorn stops its keep-alive timer on every read and starts it only after a response: the
body of a request answered early cancelled it, and a connection idle after that body (or stalled in it) stayed
open for good. Here the timer is started again after each piece of such a body and after its end.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HOLD_READING_S = "alexnet.hold_reading_s"  # scope key: seconds to leave the connection unread after this response


class EarlyAnswers(HttpToolsProtocol):
    """uvicorn's httptools protocol, minding the rest of a request answered before its body was read."""

    _hold_timer: asyncio.TimerHandle | None = None
    _message_done = False  # the request being parsed has ended: its body is in
    _late_body = False  # answered, and its body still arriving
    _pending_hold_s = 0.0  # the hold to start once that body is in
    _deferred: tuple[Any, Any] | None = None  # a request parsed in the very read that began the hold: run after it

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # uvicorn cancels its keep-alive timer here, whatever the bytes are
        if self._late_body and self.timeout_keep_alive_task is None and not self.transport.is_closing():
            self._await_next_request()  # the rest of an answered body must keep coming

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._message_done = False
        # A request begun in the read that ended an answered body: the timer that end started is not for it.
        self._unset_keepalive_if_required()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._message_done = True
        if not self._late_body:
            return
        self._late_body = False
        if self.pipeline or self.transport.is_closing():
            return
        if self._pending_hold_s:
            self._hold(self._pending_hold_s)
        elif self.timeout_keep_alive_task is None:
            self._await_next_request()

    def on_response_complete(self) -> None:
        hold_s = self.scope.get(HOLD_READING_S, 0)
        super().on_response_complete()
        if self.transport.is_closing() or self.pipeline:
            return  # pipelined requests are read already, and uvicorn has just started the next
        if not self._message_done:
            self._late_body, self._pending_hold_s = True, hold_s  # read on: a client sends its body before it reads
        elif hold_s:
            self._hold(hold_s)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._hold_timer is not None:
            self._hold_timer.cancel()
        super().connection_lost(exc)

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if self._hold_timer is not None:  # the next request came in the read that ended the refused body
            self._deferred = (cycle, app)
            return
        super()._start_asgi_task(cycle, app)

    def _hold(self, seconds: float) -> None:
        self._pending_hold_s = 0.0
        self._unset_keepalive_if_required()  # its timer would close the connection with a request unread
        self.flow.pause_reading()
        self._hold_timer = self.loop.call_later(seconds, self._end_hold)

    def _end_hold(self) -> None:
        self._hold_timer = None
        if self.transport.is_closing():
            return
        if self._deferred is not None:
            (cycle, app), self._deferred = self._deferred, None
            super()._start_asgi_task(cycle, app)  # a request under way: no idle timer
        else:
            self._await_next_request()  # first: what the client sent meanwhile may arrive within resume_reading
        self.flow.resume_reading()

    def _await_next_request(self) -> None:
        """uvicorn's keep-alive timer, as it starts it after a response: closes the connection if it stays idle."""
        handler = self.timeout_keep_alive_handler
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, handler)
