"""Fixtures: a learnable image-folder dataset, generated once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.training.helpers import learnable_split, tiny_config, write_image_folder
from training.config import TrainConfig
from training.train import main


@pytest.fixture(scope="session")
def learnable_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image folder of a learnable 4-class problem: 48 train images per class, 8 test images per class."""
    root = tmp_path_factory.mktemp("images")
    write_image_folder(root, "train", learnable_split(48, seed=1))
    write_image_folder(root, "test", learnable_split(8, seed=2))
    return root


@pytest.fixture(scope="session")
def trained(learnable_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainConfig, dict[str, Any]]:
    output = tmp_path_factory.mktemp("run") / "alexnet.safetensors"
    # The default recipe (SGD + Nesterov, training init, warm-up and decay, crop, flip, label smoothing, EMA,
    # flip TTA) with a learning rate and EMA decay for 8 steps instead of thousands.
    config = tiny_config(learnable_folder, output, lr=0.05, ema_decay=0.9, ood=True)
    return config, main(config)
