"""Test metrics from a checkpoint: ``alexnet-evaluate --checkpoint F --data-dir D --device D``.

It rebuilds the network and its preprocessing from the checkpoint alone (``models.load_checkpoint``),
reads the test split at the checkpoint's source size, and rewrites metrics.json, confusion_matrix.png,
per_class_accuracy.png and training_curves.png beside the checkpoint (or in ``--output-dir``).
``predict`` is the one batched inference function, shared with the trainer and the service's parity test.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models import CheckpointError, Preprocess, load_checkpoint
from training.config import DATA_DIR_ENV, DEFAULT_OUTPUT, default_data_dir
from training.data import read_sources
from training.dataset import DataError
from training.distributed import DeviceError, pick_device
from training.report import write_report

log = logging.getLogger(__name__)


@torch.inference_mode()
def predict(
    model: nn.Module,
    preprocess: Preprocess,
    images: torch.Tensor | np.ndarray,
    device: torch.device | str,
    batch_size: int = 256,
    tta: bool = False,
) -> torch.Tensor:
    """uint8 images (N, 3, S, S), on any device -> class probabilities (N, C), float32 on the CPU.

    ``model`` and ``preprocess`` must already be on ``device``. With ``tta`` each image's probabilities are
    averaged with its mirror image's. bf16 autocast on CUDA, as in training.
    """
    device = torch.device(device)
    model.eval()
    images = torch.as_tensor(images)
    on_cuda = device.type == "cuda"
    out = []
    for start in range(0, len(images), batch_size):
        x = preprocess(images[start : start + batch_size].to(device, non_blocking=True))  # (B, 3, H, W) float
        if on_cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_cuda):
            probs = model(x).float().softmax(dim=1)  # (B, C)
            if tta:
                probs = (probs + model(x.flip(3)).float().softmax(dim=1)) / 2
        out.append(probs.cpu())
    return torch.cat(out) if out else torch.empty(0, 0)


def confusion_matrix(labels: torch.Tensor, predicted: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts; row = true class, column = predicted class."""
    flat = labels.long() * num_classes + predicted.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def summarize(confusion: torch.Tensor | np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-class accuracy (recall) and the matrix itself, as JSON-ready values."""
    counts = np.asarray(confusion, dtype=np.int64)
    per_class = np.diag(counts) / np.maximum(counts.sum(axis=1), 1)
    return {
        "test_accuracy": float(np.trace(counts) / max(counts.sum(), 1)),
        "test_images": int(counts.sum()),
        "per_class_accuracy": {name: float(acc) for name, acc in zip(classes, per_class, strict=True)},
        "confusion_matrix": counts.tolist(),
    }


def evaluate_checkpoint(
    checkpoint: Path, data_dir: str, device_name: str = "auto", batch_size: int = 256, tta: bool | None = None,
    output_dir: Path | None = None, download: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Recompute the test metrics of a checkpoint and write the report; returns the metrics."""
    ckpt = load_checkpoint(checkpoint)
    _, test, classes, source = read_sources(data_dir, ckpt.preprocess.source_size, download, with_train=False)
    if tuple(classes) != ckpt.classes:
        raise DataError(f"{data_dir}: classes {list(classes)} are not the checkpoint's {list(ckpt.classes)}")
    device = pick_device(device_name)
    model, preprocess = ckpt.build_model().to(device), Preprocess(ckpt.preprocess).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    tta = ckpt.config.get("tta", False) if tta is None else tta
    images, labels = torch.from_numpy(test.images), torch.from_numpy(test.labels)
    probs = predict(model, preprocess, images, device, batch_size, tta)
    confusion = confusion_matrix(labels, probs.argmax(dim=1), len(classes))
    metrics = {**ckpt.metrics, **summarize(confusion, classes), "tta": tta, "test_source": source}
    # The service classifies one view (no mirror): what it will deliver, beside the TTA number.
    single = predict(model, preprocess, images, device, batch_size, tta=False) if tta else probs
    metrics["test_accuracy_single_view"] = float((single.argmax(dim=1) == labels).double().mean())
    metrics.update(config=ckpt.config, weights_sha256=ckpt.weights_sha256)
    metrics["test_loss"] = float(
        -probs[torch.arange(len(probs)), torch.from_numpy(test.labels)].clamp_min(1e-12).log().mean()
    )
    written = write_report(output_dir or checkpoint.parent, metrics, classes)
    log.info(
        "test accuracy %.2f%% on %d images; wrote %s",
        100 * metrics["test_accuracy"],
        len(test),
        ", ".join(map(str, written)),
    )
    return metrics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alexnet-evaluate", description="Recompute test metrics and pictures from a checkpoint."
    )
    parser.add_argument("--checkpoint", type=Path, default=Path(DEFAULT_OUTPUT), help="safetensors checkpoint")
    parser.add_argument("--data-dir", default=None, help=f"data folder (default: ${DATA_DIR_ENV} or ./data)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    parser.add_argument(
        "--tta", action=argparse.BooleanOptionalAction, default=None, help="flip TTA (default: as trained)"
    )
    parser.add_argument(
        "--output-dir", type=Path, default=None, help="where to write the report (default: beside the checkpoint)"
    )
    parser.add_argument(
        "--download", action=argparse.BooleanOptionalAction, default=False, help="fetch CIFAR-10 if absent"
    )
    return parser


def cli(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.batch_size < 1:
        build_parser().error(f"--batch-size must be a positive integer, got {args.batch_size}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        evaluate_checkpoint(args.checkpoint, args.data_dir or default_data_dir(), args.device, args.batch_size,
                            args.tta, args.output_dir, args.download)  # fmt: skip
    except (CheckpointError, DataError, DeviceError) as exc:
        log.error("%s", exc)
        sys.exit(1)


if __name__ == "__main__":
    cli()
