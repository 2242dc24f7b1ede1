"""A new checkpoint while serving (app/model_loader.py): by request (OIP's repository routes, tritonclient), SIGHUP and
the poll; swaps under load without an error or a mixed pass; refused files leave the old model serving."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.predictor import Predictor
from benchmarks.servers.catalog import service_spec
from benchmarks.servers.launch import LOOPBACK, free_port, start_server
from models import load_checkpoint, load_image, save_checkpoint
from tests.app.helpers import LiveServer, files, picture, png, service_settings
from tests.helpers import module_folder, write_he_checkpoint, write_random_checkpoint

IMAGE = png(picture())


def _checkpoint(path: Path, seed: int, temperature: float, classes: tuple[str, ...] | None = None) -> Path:
    """A 64-pixel checkpoint of its own weights (He init, so that answers differ) and temperature."""
    source = load_checkpoint(write_he_checkpoint(path.with_suffix(".tmp"), seed=seed))
    path.with_suffix(".tmp").unlink()
    save_checkpoint(
        path,
        source.build_model(),
        model_args=source.model_args,
        classes=classes or source.classes,
        preprocess=source.preprocess,
        config={"note": f"seed {seed}"},
        calibration={"temperature": temperature},
    )
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Two checkpoints, written once for the module (each test adds its own files beside them, never changes these),
    in a subfolder, so that a test can put a file outside the checkpoints' folder that still goes with the module."""
    with module_folder(tmp_path_factory, "checkpoints") as root:
        path = root / "served"
        path.mkdir()
        _checkpoint(path / "a.safetensors", seed=1, temperature=1.0)
        _checkpoint(path / "b.safetensors", seed=2, temperature=2.5)
        yield path


def _expected(folder: Path) -> dict[str, list[float]]:
    """sha256 -> the probabilities those weights give IMAGE, computed here, apart from the service."""
    pixels = load_image(IMAGE, size=32)[None]  # (1, 32, 32, 3), as the service decodes it
    out = {}
    for name in ("a", "b"):
        predictor = Predictor.load(folder / f"{name}.safetensors", "cpu")
        out[predictor.info.weights_sha256] = predictor.outputs(pixels)["probabilities"][0].tolist()
    return out


def _load(url: str, checkpoint: str | None = None) -> httpx.Response:
    body = {"parameters": {"checkpoint": checkpoint}} if checkpoint else None
    return httpx.post(f"{url}/v2/repository/models/alexnet/load", json=body, timeout=120)


def _answered(answer: dict) -> tuple[str, int, list[float]]:
    model, (prediction,) = answer["model"], answer["predictions"]
    by_index = {entry["index"]: entry["probability"] for entry in prediction["top_k"]}
    return model["weights_sha256"], model["version"], [by_index[i] for i in range(10)]


def test_twenty_swaps_under_32_clients_lose_no_request_and_never_mix_models(folder: Path) -> None:
    expected = _expected(folder)
    server = LiveServer(service_settings(folder / "a.safetensors", model_control=True)).start()
    answers: list[tuple[str, int, list[float]]] = []
    errors: list[str] = []
    done = False

    async def client() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            while not done:
                response = await http.post("/predict?top_k=10", files=files(("x.png", IMAGE)))
                if response.status_code == 200:
                    answers.append(_answered(response.json()))
                else:
                    errors.append(f"{response.status_code} {response.text}")

    async def swaps() -> list[tuple[str, int]]:
        nonlocal done
        settled = []
        for i in range(20):
            name = "b.safetensors" if i % 2 == 0 else "a.safetensors"
            loaded = await asyncio.to_thread(_load, server.url, name)
            assert loaded.status_code == 200, loaded.text
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                after = await http.post("/predict?top_k=10", files=files(("x.png", IMAGE)))
            settled.append(_answered(after.json())[:2])  # a request started after the load returned
        done = True
        return settled

    async def main() -> list[tuple[str, int]]:
        clients = [asyncio.create_task(client()) for _ in range(32)]
        settled = await swaps()
        await asyncio.gather(*clients)
        return settled

    try:
        settled = asyncio.run(main())
    finally:
        server.stop()
    sha_a, sha_b = (load_checkpoint(folder / f"{n}.safetensors").weights_sha256 for n in ("a", "b"))
    assert errors == []
    assert len(answers) > 100 and {sha for sha, _, _ in answers} == {sha_a, sha_b}
    for sha, _, probabilities in answers:  # every answer is what the weights it names give
        np.testing.assert_allclose(probabilities, expected[sha], atol=2e-6)
    assert settled == [(sha_b if i % 2 == 0 else sha_a, i + 2) for i in range(20)]  # each swap, once it returned


