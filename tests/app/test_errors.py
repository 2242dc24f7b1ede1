"""Every bad input gets its status and a JSON detail naming the file, and the very next good request works."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

import httpx
import pytest

from tests.app.helpers import LiveServer, encode, files, picture, png

LIMITS = {"max_files": 3, "max_file_bytes": 100_000, "max_body_bytes": 250_000, "max_pixels": 1_000_000}


@pytest.fixture(scope="module")
def limited(tiny_checkpoint) -> Iterator[LiveServer]:
    from tests.app.helpers import service_settings

    live = LiveServer(service_settings(tiny_checkpoint, max_queue=16, **LIMITS)).start()
    yield live
    live.stop()


@pytest.fixture
def http(limited: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=limited.url, timeout=30) as client:
        yield client


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but holds almost no data: a decompression bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def chunked(data: bytes, size: int = 16_384) -> Iterator[bytes]:
    """A body without Content-Length (Transfer-Encoding: chunked): only counting while streaming can stop it."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def multipart(*parts: tuple[str, str, bytes], boundary: str = "b0undary") -> tuple[bytes, dict[str, str]]:
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n\r\n'.encode()
        + data
        + b"\r\n"
        for field, name, data in parts
    )
    return body + f"--{boundary}--\r\n".encode(), {"content-type": f"multipart/form-data; boundary={boundary}"}


GOOD_PNG = png()
TRUNCATED_PNG = png(picture(200, 200))[:-400]
TRUNCATED_JPEG = encode(picture(200, 200), "JPEG")[:300]
_BIG_PNG = png(picture(200, 200))
CORRUPT_PNG = _BIG_PNG[:200] + bytes(255 - b for b in _BIG_PNG[200:1000]) + _BIG_PNG[1000:]  # pixel data garbled


def assert_error(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    detail = str(response.json()["detail"])
    assert "Traceback" not in response.text and 'File "' not in response.text
    for word in words:
        assert word in detail, detail


def assert_still_serving(http: httpx.Client) -> None:
    response = http.post("/predict", files=files(("good.png", GOOD_PNG)))
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["filename"] == "good.png"


@pytest.mark.parametrize(
    ("uploads", "status", "words"),
    [
        ([("notes.txt", b"just some text, not an image")], 415, ["'notes.txt'", "not a supported image"]),
        ([("doc.pdf", b"%PDF-1.4 fake")], 415, ["'doc.pdf'"]),
        ([("cut.png", TRUNCATED_PNG)], 400, ["'cut.png'", "corrupt or truncated"]),
        ([("cut.jpg", TRUNCATED_JPEG)], 400, ["'cut.jpg'"]),
        ([("empty.png", b"")], 400, ["'empty.png'", "empty"]),
        ([("bad.png", CORRUPT_PNG)], 400, ["'bad.png'", "corrupt"]),
        # Past PIL's own bomb limit: still the service's wording and limit, not PIL's (issue 11)
        (
            [("bomb.png", png_header_only(50_000, 50_000))],
            413,
            ["'bomb.png'", "2,500,000,000 pixels, over the limit of 1,000,000"],
        ),
        ([("big.png", png_header_only(1001, 1000))], 413, ["'big.png'", "over the limit of 1,000,000"]),
        ([("ok.png", GOOD_PNG), ("second.txt", b"text")], 415, ["'second.txt'"]),  # the bad one is named
        ([("a.png", GOOD_PNG)] * 4, 413, ["too many files", "3"]),
        ([("huge.bmp", b"BM" + b"\0" * 120_000)], 413, ["'huge.bmp'", "100,000 bytes"]),
    ],
)
def test_bad_upload(http: httpx.Client, uploads: list, status: int, words: list[str]) -> None:
    assert_error(http.post("/predict", files=files(*uploads)), status, *words)
    assert_still_serving(http)


def test_body_over_the_limit_is_refused_from_content_length(http: httpx.Client) -> None:
    body, headers = multipart(*[("file", f"{i}.bin", b"x" * 90_000) for i in range(3)])  # 270 KB > 250 KB
    assert_error(http.post("/predict", content=body, headers=headers), 413, "over the limit of 250,000")
    assert_still_serving(http)


def test_streamed_body_over_the_limit_is_refused_while_streaming(http: httpx.Client) -> None:
    body, headers = multipart(*[("file", f"{i}.bin", b"x" * 90_000) for i in range(3)])
    response = http.post("/predict", content=chunked(body), headers=headers)
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "over the limit of 250,000")
    assert_still_serving(http)


def test_streamed_file_over_the_limit_is_refused_naming_it(http: httpx.Client) -> None:
    body, headers = multipart(("file", "a.png", GOOD_PNG), ("file", "big.raw", b"x" * 150_000))
    assert_error(http.post("/predict", content=chunked(body), headers=headers), 413, "'big.raw'", "100,000 bytes")
    assert_still_serving(http)


