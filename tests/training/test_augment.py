"""Batch augmentation: each output is a real crop / mirror of its input, vectorised, seeded, uint8 in and out."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.augment import AugmentSpec, augment, random_crop, random_flip


def _batch(n: int = 64, size: int = 32) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randint(1, 256, (n, 3, size, size), dtype=torch.uint8)  # no zeros: padding is recognisable


def test_crop_is_a_window_of_the_padded_image_at_a_random_offset() -> None:
    images = _batch()
    out = random_crop(images, 4)
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = F.pad(images, (4, 4, 4, 4))
    offsets = set()
    for i in range(len(images)):
        windows = [(dy, dx) for dy in range(9) for dx in range(9)]
        matches = [(dy, dx) for dy, dx in windows if torch.equal(out[i], padded[i, :, dy : dy + 32, dx : dx + 32])]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 20  # per-image offsets, not one for the whole batch


def test_flip_mirrors_about_half_the_images() -> None:
    images = _batch(200)
    out = random_flip(images)
    same = [torch.equal(o, i) for o, i in zip(out, images, strict=True)]
    mirrored = [torch.equal(o, i.flip(2)) for o, i in zip(out, images, strict=True)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert 60 < sum(mirrored) < 140


def test_off_is_identity_and_on_changes_images() -> None:
    images = _batch()
    assert torch.equal(
        augment(images, AugmentSpec(crop_padding=0, flip=False, rotate_degrees=0, color_jitter=0)), images
    )
    full = AugmentSpec(crop_padding=4, flip=True, rotate_degrees=10, color_jitter=0.3)
    out = augment(images, full)
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert (out != images).float().mean() > 0.5


def test_rotation_and_jitter_keep_content_close() -> None:
    # A smooth image: a small rotation or a mild colour change moves pixels only a little.
    ramp = torch.linspace(60, 200, 32)
    images = (ramp[None, :] + ramp[:, None] * 0).expand(8, 3, 32, 32).round().to(torch.uint8)
    rotated = augment(images, AugmentSpec(crop_padding=0, flip=False, rotate_degrees=5, color_jitter=0))
    centre = (slice(None), slice(None), slice(8, 24), slice(8, 24))
    assert (rotated[centre].float() - images[centre].float()).abs().mean() < 10
    jittered = augment(images, AugmentSpec(crop_padding=0, flip=False, rotate_degrees=0, color_jitter=0.1)).float()
    assert (jittered - images.float()).abs().mean() < 30


def test_seeded_augmentation_repeats() -> None:
    images, spec = _batch(), AugmentSpec(crop_padding=4, flip=True, rotate_degrees=8, color_jitter=0.2)
    torch.manual_seed(7)
    first = augment(images, spec)
    torch.manual_seed(7)
    assert torch.equal(first, augment(images, spec))
