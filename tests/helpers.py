"""What tests across the tree share: the repository's root, the test input size, a tiny real checkpoint."""

from __future__ import annotations

from pathlib import Path

from models import save_random_checkpoint

REPO = Path(__file__).resolve().parents[1]
# Tests run the real AlexNet at a 64x64 input (the checkpoint says so): the same layers and weights,
# about 12x less compute than 224x224, so the CPU suite stays fast.
TEST_INPUT_SIZE = 64


def write_random_checkpoint(path: Path, seed: int = 0, input_size: int = TEST_INPUT_SIZE) -> Path:
    return save_random_checkpoint(path, input_size=input_size, seed=seed, note="random weights for tests")
