"""Fixtures: a learnable image-folder dataset, generated once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import module_folder
from tests.training.helpers import tiny_config
from training.config import TrainConfig
from training.train import main


@pytest.fixture(scope="package")
def trained(
    learnable_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TrainConfig, dict[str, Any]]]:
    """One short run (its checkpoint and state file: 1 GB), removed when the training tests are done."""
    with module_folder(tmp_path_factory, "run") as folder:
        # The default recipe (SGD + Nesterov, training init, warm-up and decay, crop, flip, label smoothing, EMA,
        # flip TTA) with a learning rate and EMA decay for 8 steps instead of thousands.
        config = tiny_config(learnable_folder, folder / "alexnet.safetensors", lr=0.05, ema_decay=0.9, ood=True)
        yield config, main(config)
