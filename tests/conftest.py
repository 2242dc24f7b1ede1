"""Shared fixtures: a real, tiny, randomly initialised checkpoint; no download, no GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from models import save_random_checkpoint

# Tests run the real AlexNet at a 64x64 input (the checkpoint says so): the same layers and weights,
# about 12x less compute than 224x224, so the CPU suite stays fast.
TEST_INPUT_SIZE = 64


def write_random_checkpoint(path: Path, seed: int = 0, input_size: int = TEST_INPUT_SIZE) -> Path:
    return save_random_checkpoint(path, input_size=input_size, seed=seed, note="random weights for tests")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint file with random weights (read-only: copy it before altering)."""
    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "random.safetensors")
