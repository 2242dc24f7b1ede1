"""Stopping the one entry point (``python -m app`` = ``alexnet-serve``), as the container and compose run it.

SIGTERM: /health turns 503 at once, every request in flight is answered, the batcher drains, the process ends
without a traceback. Ctrl-C (SIGINT): the same, and the exit status is 0, as plain uvicorn's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.app.helpers import files, picture, png
from tests.helpers import REPO, module_folder, write_random_checkpoint

# A slow queue on purpose: one single-threaded pass of 4 images at a time, at the real 224-pixel input.
# Small passes on one thread, so requests are still in flight when the signal comes; a deadline far past the
# drain, so a machine busy with other work makes the test slower, not failed (504s are test_deadline's business).
SLOW = {"ALEXNET_MAX_BATCH_SIZE": "4", "ALEXNET_MODEL_WORKERS": "1", "ALEXNET_TORCH_THREADS": "1",
        "ALEXNET_REQUEST_TIMEOUT_S": "50"}  # fmt: skip


@pytest.fixture(scope="module")
def full_size_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with module_folder(tmp_path_factory, "ckpt224") as folder:
        yield write_random_checkpoint(folder / "random224.safetensors", input_size=224)


@contextmanager
def entry_point(checkpoint: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``python -m app`` on a free port, ready; killed at the end if still running."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "app", "--checkpoint", str(checkpoint), "--port", str(port), "--device", "cpu"]
    service = subprocess.Popen(
        [*command, "--no-access-log"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **SLOW},
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url)
        yield service, url
    finally:
        service.kill()


def test_sigterm_turns_health_503_and_finishes_in_flight_requests(full_size_checkpoint: Path) -> None:
    uploads = files(*((f"{i}.png", png(picture(seed=i))) for i in range(16)))
    with entry_point(full_size_checkpoint) as (service, url), ThreadPoolExecutor(8) as pool:
        pending = [pool.submit(httpx.post, f"{url}/predict", files=uploads, timeout=60) for _ in range(7)]
        _wait_for_queue(url, images=32)  # requests are in flight: decoded and waiting for the model
        # One more upload, with a GET /health pipelined behind it on the same connection: uvicorn holds the
        # GET until the upload is answered, after the signal, and an answered GET is the only kind uvicorn
        # lets through once it stops accepting connections.
        last = _pipelined(url, httpx.Request("POST", f"{url}/predict", files=uploads), "GET /health HTTP/1.1")
        time.sleep(0.5)  # both requests received; the upload waits behind about 100 images (over a second)
        service.send_signal(signal.SIGTERM)
        responses = [p.result() for p in pending]
        (upload_status, upload_body), (health_status, health_body) = _read_two(last)
        service.wait(60)
        log = service.stderr.read() if service.stderr else ""
    assert [r.status_code for r in responses] == [200] * 7
    assert all(len(r.json()["predictions"]) == 16 for r in responses)
    assert upload_status == 200 and len(json.loads(upload_body)["predictions"]) == 16
    assert health_status == 503 and json.loads(health_body)["status"] == "stopping"
    assert service.returncode in (0, -signal.SIGTERM), log  # uvicorn re-raises SIGTERM once it is done
    assert "SIGTERM received: /health answers 503; finishing in-flight requests" in log
    assert log.index("SIGTERM received") < log.index("app.main: stopped")  # the batcher drained after
    assert "Traceback" not in log


def test_ctrl_c_stops_cleanly_with_status_0(tiny_checkpoint: Path) -> None:
    with entry_point(tiny_checkpoint) as (service, url):
        assert httpx.post(f"{url}/predict", files=files(("a.png", png()))).status_code == 200
        service.send_signal(signal.SIGINT)
        service.wait(60)
        log = service.stderr.read() if service.stderr else ""
    assert service.returncode == 0, log
    assert "SIGINT received" in log and "app.main: stopped" in log
    assert "Traceback" not in log and "KeyboardInterrupt" not in log


def _pipelined(url: str, first: httpx.Request, second_line: str) -> socket.socket:
    """Send ``first`` and, right behind it on the same connection, a bodiless request; return the socket."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    head = f"{first.method} {first.url.raw_path.decode()} HTTP/1.1\r\nHost: {host}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in first.headers.items() if k.lower() != "host")
    body = first.read()
    sock.sendall(head.encode() + b"\r\n" + body + f"{second_line}\r\nHost: {host}\r\n\r\n".encode())
    return sock


def _read_two(sock: socket.socket) -> list[tuple[int, bytes]]:
    """The two responses on the connection, in order, each as (status, body)."""
    with sock, sock.makefile("rb") as stream:
        answers = []
        for _ in range(2):
            status = int(stream.readline().split()[1])
            headers = {}
            while (line := stream.readline().strip()) != b"":
                name, _, value = line.decode().partition(":")
                headers[name.lower()] = value.strip()
            answers.append((status, stream.read(int(headers["content-length"]))))
        return answers


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
