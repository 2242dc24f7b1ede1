"""Open Inference Protocol v2 (app/routes/oip.py): the real tritonclient against the real service on a real port,
and raw HTTP for the binary tensor header's malformed values."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from app.door import ShedAtTheDoor
from app.errors import BadRequest, QueueFull
from app.oip_tensors import Limits, parse_request
from app.routes.oip import is_infer_path
from app.uploads import Upload, decode_image
from tests.app.helpers import LiveServer, encode, files, picture, png, service_settings, with_rule

MODEL = "alexnet"
INFER = f"/v2/models/{MODEL}/infer"
LIMITS = Limits(max_files=16, max_file_bytes=1 << 20, source_size=32)


@pytest.fixture(scope="module")
def oip(server: LiveServer) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"), network_timeout=30)
    yield client
    client.close()


def _images_input(*images: bytes, binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("images", [len(images)], "BYTES")
    # JSON BYTES elements are base64 strings here (an image file is not UTF-8 text): docs/oip.md
    values = list(images) if binary else [base64.b64encode(i).decode() for i in images]
    tensor.set_data_from_numpy(np.array(values, dtype=object), binary_data=binary)
    return tensor


def _predict_probabilities(http: httpx.Client, *named: tuple[str, bytes]) -> np.ndarray:
    answer = http.post("/predict", files=files(*named), params={"top_k": 10})
    assert answer.status_code == 200, answer.text
    rows = []
    for prediction in answer.json()["predictions"]:
        row = np.zeros(10)
        for entry in prediction["top_k"]:
            row[entry["index"]] = entry["probability"]
        rows.append(row)
    return np.array(rows)


def test_server_and_model_metadata(oip: triton.InferenceServerClient) -> None:
    assert oip.is_server_live()
    assert oip.is_server_ready()
    assert oip.is_model_ready(MODEL)
    assert oip.is_model_ready(MODEL, "1")
    server = oip.get_server_metadata()
    assert server["name"] == "alexnet-service" and "binary_tensor_data" in server["extensions"]
    model = oip.get_model_metadata(MODEL)
    assert model["name"] == MODEL and model["versions"] == ["1"] and model["platform"] == "pytorch"
    assert {t["name"]: (t["datatype"], t["shape"]) for t in model["inputs"]} == {
        "images": ("BYTES", [-1]),
        "pixels": ("UINT8", [-1, 32, 32, 3]),
    }
    assert {t["name"]: t["datatype"] for t in model["outputs"]} == {"probabilities": "FP32", "labels": "BYTES"}
    assert oip.get_model_metadata(MODEL, "1") == model


@pytest.mark.parametrize("binary", [True, False])
def test_infer_images_matches_predict(oip: triton.InferenceServerClient, client: httpx.Client, binary: bool) -> None:
    jpeg, other = encode(picture(seed=1), "JPEG", quality=90), png(picture(64, 30, seed=2))
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("probabilities", "labels")]
    result = oip.infer(MODEL, [_images_input(jpeg, other, binary=binary)], outputs=outputs, request_id="req-7")
    assert result.get_response()["id"] == "req-7"
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (2, 10) and probabilities.dtype == np.float32
    expected = _predict_probabilities(client, ("a.jpg", jpeg), ("b.png", other))
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)  # /predict rounds to 6 decimals
    labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("labels")]
    classes = oip.get_model_metadata(MODEL)["parameters"]["classes"]
    assert labels == [classes[i] for i in probabilities.argmax(axis=1)]


def test_infer_pixels_and_default_outputs(oip: triton.InferenceServerClient, client: httpx.Client) -> None:
    image = png(picture(seed=3))
    pixels = decode_image(Upload("x", 1, image), 32, 10**8)[None]  # what /predict's decoder makes of it
    tensor = triton.InferInput("pixels", list(pixels.shape), "UINT8")
    tensor.set_data_from_numpy(pixels, binary_data=True)
    result = oip.infer(MODEL, [tensor])  # no outputs listed: all of them, binary (tritonclient asks so)
    assert {o["name"] for o in result.get_response()["outputs"]} == {"probabilities", "labels"}
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), _predict_probabilities(client, ("x", image)), atol=1e-6
    )
    tensor.set_data_from_numpy(pixels, binary_data=False)  # JSON pixels: the same answer
    again = oip.infer(MODEL, [tensor], model_version="1")
    np.testing.assert_allclose(again.as_numpy("probabilities"), result.as_numpy("probabilities"), atol=1e-6)


def test_bad_requests_raise_with_the_message(oip: triton.InferenceServerClient) -> None:
    wrong_type = triton.InferInput("images", [1], "FP32")
    wrong_type.set_data_from_numpy(np.zeros(1, dtype=np.float32))
    with pytest.raises(InferenceServerException, match="must have datatype BYTES, got 'FP32'") as caught:
        oip.infer(MODEL, [wrong_type])
    assert caught.value.status() == "400"
    wrong_shape = triton.InferInput("pixels", [1, 64, 64, 3], "UINT8")
    wrong_shape.set_data_from_numpy(np.zeros((1, 64, 64, 3), dtype=np.uint8))
    with pytest.raises(InferenceServerException, match=r"shape \[N, 32, 32, 3\]"):
        oip.infer(MODEL, [wrong_shape])
    with pytest.raises(InferenceServerException, match="images\\[0\\]': not a supported image"):
        oip.infer(MODEL, [_images_input(b"not an image at all")])
    with pytest.raises(InferenceServerException, match="unknown model 'resnet'") as caught:
        oip.infer("resnet", [_images_input(png())])
    assert caught.value.status() == "404"
    with pytest.raises(InferenceServerException, match="unknown version '2'"):
        oip.get_model_metadata(MODEL, "2")
    assert not oip.is_model_ready("resnet")


def _request(name: str, datatype: str, shape: list[int], **fields: object) -> dict:
    """An inference request's JSON header with one input; ``fields``: its data or parameters."""
    return {"inputs": [{"name": name, "datatype": datatype, "shape": shape, **fields}]}


