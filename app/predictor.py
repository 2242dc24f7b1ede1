"""A loaded checkpoint on its device, and the one batch pipeline every prediction goes through.

uint8 images (N, S, S, 3) -> one tensor on the device -> ``models.Preprocess`` (upsample + normalize, once
for the batch) -> one forward -> softmax -> classes sorted by probability -> one result per image.
The service (``/predict``, through the batcher) and ``alexnet-predict`` both call ``classify``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models import Checkpoint, Preprocess, load_checkpoint

logger = logging.getLogger(__name__)

MODEL_NAME = "alexnet"
PROBABILITY_DECIMALS = 6  # float32 sums vary ~1e-7 with the batch an image ran in; nobody needs more


@dataclass(frozen=True)
class Classification:
    """One image's answer: the best class, and the top k classes with their probabilities."""

    label: str
    probability: float
    top_k: list[dict[str, Any]]  # [{"label", "index", "probability"}], most probable first

    def trimmed(self, k: int) -> Classification:
        return Classification(self.label, self.probability, self.top_k[:k])


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; an unavailable CUDA request is an error, not a silent CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name} requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return device


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain float32."""
    if precision == "auto":
        if device.type != "cuda":
            return None  # on CPU float32 is exact and, at batch 1, faster than bf16
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class Predictor:
    """The network, its preprocessing and its class names, on one device. Several threads may call it at once."""

    def __init__(self, checkpoint: Checkpoint, device: torch.device, *, source: str = "", precision: str = "auto"):
        self.device = device
        self.classes = checkpoint.classes
        self.spec = checkpoint.preprocess
        self.autocast_dtype = resolve_precision(precision, device)
        self.preprocess = Preprocess(self.spec).to(device)
        # channels_last: cuDNN's fastest conv layout, and on the 2-core CPU dev machine about 20% faster at
        # batch 32 than NCHW (oneDNN). The uint8 batch arrives as (N, H, W, C), which is that layout already.
        self.model = checkpoint.build_model().to(device, memory_format=torch.channels_last)
        self.forward_passes = 0  # every pass, warm-up included; tests read it to prove batching
        self._count_lock = threading.Lock()  # passes may run in several threads at once
        self.info: dict[str, Any] = {
            "name": MODEL_NAME,
            "checkpoint": source,
            "weights_sha256": checkpoint.weights_sha256,
            "classes": list(self.classes),
            "input_size": self.spec.input_size,
        }

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", precision: str = "auto") -> Predictor:
        """Read and check a checkpoint (CheckpointError names the file) and place it on the device."""
        checkpoint = load_checkpoint(path)
        return cls(checkpoint, resolve_device(device), source=Path(path).name, precision=precision)

    @property
    def source_size(self) -> int:
        return self.spec.source_size

    @torch.inference_mode()
    def predict_arrays(self, images: np.ndarray) -> torch.Tensor:
        """uint8 images (N, S, S, 3) -> class probabilities (N, num_classes), float32 on the CPU."""
        batch = torch.from_numpy(images).to(self.device, non_blocking=True)  # (N, S, S, 3) uint8
        batch = batch.permute(0, 3, 1, 2)  # (N, 3, S, S): a view, no copy
        autocast = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            logits = self.model(self.preprocess(batch))  # (N, num_classes)
        with self._count_lock:
            self.forward_passes += 1
        return torch.softmax(logits.float(), dim=1).cpu()  # (N, num_classes)

    def classify(self, images: np.ndarray, top_k: int) -> list[Classification]:
        """uint8 images (N, S, S, 3) -> one Classification per image, in order, with the k best classes."""
        probabilities = self.predict_arrays(images)  # (N, C)
        k = min(top_k, len(self.classes))
        top_p, top_i = probabilities.topk(k, dim=1)  # (N, k) each, most probable first
        rounded = np.round(top_p.numpy().astype(np.float64), PROBABILITY_DECIMALS).tolist()
        results = []
        for row_p, row_i in zip(rounded, top_i.tolist(), strict=True):
            top = [{"label": self.classes[i], "index": i, "probability": p} for p, i in zip(row_p, row_i, strict=True)]
            results.append(Classification(top[0]["label"], top[0]["probability"], top))
        return results

    def warm_up(self, batch_sizes: list[int]) -> float:
        """Run each batch size once (allocator, kernel choices, lazy init) so real requests don't pay for it."""
        start = time.perf_counter()
        for size in batch_sizes:
            self.predict_arrays(np.zeros((size, self.source_size, self.source_size, 3), dtype=np.uint8))
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
