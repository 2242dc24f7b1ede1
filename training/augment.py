"""Augmentation of whole uint8 batches on their device: random crop with padding, flip, rotation, colour jitter.

It runs on the source-size images (32x32 for CIFAR-10), before ``Preprocess`` upsamples them: a 4-pixel
shift of a 32x32 image is the standard CIFAR augmentation, and it touches 49x fewer pixels than the same
shift after upsampling to 224. Everything is vectorised over the batch; randomness comes from torch's
generator on the batch's device, so it is seeded by ``torch.manual_seed`` and saved with the training state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from training.config import TrainConfig


@dataclass(frozen=True)
class AugmentSpec:
    """What to apply; the values come from ``TrainConfig``, which holds their defaults and units."""

    crop_padding: int  # pixels, 0 = off
    flip: bool
    rotate_degrees: float  # max, either way; 0 = off
    color_jitter: float  # max relative change of brightness, contrast, saturation; 0 = off

    @classmethod
    def from_config(cls, config: TrainConfig) -> AugmentSpec:
        return cls(config.crop_padding, config.flip, config.rotate_degrees, config.color_jitter)


def random_crop(images: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad each side by ``padding`` and cut a window of the original size at a random offset per image."""
    n, _, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))  # (N, 3, h + 2p, w + 2p)
    dy = torch.randint(0, 2 * padding + 1, (n, 1), device=images.device)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), device=images.device)
    rows = (dy + torch.arange(h, device=images.device))[:, :, None]  # (N, h, 1)
    cols = (dx + torch.arange(w, device=images.device))[:, None, :]  # (N, 1, w)
    batch = torch.arange(n, device=images.device)[:, None, None]  # (N, 1, 1)
    # Advanced indices on dims 0, 2, 3 around a slice: the result puts them first, channels last.
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2).contiguous()  # (N, 3, h, w)


def random_flip(images: torch.Tensor) -> torch.Tensor:
    """Mirror left-right each image with probability 1/2."""
    flip = torch.rand(images.shape[0], device=images.device) < 0.5  # (N,)
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def random_rotate(x: torch.Tensor, max_degrees: float) -> torch.Tensor:
    """Rotate each float image by a uniform angle in [-max, max] about its centre; corners fill with 0."""
    n = x.shape[0]
    angle = (torch.rand(n, device=x.device) * 2 - 1) * math.radians(max_degrees)  # (N,)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # (N, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (N, h, w, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_color(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Scale brightness, contrast and saturation of each float image (0..255) by factors in [1-s, 1+s]."""
    n = x.shape[0]
    factors = 1 + (torch.rand(3, n, 1, 1, 1, device=x.device) * 2 - 1) * strength  # (3, N, 1, 1, 1)
    x = x * factors[0]  # brightness
    gray = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    mean = gray.mean(dim=(2, 3), keepdim=True)  # (N, 1, 1, 1)
    x = (x - mean) * factors[1] + mean  # contrast about the image's mean grey
    return (x - gray) * factors[2] + gray  # saturation about each pixel's grey


def augment(images: torch.Tensor, spec: AugmentSpec) -> torch.Tensor:
    """uint8 (N, 3, h, w) -> augmented uint8 (N, 3, h, w) on the same device."""
    if spec.crop_padding:
        images = random_crop(images, spec.crop_padding)
    if spec.flip:
        images = random_flip(images)
    if spec.rotate_degrees or spec.color_jitter:
        x = images.float()  # (N, 3, h, w) in 0..255
        if spec.rotate_degrees:
            x = random_rotate(x, spec.rotate_degrees)
        if spec.color_jitter:
            x = random_color(x, spec.color_jitter)
        images = x.round_().clamp_(0, 255).to(torch.uint8)
    return images