def test_request_without_files(http: httpx.Client) -> None:
    assert_error(http.post("/predict"), 422, "no files")
    body, headers = multipart()
    assert_error(http.post("/predict", content=body, headers=headers), 422, "no files")
    assert_still_serving(http)


def test_wrong_field_name_is_named(http: httpx.Client) -> None:
    response = http.post("/predict", files=[("image", ("a.png", GOOD_PNG))])
    assert_error(response, 422, "'image'", "'file'")
    assert_still_serving(http)


@pytest.mark.parametrize(
    ("top_k", "words"),
    [
        ("0", ["query parameter top_k", "greater than or equal to 1"]),
        ("abc", ["query parameter top_k", "integer"]),
        ("11", ["top_k is 11", "10 classes"]),
    ],
)
def test_bad_top_k_is_one_sentence(http: httpx.Client, top_k: str, words: list[str]) -> None:
    response = http.post("/predict", params={"top_k": top_k}, files=files(("good.png", GOOD_PNG)))
    assert_error(response, 422, *words)
    assert isinstance(response.json()["detail"], str)
    assert_still_serving(http)


def test_body_of_another_type_is_refused_naming_the_accepted_ones(http: httpx.Client) -> None:
    accepted = ["multipart/form-data", "image/*", "application/octet-stream"]
    assert_error(http.post("/predict", json={"file": "cat.jpg"}), 415, *accepted, "got application/json")
    response = http.post("/predict", content=GOOD_PNG, headers={"content-type": "text/plain"})
    assert_error(response, 415, *accepted, "got text/plain")
    assert_still_serving(http)


GARBLED_MULTIPART = [  # body, what the answer says (in the client's terms, where the error is)
    (b"--abc\r\nno headers end", ["headers are not 'Name: value' lines", "(at byte 9)"]),
    (b'--abc\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\nabc', ["ends inside a part"]),
    (b"hello, not multipart", ["does not start with --abc and a line break", "(at byte 0)"]),
    (b"--abd\r\n", ["does not start with --abc", "(at byte 4)"]),
    (b"--abc\r\nContent-Disposition form-data\r\n\r\nx\r\n--abc--\r\n", ["headers are not 'Name: value' lines"]),
    (b"--abc\r\n: x\r\n\r\nx\r\n--abc--\r\n", ["headers are not 'Name: value' lines", "(at byte 7)"]),
]


@pytest.mark.parametrize(("body", "says"), GARBLED_MULTIPART)
def test_garbled_multipart_is_a_400_in_the_clients_terms(http: httpx.Client, body: bytes, says: list[str]) -> None:
    response = http.post("/predict", content=body, headers={"content-type": "multipart/form-data; boundary=abc"})
    assert_error(response, 400, "malformed multipart body: ", *says)
    for parser_words in ("character", "index", "state", "0-length"):  # python-multipart's own wording
        assert parser_words not in response.json()["detail"]
    assert_still_serving(http)


def test_multipart_without_a_boundary(http: httpx.Client) -> None:
    response = http.post("/predict", content=b"x", headers={"content-type": "multipart/form-data"})
    assert_error(response, 400, "no boundary in the Content-Type header")
    assert_still_serving(http)


def test_unknown_route_and_method_are_json(http: httpx.Client) -> None:
    assert_error(http.get("/nope"), 404, "Not Found")
    assert_error(http.get("/predict"), 405, "Method Not Allowed")
    assert_still_serving(http)


def test_failed_forward_pass_is_a_bare_500_and_the_service_recovers(limited: LiveServer, http: httpx.Client) -> None:
    predictor = limited.state.predictor
    assert predictor is not None

    def broken(images):  # a fault inside the model, e.g. a device error
        raise RuntimeError("secret internal detail /opt/weights")

    predictor.outputs = broken  # the serving model's pass, for the requests from now on
    try:
        response = http.post("/predict", files=files(("a.png", GOOD_PNG)))
    finally:
        del predictor.outputs  # its own method again
    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error"}
    assert "secret" not in response.text
    assert_still_serving(http)


def test_client_that_hangs_up_mid_upload_is_not_an_error(limited: LiveServer, http: httpx.Client, caplog) -> None:
    import socket
    import time
    from urllib.parse import urlsplit

    body, headers = multipart(("file", "a.png", GOOD_PNG))
    address = urlsplit(limited.url)
    with socket.create_connection((address.hostname, address.port)) as raw:
        head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: {headers['content-type']}\r\n"
        raw.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
    time.sleep(0.3)  # the server notices the hang-up
    assert_still_serving(http)
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
