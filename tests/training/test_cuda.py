"""The CUDA path (bf16 autocast, channels_last, cudnn autotuning, optional compile); skipped without a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models import load_checkpoint
from tests.training.test_train import tiny_config
from training.train import main

pytestmark = pytest.mark.cuda


@pytest.fixture(autouse=True)
def _needs_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")


@pytest.mark.parametrize("compile_model", [False, True])
def test_cuda_run_writes_a_cpu_loadable_checkpoint(learnable_folder: Path, tmp_path: Path, compile_model: bool) -> None:
    config = tiny_config(learnable_folder, tmp_path / "a.safetensors", device="cuda", compile=compile_model,
                         epochs=3, batch_size=32, lr=0.02)  # fmt: skip
    metrics = main(config)
    assert metrics["device"].startswith("cuda")
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    ckpt = load_checkpoint(config.output)
    assert all(t.device.type == "cpu" for t in ckpt.state_dict.values())
    assert not any(k.startswith(("_orig_mod.", "module.")) for k in ckpt.state_dict)
