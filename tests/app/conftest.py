"""Fixtures: the real service on a real port, started per test (``serve``) or once per module (``server``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.helpers import LiveServer, service_settings


@pytest.fixture
def serve(tiny_checkpoint: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start a server with these settings (on the tiny checkpoint, CPU); all are stopped after the test."""
    servers: list[LiveServer] = []

    def start(wait_ready: bool = True, **overrides: Any) -> LiveServer:
        server = LiveServer(service_settings(tiny_checkpoint, **overrides))
        servers.append(server)
        return server.start(wait_ready)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path) -> Iterator[LiveServer]:
    """One server with the default test settings, shared by a test module."""
    live = LiveServer(service_settings(tiny_checkpoint)).start()
    yield live
    live.stop()


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http
