"""Find, read and split the data: the CIFAR-10 python version or image folders, detected from the data dir.

``load_dataset(config)`` returns uint8 (N, 3, S, S) arrays for train, a validation split held out from train,
and test. Everything that can go wrong with a data folder raises ``DataError`` with one readable sentence.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from training import cifar, folder
from training.config import DATA_DIR_ENV, TrainConfig
from training.splits import DataError, Dataset, Split, hold_out

log = logging.getLogger(__name__)

LAYOUTS = (
    f"the CIFAR-10 python version ({cifar.FOLDER}/ with data_batch_1..5, test_batch, batches.meta), "
    "or image folders train/<class>/ and test/<class>/"
)


def read_sources(
    data_dir: str | Path,
    source_size: int,
    download: bool = False,
    workers: int = 0,
    cache: bool = True,
    with_train: bool = True,
) -> tuple[Split, Split, tuple[str, ...], str]:
    """Train and test splits, class names and a description of what was read; the kind is auto-detected.

    ``with_train=False`` skips decoding an image folder's training images (evaluation needs only test).
    """
    root = Path(data_dir).expanduser()
    if root.exists() and not root.is_dir():
        raise DataError(f"--data-dir {root} is a file, not a folder holding {LAYOUTS}")
    if (root / "data_batch_1").is_file() or (root / cifar.META_FILE).is_file():
        return _read_cifar(root, source_size)
    if (root / cifar.FOLDER).is_dir():
        return _read_cifar(root / cifar.FOLDER, source_size)
    if root.is_dir() and folder.is_image_folder(root):
        started = time.perf_counter()
        train, test, classes = folder.read_image_folder(root, source_size, workers, cache, with_train)
        took = time.perf_counter() - started
        log.info("read %d + %d images of %d classes from %s in %.1f s", len(train), len(test), len(classes), root, took)
        return train, test, classes, f"image folder {root}"
    if not download:
        where = "does not exist" if not root.exists() else "holds no data"
        which = f"the data folder is --data-dir if given, else ${DATA_DIR_ENV}, else ./data"
        raise DataError(
            f"the data folder {root} {where}: expected {LAYOUTS}; or pass --download to fetch CIFAR-10 ({which})"
        )
    return _read_cifar(cifar.download_cifar10(root), source_size)


def _read_cifar(path: Path, source_size: int) -> tuple[Split, Split, tuple[str, ...], str]:
    if source_size != cifar.IMAGE_SIZE:
        raise DataError(f"{path}: the CIFAR-10 python version holds 32x32 images; use --source-size 32")
    train, test, classes = cifar.read_cifar10(path)
    log.info("read CIFAR-10 python version from %s: %d train, %d test images", path, len(train), len(test))
    return train, test, classes, f"CIFAR-10 python version {path}"


def load_dataset(config: TrainConfig) -> Dataset:
    """The data for a run: train (minus validation, optionally a subset), validation, test."""
    train, test, classes, source = read_sources(
        config.data_dir, config.source_size, config.download, config.decode_workers, config.cache
    )
    train, val = hold_out(train, config.val_size, config.train_subset, config.seed)
    chosen = " (--val-size not given: 10% of the training images, at least 2 per class, at most 5,000)"
    log.info(
        "training on %d images, validating on %d%s, testing on %d",
        len(train),
        len(val),
        chosen if config.val_size is None else "",
        len(test),
    )
    _warn_missing_classes(train, classes)
    return Dataset(train=train, val=val, test=test, classes=classes, source=source)


def _warn_missing_classes(train: Split, classes: tuple[str, ...]) -> None:
    present = np.unique(train.labels)
    if len(present) < len(classes):
        missing = sorted(set(classes) - {classes[i] for i in present})
        log.warning("the training split has no images of %s", ", ".join(missing))
