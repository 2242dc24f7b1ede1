"""Test metrics from a checkpoint: ``alexnet-evaluate --checkpoint F --data-dir D --device D [--calibrate]``.

It rebuilds the network, its preprocessing and its temperature from the checkpoint alone
(``models.load_checkpoint``), reads the test split at the checkpoint's source size, runs it through the one
inference pass (``models.Classifier``, as the service does), and writes metrics.json and the pictures
(confusion matrix, per-class accuracy, training curves, reliability diagram) with report.html beside the
checkpoint, or in evaluation/ beside it when a report is there already (never over the training run's own,
except after ``--calibrate``, which rewrites the checkpoint), or in ``--output-dir``. When the checkpoint
records how its validation split was held out, the out-of-distribution comparison is recomputed too.
``--calibrate`` fits the temperature and the abstention rule on the checkpoint's own validation split (held
out from train again from its recorded seed and sizes) and writes them into the checkpoint: the way to bring a
checkpoint trained before them up to date.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models import (
    DEFAULT_CHECKPOINT,
    CheckpointError,
    Classifier,
    DeviceError,
    load_checkpoint,
    resolve_device,
    save_checkpoint,
)
from models.checkpoint import REPORT_FILE
from models.files import WriteError
from models.inference import DEVICE_NAMES, PRECISIONS
from training.abstention import judge
from training.config import DATA_DIR_ENV, TrainConfig, default_data_dir
from training.data import read_sources
from training.distributed import World
from training.logs import configure_logging
from training.report import write_report
from training.split_metrics import fit_calibration, test_metrics
from training.splits import DataError, Split, hold_out

EVALUATION_DIR = "evaluation"  # beside the checkpoint: a plain evaluation's report, apart from the training run's

log = logging.getLogger(__name__)


def evaluate_checkpoint(
    checkpoint: Path,
    data_dir: str,
    device_name: str = "auto",
    batch_size: int = 256,
    tta: bool | None = None,
    output_dir: Path | None = None,
    download: bool = False,
    precision: str = "auto",
    calibrate: bool = False,
) -> dict[str, Any]:
    """Recompute a checkpoint's test metrics, calibration and out-of-distribution comparison; write the report.

    The temperature and the abstention rule reported are the checkpoint's; ``calibrate`` fits both again on the
    checkpoint's own validation split and writes them into the checkpoint (the weights stay as they are).
    """
    ckpt = load_checkpoint(checkpoint)
    # val_size None: the automatic split, recomputed from the same data; 0 or absent: no validation split
    trained = TrainConfig.from_saved(ckpt.config)
    holds_split = trained is not None and trained.val_size != 0
    if calibrate and not holds_split:
        raise DataError("the checkpoint records no validation split (val_size and seed): cannot calibrate it")
    train, test, classes, source = read_sources(data_dir, ckpt.preprocess.source_size, download, with_train=holds_split)
    if tuple(classes) != ckpt.classes:
        raise DataError(f"{data_dir}: classes {list(classes)} are not the checkpoint's {list(ckpt.classes)}")
    device = resolve_device(device_name)
    classifier = Classifier.from_checkpoint(ckpt, device, precision)
    splits = {
        "train": train,
        "val": validation_split(trained, train) if trained and holds_split else train,
        "test": test,
    }
    calibration = fit_calibration(classifier, splits["val"], batch_size) if calibrate else ckpt.calibration
    if not calibration.get("temperature"):
        log.warning("%s is not calibrated (temperature 1): alexnet-evaluate --calibrate fits one", checkpoint)
    tta = (trained.tta if trained else False) if tta is None else tta
    tested = test_metrics(classifier, test, classes, World(device), calibration, tta, batch_size)
    judged = judge(classifier, calibration.get("temperature", 1.0), splits, classes, holds_split, batch_size)
    rule, extras, compared = judged.rule, judged.tensors, judged.comparison
    if not calibrate and compared:  # report the checkpoint's own rule beside the fresh comparison
        rule, extras = ckpt.abstention, ckpt.extras
        compared = {**compared, **{k: v for k, v in rule.items() if k in ("score", "threshold", "target")}}
    metrics = {
        **ckpt.metrics,
        **tested,
        "test_source": source,
        "config": ckpt.config,
        "weights_sha256": ckpt.weights_sha256,
    }
    if compared:
        metrics["abstention"] = compared
    if calibrate:
        kept = {k: v for k, v in metrics["calibration"].items() if not k.startswith("bins_")}
        save_checkpoint(
            checkpoint,
            ckpt.build_model(),
            model_args=ckpt.model_args,
            classes=ckpt.classes,
            preprocess=ckpt.preprocess,
            config=ckpt.config,
            metrics=metrics,
            calibration=kept,
            abstention=rule,
            extras=extras,
        )
        log.info(
            "wrote temperature %.3f and the %s abstention rule into %s (weights unchanged)",
            kept["temperature"],
            rule.get("score", "no"),
            checkpoint,
        )
    written = write_report(output_dir or default_output_dir(checkpoint, calibrate), metrics, classes, judged.hardest)
    log.info(
        "test accuracy %.2f%% on %d images; wrote %s",
        100 * metrics["test_accuracy"],
        len(test),
        ", ".join(map(str, written)),
    )
    return metrics


def default_output_dir(checkpoint: Path, calibrate: bool) -> Path:
    """Where the report goes without --output-dir: beside the checkpoint, unless that would overwrite a run's own.

    A plain evaluation of a checkpoint that already has its report (the training run's metrics.json, pictures
    and report.html, the page /model serves) writes to evaluation/ beside it instead. After --calibrate the
    checkpoint itself has changed, and its own report must say so: beside it.
    """
    if calibrate or not (checkpoint.parent / REPORT_FILE).exists():
        return checkpoint.parent
    return checkpoint.parent / EVALUATION_DIR


def validation_split(trained: TrainConfig, train: Split) -> Split:
    """The validation split the checkpoint's training run held out, from its recorded sizes and seed."""
    _, val = hold_out(train, trained.val_size, trained.train_subset, trained.seed)
    return val


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
        "--output-dir",
        type=Path,
        default=None,
        help=f"where to write the report (default: beside the checkpoint; {EVALUATION_DIR}/ beside it when a "
        "report is there already, unless --calibrate)",
    )
    parser.add_argument(
        "--download", action=argparse.BooleanOptionalAction, default=False, help="fetch CIFAR-10 if absent"
    )
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="fit the temperature on the checkpoint's validation split and write it into the checkpoint",
    )
    return parser


def cli(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.batch_size < 1:
        build_parser().error(f"--batch-size must be a positive integer, got {args.batch_size}")
    configure_logging()
    try:
        evaluate_checkpoint(
            args.checkpoint,
            args.data_dir or default_data_dir(),
            args.device,
            args.batch_size,
            args.tta,
            args.output_dir,
            args.download,
            args.precision,
            args.calibrate,
        )
    except (CheckpointError, DataError, DeviceError, WriteError) as exc:
        log.error("%s", exc)
        sys.exit(1)


if __name__ == "__main__":
    cli()
