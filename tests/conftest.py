"""Shared fixtures: a real, tiny, randomly initialised checkpoint; no download, no GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import write_random_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint file with random weights (read-only: copy it before altering)."""
    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "random.safetensors")
