"""/predict's one endpoint (below the router) answers every kind of request in JSON, and is counted under its route;
what the door sheds is labelled with its route too, not "unmatched", in its protocol's error body."""

from __future__ import annotations

from collections.abc import Callable

import httpx

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


def test_every_kind_of_answer_is_json_and_errors_say_what_is_wrong(server: LiveServer) -> None:
    statuses = set()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for what, arguments in REQUESTS:
            arguments = dict(arguments)
            response = http.request(arguments.pop("method", "POST"), "/predict", **arguments)
            assert response.headers["content-type"] == "application/json", what
            assert int(response.headers["content-length"]) == len(response.content), what
            body = response.json()
            if response.status_code == 200:
                assert len(body["predictions"]) == len(arguments.get("files", [None])), what
            else:
                assert set(body) == {"detail"} and body["detail"], what
            statuses.add(response.status_code)
    assert statuses >= {200, 400, 415, 422}, statuses  # the list really covers answers of every kind
    assert httpx.get(f"{server.url}/predict").status_code == 405  # the route's other methods


def test_answered_and_shed_requests_are_counted_under_the_route(serve: Callable[..., LiveServer]) -> None:
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
