"""Slow, stuck and hostile clients on real sockets: they are cut off on time, and real requests go on being served."""

from __future__ import annotations

import resource
import selectors
import socket
import time
from collections.abc import Callable

import httpx
import numpy as np
import pytest
from PIL import Image

from app.connections import MAX_HEAD_BYTES
from tests.app.helpers import LiveServer, files, png

STALLED = 2000  # connections held open at once, half in their head, half in their body
TIMEOUT_S = 1.0


@pytest.fixture
def guarded(serve: Callable[..., LiveServer]) -> LiveServer:
    return serve(header_timeout_s=TIMEOUT_S, body_timeout_s=TIMEOUT_S)


def connect(server: LiveServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def enough_file_descriptors(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def wait_until_closed(sockets: list[socket.socket], timeout: float) -> dict[socket.socket, bytes]:
    """What each socket received until the server closed it; fails if any is still open after ``timeout``."""
    received = {s: b"" for s in sockets}
    with selectors.DefaultSelector() as selector:
        for s in sockets:
            s.setblocking(False)
            selector.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while selector.get_map():
            left = deadline - time.monotonic()
            assert left > 0, f"{len(selector.get_map())} of {len(sockets)} stalled connections still open"
            for key, _ in selector.select(left):
                chunk = key.fileobj.recv(4096)  # type: ignore[union-attr]
                if chunk:
                    received[key.fileobj] += chunk  # type: ignore[index]
                else:
                    selector.unregister(key.fileobj)
    return received


def test_thousands_of_stalled_connections_are_closed_on_time_while_real_requests_succeed(guarded: LiveServer) -> None:
    enough_file_descriptors(3 * STALLED + 256)  # both ends live in this process (the server runs in a thread)
    in_head, in_body = [], []
    opened = time.monotonic()
    for _ in range(STALLED // 2):
        s = connect(guarded)
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Le")  # half a header line, then nothing
        in_head.append(s)
        s = connect(guarded)
        head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        s.sendall(head + b"Content-Length: 100000\r\n\r\n--b\r\n" + b"x" * 50)  # 50 bytes of a 100 KB body
        in_body.append(s)
    with httpx.Client(base_url=guarded.url, timeout=10) as http:
        answer = http.post("/predict", files=files(("cat.png", png())))  # served while they all hang
        assert answer.status_code == 200
        assert http.get("/health/live").status_code == 200
    received = wait_until_closed(in_head + in_body, timeout=TIMEOUT_S + 10)
    closed_after = time.monotonic() - opened
    assert all(not received[s] for s in in_head)  # a head that never ends: closed without a word
    assert all(received[s].startswith(b"HTTP/1.1 408 ") for s in in_body)  # a body that never ends: 408
    assert closed_after < TIMEOUT_S + 10
    for s in in_head + in_body:
        s.close()
    with httpx.Client(base_url=guarded.url, timeout=10) as http:  # and the service is as it was
        assert http.post("/predict", files=files(("cat.png", png()))).status_code == 200


@pytest.mark.parametrize(
    "head",
    [
        b"GET /health HTTP/1.1\r\nX-Long: " + b"a" * (MAX_HEAD_BYTES + 1),  # one header without end
        b"GET /health HTTP/1.1\r\n" + b"X-A: b\r\n" * (MAX_HEAD_BYTES // 8 + 1),  # a flood of small ones
    ],
    ids=["long-header", "header-flood"],
)
def test_a_head_over_the_limit_is_refused_431_and_closed(guarded: LiveServer, head: bytes) -> None:
    s = connect(guarded)
    s.sendall(head)
    answer = wait_until_closed([s], timeout=5)[s]
    assert answer.startswith(b"HTTP/1.1 431 ") and b"over the limit of 65536 bytes" in answer


def test_a_kept_alive_connection_that_stalls_in_its_next_head_is_closed(guarded: LiveServer) -> None:
    s = connect(guarded)
    s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s.recv(4096).startswith(b"HTTP/1.1 200 ")
    s.sendall(b"GET /health/live HTTP/1.1\r\nHo")  # the next request, cut short
    assert wait_until_closed([s], timeout=TIMEOUT_S + 5)[s] == b""


def test_a_body_in_thousands_of_one_byte_chunks_is_served(guarded: LiveServer) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    image = png(Image.fromarray(noise))
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="noise.png"\r\n\r\n' + image + b"\r\n--b--\r\n"
    )
    assert len(body) > 5000
    chunked = b"".join(b"1\r\n" + body[i : i + 1] + b"\r\n" for i in range(len(body))) + b"0\r\n\r\n"
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
    s = connect(guarded)
    s.sendall(head + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunked)
    answer = wait_until_closed([s], timeout=30)[s]
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"filename":"noise.png"' in answer
