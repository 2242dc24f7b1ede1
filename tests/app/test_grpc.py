"""The Open Inference Protocol over gRPC (app/grpc_oip.py, app/grpc_server.py): Triton's own gRPC client against the
real service, its gRPC port beside the HTTP one, in the same process and event loop."""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc as grpc_module
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

from app.batcher import Batcher
from app.grpc_health import WATCH_EVERY_S
from app.logs import ACCESS_LOGGER
from app.oip_tensors import length_prefixed
from app.uploads import Upload, decode_image
from benchmarks.servers.launch import free_port
from tests.app.helpers import Gate, LiveServer, encode, files, picture, png, service_settings

MODEL = "alexnet"
KEY = "k" * 24
Live = tuple[LiveServer, triton.InferenceServerClient]  # the service, and a gRPC client of its port


@pytest.fixture(scope="module")
def live(tiny_checkpoint: Path) -> Iterator[Live]:
    port = free_port()
    server = LiveServer(service_settings(tiny_checkpoint, grpc_port=port)).start()
    client = triton.InferenceServerClient(url=f"127.0.0.1:{port}")
    yield server, client
    client.close()
    server.stop()


def _images(*images: bytes) -> triton.InferInput:
    tensor = triton.InferInput("images", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(list(images), dtype=object))
    return tensor


def test_health_and_metadata(live: Live) -> None:
    _, grpc = live
    assert grpc.is_server_live() and grpc.is_server_ready()
    assert grpc.is_model_ready(MODEL) and grpc.is_model_ready(MODEL, "1")
    assert not grpc.is_model_ready(MODEL, "2") and not grpc.is_model_ready("resnet")  # as Triton: no error
    server = grpc.get_server_metadata(as_json=True)
    assert server["name"] == "alexnet-service" and "binary_tensor_data" in server["extensions"]
    model = grpc.get_model_metadata(MODEL, as_json=True)
    assert model["name"] == MODEL and model["versions"] == ["1"] and model["platform"] == "pytorch"
    shapes = {t["name"]: (t["datatype"], [int(n) for n in t["shape"]]) for t in model["inputs"]}
    assert shapes == {"images": ("BYTES", [-1]), "pixels": ("UINT8", [-1, 32, 32, 3])}
    with pytest.raises(InferenceServerException, match="unknown version '2'"):
        grpc.get_model_metadata(MODEL, "2")


def test_images_and_pixels_answer_as_rest(live: Live) -> None:
    server, grpc = live
    jpeg, other = encode(picture(seed=1), "JPEG", quality=90), png(picture(64, 30, seed=2))
    result = grpc.infer(MODEL, [_images(jpeg, other)], request_id="req-9")
    assert result.get_response().id == "req-9"
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (2, 10) and probabilities.dtype == np.float32
    rest = httpx.post(f"{server.url}/v2/models/{MODEL}/infer", json=_rest_images(jpeg, other), timeout=30).json()
    expected = np.array(next(o["data"] for o in rest["outputs"] if o["name"] == "probabilities")).reshape(2, 10)
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)
    assert [label.decode() for label in result.as_numpy("labels")] == [
        next(o["data"] for o in rest["outputs"] if o["name"] == "labels")[i] for i in range(2)
    ]
    pixels = decode_image(Upload("x", 1, jpeg), 32, 10**8)[None]
    tensor = triton.InferInput("pixels", list(pixels.shape), "UINT8")
    tensor.set_data_from_numpy(pixels)
    only = [triton.InferRequestedOutput("probabilities")]
    by_pixels = grpc.infer(MODEL, [tensor], outputs=only)
    assert [o.name for o in by_pixels.get_response().outputs] == ["probabilities"]
    np.testing.assert_allclose(by_pixels.as_numpy("probabilities"), probabilities[:1], atol=1e-6)


def test_bad_requests_are_invalid_argument_with_rest_words(
    live: Live,
) -> None:
    server, grpc = live
    with pytest.raises(InferenceServerException) as caught:
        grpc.infer(MODEL, [_images(b"not an image at all")])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    rest = httpx.post(f"{server.url}/v2/models/{MODEL}/infer", json=_rest_images(b"not an image at all"), timeout=30)
    assert rest.status_code == 415 and caught.value.message() == rest.json()["error"]  # the same words
    wrong = triton.InferInput("images", [1], "FP32")
    wrong.set_data_from_numpy(np.zeros(1, dtype=np.float32))
    with pytest.raises(InferenceServerException, match="must have datatype BYTES, got 'FP32'"):
        grpc.infer(MODEL, [wrong])
    with pytest.raises(InferenceServerException, match="unknown model 'resnet'") as caught:
        grpc.infer("resnet", [_images(png())])
    assert caught.value.status() == "StatusCode.NOT_FOUND"


