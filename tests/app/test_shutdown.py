"""SIGTERM: alexnet-serve stops accepting, finishes every request in flight (the batcher drains), then exits."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.app.conftest import files, picture, png

ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_finishes_in_flight_requests(tiny_checkpoint: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    slow = {"ALEXNET_MAX_BATCH_SIZE": "4", "ALEXNET_MODEL_WORKERS": "1", "ALEXNET_TORCH_THREADS": "1"}  # a long queue
    command = [sys.executable, "-c", "from app.cli import serve; serve()", "--checkpoint", str(tiny_checkpoint)]
    service = subprocess.Popen(
        [*command, "--port", str(port), "--device", "cpu", "--no-access-log"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **slow},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_ready(url)
        uploads = files(*((f"{i}.png", png(picture(seed=i))) for i in range(16)))
        with ThreadPoolExecutor(8) as pool:
            pending = [pool.submit(httpx.post, f"{url}/predict", files=uploads, timeout=60) for _ in range(8)]
            _wait_for_queue(url, images=32)  # requests are in flight: decoded and waiting for the model
            service.send_signal(signal.SIGTERM)
            responses = [p.result() for p in pending]
        assert [r.status_code for r in responses] == [200] * 8
        assert all(len(r.json()["predictions"]) == 16 for r in responses)
        service.wait(60)
    finally:
        service.kill()
        log = service.stderr.read() if service.stderr else ""
    assert service.returncode in (0, -signal.SIGTERM), log  # uvicorn re-raises the signal once it is done
    assert "SIGTERM received: finishing in-flight requests" in log
    assert log.index("SIGTERM received") < log.index("app.main: stopped")  # the batcher drained after
    assert "Traceback" not in log


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the service did not become ready")


def _wait_for_queue(url: str, images: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in httpx.get(f"{url}/metrics").text.splitlines():
            if line.startswith("alexnet_queue_depth_images ") and float(line.split()[1]) >= images:
                return
        time.sleep(0.01)
    raise AssertionError(f"the queue never held {images} images")
