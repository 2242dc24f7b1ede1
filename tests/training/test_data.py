"""Image folders (real files through models.load_image), the cache, error cases, subset and validation split."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models import load_checkpoint
from tests.training.helpers import CLASSES, learnable_split, write_image_folder
from training import folder
from training import train as train_module
from training.data import read_sources
from training.splits import DataError, Split, auto_val_size, hold_out, stratified_indices


@pytest.fixture
def small_folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    write_image_folder(root, "train", learnable_split(5, seed=1))
    write_image_folder(root, "test", learnable_split(2, seed=2))
    return root


def test_image_folder_gives_back_the_pixels(small_folder: Path) -> None:
    train, test, classes, source = read_sources(small_folder, 32, workers=2, cache=False)
    assert classes == tuple(sorted(CLASSES))  # folder names, sorted
    assert source.startswith("image folder")
    expected = learnable_split(5, seed=1)
    # Labels follow the sorted class names; PNG is lossless, so pixels come back exactly.
    order = {name: i for i, name in enumerate(classes)}
    for image, label in zip(expected.images, expected.labels, strict=True):
        found = train.images[train.labels == order[CLASSES[label]]]
        assert any(np.array_equal(image, candidate) for candidate in found)
    assert train.images.shape == (20, 3, 32, 32)
    assert test.images.dtype == np.uint8


def test_any_size_and_mode_is_reduced_to_the_source_size(tmp_path: Path) -> None:
    for split in ("train", "test"):
        for name, size, mode in (("wide", (120, 60), "RGB"), ("grey", (40, 90), "L"), ("alpha", (64, 64), "RGBA")):
            (tmp_path / split / name).mkdir(parents=True)
            Image.new(mode, size, 128).save(tmp_path / split / name / "a.png")
            Image.new("RGB", size, (10, 200, 30)).save(tmp_path / split / name / "b.JPG", quality=90)
    train, _, classes, _ = read_sources(tmp_path, 48, cache=False)
    assert classes == ("alpha", "grey", "wide")
    assert train.images.shape == (6, 3, 48, 48)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda r: shutil.rmtree(r / "test"), "has no test/ folder"),
        (lambda r: shutil.rmtree(r / "train" / "red"), r"different classes \(only in train: none; only in test: ..red"),
        (lambda r: (r / "train" / "notes.txt").write_text("x"), "holds files outside class folders: train/notes.txt"),
        (lambda r: (r / "test" / "blue" / "labels.csv").write_text("x"), "not images .*test/blue/labels.csv"),
        (lambda r: (r / "train" / "grey" / "sub").mkdir(), "not images .*train/grey/sub"),
        (lambda r: [p.unlink() for p in (r / "train" / "green").iterdir()], "train/green: has no images"),
        (lambda r: (r / "train" / "red" / "00000.png").write_bytes(b"not an image"), r"1 image\(s\) cannot be read"),
        (lambda r: (r / "test" / "red" / "x.jpg").write_bytes(b"\xff\xd8\xff" + bytes(9)), r"read: .*x\.jpg"),
    ],
)
def test_broken_folders_are_named(small_folder: Path, breakage, message: str) -> None:
    breakage(small_folder)
    with pytest.raises(DataError, match=message):
        read_sources(small_folder, 32, cache=False)


def test_hidden_files_are_ignored(small_folder: Path) -> None:
    (small_folder / "train" / ".DS_Store").write_bytes(b"\0")
    (small_folder / "train" / "red" / "._00000.png").write_bytes(b"\0")
    train, _, _, _ = read_sources(small_folder, 32, cache=False)
    assert len(train) == 20


def test_missing_or_empty_data_dir_without_download(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"does not exist: expected the CIFAR-10 python version .* or pass --download"):
        read_sources(tmp_path / "nowhere", 32)
    with pytest.raises(DataError, match="holds no data"):
        read_sources(tmp_path, 32)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is a file, not a folder"):
        read_sources(tmp_path / "file", 32)


def test_cache_is_used_and_invalidated(small_folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = read_sources(small_folder, 32)[0]
    caches = sorted((small_folder / folder.CACHE_DIR).glob("train-32px-*.npz"))
    assert len(caches) == 1
    with caplog.at_level(logging.INFO, logger="training.folder"):
        second = read_sources(small_folder, 32)[0]
    assert "from the cache" in caplog.text
    np.testing.assert_array_equal(first.images, second.images)
    # Replace one image: the key changes, the folder is decoded again and the old cache removed.
    target = small_folder / "train" / "red" / "00000.png"
    Image.new("RGB", (32, 32), (1, 2, 3)).save(target)
    os.utime(target, ns=(1, 1))  # a different mtime even on coarse clocks
    third = read_sources(small_folder, 32)[0]
    assert not np.array_equal(first.images, third.images)
    assert (third.images == np.array([1, 2, 3], dtype=np.uint8)[:, None, None]).all(axis=(1, 2, 3)).sum() == 1
    assert sorted((small_folder / folder.CACHE_DIR).glob("train-32px-*.npz")) != caches
    assert len(list((small_folder / folder.CACHE_DIR).glob("train-32px-*.npz"))) == 1


def test_a_damaged_cache_is_ignored(small_folder: Path) -> None:
    expected = read_sources(small_folder, 32)[0]
    for cache in (small_folder / folder.CACHE_DIR).glob("*.npz"):
        cache.write_bytes(b"garbage")
    np.testing.assert_array_equal(read_sources(small_folder, 32)[0].images, expected.images)


def test_stratified_indices_keep_class_shares() -> None:
    labels = np.repeat(np.arange(4), [100, 100, 50, 50])
    chosen = stratified_indices(labels, 60, np.random.default_rng(0))
    assert len(chosen) == len(set(chosen)) == 60
    assert np.bincount(labels[chosen]).tolist() == [20, 20, 10, 10]


def test_validation_is_held_out_and_seeded() -> None:
    split = Split(np.arange(400).reshape(400, 1, 1, 1), np.repeat(np.arange(4), 100))  # images = ids
    train, val = hold_out(split, val_size=40, train_subset=100, seed=3)
    assert len(train) == 100 and len(val) == 40
    assert np.bincount(val.labels).tolist() == [10] * 4
    assert not set(train.images.ravel()) & set(val.images.ravel())  # disjoint
    again_train, _ = hold_out(split, val_size=40, train_subset=100, seed=3)
    np.testing.assert_array_equal(train.images, again_train.images)
    other_train, _ = hold_out(split, val_size=40, train_subset=100, seed=4)
    assert not np.array_equal(train.images, other_train.images)
    with pytest.raises(DataError, match="leaves nothing to train on"):
        hold_out(split, val_size=400, train_subset=None, seed=0)


@pytest.mark.parametrize(
    ("train_images", "classes", "expected"),
    [(50_000, 10, 5000), (400, 4, 40), (400, 10, 40), (60, 10, 20), (20, 10, 10), (200_000, 100, 5000)],
)
def test_the_default_validation_split_scales_with_the_data(train_images: int, classes: int, expected: int) -> None:
    # 10%, at least 2 per class, at most 5,000, never more than half: CIFAR-10 keeps its 5,000
    assert auto_val_size(train_images, classes) == expected


def test_a_400_image_folder_trains_with_the_default_flags(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 12: --val-size used to default to 5,000 images, so any folder of 5,000 or fewer stopped at once."""
    write_image_folder(tmp_path, "train", learnable_split(100, seed=1))  # 4 classes x 100
    write_image_folder(tmp_path, "test", learnable_split(5, seed=2))
    output = tmp_path / "run" / "mine.safetensors"
    argv = [
        "--data-dir",
        str(tmp_path),
        "--output",
        str(output),
        "--device",
        "cpu",
        "--no-download",
        "--no-progress",
        "--epochs",
        "1",
        "--input-size",
        "64",
        "--no-ood",
    ]  # fmt: skip  (no --val-size)
    with caplog.at_level(logging.INFO):
        train_module.cli(argv)
    assert "training on 360 images, validating on 40 (--val-size not given" in caplog.text
    ckpt = load_checkpoint(output)
    assert ckpt.config["val_size"] is None and ckpt.metrics["val_images"] == 40
    assert "temperature" in ckpt.calibration  # the split was there to calibrate on
