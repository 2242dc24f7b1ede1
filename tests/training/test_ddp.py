"""A real two-process DDP run on the gloo backend, launched by torchrun: rank 0 writes a loadable checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from models import load_checkpoint
from tests.helpers import TEST_INPUT_SIZE
from training.report import METRICS_FILE


@pytest.mark.slow
def test_two_process_gloo_run_writes_a_loadable_checkpoint(learnable_folder: Path, tmp_path: Path) -> None:
    output = tmp_path / "ddp" / "alexnet.safetensors"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "training", "--data-dir", str(learnable_folder), "--device", "cpu", "--no-download", "--no-cache",
        "--input-size", str(TEST_INPUT_SIZE), "--epochs", "1", "--batch-size", "32", "--train-subset", "64",
        "--val-size", "16", "--decode-workers", "1", "--output", str(output), "--no-progress",
        "--no-ood",  # rank 0 alone runs the OOD comparison, as a single process does (tested there): 34 s saved
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DDP over 2 ranks (gloo backend)" in result.stderr
    assert result.stderr.count("epoch 1/1") == 1  # rank 0 logs; rank 1 is quiet
    ckpt = load_checkpoint(output)
    assert ckpt.metrics["world_size"] == 2
    assert ckpt.metrics["batch_size"] == 32  # global: 16 images on each rank
    assert ckpt.metrics["test_images"] == 32  # every test image evaluated once across the two ranks
    assert ckpt.metrics["history"][0]["images_per_second"] > 0
    assert json.loads((output.parent / METRICS_FILE).read_text())["world_size"] == 2
