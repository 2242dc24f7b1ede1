"""The training benchmark's parts that run anywhere: the subset it links, the guide's loop itself, a failed run."""

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.guide_loop import time_guide_loop
from benchmarks.training import link_subset, main, trainer_row
from benchmarks.training_report import training_markdown


def _image_folder(root, per_class):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(image).save(root / split / name / f"{i:04d}.jpg")
    return root


def test_link_subset_is_class_balanced_and_copies_nothing(tmp_path):
    source = _image_folder(tmp_path / "data", per_class=5)
    subset = link_subset(source, tmp_path / "subset", train_per_class=3, test_per_class=1)
    train = sorted(subset.glob("train/*/*.jpg"))
    assert [p.parent.name for p in train] == ["cat"] * 3 + ["dog"] * 3
    assert all(p.is_symlink() for p in train)
    assert len(list(subset.glob("test/*/*.jpg"))) == 2


def test_guide_loop_trains_and_times_itself(tmp_path):
    source = _image_folder(tmp_path / "data", per_class=6)
    result = time_guide_loop(source / "train", batch_size=4, device=torch.device("cpu"), max_steps=2, workers=0)
    assert result["steps"] == 2 and result["images"] == 8
    assert result["images_per_second"] > 0 and result["epoch_images"] == 12
    assert result["epoch_seconds_estimate"] == pytest.approx(12 / result["images_per_second"])


def test_trainer_row_and_markdown_report_time_to_accuracy():
    metrics = {
        "command": "-m training --recipe default", "batch_size": 512, "train_images": 45000, "train_seconds": 60.0,
        "outside_wall_seconds": 80.0, "test_accuracy": 0.91,
        "history": [{"epoch": 1, "images_per_second": 9000.0, "seconds": 5.0, "val_accuracy": 0.6},
                    {"epoch": 2, "images_per_second": 15000.0, "seconds": 3.0, "val_accuracy": 0.905}],
    }  # fmt: skip
    row = trainer_row("trainer, default recipe", metrics, ["--recipe", "default"])
    assert row["images_per_second"] == 15000.0 and row["epoch_seconds"] == 3.0  # the steady last epoch
    assert row["seconds_to_target"] == 60.0 and row["first_epoch_val_at_target"] == 2
    machine = {"cpu": "x", "cpu_cores": 16, "memory_gib": 1, "gpu": "H100", "device": "cuda", "torch_threads": 16,
               "python": "3.12", "packages": {}, "load_average_at_start": [0, 0, 0]}  # fmt: skip
    guide = {"workers": 2, "batch_size": 64, "images_per_second": 1500.0, "epoch_seconds_estimate": 33.3}
    results = {"command": "python -m benchmarks.training --full", "machine": machine, "full": True, "elapsed_s": 200,
               "guide": guide, "trainer": [row], "speedup_same_batch": 10.0, "full_train_images": 50000}  # fmt: skip
    text = training_markdown(results)
    assert "**10.0x**" in text and "| 60.0 s |" in text and "91.00%" in text


def test_a_failed_trainer_run_is_recorded_and_the_next_recipe_still_runs(tmp_path):
    source = _image_folder(tmp_path / "data", per_class=3)
    trainer = tmp_path / "python"  # the real interpreter, except that the seed recipe fails
    trainer.write_text(f'#!/bin/sh\ncase "$*" in *"--recipe seed"*) echo boom >&2; exit 3;; esac\n'
                       f'exec {sys.executable} "$@"\n')  # fmt: skip
    trainer.chmod(0o755)
    argv = ["--data-dir", str(source), "--device", "cpu", "--train-per-class", "3", "--test-per-class", "1",
            "--guide-max-steps", "1", "--guide-workers", "0", "--out", str(tmp_path / "out"),
            "--runs-dir", str(tmp_path / "runs"), "--python", str(trainer)]  # fmt: skip
    results = main(argv)
    (failed,) = results["failed"]
    assert failed["name"] == "trainer, seed recipe" and "exit 3" in failed["error"] and "boom" in failed["error"]
    assert [run["name"] for run in results["trainer"]] == ["trainer, default recipe"]
    assert (tmp_path / "runs" / "default" / "train.log").is_file()  # kept where asked, not in a temporary folder
    saved = json.loads((tmp_path / "out" / "training.json").read_text())
    assert saved["complete"] and saved["failed"] == results["failed"]
    assert "trainer, seed recipe: **failed**" in (tmp_path / "out" / "training.md").read_text()
