"""Health tells the truth: 503 before the model is warmed up and while stopping, 200 when it can serve."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import uvicorn

from app.cli import Server
from app.main import create_app
from app.predictor import Predictor
from models import load_checkpoint, save_checkpoint
from tests.app.helpers import LiveServer, files, png, service_settings


def test_health_is_503_until_warm_up_ends(serve: Callable[..., LiveServer], monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    warm_up = Predictor.warm_up

    def held_warm_up(self: Predictor, sizes: list[int]) -> float:
        assert release.wait(30)
        return warm_up(self, sizes)

    monkeypatch.setattr(Predictor, "warm_up", held_warm_up)
    server = serve(wait_ready=False)  # the port is open: the checkpoint is loaded, warm-up is running
    try:
        for path in ("/health", "/health/ready"):
            response = httpx.get(server.url + path)
            assert response.status_code == 503
            assert response.json()["status"] == "warming_up" and response.json()["ready"] is False
        assert httpx.get(server.url + "/health/live").status_code == 200
        not_yet = httpx.post(server.url + "/predict", files=files(("a.png", png())))
        assert not_yet.status_code == 503 and "not ready" in not_yet.json()["detail"]
        assert server.metric("alexnet_ready") == 0
    finally:
        release.set()
    server.wait_for_status("ready")
    body = httpx.get(server.url + "/health").json()
    assert body["status"] == "ready" and body["ready"] is True and body["device"] == "cpu"
    assert len(body["model"]["weights_sha256"]) == 64
    assert httpx.get(server.url + "/health/ready").status_code == 200
    assert httpx.post(server.url + "/predict", files=files(("a.png", png()))).status_code == 200
    assert server.metric("alexnet_ready") == 1
    assert server.metric("alexnet_model_load_seconds") > 0


def test_health_is_503_once_a_signal_arrives(tiny_checkpoint) -> None:
    app = create_app(service_settings(tiny_checkpoint))
    app.state.service.set_status("ready")  # as after warm-up
    server = Server(uvicorn.Config(app), app.state.service)
    server.handle_exit(signal.SIGTERM, None)  # what alexnet-serve runs on SIGTERM, before uvicorn stops

    async def health() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.get("/health")

    response = asyncio.run(health())
    assert response.status_code == 503 and response.json()["status"] == "stopping"
    assert server.should_exit


def test_a_cpu_stand_in_says_so_in_health_and_the_log(
    tiny_checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ckpt = load_checkpoint(tiny_checkpoint)
    stand_in = tmp_path / "stand-in.safetensors"
    save_checkpoint(stand_in, ckpt.build_model(), model_args=ckpt.model_args, classes=ckpt.classes,
                    preprocess=ckpt.preprocess, config={"recipe": "cpu"})  # fmt: skip
    for checkpoint, expected in ((stand_in, True), (tiny_checkpoint, False)):
        with caplog.at_level(logging.WARNING):
            server = LiveServer(service_settings(checkpoint)).start()
        try:
            assert httpx.get(f"{server.url}/health").json()["model"]["stand_in"] is expected
        finally:
            server.stop()
        assert ("is a CPU stand-in (--recipe cpu" in caplog.text) is expected
        caplog.clear()
