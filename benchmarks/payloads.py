"""The uploads a benchmark sends: real CIFAR images as PNG, photo-size JPEGs, as multipart bodies.

Both kinds are made deterministically, so every server in a run, and every run, sees the same bytes:
- ``cifar``: 32x32 CIFAR-10 test images (the JPEG copy, re-encoded losslessly as PNG); generated
  32x32 pictures when the data folder is absent, so a smoke test needs no data.
- ``photo``: 3000x2000 JPEGs of a few hundred KB, as a phone camera makes them: a CIFAR image upscaled,
  with a fine grain added so the JPEG does not compress to almost nothing.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

IMAGE_KINDS = ("cifar", "photo")
DATA_DIR_ENV = "ALEXNET_DATA_DIR"  # the JPEG copy of CIFAR-10, as the trainer reads it: its test/ folder is used
PHOTO_SIZE = (3000, 2000)  # pixels (width, height): a 6-megapixel photo
PHOTO_GRAIN = 3.0  # std of the added grain, in 8-bit levels: puts a photo at about 450 KB as JPEG
PHOTO_GRAIN_BLOCK = 4  # pixels: grain at 1/4 resolution, like sensor noise after demosaicing
PHOTO_QUALITY = 85  # JPEG quality a camera app typically uses
BOUNDARY = "alexnetbenchboundary7d3f"  # fixed, so a body is byte-identical between runs


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str
    data: bytes


def default_cifar_dir() -> Path:
    """$ALEXNET_DATA_DIR/test, else data/test: where the JPEG copy's test images are, if anywhere."""
    return Path(os.environ.get(DATA_DIR_ENV) or "data") / "test"


def cifar_arrays(count: int, data_dir: Path | None = None, seed: int = 0) -> list[np.ndarray]:
    """``count`` 32x32x3 uint8 images: CIFAR test images taken round-robin over the classes, or generated."""
    if data_dir is not None and data_dir.is_dir():
        classes = sorted(p for p in data_dir.iterdir() if p.is_dir())
        files = [sorted(c.glob("*.jpg")) for c in classes]
        if classes and all(files):
            picked = [files[i % len(files)][i // len(files)] for i in range(count)]
            return [np.asarray(Image.open(p).convert("RGB"), dtype=np.uint8) for p in picked]
    logger.warning("no CIFAR test images in %s: generating 32x32 pictures instead", data_dir)
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, 32)[None, :, None]  # a gradient, so the PNG is not pure noise
    return [
        np.clip(ramp * rng.random(3) + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8) for _ in range(count)
    ]


def encode_png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def make_photo_jpeg(source: np.ndarray, seed: int, size: tuple[int, int] = PHOTO_SIZE) -> bytes:
    """A photo-size JPEG from a small picture: upscaled (bicubic) with a fine grain added."""
    width, height = size
    big = np.asarray(Image.fromarray(source).resize(size, Image.Resampling.BICUBIC), dtype=np.int16)  # (H, W, 3)
    block = PHOTO_GRAIN_BLOCK
    grain = np.random.default_rng(seed).normal(0, PHOTO_GRAIN, (height // block, width // block, 3))
    grain = np.repeat(np.repeat(grain, block, axis=0), block, axis=1)[:height, :width]  # (H, W, 3)
    pixels = np.clip(big + grain, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=PHOTO_QUALITY)
    return buffer.getvalue()


def make_uploads(kind: str, count: int, data_dir: Path | None = None) -> list[Upload]:
    """``count`` distinct uploads of one kind (``cifar`` PNGs or ``photo`` JPEGs)."""
    arrays = cifar_arrays(count, data_dir)
    if kind == "cifar":
        return [Upload(f"cifar-{i:03d}.png", "image/png", encode_png(a)) for i, a in enumerate(arrays)]
    if kind == "photo":
        return [Upload(f"photo-{i:03d}.jpg", "image/jpeg", make_photo_jpeg(a, seed=i)) for i, a in enumerate(arrays)]
    raise ValueError(f"unknown image kind {kind!r} (choose from {', '.join(IMAGE_KINDS)})")


def multipart_body(uploads: list[Upload], field: str = "file") -> tuple[bytes, str]:
    """A multipart/form-data body with every upload in the same field, and its Content-Type header."""
    parts = []
    for upload in uploads:
        head = (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{upload.filename}"\r\n'
            f"Content-Type: {upload.content_type}\r\n\r\n"
        )
        parts.append(head.encode() + upload.data + b"\r\n")
    parts.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={BOUNDARY}"
