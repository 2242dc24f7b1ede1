"""Fixtures: a learnable image-folder dataset, generated once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.training.helpers import tiny_config
from training.config import TrainConfig
from training.train import main


@pytest.fixture(scope="session")
def trained(learnable_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainConfig, dict[str, Any]]:
    output = tmp_path_factory.mktemp("run") / "alexnet.safetensors"
    # The default recipe (SGD + Nesterov, training init, warm-up and decay, crop, flip, label smoothing, EMA,
    # flip TTA) with a learning rate and EMA decay for 8 steps instead of thousands.
    config = tiny_config(learnable_folder, output, lr=0.05, ema_decay=0.9, ood=True)
    return config, main(config)
