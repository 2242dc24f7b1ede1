"""Images that are none of the ten classes, made without any download, to measure "none of these".

Generated (always): uniform and Gaussian noise, flat colours, two-colour gradients, rendered text pages,
checkerboards. Packaged photos (when the packages are installed, `pip install -e ".[dev]"` has them):
scikit-image's bundled sample images of other subjects (its cat, horse and "chelsea" the cat are left
out: they are CIFAR classes), each with random crops; its 200 face crops (people are not a CIFAR class);
scikit-learn's 8x8 handwritten digits. Every image is encoded as PNG and reduced by ``models.load_image``,
exactly as an upload is, so each set is uint8 (N, 3, 32, 32) as the network sees it.
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from models import load_image

log = logging.getLogger(__name__)

SIZE = 96  # pixels: generated images are drawn at this size, then reduced like uploads
PER_SET = 200  # images per generated set
CROPS = 9  # random crops per packaged sample photo, besides the whole photo
TEXT = "the of and to in is for on that by this with you it not or be are from at as your all have new more"
# scikit-image's bundled samples that are photos or scans of things that are not CIFAR classes.
SAMPLE_PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "microaneurysms",
    "moon",
    "page",
    "retina",
    "rocket",
    "text",
    "colorwheel",
    "logo",
    "shepp_logan_phantom",
)


def _reduce(pixels: np.ndarray, size: int) -> np.ndarray:
    """Any uint8 image (H, W) or (H, W, C) -> (3, size, size), through PNG and load_image, as an upload goes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return load_image(buffer.getvalue(), size=size).transpose(2, 0, 1)


def _uniform(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def _gaussian(rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.normal(128, 50, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)


def _flat(rng: np.random.Generator) -> np.ndarray:
    return np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (SIZE, SIZE, 3)).copy()


def _gradient(rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    t = np.clip((np.cos(angle) * (x - 0.5) + np.sin(angle) * (y - 0.5)) + 0.5, 0, 1)[..., None]  # (S, S, 1)
    start, end = rng.integers(0, 256, (2, 3))
    return (start + t * (end - start)).astype(np.uint8)


def _text_page(rng: np.random.Generator) -> np.ndarray:
    page = Image.new("RGB", (SIZE, SIZE), tuple(int(v) for v in rng.integers(220, 256, 3)))
    draw = ImageDraw.Draw(page)
    ink = tuple(int(v) for v in rng.integers(0, 60, 3))
    for line in range(int(rng.integers(5, 9))):
        words = " ".join(rng.choice(TEXT.split(" "), size=int(rng.integers(2, 5))))
        draw.text((int(rng.integers(1, 10)), 2 + 11 * line), words, fill=ink)
    return np.asarray(page)


def _checkerboard(rng: np.random.Generator) -> np.ndarray:
    square = int(rng.integers(4, 25))
    y, x = np.mgrid[0:SIZE, 0:SIZE] // square
    colours = rng.integers(0, 256, (2, 3), dtype=np.uint8)
    return colours[(y + x) % 2]


GENERATED: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "uniform noise": _uniform,
    "gaussian noise": _gaussian,
    "flat colours": _flat,
    "gradients": _gradient,
    "text pages": _text_page,
    "checkerboards": _checkerboard,
}


def generated_sets(size: int = 32, count: int = PER_SET, seed: int = 0) -> dict[str, np.ndarray]:
    """Each generated kind: uint8 (count, 3, size, size), the same images for the same seed."""
    sets = {}
    for index, (name, draw) in enumerate(GENERATED.items()):
        rng = np.random.default_rng([seed, index])
        sets[name] = np.stack([_reduce(draw(rng), size) for _ in range(count)])
    return sets


def _crops(photo: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """The whole photo and random crops of 40-100% of its shorter side."""
    height, width = photo.shape[:2]
    out = [photo]
    for _ in range(CROPS):
        side = int(min(height, width) * rng.uniform(0.4, 1.0))
        top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        out.append(photo[top : top + side, left : left + side])
    return out


def _as_uint8(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    scaled = (pixels - pixels.min()) / max(float(pixels.max() - pixels.min()), 1e-12)
    return (255 * scaled).astype(np.uint8)


def packaged_sets(size: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    """Photos and scans that packages ship; an empty dict (and a log line) when they are not installed."""
    sets: dict[str, np.ndarray] = {}
    try:
        from skimage import data as samples
    except ImportError:
        log.warning("scikit-image is not installed: the packaged-photo OOD sets are left out")
    else:
        rng = np.random.default_rng(seed)
        photos = [_as_uint8(np.asarray(getattr(samples, name)())) for name in SAMPLE_PHOTOS]
        sets["sample photos"] = np.stack([_reduce(crop, size) for photo in photos for crop in _crops(photo, rng)])
        sets["faces"] = np.stack([_reduce(_as_uint8(face), size) for face in samples.lfw_subset()])
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        log.warning("scikit-learn is not installed: the digits OOD set is left out")
    else:
        digits = load_digits().images[:PER_SET]  # (N, 8, 8) in 0..16
        sets["digits"] = np.stack([_reduce((255 - digit * 255 / 16).astype(np.uint8), size) for digit in digits])
    return sets


@functools.lru_cache(maxsize=2)
def ood_sets(size: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    """Every set this machine can make, generated first. Made once per process (about 13 s on 2 cores) and
    shared by every caller: read them, never write into them."""
    return {**generated_sets(size, seed=seed), **packaged_sets(size, seed)}