def test_a_full_queue_is_resource_exhausted_at_once_then_served(tiny_checkpoint: Path) -> None:
    """The real door: one pass held, the queue's two images taken, the next call refused at once with REST's words
    and its Retry-After as trailing metadata; every accepted call is answered, and a new one once it drains."""
    port = free_port()
    settings = service_settings(tiny_checkpoint, grpc_port=port, model_workers=1, max_queue=2, max_files=2)
    server = LiveServer(settings).start()
    gate, grpc = Gate(server), triton.InferenceServerClient(url=f"127.0.0.1:{port}")
    channel = grpc_module.insecure_channel(f"127.0.0.1:{port}")
    message = pb.ModelInferRequest(model_name=MODEL)
    message.inputs.add(name="images", datatype="BYTES", shape=[1])
    message.raw_input_contents.append(length_prefixed([png()]))
    try:
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(grpc.infer, MODEL, [_images(png())])
            assert gate.entered.wait(30)  # the one model thread holds the first call's pass
            queued = pool.submit(grpc.infer, MODEL, [_images(png(), png())])
            gate.wait_queued(2)  # the queue holds 2 images: full
            start = time.monotonic()
            with pytest.raises(grpc_module.RpcError) as refused:
                pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(message, timeout=30)
            seconds = time.monotonic() - start
            gate.open()
            answered = [running.result().as_numpy("labels").shape, queued.result().as_numpy("labels").shape]
        again = grpc.infer(MODEL, [_images(png())]).as_numpy("labels").shape
        counted = 'alexnet_grpc_requests_total{code="%s",method="ModelInfer"}'
        counts = server.metric(counted % "RESOURCE_EXHAUSTED"), server.metric(counted % "OK")
    finally:
        gate.open()
        grpc.close()
        channel.close()
        server.stop()
    assert refused.value.code() == grpc_module.StatusCode.RESOURCE_EXHAUSTED and seconds < 5
    assert "queue is full" in refused.value.details()
    assert dict(refused.value.trailing_metadata())["retry-after"] == "1"
    assert answered == [(1,), (2,)] and again == (1,) and counts == (1, 3)


def test_shutdown_drains_a_call_under_way_and_refuses_new_ones(tiny_checkpoint: Path) -> None:
    """On shutdown the gRPC server stops taking calls; the call whose pass is running is answered."""
    port = free_port()
    server = LiveServer(service_settings(tiny_checkpoint, grpc_port=port, model_workers=1)).start()
    gate, grpc = Gate(server), triton.InferenceServerClient(url=f"127.0.0.1:{port}")
    try:
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(grpc.infer, MODEL, [_images(png())])
            assert gate.entered.wait(30)
            stopping = pool.submit(server.stop)
            server.wait_for_status("stopping", timeout=10)
            refused = _first_refusal(port)
            gate.open()
            answered = running.result().as_numpy("labels").shape
            stopping.result()
    finally:
        gate.open()
        grpc.close()
        server.stop()
    assert answered == (1,) and refused == "StatusCode.UNAVAILABLE"


