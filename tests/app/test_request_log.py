"""Request IDs and access lines: every answer carries X-Request-ID, every request gets one access line, and
ALEXNET_LOG_FORMAT=json makes every line, the service's and uvicorn's, one JSON object."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

import app.routes.predict
from app.cli import serve
from app.errors import Overloaded
from app.logs import ACCESS_LOGGER, log_handler
from tests.app.helpers import LiveServer, files, png
from tests.helpers import REPO

GENERATED = re.compile(r"[0-9a-f]{32}")  # 16 random bytes in hex
PNG = png()
KEY = "a-key-of-at-least-16-characters"


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
def door_refuses(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The door (app/door.py) answers every /predict 429 before routing, as under overload."""

    def refuse(time_left: float) -> None:
        raise Overloaded(expected_wait_s=2.0, time_left_s=time_left, retry_after_s=3)

    monkeypatch.setattr(server.state.batcher, "admit_arrival", refuse)


@pytest.fixture
def decoding_breaks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the route: an exception no handler knows, caught by the catch-all 500 (app/errors.py)."""

    async def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(app.routes.predict, "decode_uploads", broken)


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[str]]]:
    """The service's JSON handler (app.logs) on the root logger, writing into a buffer; app.access at INFO."""
    buffer = io.StringIO()
    handler = log_handler("json", buffer)
    root, access = logging.getLogger(), logging.getLogger(ACCESS_LOGGER)
    level = access.level
    root.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        yield lambda: buffer.getvalue().splitlines()
    finally:
        root.removeHandler(handler)
        access.setLevel(level)


