"""Image folders ``train/<class>/`` and ``test/<class>/``: any class names, any image sizes and formats.

Every image goes through ``models.load_image`` (the service's own decoding) at the source size. Decoding is
spread over worker processes (PIL holds the GIL for most of a small image's work, so threads do not help);
60,000 CIFAR JPEGs take about 5 s on 2 cores. The decoded arrays can be cached as ``.npz`` under
``<data_dir>/.alexnet-cache/``: plain arrays read with ``allow_pickle=False``, and keyed by every file's
path, size and modification time plus the source size, so any change to the folder makes a new cache.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from models import ImageError, load_image
from models.files import WriteError, atomic_write
from training.splits import DataError, Split

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
CACHE_DIR = ".alexnet-cache"
CACHE_VERSION = 1  # bump when decoding changes, so old caches are never read
CHUNK = 1000  # images per task sent to a worker process
_SHOWN = 5  # problem files named in an error message


def is_image_folder(root: Path) -> bool:
    return (root / "train").is_dir() or (root / "test").is_dir()


def _visible(folder: Path) -> list[Path]:
    # Hidden entries (.DS_Store, ._*, our cache) are not data.
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _strays(paths: list[Path], root: Path) -> str:
    names = ", ".join(str(p.relative_to(root)) for p in paths[:_SHOWN])
    return names + (f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else "")


def list_split(root: Path, split: str) -> tuple[list[str], list[Path], list[int]]:
    """Class names (sorted folder names), image paths and labels of one split; strays are errors."""
    folder = root / split
    if not folder.is_dir():
        raise DataError(f"{root}: has no {split}/ folder (expected {root}/train/<class>/ and {root}/test/<class>/)")
    entries = _visible(folder)
    stray = [p for p in entries if not p.is_dir()]
    if stray:
        raise DataError(f"{folder}: holds files outside class folders: {_strays(stray, root)}")
    if not entries:
        raise DataError(f"{folder}: is empty (expected one folder of images per class)")
    classes, paths, labels = [p.name for p in entries], [], []
    for label, class_dir in enumerate(entries):
        files = _visible(class_dir)
        stray = [p for p in files if p.is_dir() or p.suffix.lower() not in IMAGE_SUFFIXES]
        if stray:
            raise DataError(
                f"{class_dir}: holds entries that are not images ({_strays(stray, root)}); "
                f"accepted suffixes: {' '.join(sorted(IMAGE_SUFFIXES))}"
            )
        if not files:
            raise DataError(f"{class_dir}: has no images")
        paths += files
        labels += [label] * len(files)
    return classes, paths, labels


def _decode_chunk(paths: list[Path], size: int) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Runs in a worker: (n, 3, size, size) uint8, plus (path, problem) for each image that failed."""
    images = np.zeros((len(paths), 3, size, size), dtype=np.uint8)
    problems = []
    for i, path in enumerate(paths):
        try:
            images[i] = load_image(path, size=size).transpose(2, 0, 1)  # (size, size, 3) -> (3, size, size)
        except (ImageError, OSError) as exc:
            problems.append((str(path), str(exc)))
    return images, problems


def decode_images(paths: list[Path], size: int, workers: int) -> np.ndarray:
    """All images as uint8 (N, 3, size, size), decoded by ``workers`` processes (0 = one per core)."""
    workers = workers or os.cpu_count() or 1
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    if workers == 1 or len(chunks) == 1:
        results = [_decode_chunk(chunk, size) for chunk in chunks]
    else:
        # fork is cheap and the workers only run PIL and numpy; spawn where fork does not exist.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=multiprocessing.get_context(method)) as pool:
            results = list(pool.map(_decode_chunk, chunks, [size] * len(chunks)))
    problems = [p for _, chunk_problems in results for p in chunk_problems]
    if problems:
        listed = "; ".join(f"{path}: {why}" for path, why in problems[:_SHOWN])
        more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
        raise DataError(f"{len(problems)} image(s) cannot be read: {listed}{more}")
    return np.concatenate([images for images, _ in results])


def _cache_key(root: Path, paths: list[Path], size: int) -> str:
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{size}".encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"|{path.relative_to(root)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def _read_cache(path: Path, labels: np.ndarray, size: int) -> np.ndarray | None:
    try:
        with np.load(path, allow_pickle=False) as cached:
            images, cached_labels = cached["images"], cached["labels"]
    except (OSError, ValueError, KeyError) as exc:
        log.warning("ignoring unreadable cache %s (%s)", path, exc)
        return None
    if (
        images.dtype != np.uint8
        or images.shape != (len(labels), 3, size, size)
        or not np.array_equal(cached_labels, labels)
    ):
        log.warning("ignoring cache %s: it does not match the folder", path)
        return None
    return images


def _write_cache(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    try:
        atomic_write(path, lambda f: np.savez(f, images=images, labels=labels))
    except WriteError as exc:  # a full disk costs the cache, not the run
        log.warning("%s; continuing without the decoded-image cache", exc)
        return
    try:
        for old in path.parent.glob(path.name.rsplit("-", 1)[0] + "-*.npz"):
            if old != path:
                old.unlink(missing_ok=True)  # a cache of an earlier state of the folder
    except OSError as exc:
        log.warning("could not remove an earlier decoded-image cache beside %s (%s)", path, exc)


def read_split(
    root: Path, split: str, listing: tuple[list[Path], list[int]], size: int, workers: int, cache: bool
) -> Split:
    paths, labels = listing[0], np.asarray(listing[1], dtype=np.int64)
    cache_path = root / CACHE_DIR / f"{split}-{size}px-{_cache_key(root, paths, size)}.npz"
    images = _read_cache(cache_path, labels, size) if cache and cache_path.is_file() else None
    if images is not None:
        log.info("read %d decoded %s images from the cache %s", len(labels), split, cache_path)
        return Split(images, labels)
    images = decode_images(paths, size, workers)
    if cache:
        _write_cache(cache_path, images, labels)
    return Split(images, labels)


def read_image_folder(
    root: Path, size: int, workers: int = 0, cache: bool = True, with_train: bool = True
) -> tuple[Split, Split, tuple[str, ...]]:
    """Train and test splits with the same classes; everything is listed and checked before decoding.

    ``with_train=False`` (evaluation) decodes only the test images; train comes back empty.
    """
    train_classes, *train_listing = list_split(root, "train")
    test_classes, *test_listing = list_split(root, "test")
    if train_classes != test_classes:
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise DataError(
            f"{root}: train/ and test/ have different classes (only in train: {only_train or 'none'}; "
            f"only in test: {only_test or 'none'})"
        )
    if with_train:
        train = read_split(root, "train", tuple(train_listing), size, workers, cache)
    else:
        train = Split(np.zeros((0, 3, size, size), dtype=np.uint8), np.zeros(0, dtype=np.int64))
    test = read_split(root, "test", tuple(test_listing), size, workers, cache)
    return train, test, tuple(train_classes)
