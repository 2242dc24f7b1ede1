"""The input contract shared by training and serving: the facts about CIFAR-10 and one batched Preprocess.

Every value here travels in the checkpoint (``PreprocessSpec``), so serving rebuilds exactly what the
trainer used without re-declaring any number.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# Per-channel statistics of the 50,000 CIFAR-10 training images, pixel values scaled to [0, 1].
CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)
SOURCE_SIZE = 32  # pixels: CIFAR-10 images are 32x32; every image is reduced to this first
INPUT_SIZE = 224  # pixels: AlexNet's input; the source image is upsampled to this


@dataclass(frozen=True)
class PreprocessSpec:
    """What turns a batch of source-size uint8 images into network input."""

    mean: tuple[float, float, float] = CIFAR10_MEAN
    std: tuple[float, float, float] = CIFAR10_STD
    source_size: int = SOURCE_SIZE
    input_size: int = INPUT_SIZE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PreprocessSpec:
        return cls(
            mean=_triple(values["mean"], "mean"),
            std=_triple(values["std"], "std"),
            source_size=int(values["source_size"]),
            input_size=int(values["input_size"]),
        )


# The guide's recipe feeds raw [0, 1] pixels: no normalization is mean 0, std 1.
UNNORMALIZED = PreprocessSpec(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def _triple(values: Any, name: str) -> tuple[float, float, float]:
    floats = tuple(float(v) for v in values)
    if len(floats) != 3:
        raise ValueError(f"{name} needs 3 values (one per RGB channel), got {len(floats)}")
    return floats  # type: ignore[return-value]


class Preprocess(nn.Module):
    """uint8 images (N, 3, h, w) -> normalized float (N, 3, input_size, input_size), on the batch's device.

    The whole batch is converted, upsampled and normalized at once; no per-image work.
    """

    def __init__(self, spec: PreprocessSpec = PreprocessSpec()) -> None:
        super().__init__()
        self.spec = spec
        # Buffers follow the module to the device; not persistent: the values travel in the spec.
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        x = images.float().div_(255.0)  # (N, 3, h, w) in [0, 1]
        size = self.spec.input_size
        if x.shape[-2:] != (size, size):
            # Bilinear upsampling; align_corners=False matches torchvision's Resize on tensors.
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std  # (N, 3, input_size, input_size)
