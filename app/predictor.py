"""A checkpoint loaded for serving: the one inference pass (``models.Classifier``) on its device, warm-up,
and what every answer says about the model.

uint8 images (N, S, S, 3), as uploads are decoded -> ``Classifier.probabilities`` -> (N, classes) float32.
The batcher calls ``probabilities`` on the images of a pass; ``alexnet-predict`` calls it on its files.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from app.schemas import ModelInfo
from models import Checkpoint, Classifier, load_checkpoint, resolve_device

logger = logging.getLogger(__name__)

MODEL_NAME = "alexnet"


class Predictor:
    """The network, its preprocessing and its class names, on one device. Several threads may call it at once."""

    def __init__(self, checkpoint: Checkpoint, device: torch.device, *, source: str = "", precision: str = "auto"):
        self.classifier = Classifier.from_checkpoint(checkpoint, device, precision)
        self.device = device
        self.classes = checkpoint.classes
        self.source_size = checkpoint.preprocess.source_size
        self.info = ModelInfo(
            name=MODEL_NAME,
            checkpoint=source,
            weights_sha256=checkpoint.weights_sha256,
            classes=list(checkpoint.classes),
            input_size=checkpoint.preprocess.input_size,
            temperature=checkpoint.temperature,
            calibrated="temperature" in checkpoint.calibration,
        )
        if not self.info.calibrated:
            logger.warning("%s is not calibrated: its probabilities are the raw softmax (temperature 1); "
                           "alexnet-evaluate --calibrate fits a temperature", source or "the checkpoint")  # fmt: skip

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", precision: str = "auto") -> Predictor:
        """Read and check a checkpoint (CheckpointError names the file) and place it on the device.

        A malformed or absent device raises ``models.DeviceError``.
        """
        checkpoint = load_checkpoint(path)
        return cls(checkpoint, resolve_device(device), source=Path(path).name, precision=precision)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """uint8 images (N, S, S, 3) -> class probabilities (N, num_classes), float32."""
        batch = torch.from_numpy(images).permute(0, 3, 1, 2)  # (N, 3, S, S): a view, no copy
        return self.classifier.probabilities(batch).numpy()

    def warm_up(self, batch_sizes: list[int]) -> float:
        """Run each batch size once (allocator, kernel choices, lazy init) so real requests don't pay for it."""
        start = time.perf_counter()
        for size in batch_sizes:
            self.probabilities(np.zeros((size, self.source_size, self.source_size, 3), dtype=np.uint8))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        logger.debug("warmed up on %s at batch sizes %s in %.2f s", self.device, batch_sizes, seconds)
        return seconds


def warmup_sizes(largest: int) -> list[int]:
    """1, 2, 4, ... up to ``largest``, and ``largest`` itself: the sizes the batcher mostly runs."""
    sizes = []
    size = 1
    while size < largest:
        sizes.append(size)
        size *= 2
    return [*sizes, largest]
