"""Training benchmark: the project's trainer against the guide's loop, same model, batch size and device.

    python -m benchmarks.training --data-dir data --out docs/benchmarks \
        --update-doc docs/benchmarks.md      # CPU: a class-balanced subset, one epoch each (~5 min)
    python -m benchmarks.training --full --device cuda --data-dir DATA --out results   # GPU: full length

On the JPEG copy of CIFAR-10 (``train/<class>/*.jpg``, ``test/<class>/*.jpg``). Without ``--full`` both
loops read the same class-balanced subset, linked into a scratch folder, for one epoch: the guide's loop
(ImageFolder, PIL resize to 224 + ToTensor per image, Adam, float32) and the trainer with
``--recipe seed`` (the guide's recipe: Adam, batch 64) and with its default recipe (its own batch
size). With ``--full`` (for a GPU) the trainer runs both recipes at full length on the whole set,
which gives the default recipe's time to 90% test accuracy and the seed recipe's final accuracy.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.guide_loop import GUIDE_WORKERS, time_guide_loop
from benchmarks.machine import describe_machine, load_average
from benchmarks.report import replace_section
from benchmarks.servers.launch import exit_on_sigterm
from benchmarks.training_report import training_markdown
from training.logs import configure_logging

logger = logging.getLogger(__name__)

TARGET_ACCURACY = 0.90  # test accuracy the default recipe aims for
RECIPES = ("seed", "default")  # the trainer's runs: the guide's recipe at the guide's batch size, then its own
FULL_TRAIN_IMAGES = 50_000  # CIFAR-10's training set, for per-epoch estimates from a subset


def link_subset(data_dir: Path, scratch: Path, train_per_class: int, test_per_class: int) -> Path:
    """A class-balanced subset of an image-folder dataset, as symbolic links (nothing is copied)."""
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        classes = sorted(p for p in (data_dir / split).iterdir() if p.is_dir())
        if not classes:
            raise SystemExit(f"{data_dir / split}: no class folders (expected {split}/<class>/*.jpg)")
        for folder in classes:
            target = scratch / split / folder.name
            target.mkdir(parents=True)
            for image in sorted(folder.iterdir())[:count]:
                (target / image.name).symlink_to(image.resolve())
    return scratch


def run_trainer(python: str, data_dir: Path, out_dir: Path, device: str, extra: list[str]) -> dict:
    """``python -m training`` as a user runs it, its log in ``out_dir/train.log``; its metrics.json, plus the wall
    time seen from outside. A failed run raises ``TrainerFailed`` with the end of its log."""
    output = out_dir / "alexnet.safetensors"
    command = [
        python,
        "-m",
        "training",
        "--data-dir",
        str(data_dir),
        "--device",
        device,
        "--output",
        str(output),
        "--no-progress",
        "--no-download",
        *extra,
    ]
    logger.info("running %s", shlex.join(command))
    started = time.perf_counter()
    log_path = out_dir / "train.log"
    with log_path.open("w") as log:
        finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    if finished.returncode != 0:
        tail = "\n".join(log_path.read_text().splitlines()[-15:])
        raise TrainerFailed(f"the trainer failed (exit {finished.returncode}):\n{tail}")
    metrics = json.loads((out_dir / "metrics.json").read_text())
    metrics["command"] = shlex.join(command[1:])
    metrics["outside_wall_seconds"] = time.perf_counter() - started
    return metrics


class TrainerFailed(RuntimeError):
    """A trainer run ended with an error; the message holds the end of its log."""


def trainer_row(name: str, metrics: dict, flags: list[str]) -> dict:
    """What the tables need from a trainer run; the last epoch is the steady one (the first may tune cuDNN)."""
    history = metrics["history"]
    last = history[-1]
    reached = next((h["epoch"] for h in history if (h.get("val_accuracy") or 0) >= TARGET_ACCURACY), None)
    return {
        "name": name,
        "command": metrics["command"],
        "flags": shlex.join(flags),
        "batch_size": metrics["batch_size"],
        "epochs": len(history),
        "train_images": metrics["train_images"],
        "images_per_second": last["images_per_second"],
        "epoch_seconds": last["seconds"],
        "train_seconds": metrics["train_seconds"],
        "wall_seconds": metrics["outside_wall_seconds"],
        "test_accuracy": metrics["test_accuracy"],
        "val_accuracy_by_epoch": [h.get("val_accuracy") for h in history],
        "first_epoch_val_at_target": reached,
        "seconds_to_target": metrics["train_seconds"] if metrics["test_accuracy"] >= TARGET_ACCURACY else None,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Training benchmark (see docs/benchmarks.md).")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("ALEXNET_DATA_DIR") or "data"))
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"), help="folder for training.json/.md")
    parser.add_argument("--update-doc", type=Path, help="replace the generated section of this Markdown file")
    parser.add_argument("--full", action="store_true", help="whole dataset, full-length recipes (for a GPU)")
    parser.add_argument(
        "--recipes",
        default=",".join(RECIPES),
        help=f"comma list from {', '.join(RECIPES)}: the trainer's runs, in this order (default: both)",
    )
    parser.add_argument("--train-per-class", type=int, default=128, help="subset size per class (without --full)")
    parser.add_argument("--test-per-class", type=int, default=20, help="test images per class (without --full)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of each subset run (without --full)")
    parser.add_argument("--batch-size", type=int, default=64, help="the guide's batch size, for both loops")
    parser.add_argument("--guide-max-steps", type=int, help="cut the guide's epoch short (its rate is steady)")
    parser.add_argument("--guide-workers", type=int, default=GUIDE_WORKERS, help="the guide's DataLoader workers")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs the trainer")
    parser.add_argument(
        "--runs-dir",
        type=Path,
        help="keep each trainer run (train.log, metrics.json, report, checkpoint) in RUNS_DIR/<recipe> "
        "(default: a temporary folder, removed at the end)",
    )
    args = parser.parse_args(argv)
    args.recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    if set(args.recipes) - set(RECIPES):
        parser.error(f"--recipes: choose from {', '.join(RECIPES)}")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


def main(argv: list[str] | None = None) -> dict:
    """The guide's loop, then each recipe; training.json and .md are rewritten after each part, so a run stopped
    by a time limit keeps what it measured, and a failed trainer run is recorded without stopping the next."""
    configure_logging()
    args = parse_args(argv)
    exit_on_sigterm()
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {
        "command": "python -m benchmarks.training " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": describe_machine(args.device),
        "full": args.full,
        "data_dir": str(args.data_dir),
        "subset": None
        if args.full
        else {"train_per_class": args.train_per_class, "test_per_class": args.test_per_class},
        "guide": None,
        "trainer": [],
        "failed": [],
        "full_train_images": FULL_TRAIN_IMAGES,
        "complete": False,
    }
    with tempfile.TemporaryDirectory(prefix="alexnet-train-bench-") as scratch:
        data = args.data_dir
        if not args.full:
            data = link_subset(args.data_dir, Path(scratch) / "data", args.train_per_class, args.test_per_class)
        results["guide"] = time_guide_loop(
            data / "train", args.batch_size, torch.device(args.device), args.guide_max_steps, args.guide_workers
        )
        write_results(results, args, started)
        # A subset run is one short epoch: no held-out split, no cache written into the data folder.
        subset = [] if args.full else ["--epochs", str(args.epochs), "--val-size", "0", "--no-cache"]
        for recipe in args.recipes:
            flags = ["--recipe", recipe] + (["--batch-size", str(args.batch_size)] if recipe == "seed" else [])
            name, out_dir = f"trainer, {recipe} recipe", (args.runs_dir or Path(scratch)) / recipe
            out_dir.mkdir(parents=True, exist_ok=True)
            try:
                metrics = run_trainer(args.python, data, out_dir, args.device, flags + subset)
                results["trainer"].append(trainer_row(name, metrics, flags + subset))
            except TrainerFailed as exc:
                logger.error("%s: %s", name, exc)
                results["failed"].append({"name": name, "error": str(exc)})
            write_results(results, args, started)
    results["complete"] = True
    write_results(results, args, started)
    return results


def write_results(results: dict, args: argparse.Namespace, started: float) -> None:
    """training.json and training.md as they stand (the Markdown once the guide and a trainer run are in)."""
    seed = next((run for run in results["trainer"] if run["name"] == "trainer, seed recipe"), None)
    if seed and results["guide"]:
        results["speedup_same_batch"] = seed["images_per_second"] / results["guide"]["images_per_second"]
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["load_average_at_end"] = load_average()
    (args.out / "training.json").write_text(json.dumps(results, indent=2) + "\n")
    if not (results["guide"] and results["trainer"]):
        return
    markdown = training_markdown(results)
    (args.out / "training.md").write_text(markdown)
    if args.update_doc and results["complete"]:
        replace_section(args.update_doc, "training", markdown)
    if "speedup_same_batch" in results:
        speedup = results["speedup_same_batch"]
        logger.info("trainer (seed recipe) is %.1fx the guide's loop in images/s; wrote %s", speedup, args.out)


if __name__ == "__main__":
    main()
