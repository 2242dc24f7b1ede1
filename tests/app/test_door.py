"""app/door.py answers a ready service's /predict below the router: the same answers as the route, to the byte,
and the same metrics labels; a shed request is labelled with its route too, not "unmatched"."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

import app.door
from app.errors import QueueFull
from tests.app.helpers import LiveServer, encode, files, picture, png

GOOD = png(picture())
JPEG = encode(picture(40, 20), "JPEG")
REQUESTS: list[tuple[str, dict]] = [  # (what, httpx.request's arguments): answers of every kind
    ("one file", {"files": files(("a.png", GOOD))}),
    ("two files, top_k", {"files": files(("a.png", GOOD), ("b.jpg", JPEG)), "params": {"top_k": 3}}),
    ("raw body, PUT", {"method": "PUT", "content": GOOD, "headers": {"content-type": "image/png"}}),
    ("top_k 0", {"files": files(("a.png", GOOD)), "params": {"top_k": 0}}),
    ("top_k not a number", {"files": files(("a.png", GOOD)), "params": {"top_k": "many"}}),
    ("top_k past the classes", {"files": files(("a.png", GOOD)), "params": {"top_k": 11}}),
    ("threshold without a rule", {"files": files(("a.png", GOOD)), "params": {"threshold": 1}}),
    ("not an image", {"files": files(("notes.txt", b"hello"))}),
    ("truncated", {"files": files(("t.png", GOOD[:-30]))}),
    ("no files", {"data": {"other": "x"}, "files": {"nothing": ("", b"")}}),
    ("wrong body type", {"json": {"file": "cat.jpg"}}),
    ("garbled multipart", {"content": b"garbage", "headers": {"content-type": "multipart/form-data; boundary=x"}}),
]


def _door(server: LiveServer) -> app.door.ShedAtTheDoor:
    stack = server.app.middleware_stack
    while not isinstance(stack, app.door.ShedAtTheDoor):
        stack = stack.app  # type: ignore[attr-defined]
    return stack


def _answers(server: LiveServer) -> list[tuple[int, str, bytes]]:
    answers = []
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for _, arguments in REQUESTS:
            arguments = dict(arguments)
            response = http.request(arguments.pop("method", "POST"), "/predict", **arguments)
            answers.append((response.status_code, response.headers["content-type"], response.content))
    return answers


def test_the_direct_answer_is_the_routes_to_the_byte(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    direct = _answers(server)
    door = _door(server)  # its direct answer off: the request goes on to the router and the route, as before ready
    monkeypatch.setattr(app.door, "answer_asgi", lambda scope, receive, send, state: door.app(scope, receive, send))
    routed = _answers(server)
    for (what, _), mine, route in zip(REQUESTS, direct, routed, strict=True):
        assert mine == route, what
    statuses = {status for status, _, _ in direct}
    assert statuses >= {200, 400, 415, 422}, statuses  # the list really covers answers of every kind
    assert all(content_type == "application/json" for _, content_type, _ in direct)


def test_direct_and_shed_answers_are_counted_under_the_route(serve: Callable[..., LiveServer]) -> None:
    server = serve()
    assert httpx.post(f"{server.url}/predict", files=files(("a.png", GOOD))).status_code == 200
    batcher = server.state.batcher
    assert batcher is not None
    batcher.admit_arrival = _refuse  # type: ignore[method-assign]  # as under overload: the door sheds them
    assert httpx.post(f"{server.url}/predict", files=files(("a.png", GOOD))).status_code == 429
    oip = httpx.post(f"{server.url}/v2/models/alexnet/infer", json={"inputs": []})
    assert oip.status_code == 429 and "error" in oip.json()
    counted = 'alexnet_requests_total{route="%s",status="%d"}'
    assert server.metric(counted % ("/predict", 200)) == 1
    assert server.metric(counted % ("/predict", 429)) == 1
    assert server.metric(counted % ("/v2/models/{name}/infer", 429)) == 1
    assert 'route="unmatched"' not in httpx.get(f"{server.url}/metrics").text


def _refuse(time_left: float) -> None:
    raise QueueFull(1, 1)