def _binary_request(image: bytes, header_length: str | None = None, size: int | None = None) -> tuple[bytes, dict]:
    tail = struct.pack("<I", len(image)) + image
    sizes = {"binary_data_size": len(tail) if size is None else size}
    header = json.dumps(_request("images", "BYTES", [1], parameters=sizes))
    length = str(len(header)) if header_length is None else header_length
    return header.encode() + tail, {
        "Inference-Header-Content-Length": length,
        "Content-Type": "application/octet-stream",
    }


def test_raw_binary_request_and_response(client: httpx.Client) -> None:
    body, headers = _binary_request(png())
    answer = client.post(INFER, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"  # no binary output asked for: plain JSON
    assert [o["name"] for o in answer.json()["outputs"]] == ["probabilities", "labels"]
    tail = body[int(headers["Inference-Header-Content-Length"]) :]
    request = _request("images", "BYTES", [1], parameters={"binary_data_size": len(tail)})
    request["outputs"] = [{"name": "probabilities", "parameters": {"binary_data": True}}]
    header = json.dumps(request).encode()
    answer = client.post(INFER, content=header + tail, headers={"Inference-Header-Content-Length": str(len(header))})
    assert answer.headers["content-type"] == "application/octet-stream"
    length = int(answer.headers["inference-header-content-length"])
    head = json.loads(answer.content[:length])
    assert head["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [1, 10],
                                "parameters": {"binary_data_size": 40}}]  # fmt: skip
    assert np.frombuffer(answer.content[length:], "<f4").sum() == pytest.approx(1, abs=1e-5)


@pytest.mark.parametrize(
    ("header_length", "size", "message"),
    [
        ("abc", None, "not a non-negative integer"),
        ("-5", None, "not a non-negative integer"),
        ("", None, "not a non-negative integer"),
        ("99999999", None, "but the body is only"),
        ("3", None, "not valid JSON"),
        (None, 5, "binary_data_size is 5"),
        (None, -1, "non-negative integer"),
    ],
)
def test_malformed_binary_header_is_a_400(
    client: httpx.Client, header_length: str | None, size: int | None, message: str
) -> None:
    body, headers = _binary_request(png(), header_length, size)
    answer = client.post(INFER, content=body, headers=headers)
    assert answer.status_code == 400 and message in answer.json()["error"], answer.text


def test_length_prefix_past_the_end_and_leftovers(client: httpx.Client) -> None:
    for tail, message in [(b"\x01\x00", "before element 0"), (struct.pack("<I", 1000) + b"xy", "claims 1,000 bytes"),
                          (struct.pack("<I", 2) + b"xyz", "left over")]:  # fmt: skip
        header = json.dumps({"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1],
                                         "parameters": {"binary_data_size": len(tail)}}]}).encode()  # fmt: skip
        answer = client.post(
            INFER, content=header + tail, headers={"Inference-Header-Content-Length": str(len(header))}
        )
        assert answer.status_code == 400 and message in answer.json()["error"], answer.text