def test_refused_files_leave_the_model_serving(folder: Path) -> None:
    (folder / "truncated.safetensors").write_bytes((folder / "b.safetensors").read_bytes()[:5000])
    _checkpoint(folder / "others.safetensors", seed=3, temperature=1.0, classes=tuple(f"c{i}" for i in range(10)))
    (folder.parent / "outside.safetensors").write_bytes((folder / "b.safetensors").read_bytes())
    (folder / "link.safetensors").symlink_to(folder.parent / "outside.safetensors")
    server = LiveServer(service_settings(folder / "a.safetensors", model_control=True)).start()
    try:
        refused = {
            name: _load(server.url, name)
            for name in (
                "truncated.safetensors",
                "others.safetensors",
                "../outside.safetensors",
                "/etc/passwd",
                "link.safetensors",
                "missing.safetensors",
            )
        }
        answer = httpx.post(f"{server.url}/predict", files=files(("x.png", IMAGE))).json()
        loads = httpx.get(f"{server.url}/metrics").text
    finally:
        server.stop()
    statuses = {name: (r.status_code, r.json()["error"]) for name, r in refused.items()}
    assert statuses["truncated.safetensors"][0] == 409 and "cannot be served" in statuses["truncated.safetensors"][1]
    assert statuses["others.safetensors"][0] == 409 and "classes" in statuses["others.safetensors"][1]
    for name in ("../outside.safetensors", "/etc/passwd"):
        assert statuses[name] == (
            400,
            f"checkpoint {name!r}: give a file name inside the checkpoint's folder, not a path",
        )
    assert (
        statuses["link.safetensors"][0] == 400 and "outside the checkpoint's folder" in statuses["link.safetensors"][1]
    )
    assert statuses["missing.safetensors"][0] == 404
    assert answer["model"]["weights_sha256"] == load_checkpoint(folder / "a.safetensors").weights_sha256
    assert answer["model"]["version"] == 1
    assert 'alexnet_model_loads_total{result="refused"} 6.0' in loads


def test_model_control_is_off_unless_set_and_needs_the_key(folder: Path) -> None:
    off = LiveServer(service_settings(folder / "a.safetensors")).start()
    key = "k" * 32
    keyed = LiveServer(service_settings(folder / "a.safetensors", model_control=True, api_key=key)).start()
    try:
        refused = _load(off.url, "b.safetensors")
        no_key = _load(keyed.url, "b.safetensors")
        with_key = httpx.post(
            f"{keyed.url}/v2/repository/models/alexnet/load",
            timeout=120,
            json={"parameters": {"checkpoint": "b.safetensors"}},
            headers={"X-API-Key": key},
        )
        unload = httpx.post(f"{keyed.url}/v2/repository/models/alexnet/unload", headers={"X-API-Key": key})
    finally:
        off.stop()
        keyed.stop()
    assert refused.status_code == 403 and "ALEXNET_MODEL_CONTROL" in refused.json()["error"]
    assert no_key.status_code == 401 and with_key.status_code == 200
    assert unload.status_code == 409 and "always serves" in unload.json()["error"]


def test_tritonclient_loads_lists_and_sees_the_new_version(folder: Path) -> None:
    triton = pytest.importorskip("tritonclient.http")
    server = LiveServer(service_settings(folder / "a.safetensors", model_control=True)).start()
    try:
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        before = client.get_model_repository_index()
        client.load_model("alexnet", config=json.dumps({"checkpoint": "b.safetensors"}))
        after = client.get_model_repository_index()
        ready = client.is_model_ready("alexnet", "2"), client.is_model_ready("alexnet", "1")
        metadata = client.get_model_metadata("alexnet")
    finally:
        server.stop()
    assert before == [{"name": "alexnet", "version": "1", "state": "READY"}]
    assert after == [{"name": "alexnet", "version": "2", "state": "READY"}]
    assert ready == (True, False) and metadata["versions"] == ["2"]


def _sha_served(port: int) -> tuple[str, int]:
    model = httpx.post(f"http://{LOOPBACK}:{port}/predict", files=files(("x.png", IMAGE)), timeout=30).json()["model"]
    return model["weights_sha256"], model["version"]


def _until(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.2)


def test_sighup_and_the_poll_each_pick_up_a_new_file(folder: Path, tmp_path: Path) -> None:
    served = folder / "served.safetensors"
    os.link(folder / "a.safetensors", served)
    sha_a, sha_b = (load_checkpoint(folder / f"{n}.safetensors").weights_sha256 for n in ("a", "b"))
    env = {"ALEXNET_CHECKPOINT": str(served), "ALEXNET_DEVICE": "cpu", "ALEXNET_CHECKPOINT_POLL_S": "0.3"}
    with start_server(service_spec(sys.executable, env), tmp_path / "poll.log") as server:
        assert _sha_served(server.port) == (sha_a, 1)
        os.replace(_copy(folder / "b.safetensors", folder / "next.safetensors"), served)  # as the trainer writes
        _until(lambda: _sha_served(server.port) == (sha_b, 2))
    no_poll = {**env, "ALEXNET_CHECKPOINT_POLL_S": "0"}
    with start_server(service_spec(sys.executable, no_poll), tmp_path / "hup.log") as server:
        assert _sha_served(server.port) == (sha_b, 1)
        os.replace(_copy(folder / "a.safetensors", folder / "next.safetensors"), served)
        time.sleep(1)
        assert _sha_served(server.port) == (sha_b, 1)  # no poll: nothing happens by itself
        os.kill(server.process.pid, signal.SIGHUP)
        _until(lambda: _sha_served(server.port) == (sha_a, 2))
        metrics = httpx.get(f"http://{LOOPBACK}:{server.port}/metrics").text
    assert 'alexnet_model_loads_total{result="loaded"} 1.0' in metrics and "alexnet_model_version 2.0" in metrics