def access_record(caplog: pytest.LogCaptureFixture, request_id: str) -> logging.LogRecord:
    """The one access line of the request with this ID (written after its last byte is sent: wait for it)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = [r for r in caplog.records if r.name == ACCESS_LOGGER and r.request_id == request_id]
        if found:
            time.sleep(0.05)  # a second line would come right after the first
            found = [r for r in caplog.records if r.name == ACCESS_LOGGER and r.request_id == request_id]
            assert len(found) == 1, [r.getMessage() for r in found]
            return found[0]
        time.sleep(0.01)
    raise AssertionError(f"no access line for {request_id}")


@pytest.mark.parametrize("sent", ["abc-123", "x" * 128, "trace:1/2@proxy;=~!", "0"])
def test_a_valid_id_is_echoed(http: httpx.Client, sent: str) -> None:
    assert http.get("/health/live", headers={"x-request-id": sent}).headers["x-request-id"] == sent


@pytest.mark.parametrize("sent", ["x" * 129, "a\tb", "with space", "caf\xe9".encode("latin-1"), b"\xff\xfe", ""])
def test_an_invalid_id_is_replaced_by_a_new_one(http: httpx.Client, sent: str | bytes) -> None:
    returned = http.get("/health/live", headers={"x-request-id": sent}).headers["x-request-id"]
    assert GENERATED.fullmatch(returned), returned


def test_without_an_id_each_request_gets_a_new_one(http: httpx.Client) -> None:
    first, second = (http.get("/health/live").headers["x-request-id"] for _ in range(2))
    assert GENERATED.fullmatch(first) and GENERATED.fullmatch(second) and first != second


def test_404_405_and_422_carry_the_id(http: httpx.Client) -> None:
    answers = {
        404: http.get("/nope", headers={"x-request-id": "id-404"}),
        405: http.get("/predict", headers={"x-request-id": "id-405"}),
        422: http.post("/predict?top_k=0", headers={"x-request-id": "id-422"}, files=files(("a.png", PNG))),
    }
    for status, response in answers.items():
        assert response.status_code == status, response.text
        assert response.headers["x-request-id"] == f"id-{status}"


def test_the_door_429_carries_the_id_and_gets_an_access_line(
    http: httpx.Client, door_refuses: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    for method in ("POST", "PUT"):
        response = http.request(method, "/predict", headers={"x-request-id": f"door-{method}"}, content=PNG)
        assert response.status_code == 429 and "Retry-After" in response.headers  # the door's own answer
        assert response.headers["x-request-id"] == f"door-{method}"
        assert access_record(caplog, f"door-{method}").fields["status"] == 429  # type: ignore[attr-defined]


def test_the_catch_all_500_carries_the_id(http: httpx.Client, decoding_breaks: None) -> None:
    response = http.post("/predict", headers={"x-request-id": "id-500"}, files=files(("a.png", PNG)))
    assert response.status_code == 500 and response.json() == {"detail": "internal server error"}
    assert response.headers["x-request-id"] == "id-500"


def test_the_401_carries_the_id(serve: Callable[..., LiveServer]) -> None:
    keyed = serve(api_key=KEY)
    response = httpx.post(f"{keyed.url}/predict", headers={"x-request-id": "id-401"}, files=files(("a.png", PNG)))
    assert response.status_code == 401 and response.headers["x-request-id"] == "id-401"


def test_one_access_line_per_request_with_its_fields(
    http: httpx.Client, server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    uploads = files(("a.png", PNG), ("b.png", PNG))
    response = http.post("/predict", params={"top_k": 2}, files=uploads, headers={"x-request-id": "access-1"})
    assert response.status_code == 200
    record = access_record(caplog, "access-1")
    fields = record.fields  # type: ignore[attr-defined]
    port = int(fields["client"].rsplit(":", 1)[1])
    assert fields == {
        "method": "POST",
        "path": "/predict?top_k=2",
        "status": 200,
        "images": 2,
        "latency_ms": fields["latency_ms"],
        "client": f"127.0.0.1:{port}",
    }
    assert 0 < fields["latency_ms"] < 30_000
    assert record.getMessage().startswith(f'127.0.0.1:{port} - "POST /predict?top_k=2 HTTP/1.1" 200 images=2 ')
    assert record.getMessage().endswith(" ms")

    assert http.get("/health/live", headers={"x-request-id": "access-2"}).status_code == 200
    record = access_record(caplog, "access-2")
    assert record.fields["images"] is None and " 200 images=- " in record.getMessage()  # type: ignore[attr-defined]
    # A path is logged percent-encoded: a client cannot write a line break (or anything else) into the log.
    http.get("/no%0Aentry%20here", headers={"x-request-id": "access-3"})
    record = access_record(caplog, "access-3")
    assert record.fields["path"] == "/no%0Aentry%20here" and "\n" not in record.getMessage()  # type: ignore[attr-defined]


def test_json_lines_carry_the_request_id(
    http: httpx.Client, decoding_breaks: None, log_lines: Callable[[], list[str]]
) -> None:
    """Every line parses; the access line has its fields as keys; a traceback logged mid-request carries its ID."""
    http.post("/predict", headers={"x-request-id": "json-1"}, files=files(("a.png", PNG)))
    time.sleep(0.2)  # the access line follows the answer
    entries = [json.loads(line) for line in log_lines()]
    error = next(e for e in entries if e["logger"] == "app.errors")
    assert error["level"] == "ERROR" and error["request_id"] == "json-1" and "RuntimeError: a bug" in error["exc_info"]
    (access,) = [e for e in entries if e["logger"] == ACCESS_LOGGER]
    assert access["request_id"] == "json-1" and access["status"] == 500 and access["images"] == 1
    assert {"time", "level", "message", "method", "path", "latency_ms", "client"} <= set(access)


def test_a_bad_log_format_stops_start_up_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        serve(["--log-format", "yaml"])
    assert stopped.value.code == 2
    assert "log_format: Input should be 'text' or 'json'" in capsys.readouterr().err


def test_alexnet_serve_writes_json_lines_and_one_access_line_per_request(tiny_checkpoint: Path) -> None:
    """The real entry point with ALEXNET_LOG_FORMAT=json: uvicorn's lines are JSON too, uvicorn's own access
    log (on stdout) is off, and each request has exactly one access line, with the ID it was answered with."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "app", "--checkpoint", str(tiny_checkpoint), "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "ALEXNET_LOG_FORMAT": "json", "ALEXNET_DEVICE": "cpu"}
    service = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _ready(url):
            assert service.poll() is None and time.monotonic() < deadline, "the service did not start"
            time.sleep(0.1)
        answered = [
            httpx.post(f"{url}/predict", content=PNG, headers={"content-type": "image/png", "x-request-id": "sub-1"}),
            httpx.get(f"{url}/nope"),
            httpx.post(f"{url}/predict", files=files(("a.png", PNG))),
        ]
        service.send_signal(signal.SIGINT)
        stdout, stderr = service.communicate(timeout=60)
    finally:
        service.kill()
    assert stdout == ""  # where uvicorn's own access log would write
    entries = [json.loads(line) for line in stderr.splitlines()]  # every line, or this raises
    assert {"uvicorn.error", "app.main", "app.cli", ACCESS_LOGGER} <= {e["logger"] for e in entries}
    assert any(e["message"].startswith("Started server process") for e in entries)
    ids = [r.headers["x-request-id"] for r in answered]
    assert ids[0] == "sub-1"
    for request_id, response in zip(ids, answered, strict=True):
        (line,) = [e for e in entries if e.get("request_id") == request_id and e["logger"] == ACCESS_LOGGER]
        assert line["status"] == response.status_code
    assert [a["status"] for a in entries if a["logger"] == ACCESS_LOGGER and a["request_id"] in ids] == [200, 404, 200]


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health").status_code == 200
    except httpx.TransportError:
        return False
