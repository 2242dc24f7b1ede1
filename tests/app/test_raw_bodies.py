"""One image as the whole body (Content-Type: image/* or application/octet-stream, or none, as `curl -T` sends)
is answered exactly as the same file uploaded as multipart, with the same limits and errors."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.app.helpers import LiveServer, encode, files, picture, service_settings
from tests.app.test_errors import assert_error, assert_still_serving, chunked

LIMITS = {"max_file_bytes": 100_000, "max_body_bytes": 250_000, "body_timeout_s": 1.0}
JPEG = encode(picture(64, 48, seed=3), "JPEG")
PNG = encode(picture(40, 56, seed=4), "PNG")


@pytest.fixture(scope="module")
def limited(tiny_checkpoint: Path) -> Iterator[LiveServer]:
    live = LiveServer(service_settings(tiny_checkpoint, **LIMITS)).start()
    yield live
    live.stop()


@pytest.fixture
def http(limited: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=limited.url, timeout=30) as client:
        yield client


@pytest.mark.parametrize(
    ("name", "data", "media_type"), [("cat.jpg", JPEG, "image/jpeg"), ("ship.png", PNG, "image/png")]
)
def test_a_raw_body_is_answered_as_the_same_multipart_upload(
    http: httpx.Client, name: str, data: bytes, media_type: str
) -> None:
    uploaded = http.post("/predict", params={"top_k": 3}, files=files((name, data)))
    assert uploaded.status_code == 200, uploaded.text
    named = {"content-type": media_type, "content-disposition": f'attachment; filename="{name}"'}
    raw = http.post("/predict", params={"top_k": 3}, content=data, headers=named)
    assert raw.status_code == 200, raw.text
    assert raw.json() == uploaded.json()  # filename included: taken from Content-Disposition
    # Without a name, as a multipart part without a filename: the answer's filename is empty.
    unnamed = http.post("/predict", params={"top_k": 3}, content=data, headers={"content-type": media_type})
    expected = uploaded.json()
    expected["predictions"][0]["filename"] = ""
    assert unnamed.json() == expected


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("POST", {"content-type": "application/octet-stream"}),
        ("POST", {}),  # no Content-Type: application/octet-stream (RFC 9110 8.3)
        ("PUT", {}),  # what `curl -T cat.jpg URL` sends
        ("PUT", {"content-type": "image/webp"}),  # the declared subtype need not be the real one
    ],
)
def test_octet_stream_no_content_type_and_put(http: httpx.Client, method: str, headers: dict[str, str]) -> None:
    expected = http.post("/predict", files=files(("", JPEG))).json()
    response = http.request(method, "/predict", content=JPEG, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == expected


def test_filename_from_an_rfc_6266_header(http: httpx.Client) -> None:
    headers = {"content-type": "image/png", "content-disposition": "inline; filename*=UTF-8''caf%C3%A9.png"}
    assert http.post("/predict", content=PNG, headers=headers).json()["predictions"][0]["filename"] == "café.png"


def test_empty_body_is_400_naming_it(http: httpx.Client) -> None:
    for headers in ({"content-type": "image/png"}, {"content-type": "application/octet-stream"}):
        assert_error(http.post("/predict", content=b"", headers=headers), 400, "the request body is empty")
        streamed = http.post("/predict", content=chunked(b""), headers=headers)  # chunked, zero bytes
        assert_error(streamed, 400, "the request body is empty")
    named = {"content-type": "image/png", "content-disposition": 'attachment; filename="cat.png"'}
    assert_error(http.post("/predict", content=b"", headers=named), 400, "file 'cat.png' is empty")
    assert_still_serving(http)


def test_text_sent_as_an_image_is_415(http: httpx.Client) -> None:
    response = http.post("/predict", content=b"just some text", headers={"content-type": "image/png"})
    assert_error(response, 415, "the request body: not a supported image", "JPEG, PNG")
    named = {"content-type": "image/png", "content-disposition": 'attachment; filename="notes.txt"'}
    assert_error(http.post("/predict", content=b"text", headers=named), 415, "file 'notes.txt': not a supported")
    assert_still_serving(http)


def test_corrupt_image_is_400(http: httpx.Client) -> None:
    response = http.post("/predict", content=PNG[: len(PNG) // 2], headers={"content-type": "image/png"})
    assert_error(response, 400, "the request body", "corrupt or truncated")
    assert_still_serving(http)


def test_body_over_the_limit_is_413_from_content_length_and_while_streaming(http: httpx.Client) -> None:
    image = {"content-type": "image/bmp"}
    over_file = b"BM" + b"\0" * 120_000  # over max_file_bytes (100,000), under max_body_bytes (250,000)
    assert_error(http.post("/predict", content=over_file, headers=image), 413, "120,002 bytes", "limit of 100,000")
    streamed = http.post("/predict", content=chunked(over_file), headers=image)
    assert "content-length" not in streamed.request.headers
    assert_error(streamed, 413, "the request body is over the limit of 100,000 bytes")
    over_body = b"BM" + b"\0" * 300_000
    assert_error(http.post("/predict", content=over_body, headers=image), 413, "over the limit of 250,000")
    assert_still_serving(http)


def test_a_stalled_raw_body_is_408_and_closed(limited: LiveServer, http: httpx.Client) -> None:
    host, port = limited.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        head = b"PUT /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 5000\r\n\r\n"
        raw.sendall(head + JPEG[:100])  # 100 bytes of 5,000, then nothing
        answer = b""
        while chunk := raw.recv(65536):  # the server closes the connection after its 408
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"within 1 s" in answer and b"x-request-id: " in answer
    assert_still_serving(http)


def test_multipart_is_unchanged_by_the_raw_route(http: httpx.Client) -> None:
    response = http.post("/predict", files=files(("a.jpg", JPEG), ("b.png", PNG)))
    assert [p["filename"] for p in response.json()["predictions"]] == ["a.jpg", "b.png"]
    assert_error(http.post("/predict"), 422, "no files", "or one image as the body")


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_the_documented_curl_commands(limited: LiveServer, tmp_path: Path) -> None:
    """The README's commands, run by curl itself: --data-binary with a Content-Type, and -T (a PUT)."""
    path = tmp_path / "cat.jpg"
    path.write_bytes(JPEG)
    expected = httpx.post(f"{limited.url}/predict", files=files(("", JPEG))).json()
    url = f"{limited.url}/predict"
    for options in (["--data-binary", f"@{path}", "-H", "Content-Type: image/jpeg"], ["-T", str(path)]):
        run = subprocess.run(["curl", "-sS", "--fail-with-body", *options, url], capture_output=True, timeout=30)
        assert run.returncode == 0, run.stderr + run.stdout
        assert httpx.Response(200, content=run.stdout).json() == expected, options
