"""A missing or broken checkpoint stops start-up with one clear line; bad flags and settings are refused."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.cli import serve
from app.main import StartupError, create_app
from tests.app.helpers import service_settings
from tests.helpers import REPO


def test_missing_checkpoint_stops_alexnet_serve_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.safetensors"
    result = subprocess.run(
        [sys.executable, "-c", "from app.cli import serve; serve()", "--checkpoint", str(missing), "--port", "0"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len([line for line in errors if str(missing) in line]) == 1, result.stderr
    assert "no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_corrupt_checkpoint_stops_start_up(tmp_path: Path, tiny_checkpoint: Path, caplog) -> None:
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(tiny_checkpoint.read_bytes()[:100_000])  # truncated, as by a full disk
    app = create_app(service_settings(broken))

    async def start() -> None:
        async with app.router.lifespan_context(app):
            pass

    with caplog.at_level(logging.ERROR), pytest.raises(StartupError, match=r"broken\.safetensors"):
        asyncio.run(start())
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert str(broken) in line and "cannot start" in line


def test_a_grpc_port_in_use_stops_start_up(tiny_checkpoint: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        app = create_app(service_settings(tiny_checkpoint, grpc_port=taken.getsockname()[1]))

        async def start() -> None:
            async with app.router.lifespan_context(app):
                pass

        with pytest.raises(StartupError, match=r"gRPC could not listen on 127\.0\.0\.1:"):
            asyncio.run(start())


def test_unavailable_device_stops_start_up(tiny_checkpoint: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    app = create_app(service_settings(tiny_checkpoint, device="cuda"))

    async def start() -> None:
        async with app.router.lifespan_context(app):
            pass

    with pytest.raises(StartupError, match="CUDA is not available"):
        asyncio.run(start())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "http"], "invalid int value"),
        (["--max-batch-size", "-1"], "max_batch_size"),
        (["--device", "gpu"], "device"),
        (["--precision", "fp8"], "precision"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_flags_exit_2_with_a_message(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        serve(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_environment_value_is_named(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("ALEXNET_MAX_QUEUE", "lots")
    with pytest.raises(SystemExit):
        serve([])
    assert "max_queue" in capsys.readouterr().err


def test_queue_must_hold_the_largest_request(tiny_checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="max_queue"):
        service_settings(tiny_checkpoint, max_queue=4, max_files=8)


def test_plain_uvicorn_serves_through_the_factory(tiny_checkpoint: Path) -> None:
    """`uvicorn --factory app.main:factory` stays usable: settings from ALEXNET_*, the service's log lines."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO), "ALEXNET_CHECKPOINT": str(tiny_checkpoint), "ALEXNET_DEVICE": "cpu"}
    command = [sys.executable, "-m", "uvicorn", "--factory", "app.main:factory", "--port", str(port)]
    service = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            time.sleep(0.1)
        health = httpx.get(f"http://127.0.0.1:{port}/health").json()
        assert health["status"] == "ready" and health["model"]["checkpoint"] == tiny_checkpoint.name
    finally:
        service.terminate()
        service.wait(30)
    assert "app.main: ready" in (service.stderr.read() if service.stderr else "")