def _first_refusal(port: int) -> str:
    """New calls until one is refused (the gRPC server's stop follows the "stopping" status by a moment: a call
    slipping in before it queues behind the held pass, and its short deadline gives up on it)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        client = triton.InferenceServerClient(url=f"127.0.0.1:{port}")
        try:
            client.infer(MODEL, [_images(png())], client_timeout=0.5)
        except InferenceServerException as exc:
            if exc.status() != "StatusCode.DEADLINE_EXCEEDED":
                return str(exc.status())
        finally:
            client.close()
    raise AssertionError("no new call was refused")


def test_a_bug_is_internal_logged_and_leaks_nothing(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    server, grpc = live
    batcher = server.state.batcher
    assert isinstance(batcher, Batcher)

    def broken(time_left: float) -> None:
        raise RuntimeError("secret detail")

    batcher.admit_arrival = broken  # type: ignore[method-assign]
    try:
        with caplog.at_level(logging.ERROR, logger="app.grpc_oip"), pytest.raises(InferenceServerException) as caught:
            grpc.infer(MODEL, [_images(png())])
    finally:
        del batcher.admit_arrival
    assert caught.value.status() == "StatusCode.INTERNAL" and "secret" not in caught.value.message()
    assert any("gRPC ModelInfer failed" in r.getMessage() and r.exc_info for r in caplog.records)


def test_the_request_id_and_the_access_line(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    _, grpc = live
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        grpc.infer(MODEL, [_images(png())], headers={"x-request-id": "trace-42"})
        grpc.is_server_live()
    lines = [(r.getMessage(), getattr(r, "request_id", None)) for r in caplog.records if r.name == ACCESS_LOGGER]
    assert any('"gRPC ModelInfer" OK' in line and rid == "trace-42" for line, rid in lines), lines
    assert any('"gRPC ServerLive" OK' in line and rid and len(rid) == 32 for line, rid in lines), lines


def test_a_deadline_the_service_cannot_meet_is_deadline_exceeded(live: Live) -> None:
    _, grpc = live
    with pytest.raises(InferenceServerException) as caught:
        grpc.infer(MODEL, [_images(png())], client_timeout=1e-6)
    assert caught.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    assert grpc.infer(MODEL, [_images(png())], client_timeout=30).as_numpy("labels").shape == (1,)


def test_the_api_key_in_metadata_and_the_size_limit(tiny_checkpoint: Path) -> None:
    port = free_port()
    settings = service_settings(tiny_checkpoint, grpc_port=port, api_key=KEY, max_body_bytes=200_000)
    server = LiveServer(settings).start()
    grpc = triton.InferenceServerClient(url=f"127.0.0.1:{port}")
    try:
        assert grpc.is_server_live() and grpc.is_model_ready(MODEL)  # the health calls are open, as /health
        for headers, words in ((None, "needs an API key"), ({"x-api-key": "wrong" * 4}, "not valid")):
            with pytest.raises(InferenceServerException, match=words) as caught:
                grpc.infer(MODEL, [_images(png())], headers=headers)
            assert caught.value.status() == "StatusCode.UNAUTHENTICATED"
        for headers in ({"authorization": f"Bearer {KEY}"}, {"x-api-key": KEY}):
            assert grpc.infer(MODEL, [_images(png())], headers=headers).as_numpy("labels").shape == (1,)
        with pytest.raises(InferenceServerException) as caught:  # a message over ALEXNET_MAX_BODY_BYTES
            grpc.infer(MODEL, [_images(bytes(300_000))], headers={"x-api-key": KEY})
        assert caught.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    finally:
        grpc.close()
        server.stop()


def _rest_images(*images: bytes) -> dict:
    data = [base64.b64encode(image).decode() for image in images]
    return {"inputs": [{"name": "images", "datatype": "BYTES", "shape": [len(images)], "data": data}]}


def test_a_grpc_and_an_http_request_share_a_forward_pass(tiny_checkpoint: Path) -> None:
    port = free_port()
    server = LiveServer(service_settings(tiny_checkpoint, grpc_port=port, model_workers=1, max_batch_size=16)).start()
    gate, grpc = Gate(server), triton.InferenceServerClient(url=f"127.0.0.1:{port}")

    def http(count: int) -> int:
        images = files(*((f"{i}.png", png()) for i in range(count)))
        return httpx.post(f"{server.url}/predict", files=images, timeout=30).status_code

    try:
        with ThreadPoolExecutor(3) as pool:
            first = pool.submit(http, 1)
            assert gate.entered.wait(30)  # the first request holds the one model thread
            by_http = pool.submit(http, 2)
            by_grpc = pool.submit(grpc.infer, MODEL, [_images(png(), png(), png())])
            gate.wait_queued(5)  # both wait for it, together
            gate.open()
            assert (first.result(), by_http.result()) == (200, 200)
            assert by_grpc.result().as_numpy("probabilities").shape == (3, 10)
        five = 'alexnet_batch_size_images_bucket{le="8.0"}', 'alexnet_batch_size_images_bucket{le="4.0"}'
        assert server.metric(five[0]) - server.metric(five[1]) == 1  # one pass of 5 images: 2 by HTTP, 3 by gRPC
    finally:
        gate.open()
        grpc.close()
        server.stop()


def test_typed_contents_as_other_grpc_clients_send_them(live: Live) -> None:
    # tritonclient sends raw_input_contents; KServe's and hand-written clients may use the typed fields instead.
    server, _ = live
    channel = grpc_module.insecure_channel(f"127.0.0.1:{server.state.settings.grpc_port}")
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    try:
        image = png(picture(seed=4))
        by_bytes = pb.ModelInferRequest(model_name=MODEL)
        by_bytes.inputs.add(name="images", datatype="BYTES", shape=[1]).contents.bytes_contents.append(image)
        answer = stub.ModelInfer(by_bytes, timeout=30)
        probabilities = np.frombuffer(answer.raw_output_contents[0], dtype="<f4")
        rest = httpx.post(f"{server.url}/v2/models/{MODEL}/infer", json=_rest_images(image), timeout=30).json()
        np.testing.assert_allclose(probabilities, rest["outputs"][0]["data"], atol=1e-6)
        pixels = decode_image(Upload("x", 1, image), 32, 10**8)
        by_pixels = pb.ModelInferRequest(model_name=MODEL)
        tensor = by_pixels.inputs.add(name="pixels", datatype="UINT8", shape=[1, 32, 32, 3])
        tensor.contents.uint_contents.extend(pixels.reshape(-1).tolist())
        again = np.frombuffer(stub.ModelInfer(by_pixels, timeout=30).raw_output_contents[0], dtype="<f4")
        np.testing.assert_allclose(again, probabilities, atol=1e-6)
        tensor.contents.uint_contents[0] = 256  # not a UINT8
        with pytest.raises(grpc_module.RpcError) as caught:
            stub.ModelInfer(by_pixels, timeout=30)
        assert caught.value.code() == grpc_module.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == "input 'pixels': UINT8 values must be 0 to 255, got 256"
    finally:
        channel.close()


def test_grpc_health_follows_readiness_and_a_watch_ends_with_the_drain(tiny_checkpoint: Path) -> None:
    """grpc.health.v1 (what Kubernetes' grpc probe asks): open without the key, SERVING for the server and for OIP's
    service once ready, OIP's NOT_SERVING while not ready; a Watch sees SIGTERM's NOT_SERVING and keeps its stream
    while HTTP drains, then ends when the gRPC server stops, not holding up its drain."""
    port = free_port()
    server = LiveServer(service_settings(tiny_checkpoint, grpc_port=port, api_key=KEY, request_timeout_s=20)).start()
    channel = grpc_module.insecure_channel(f"127.0.0.1:{port}")
    health = health_pb2_grpc.HealthStub(channel)

    def check(service: str) -> str:
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)

    try:
        ready = check(""), check("inference.GRPCInferenceService")
        listed = {
            name: s.status for name, s in health.List(health_pb2.HealthListRequest(), timeout=10).statuses.items()
        }
        with pytest.raises(grpc_module.RpcError) as unknown:
            check("resnet")
        server.state.set_status("warming_up", "warming up")  # as while a model warms up
        warming = check(""), check("inference.GRPCInferenceService")
        server.state.set_status("ready")
        watch = health.Watch(health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService"), timeout=60)
        first = next(watch).status
        server.state.set_status("stopping", "shutting down")  # as SIGTERM does, while HTTP drains
        second = next(watch).status
        time.sleep(2 * WATCH_EVERY_S)
        open_while_draining = not watch.done()  # the watcher keeps its stream, sees NOT_SERVING
        started = time.monotonic()
        stopping = threading.Thread(target=server.stop)
        stopping.start()
        rest = [answer.status for answer in watch]  # the stream ends with the gRPC server's stop
        stopping.join(30)
        stopped_in = time.monotonic() - started
    finally:
        channel.close()
        server.stop()
    assert ready == ("SERVING", "SERVING") and len(listed) == 2 and set(listed.values()) == {1}
    assert unknown.value.code() == grpc_module.StatusCode.NOT_FOUND
    assert warming == ("SERVING", "NOT_SERVING")
    assert first == health_pb2.HealthCheckResponse.SERVING and second == health_pb2.HealthCheckResponse.NOT_SERVING
    assert open_while_draining and rest == []
    assert stopped_in < 10  # well inside the 20 s a call under way may take
