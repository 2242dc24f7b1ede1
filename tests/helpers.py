"""What tests across the tree share: the repository's root, the test input size, a tiny real checkpoint, a full disk."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path
from typing import Any

from models import save_random_checkpoint

REPO = Path(__file__).resolve().parents[1]
# Tests run the real AlexNet at a 64x64 input (the checkpoint says so): the same layers and weights,
# about 12x less compute than 224x224, so the CPU suite stays fast.
TEST_INPUT_SIZE = 64


def write_random_checkpoint(path: Path, seed: int = 0, input_size: int = TEST_INPUT_SIZE) -> Path:
    return save_random_checkpoint(path, input_size=input_size, seed=seed, note="random weights for tests")


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
