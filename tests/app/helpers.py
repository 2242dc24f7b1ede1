"""The real service on a real port (uvicorn in a thread, the app inside its lifespan), and real image files."""

from __future__ import annotations

import io
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
import uvicorn
from PIL import Image

from app.config import Settings
from app.connections import server_config
from app.deps import ServiceState
from app.main import create_app
from models import load_checkpoint, save_checkpoint


class LiveServer:
    """``create_app(settings)`` served by uvicorn on a free loopback port, in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = server_config(self.app, settings, log_level="warning", access_log=False)  # alexnet-serve's
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def state(self) -> ServiceState:
        return self.app.state.service

    def start(self, wait_ready: bool = True) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive(), "the server stopped during start-up"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        if wait_ready:
            self.wait_for_status("ready")
        return self

    def wait_for_status(self, status: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.state.status != status:
            assert time.monotonic() < deadline, f"status stayed {self.state.status}, expected {status}"
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()

    def metric(self, name: str) -> float:
        """A sample's value from /metrics, e.g. 'alexnet_forward_passes_total'."""
        text = httpx.get(f"{self.url}/metrics").text
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise KeyError(name)


def service_settings(checkpoint: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"checkpoint": checkpoint, "device": "cpu", "max_batch_size": 8, "decode_threads": 2}
    # torch's thread count is process-wide: a server in the test process must not change it under the
    # other tests (a thread's first torch op adopts the current count for good), so keep it as it is.
    values["torch_threads"] = torch.get_num_threads()
    values.update(overrides)
    return Settings(**values)


def picture(width: int = 48, height: int = 40, seed: int = 0) -> Image.Image:
    """An RGB test picture with structure (a gradient and a block), so orientation and colour matter."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([255 * x / width, 255 * y / height, np.full_like(x, 128.0)], axis=-1)
    pixels[: height // 3, : width // 4] = rng.integers(0, 256, 3)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png(image: Image.Image | None = None) -> bytes:
    return encode(image if image is not None else picture(), "PNG")


def files(*named: tuple[str, bytes]) -> list[tuple[str, tuple[str, bytes]]]:
    """httpx multipart files: each in the field 'file', in order."""
    return [("file", (name, data)) for name, data in named]


def with_rule(source: Path, target: Path, score: str, threshold: float, extras: dict | None = None) -> Path:
    """A copy of the checkpoint ``source`` with an abstention rule: ``score`` above ``threshold`` is confident."""
    ckpt = load_checkpoint(source)
    save_checkpoint(target, ckpt.build_model(), model_args=ckpt.model_args, classes=ckpt.classes,
                    preprocess=ckpt.preprocess, abstention={"score": score, "threshold": threshold, "target": "a test"},
                    extras=extras)  # fmt: skip
    return target


class Gate:
    """Wraps the serving model's pass: each pass waits until the test opens the gate."""

    def __init__(self, server: LiveServer) -> None:
        self.batcher = server.state.batcher
        predictor = server.state.predictor
        assert self.batcher is not None and predictor is not None
        self.forward = predictor.outputs
        self.entered = threading.Event()
        self.opened = threading.Event()
        predictor.outputs = self._gated  # what the requests from now on queue their images with

    def _gated(self, images):
        self.entered.set()
        assert self.opened.wait(30), "the test never opened the gate"
        return self.forward(images)

    def open(self) -> None:
        self.opened.set()

    def wait_queued(self, images: int) -> None:
        deadline = time.monotonic() + 30
        while self.batcher.queued_images < images:
            assert time.monotonic() < deadline, f"only {self.batcher.queued_images} images queued"
            time.sleep(0.005)
