"""The one inference pass: uint8 images in, class probabilities out, on one device under one precision policy.

    uint8 (N, 3, S, S) -> device -> Preprocess (upsample + normalise, once per batch) -> the weights' layout
    -> autocast (the precision policy) -> network -> logits / temperature (the checkpoint's calibration)
    -> float32 softmax, and the abstention score (the checkpoint's rule) from the logits or the features

``Classifier.predict`` is the pass the service serves (probabilities and the abstention score, the score
computed on the model's device): ``alexnet-predict``, the benchmarks' in-process limit, the LitServe peer and
the replica memory meter run exactly it. The trainer's evaluation and ``alexnet-evaluate`` read the same
pass's logits (``logits``, ``logits_and_features``). A change to the pass is made here once.
The device vocabulary (``auto``, ``cpu``, ``cuda``, ``cuda:N``) and the precision policy live here too.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
from torch import nn

from models.abstention import Abstention
from models.checkpoint import Checkpoint
from models.transforms import Preprocess

DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"  # the names every command line and setting accepts
DEVICE_NAMES = "auto (cuda when available), cpu, cuda or cuda:N"
Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


class DeviceError(ValueError):
    """A device that is malformed or not available here; the message says which and why."""


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; a CUDA device always with its index (cuda -> cuda:0).

    An unavailable CUDA request is an error, never a silent CPU.
    """
    if not re.match(DEVICE_PATTERN, name):
        raise DeviceError(f"device {name!r} is not one of {DEVICE_NAMES}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise DeviceError(f"device {name} requested but CUDA is not available")
    if device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    if device.index >= torch.cuda.device_count():
        raise DeviceError(f"device {name} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return device


def autocast_dtype(precision: Precision | str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a precision name on a device, or None for plain float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type != "cuda":
            return None  # on a CPU float32 is exact and, at small batches, faster than bf16
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[object]:
    """Mixed precision on ``device`` in ``dtype``; a no-op for float32 (None)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def to_probabilities(views: Sequence[torch.Tensor], temperature: float = 1.0) -> torch.Tensor:
    """Logits (N, C) of one or more views of the same images -> the mean of their softmax(logits / temperature)."""
    return torch.stack([(logits / temperature).softmax(dim=1) for logits in views]).mean(dim=0)


def weights_layout(model: nn.Module) -> torch.memory_format:
    """channels_last if the first convolution's weights are stored so, else contiguous.

    Feeding the input in the layout the weights are in spares a conversion inside every convolution.
    """
    weight = next((p for p in model.parameters() if p.dim() == 4), None)
    if weight is not None and not weight.is_contiguous() and weight.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


@dataclass(frozen=True)
class Predictions:
    """What the served pass gives for N images, float32 on the CPU."""

    probabilities: torch.Tensor  # (N, C): softmax(logits / temperature)
    scores: torch.Tensor | None  # (N,): the abstention score, higher = more like the training data; None: no rule


class Classifier:
    """A network, its preprocessing and its abstention rule on one device, run under one precision policy.
    Thread-safe to call.

    ``model`` and ``preprocess`` (and the rule's tensors) must already be on ``device``; the constructor moves
    and copies nothing, so the trainer can evaluate its live weights. ``from_checkpoint`` builds one for
    serving. ``temperature`` divides the logits before every softmax (Guo et al. 2017): it changes how sure the
    probabilities are, never which class ranks first.
    """

    def __init__(
        self,
        model: nn.Module,
        preprocess: Preprocess,
        device: torch.device,
        precision: Precision | str = "auto",
        temperature: float = 1.0,
        abstention: Abstention | None = None,
    ) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.model = model
        self.preprocess = preprocess
        self.device = device
        self.dtype = autocast_dtype(precision, device)
        self.layout = weights_layout(model)
        self.temperature = float(temperature)
        self.abstention = abstention

    @classmethod
    def from_checkpoint(
        cls, checkpoint: Checkpoint, device: torch.device, precision: Precision | str = "auto"
    ) -> Classifier:
        """The checkpoint's network in eval mode on ``device``, in channels_last, with its calibration and its
        abstention rule (the rule's tensors on ``device`` too: the score is computed where the features are).

        channels_last is cuDNN's fastest convolution layout, and on the 2-core CPU dev machine about 20%
        faster than NCHW at batch 32 (oneDNN); decoded images arrive as (N, H, W, C), which is that layout.
        """
        model = checkpoint.build_model().to(device, memory_format=torch.channels_last)
        preprocess = Preprocess(checkpoint.preprocess).to(device)
        rule = checkpoint.abstention_rule()
        return cls(model, preprocess, device, precision, checkpoint.temperature, rule.to(device) if rule else None)

    @torch.inference_mode()
    def predict(self, images: torch.Tensor | np.ndarray, *, batch_size: int | None = None) -> Predictions:
        """The served pass: uint8 images (N, 3, S, S) on any device -> calibrated class probabilities and the
        abstention score, each image's score computed on the model's device. ``batch_size``: images per forward
        pass (None: all at once). The model is put in eval mode (no dropout)."""
        chunks = [self._predictions(chunk) for chunk in self._batches(images, batch_size)]
        if len(chunks) == 1:  # the service's case: one pass, nothing to join
            return chunks[0]
        if not chunks:
            return Predictions(torch.empty(0, 0), None if self.abstention is None else torch.empty(0))
        scores = None if self.abstention is None else torch.cat([c.scores for c in chunks if c.scores is not None])
        return Predictions(torch.cat([c.probabilities for c in chunks]), scores)

    def _predictions(self, images: torch.Tensor) -> Predictions:
        logits, features = self._forward(images)
        probabilities = to_probabilities([logits], self.temperature).cpu()
        if self.abstention is None:
            return Predictions(probabilities, None)
        return Predictions(probabilities, self.abstention.scores(logits, features.float(), self.temperature).cpu())

    @torch.inference_mode()
    def logits(
        self, images: torch.Tensor | np.ndarray, *, mirrored: bool = False, batch_size: int | None = None
    ) -> torch.Tensor:
        """The raw logits (N, C) of the images (or of their mirror images), float32 on the CPU.

        For fitting a temperature, and for metrics at several temperatures from one pass (``to_probabilities``).
        """
        out = [self._forward(chunk, mirrored)[0].cpu() for chunk in self._batches(images, batch_size)]
        return torch.cat(out) if out else torch.empty(0, 0)

    @torch.inference_mode()
    def logits_and_features(
        self, images: torch.Tensor | np.ndarray, *, batch_size: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw logits (N, C) and penultimate features (N, D) of one view, float32 on the CPU (for OOD scores)."""
        chunks = [self._forward(chunk) for chunk in self._batches(images, batch_size)]
        if not chunks:
            return torch.empty(0, 0), torch.empty(0, 0)
        return torch.cat([z.cpu() for z, _ in chunks]), torch.cat([f.float().cpu() for _, f in chunks])

    def _forward(self, images: torch.Tensor, mirrored: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The pass itself: float32 logits (B, C) and penultimate features (B, D) in the pass's precision (a
        caller that uses them makes them float32), left on the device."""
        x = self.preprocess(images.to(self.device, non_blocking=True))  # (B, 3, H, W) float
        x = x.contiguous(memory_format=self.layout)  # a no-op when it is already so
        with autocast(self.device, self.dtype):
            features = self.model.embed(x.flip(3) if mirrored else x)  # (B, D)
            logits = self.model.head(features)  # (B, C)
        return logits.float(), features

    def _batches(self, images: torch.Tensor | np.ndarray, size: int | None) -> Iterator[torch.Tensor]:
        self.model.eval()
        images = torch.as_tensor(images)
        count = len(images)
        if not count:
            return
        step = size or count
        if step >= count:  # one pass of them all: no slicing
            yield images
            return
        for start in range(0, count, step):
            yield images[start : start + step]