def test_json_errors_limits_and_error_body(client: httpx.Client) -> None:
    image = base64.b64encode(png()).decode()
    cases = [
        (b"{", 400, "not valid JSON"),
        (b"[]", 400, "JSON object"),
        (json.dumps({"inputs": []}).encode(), 400, "exactly one tensor"),
        (_request("images", "BYTES", [1], data=["%%"]), 400, "base64"),
        (_request("images", "BYTES", [2], data=["aGk="]), 400, "needs 2"),
        (_request("pixels", "UINT8", [1, 32, 32, 3], data=[300] * 3072), 400, "0 to 255"),
        (_request("pixels", "UINT8", [1, 32, 32, 3], data=[True] * 3072), 400, "0 to 255"),
        (_request("images", "BYTES", [99], data=[]), 413, "too many images"),
        ({**_request("images", "BYTES", [1], data=[image]), "outputs": [{"name": "nope"}]}, 400, "unknown output"),
    ]
    for request, status, message in cases:
        body = request if isinstance(request, bytes) else json.dumps(request).encode()
        answer = client.post(INFER, content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == status and message in answer.json()["error"], (body[:80], answer.text)
    assert client.get("/v2/models/resnet").json() == {"error": "unknown model 'resnet': this server serves 'alexnet'"}


def test_an_oversized_content_length_is_refused_before_the_body(server: LiveServer) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    declared = server.state.settings.max_body_bytes + 1
    with socket.create_connection((host, int(port)), timeout=10) as raw:  # httpx will not send a short body
        raw.sendall(f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n".encode())
        answer = raw.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 413") and '"error":' in answer and "over the limit" in answer


def test_abstention_outputs(tiny_checkpoint: Path, tmp_path: Path) -> None:
    checkpoint = with_rule(tiny_checkpoint, tmp_path / "rule.safetensors", "msp", 0.5)
    live = LiveServer(service_settings(checkpoint, body_timeout_s=0.5)).start()
    try:
        oip = triton.InferenceServerClient(url=live.url.removeprefix("http://"))
        names = {t["name"]: t["datatype"] for t in oip.get_model_metadata(MODEL)["outputs"]}
        assert names == {"probabilities": "FP32", "labels": "BYTES", "confident": "BOOL", "ood_score": "FP32"}
        outputs = [
            triton.InferRequestedOutput(n, binary_data=b) for n, b in (("confident", True), ("ood_score", False))
        ]
        result = oip.infer(MODEL, [_images_input(png())], outputs=outputs)
        assert result.as_numpy("probabilities") is None  # only what was asked for
        score = result.as_numpy("ood_score")
        assert result.as_numpy("confident").tolist() == [bool(score[0] >= 0.5)]
        oip.close()
        # A body that stops arriving: 408 with OIP's body after body_timeout_s, as /predict
        host, port = live.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            raw.sendall(f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{".encode())
            answer = raw.recv(65536).decode()
        assert (
            answer.startswith("HTTP/1.1 408") and '{"error":"the request body did not arrive within 0.5 s"}' in answer
        )
        # Not ready (as while warming up or stopping): 503 from the readiness routes and from infer, alive still
        live.state.set_status("warming_up", "warming up")
        with httpx.Client(base_url=live.url) as http:
            assert http.get("/v2/health/live").status_code == 200
            assert http.get("/v2/health/ready").status_code == 503
            assert http.get(f"/v2/models/{MODEL}/versions/1/ready").status_code == 503
            refused = http.post(INFER, json=_request("images", "BYTES", [1], data=[base64.b64encode(png()).decode()]))
            assert refused.status_code == 503 and refused.json() == {"error": "not ready: warming up"}
        assert "/v2" not in httpx.get(live.url + "/openapi.json").text  # OIP has its own spec: docs/oip.md
    finally:
        live.stop()


def test_infer_paths_are_shed_at_the_door() -> None:
    assert is_infer_path(INFER) and is_infer_path(f"/v2/models/{MODEL}/versions/1/infer")
    assert not is_infer_path(f"/v2/models/{MODEL}") and not is_infer_path("/predict")


@pytest.mark.parametrize("depth", [500, 100_000])  # under and over the JSON parser's own nesting limit
def test_deeply_nested_data_is_a_400_not_a_crash(depth: int) -> None:
    nested = "[" * depth + "0" + "]" * depth
    header = json.dumps(_request("pixels", "UINT8", [1, 32, 32, 3], data=[])).replace("[]", nested, 1)
    with pytest.raises(BadRequest, match=r"needs 3,072 values|nested too deeply"):
        parse_request(header.encode(), b"", LIMITS)


def test_the_door_sheds_oip_infer_with_the_oip_body() -> None:
    class Overloaded:
        def admit_arrival(self, time_left: float) -> None:
            raise QueueFull(300, 256)

    async def inner(scope: dict, receive: object, send: object) -> None:
        raise AssertionError("a shed request must not reach the app")

    async def shed(path: str) -> list[dict]:
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        settings = SimpleNamespace(request_timeout_s=1.0, hold_after_429=True)
        scope = {"type": "http", "method": "POST", "path": path, "headers": []}
        await ShedAtTheDoor(inner, SimpleNamespace(batcher=Overloaded(), settings=settings))(scope, None, send)  # type: ignore[arg-type]
        return sent

    oip, predict = asyncio.run(shed(INFER)), asyncio.run(shed("/predict"))
    assert oip[0]["status"] == predict[0]["status"] == 429
    assert json.loads(oip[1]["body"]) == {"error": QueueFull(300, 256).detail}
    assert json.loads(predict[1]["body"]) == {"detail": QueueFull(300, 256).detail}  # /predict keeps its own
