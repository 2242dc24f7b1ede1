"""Shared fixtures: a real, tiny, randomly initialised checkpoint; no download, no GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import write_random_checkpoint
from tests.training.helpers import learnable_split, write_image_folder


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint file with random weights (read-only: copy it before altering)."""
    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "random.safetensors")


@pytest.fixture(scope="session")
def learnable_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image folder of a learnable 4-class problem: 48 train images per class, 8 test images per class."""
    root = tmp_path_factory.mktemp("images")
    write_image_folder(root, "train", learnable_split(48, seed=1))
    write_image_folder(root, "test", learnable_split(8, seed=2))
    return root
