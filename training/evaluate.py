"""Test metrics from a checkpoint: ``alexnet-evaluate --checkpoint F --data-dir D --device D``.

It rebuilds the network and its preprocessing from the checkpoint alone (``models.load_checkpoint``),
reads the test split at the checkpoint's source size, runs it through the one inference pass
(``models.Classifier``, as the service does), and rewrites metrics.json, confusion_matrix.png,
per_class_accuracy.png and training_curves.png beside the checkpoint (or in ``--output-dir``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from models import DEFAULT_CHECKPOINT, CheckpointError, Classifier, DeviceError, load_checkpoint, resolve_device
from models.inference import DEVICE_NAMES, PRECISIONS
from training.config import DATA_DIR_ENV, default_data_dir
from training.data import read_sources
from training.dataset import DataError
from training.logs import configure_logging
from training.metrics import confusion_matrix, nll_sum, summarize
from training.report import write_report

log = logging.getLogger(__name__)


def evaluate_checkpoint(
    checkpoint: Path, data_dir: str, device_name: str = "auto", batch_size: int = 256, tta: bool | None = None,
    output_dir: Path | None = None, download: bool = False, precision: str = "auto",
) -> dict[str, Any]:  # fmt: skip
    """Recompute the test metrics of a checkpoint and write the report; returns the metrics."""
    ckpt = load_checkpoint(checkpoint)
    _, test, classes, source = read_sources(data_dir, ckpt.preprocess.source_size, download, with_train=False)
    if tuple(classes) != ckpt.classes:
        raise DataError(f"{data_dir}: classes {list(classes)} are not the checkpoint's {list(ckpt.classes)}")
    classifier = Classifier.from_checkpoint(ckpt, resolve_device(device_name), precision)
    tta = ckpt.config.get("tta", False) if tta is None else tta
    images, labels = torch.from_numpy(test.images), torch.from_numpy(test.labels)
    probs = classifier.probabilities(images, tta=tta, batch_size=batch_size)  # (N, C)
    confusion = confusion_matrix(labels, probs.argmax(dim=1), len(classes))
    metrics = {**ckpt.metrics, **summarize(confusion, classes), "tta": tta, "test_source": source}
    # The service classifies one view (no mirror): what it will deliver, beside the TTA number.
    single = classifier.probabilities(images, batch_size=batch_size) if tta else probs
    metrics["test_accuracy_single_view"] = float((single.argmax(dim=1) == labels).double().mean())
    metrics.update(config=ckpt.config, weights_sha256=ckpt.weights_sha256)
    metrics["test_loss"] = float(nll_sum(probs, labels)) / max(len(labels), 1)
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
    parser.add_argument("--checkpoint", type=Path, default=Path(DEFAULT_CHECKPOINT), help="safetensors checkpoint")
    parser.add_argument("--data-dir", default=None, help=f"data folder (default: ${DATA_DIR_ENV} or ./data)")
    parser.add_argument("--device", default="auto", help=DEVICE_NAMES)
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="auto: bf16 on CUDA, fp32 on a CPU")
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
    configure_logging()
    try:
        evaluate_checkpoint(args.checkpoint, args.data_dir or default_data_dir(), args.device, args.batch_size,
                            args.tta, args.output_dir, args.download, args.precision)  # fmt: skip
    except (CheckpointError, DataError, DeviceError) as exc:
        log.error("%s", exc)
        sys.exit(1)


if __name__ == "__main__":
    cli()
