"""The in-memory dataset every data source produces: uint8 images (N, 3, S, S), int64 labels, class names."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class DataError(Exception):
    """A data folder that cannot be used; the message names the folder or file and the problem."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 (N, 3, S, S)
    labels: np.ndarray  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> Split:
        return Split(self.images[index], self.labels[index])


@dataclass(frozen=True)
class Dataset:
    train: Split
    val: Split  # held out from train; may be empty
    test: Split  # for the final number only
    classes: tuple[str, ...]
    source: str  # what was read, for the log and the checkpoint


def stratified_indices(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` indices with each class in proportion to its share, chosen at random; sorted."""
    if count >= len(labels):
        return np.arange(len(labels))
    classes, sizes = np.unique(labels, return_counts=True)
    quota = np.floor(sizes * count / len(labels)).astype(np.int64)
    # Hand out the rounding remainder to the classes with the largest fractional parts.
    remainder = count - int(quota.sum())
    quota[np.argsort(-(sizes * count / len(labels) - quota), kind="stable")[:remainder]] += 1
    chosen = [
        rng.choice(np.flatnonzero(labels == c), size=q, replace=False) for c, q in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(chosen))


# The default validation split (--val-size not given): a share of the training images, with a floor that
# leaves every class a few images to calibrate and set the abstention threshold on, and a cap (CIFAR-10's
# 50,000 training images give 5,000, the split every earlier default run used).
AUTO_VAL_SHARE = 0.1
AUTO_VAL_PER_CLASS = 2
AUTO_VAL_MAX = 5000


def auto_val_size(train_images: int, classes: int) -> int:
    """10% of the training images, at least 2 per class, at most 5,000, and never more than half of them."""
    wanted = max(round(AUTO_VAL_SHARE * train_images), AUTO_VAL_PER_CLASS * classes)
    return min(AUTO_VAL_MAX, wanted, train_images // 2)


def hold_out(train: Split, val_size: int | None, train_subset: int | None, seed: int) -> tuple[Split, Split]:
    """Split a stratified validation set off train, then (optionally) a stratified subset of the rest.

    ``val_size`` None: ``auto_val_size`` of the training images (before any subset is taken).
    """
    rng = np.random.default_rng(seed)
    if val_size is None:
        val_size = auto_val_size(len(train), len(np.unique(train.labels)))
    if val_size >= len(train):
        raise DataError(
            f"--val-size {val_size} leaves nothing to train on ({len(train)} training images): lower --val-size"
        )
    val_index = stratified_indices(train.labels, val_size, rng) if val_size else np.array([], dtype=np.int64)
    rest = np.setdiff1d(np.arange(len(train)), val_index)
    if train_subset is not None and train_subset < len(rest):
        rest = rest[stratified_indices(train.labels[rest], train_subset, rng)]
    return train.take(rest), train.take(val_index)
