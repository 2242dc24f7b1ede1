"""Generated datasets in the real formats (CIFAR-10 python-version pickles, image folders), a tiny config and
its command line, and the default recipe's first steps on a fixed batch."""

from __future__ import annotations

import pickle
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from tests.helpers import TEST_INPUT_SIZE
from training.config import TrainConfig
from training.distributed import World
from training.splits import Dataset, Split
from training.train import build_run, lr_factor, train_step

CLASSES = ("red", "green", "blue", "grey")
# Base colours of the generated classes: far apart, so a few steps of training separate them.
COLOURS = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [128, 128, 128]], dtype=np.float64)


def learnable_split(per_class: int, seed: int = 0, num_classes: int = len(CLASSES)) -> Split:
    """uint8 (N, 3, 32, 32): each class a colour plus noise and a random bright square; labels in order."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), per_class)
    base = COLOURS[labels % len(COLOURS)][:, :, None, None]  # (N, 3, 1, 1)
    images = base + rng.normal(0, 25, size=(len(labels), 3, 32, 32))
    for i, (y, x) in enumerate(rng.integers(0, 24, size=(len(labels), 2))):
        images[i, :, y : y + 8, x : x + 8] += 60
    return Split(np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int64))


def write_cifar_batch(path: Path, split: Split, name: str) -> None:
    """The real format: a dict with bytes keys, data uint8 (N, 3072), labels a list; pickle protocol 2."""
    batch = {
        b"batch_label": name.encode(),
        b"labels": [int(v) for v in split.labels],
        b"data": split.images.reshape(len(split), 3072),
        b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(split))],
    }
    path.write_bytes(pickle.dumps(batch, protocol=2))


def write_cifar_folder(folder: Path, train: Split, test: Split, classes: tuple[str, ...] = CLASSES) -> Path:
    """A complete cifar-10-batches-py/ folder: five train batches, test_batch, batches.meta."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, index in enumerate(np.array_split(np.arange(len(train)), 5), start=1):
        write_cifar_batch(folder / f"data_batch_{i}", train.take(index), f"training batch {i} of 5")
    write_cifar_batch(folder / "test_batch", test, "testing batch 1 of 1")
    meta = {b"label_names": [c.encode() for c in classes], b"num_cases_per_batch": len(train) // 5, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def write_image_folder(root: Path, split_name: str, split: Split, classes: tuple[str, ...] = CLASSES) -> None:
    """root/<split_name>/<class>/<i>.png, lossless so the reader must give back the same pixels."""
    for i, (image, label) in enumerate(zip(split.images, split.labels, strict=True)):
        folder = root / split_name / classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{i:05d}.png")


def tiny_config(data_dir: Path, output: Path, **overrides: Any) -> TrainConfig:
    """The default recipe at a 64-pixel input on a few hundred generated images."""
    base = TrainConfig(
        data_dir=str(data_dir), output=str(output), input_size=TEST_INPUT_SIZE, val_size=32, epochs=2,
        batch_size=40, progress=False, device="cpu", download=False, cache=False, decode_workers=1, ood=False,
        save_every_s=0,  # the state after every epoch, as the resume and fault tests expect
    )  # fmt: skip
    return replace(base, **overrides)


def command_line(config: TrainConfig) -> list[str]:
    """The flags that rebuild ``config``, for ``python -m training`` or ``cli``."""
    argv = []
    for field in fields(config):
        value, flag = getattr(config, field.name), "--" + field.name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            argv += [flag, str(value)]
    return argv


def first_steps_on_a_fixed_batch(device: torch.device, input_size: int, steps: int, seed: int = 0) -> dict[str, Any]:
    """The first ``steps`` steps of a full default-recipe run (its init, optimizer, warm-up of a 30-epoch run over
    the 45,000 CIFAR-10 training images, augmentation, label smoothing, EMA), each on the same 64 generated images
    of 4 classes, through the trainer's own ``train_step``; its losses, batch accuracies and logits dtypes."""
    split = learnable_split(16, seed=seed)
    dataset = Dataset(train=split, val=split.take(np.arange(0)), test=split, classes=CLASSES, source="generated")
    config = TrainConfig(device=str(device), input_size=input_size, batch_size=len(split), seed=seed)
    run = build_run(config, World(device), dataset)
    total_steps = config.epochs * (45_000 // TrainConfig.batch_size)  # the schedule of the real run
    warmup_steps = round(config.warmup_fraction * total_steps)
    images, labels = torch.from_numpy(split.images).to(device), torch.from_numpy(split.labels).to(device)
    losses, accuracies, dtypes = [], [], set()
    for step in range(steps):
        lr = config.lr * lr_factor(step, total_steps, warmup_steps, config.schedule)
        logits, loss = train_step(run, images, labels, lr)
        losses.append(loss.item())
        accuracies.append((logits.argmax(1) == labels).float().mean().item())
        dtypes.add(logits.dtype)
    return {"losses": losses, "accuracies": accuracies, "logits_dtypes": dtypes, "run": run}