def _copy(source: Path, target: Path) -> Path:
    target.write_bytes(source.read_bytes())
    return target


def test_the_repository_over_grpc_as_over_rest(folder: Path) -> None:
    """tritonclient.grpc's repository calls: the same loads, refusals and words as the REST routes."""
    triton = pytest.importorskip("tritonclient.grpc")
    from tritonclient.utils import InferenceServerException

    port = free_port()
    server = LiveServer(service_settings(folder / "a.safetensors", model_control=True, grpc_port=port)).start()
    off_port = free_port()
    off = LiveServer(service_settings(folder / "a.safetensors", grpc_port=off_port)).start()
    client, off_client = (triton.InferenceServerClient(f"127.0.0.1:{p}") for p in (port, off_port))

    def refusal(call: Any, *args: Any, **kwargs: Any) -> tuple[str, str]:
        with pytest.raises(InferenceServerException) as caught:
            call(*args, **kwargs)
        return caught.value.status(), caught.value.message()

    try:
        before = client.get_model_repository_index(as_json=True)["models"]
        client.load_model("alexnet", config=json.dumps({"checkpoint": "b.safetensors"}))
        after = client.get_model_repository_index(as_json=True)["models"]
        ready = client.is_model_ready("alexnet", "2"), client.is_model_ready("alexnet", "1")
        missing = refusal(client.load_model, "alexnet", config=json.dumps({"checkpoint": "none.safetensors"}))
        not_json = refusal(client.load_model, "alexnet", config="{checkpoint")
        outside = refusal(client.load_model, "alexnet", config=json.dumps({"checkpoint": "../a.safetensors"}))
        unload = refusal(client.unload_model, "alexnet")
        control_off = refusal(off_client.load_model, "alexnet")
        rest_off = httpx.post(f"{off.url}/v2/repository/models/alexnet/load", timeout=30).json()["error"]
    finally:
        client.close()
        off_client.close()
        server.stop()
        off.stop()
    assert before == [{"name": "alexnet", "version": "1", "state": "READY"}]
    assert after == [{"name": "alexnet", "version": "2", "state": "READY"}] and ready == (True, False)
    assert missing == ("StatusCode.NOT_FOUND", "checkpoint 'none.safetensors': no such file in the checkpoint's folder")
    assert not_json[0] == "StatusCode.INVALID_ARGUMENT" and "parameters.config is not JSON" in not_json[1]
    assert outside[0] == "StatusCode.INVALID_ARGUMENT" and "not a path" in outside[1]
    assert unload[0] == "StatusCode.FAILED_PRECONDITION" and "always serves" in unload[1]
    assert control_off == ("StatusCode.PERMISSION_DENIED", rest_off)  # REST's words


def test_a_checkpoint_that_fails_its_warm_up_is_refused_and_the_old_model_serves_on(folder: Path) -> None:
    """It reads and passes every check, but its network cannot run a pass here (32-pixel input: too small for
    AlexNet's pooling): a 409 with the reason, not a 500, and nothing swapped."""
    write_random_checkpoint(folder / "too-small.safetensors", input_size=32)
    server = LiveServer(service_settings(folder / "a.safetensors", model_control=True)).start()
    try:
        refused = _load(server.url, "too-small.safetensors")
        after = httpx.post(f"{server.url}/predict", files=files(("x.png", IMAGE)), timeout=30)
    finally:
        server.stop()
        (folder / "too-small.safetensors").unlink()
    assert refused.status_code == 409 and "failed its warm-up pass" in refused.json()["error"]
    assert after.status_code == 200 and after.json()["model"]["version"] == 1


def test_a_load_request_that_names_no_file_is_a_400_with_its_reason(folder: Path) -> None:
    server = LiveServer(service_settings(folder / "a.safetensors", model_control=True)).start()
    url = f"{server.url}/v2/repository/models/alexnet/load"
    bodies = b"[1]", b'{"parameters": 3}', b'{"parameters": {"checkpoint": 7}}', b'{"parameters": {"config": "x"}}'
    bodies += (b'{"parameters": {"checkpoint": "a\\u0000b"}}',)  # a NUL: no file can have it (not a 500)
    try:
        answers = [httpx.post(url, content=body, timeout=30) for body in bodies]
    finally:
        server.stop()
    assert [answer.status_code for answer in answers] == [400] * 5
    words = [answer.json()["error"] for answer in answers]
    assert "not a path" in words[4]
    assert "is not {" in words[0] and "is not {" in words[1]
    assert words[2] == "parameters.checkpoint must be a file name" and "parameters.config is not JSON" in words[3]
