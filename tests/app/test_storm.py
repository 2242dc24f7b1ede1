"""A retry storm: a connection refused 429 at the door is not read again until its Retry-After has passed
(app/connections.py), so clients that retry at once wait in TCP instead of taking the cores, and no request
the service accepted is lost."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from app.batcher import Batcher
from app.errors import Overloaded
from tests.app.helpers import LiveServer, picture, png, service_settings
from verification import overload

IMAGE = png(picture())
CONTENT_TYPE = "image/png"


def test_a_short_storm_loses_no_accepted_request(tiny_checkpoint: Path, tmp_path: Path) -> None:
    clients, seconds = 150, 4
    arguments = ["--storm", "--checkpoint", str(tiny_checkpoint), "--deadline", "1", "--clients", str(clients)]
    arguments += ["--seconds", str(seconds), "--capacity-s", "2", "--output", str(tmp_path / "storm.json")]
    run = overload.main(arguments)["runs"][0]
    storming = run["storming"]
    assert storming["statuses"].get("429"), "the storm never overloaded the service: nothing was tested"
    assert (run["accepted_then_504"], run["other_5xx"], run["connection_errors"]) == (0, 0, 0), run
    # Each storming connection is read at most once per Retry-After (>= 1 s): about 10,000 429s without the hold.
    assert storming["statuses"]["429"] <= clients * (seconds + 2), storming
    # The polite clients' share is measured (docs/reliability.md), not asserted here: on a busy machine the storm's
    # own client starves them. That the hold never delays a client that waits as told is the test below.


def test_a_refused_connection_is_read_again_only_after_its_retry_after(serve: Callable[..., LiveServer]) -> None:
    server = serve()
    refused = _connect(server)
    _refuse_next(server, retry_after_s=2)
    first_sent = time.monotonic()  # the hold starts after this, once the 429 has gone out
    assert _post(refused)[0] == 429
    refused.request("POST", "/predict", IMAGE, {"content-type": CONTENT_TYPE})  # at once, ignoring Retry-After
    other = _connect(server)
    assert _post(other)[0] == 200  # other connections are read as usual meanwhile
    assert time.monotonic() - first_sent < 1.5
    assert refused.getresponse().status == 200  # held, then read and answered
    assert time.monotonic() - first_sent >= 2.0


def test_a_client_that_waits_its_retry_after_is_read_at_once(serve: Callable[..., LiveServer]) -> None:
    server = serve()
    connection = _connect(server)
    _refuse_next(server, retry_after_s=1)
    status, headers = _post(connection)
    assert (status, headers["retry-after"]) == (429, "1")
    time.sleep(1.05)
    sent = time.monotonic()
    assert _post(connection)[0] == 200
    assert time.monotonic() - sent < 0.9  # no hold past the Retry-After the client was given


@pytest.mark.parametrize("how", ["hold off", "through a proxy"])
def test_without_the_hold_a_refused_connection_is_read_at_once(serve: Callable[..., LiveServer], how: str) -> None:
    # A proxy's connection carries other clients' requests next (nginx's upstream keep-alive pool): not held.
    server = serve(hold_after_429=how != "hold off")
    headers = {"x-forwarded-for": "203.0.113.7"} if how == "through a proxy" else {}
    connection = _connect(server)
    _refuse_next(server, retry_after_s=2)
    assert _post(connection, headers)[0] == 429
    sent = time.monotonic()
    assert _post(connection, headers)[0] == 200
    assert time.monotonic() - sent < 1.5


def test_a_request_sent_during_the_hold_outlives_the_keep_alive_timeout(tiny_checkpoint: Path) -> None:
    with _short_keep_alive(tiny_checkpoint) as server:
        connection = _connect(server)
        _refuse_next(server, retry_after_s=1)
        assert _post(connection)[0] == 429
        time.sleep(0.6)  # past the keep-alive timeout, within the hold: the connection stays
        assert _post(connection)[0] == 200


def test_an_idle_connection_is_closed_after_its_hold_even_when_the_body_came_late(tiny_checkpoint: Path) -> None:
    # The door answers after the head; the body of the refused request arrives after the answer. Plain uvicorn
    # then leaves the connection open for good: that data cancels its keep-alive timer.
    with _short_keep_alive(tiny_checkpoint) as server, socket.create_connection(_address(server), 30) as sock:
        _refuse_next(server, retry_after_s=1)
        sock.sendall(_head(len(IMAGE)))
        assert sock.recv(65536).startswith(b"HTTP/1.1 429 ")
        sent = time.monotonic()
        sock.sendall(IMAGE)  # then nothing more
        sock.settimeout(10)
        assert sock.recv(1) == b""  # closed once the hold (from the body's end), then the keep-alive timeout, ran out
        assert 1.0 <= time.monotonic() - sent < 5


def test_a_request_in_the_read_that_ends_the_refused_body_waits_out_the_hold(serve: Callable[..., LiveServer]) -> None:
    # The door answers after the head; on a busy machine the refused body and the client's retry can arrive
    # in one read, and the retry is parsed at once: it must still wait for the Retry-After.
    server = serve()
    with socket.create_connection(_address(server), 30) as sock:
        _refuse_next(server, retry_after_s=1)
        sock.sendall(_head(len(IMAGE)))
        assert sock.recv(65536).startswith(b"HTTP/1.1 429 ")
        sent = time.monotonic()
        sock.sendall(IMAGE + _head(len(IMAGE)) + IMAGE)  # the refused body's end and the retry, in one read
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        assert time.monotonic() - sent >= 1.0


def test_a_request_begun_as_an_answered_body_ends_is_not_cut_off_by_the_keep_alive_timer(tiny_checkpoint: Path) -> None:
    server = _short_keep_alive(tiny_checkpoint, hold_after_429=False)
    with server as live, socket.create_connection(_address(live), 30) as sock:
        _refuse_next(live, retry_after_s=1)
        sock.sendall(_head(len(IMAGE)))
        assert sock.recv(65536).startswith(b"HTTP/1.1 429 ")
        sock.sendall(IMAGE + _head(len(IMAGE)))  # the refused body's end and the next head, in one read
        time.sleep(0.6)  # longer than the keep-alive timeout: the next request is under way, not idle
        sock.sendall(IMAGE)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_a_refused_upload_is_read_to_its_end_before_the_hold(serve: Callable[..., LiveServer]) -> None:
    # Most clients send the whole body before they read the answer: holding mid-upload would stall them for the
    # Retry-After before they even see the 429. 24 MB is more than the socket buffers hold.
    server = serve()
    body = IMAGE + bytes(24_000_000)
    with socket.create_connection(_address(server), 30) as sock:
        _refuse_next(server, retry_after_s=3)
        start = time.monotonic()
        sock.sendall(_head(len(body)) + body)
        assert time.monotonic() - start < 2.0
        assert sock.recv(65536).startswith(b"HTTP/1.1 429 ")


@contextlib.contextmanager
def _short_keep_alive(checkpoint: Path, **settings: Any) -> Iterator[LiveServer]:
    server = LiveServer(service_settings(checkpoint, **settings))
    server.server.config.timeout_keep_alive = 0.3  # far shorter than a hold
    try:
        yield server.start()
    finally:
        server.stop()


def _address(server: LiveServer) -> tuple[str, int]:
    address = urlsplit(server.url)
    return address.hostname or "", address.port or 80


def _connect(server: LiveServer) -> HTTPConnection:
    return HTTPConnection(*_address(server), timeout=30)


def _head(length: int) -> bytes:
    return b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n" % length


def _post(connection: HTTPConnection, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    connection.request("POST", "/predict", IMAGE, {"content-type": CONTENT_TYPE, **(headers or {})})
    response = connection.getresponse()
    response.read()
    return response.status, dict(response.getheaders())


def _refuse_next(server: LiveServer, retry_after_s: int) -> None:
    """The door refuses the next request as under overload, with this Retry-After; then admits again."""
    batcher = server.state.batcher
    assert isinstance(batcher, Batcher)

    def refuse_once(time_left: float) -> None:
        del batcher.admit_arrival  # the class's own check again
        raise Overloaded(1.0, time_left, retry_after_s)

    batcher.admit_arrival = refuse_once  # type: ignore[method-assign]
