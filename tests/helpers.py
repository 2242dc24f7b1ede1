"""What tests across the tree share: the repository's root, the test input size, tiny real checkpoints, a full disk,
and the comparison of two devices' predictions."""

from __future__ import annotations

import errno
import io
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from models import AlexNet, save_checkpoint, save_random_checkpoint
from models.transforms import CIFAR10_CLASSES, PreprocessSpec
from training.init import init_weights

REPO = Path(__file__).resolve().parents[1]
# Tests run the real AlexNet at a 64x64 input (the checkpoint says so): the same layers and weights,
# about 12x less compute than 224x224, so the CPU suite stays fast.
TEST_INPUT_SIZE = 64


@contextmanager
def module_folder(factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """A module's (or package's) folder, removed when its fixture ends: pytest keeps every ``mktemp`` folder to the
    end of the run, and these hold full-size checkpoints (228 MB each) while CI builds the container image beside the
    tests on the same disk, so a run that kept them all needed 3.3 GB of /tmp instead of about 1.2 GB."""
    path = factory.mktemp(name)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_random_checkpoint(path: Path, seed: int = 0, input_size: int = TEST_INPUT_SIZE) -> Path:
    return save_random_checkpoint(path, input_size=input_size, seed=seed, note="random weights for tests")


def write_he_checkpoint(path: Path, seed: int = 0, input_size: int = TEST_INPUT_SIZE) -> Path:
    """A checkpoint with the trainer's He initialisation: unlike PyTorch's default init, whose probabilities are all
    0.100 +- 0.002, its logits differ between classes, so a comparison of two passes can see a wrong input."""
    model_args = {"num_classes": len(CIFAR10_CLASSES), "dropout": 0.5}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AlexNet(**model_args)
        init_weights(model)
    spec = PreprocessSpec(input_size=input_size)
    note = {"note": "He-initialised for tests"}
    save_checkpoint(path, model, model_args=model_args, classes=CIFAR10_CLASSES, preprocess=spec, config=note)
    return path


# How far two passes over the same images may differ (``prediction_error``): float32 on two devices (TF32
# convolutions on CUDA), and bf16 autocast against float32. Measured on the CPU with a He-initialised checkpoint:
# bf16 0.8-1.1%; a mistake in the input is 30-60% (channels in BGR order, height and width swapped, a mirror),
# tests/models/test_inference.py.
FP32_TOLERANCE = 0.01
BF16_TOLERANCE = 0.05


def prediction_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """The largest error of the log-probabilities (N, C), each image's centred on their mean (the logits over the
    temperature, up to a constant), relative to that image's largest expected value."""
    centred = [p.double().clamp_min(1e-12).log() for p in (actual, expected)]
    a, b = (c - c.mean(dim=1, keepdim=True) for c in centred)
    return float(((a - b).abs().amax(dim=1) / b.abs().amax(dim=1)).max())


class FullDisk(io.FileIO):
    """A disk that fills up: the first write stores half of its bytes, every later one fails with ENOSPC.

    Put in place of ``models.files.FileIO`` (the file under every atomic write); making a real full disk needs root.
    """

    filled = False

    def write(self, data: Any) -> int:
        if self.filled:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.filled = True
        view = memoryview(data).cast("B")
        return super().write(view[: len(view) // 2])  # a short write, as write(2) does when the space runs out
