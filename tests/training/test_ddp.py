"""A real two-process DDP run on the gloo backend, launched by torchrun: rank 0 writes a loadable checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from models import load_checkpoint
from tests.helpers import TEST_INPUT_SIZE
from training.report import METRICS_FILE
from training.state_file import state_path


def torchrun(learnable_folder: Path, output: Path, *flags: str) -> list[str]:
    """A two-rank gloo run of the trainer on the tests' learnable folder."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "training", "--data-dir", str(learnable_folder), "--device", "cpu", "--no-download", "--no-cache",
        "--input-size", str(TEST_INPUT_SIZE), "--batch-size", "32", "--train-subset", "64",
        "--val-size", "16", "--decode-workers", "1", "--output", str(output), "--no-progress",
        "--no-ood",  # rank 0 alone runs the OOD comparison, as a single process does (tested there): 34 s saved
        *flags,
    ]  # fmt: skip


def rank_pid(parent: int, rank: int) -> int | None:
    """The pid of the worker with RANK=rank among parent's children (Linux /proc), once it has started."""
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == parent and f"RANK={rank}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                return int(entry.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


@pytest.mark.slow
def test_two_process_gloo_run_writes_a_loadable_checkpoint(learnable_folder: Path, tmp_path: Path) -> None:
    output = tmp_path / "ddp" / "alexnet.safetensors"
    result = subprocess.run(torchrun(learnable_folder, output, "--epochs", "1"), capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DDP over 2 ranks (gloo backend)" in result.stderr
    assert result.stderr.count("epoch 1/1") == 1  # rank 0 logs; rank 1 is quiet
    ckpt = load_checkpoint(output)
    assert ckpt.metrics["world_size"] == 2
    assert ckpt.metrics["batch_size"] == 32  # global: 16 images on each rank
    assert ckpt.metrics["test_images"] == 32  # every test image evaluated once across the two ranks
    assert ckpt.metrics["history"][0]["images_per_second"] > 0
    assert json.loads((output.parent / METRICS_FILE).read_text())["world_size"] == 2


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the ranks through Linux /proc")
def test_a_signal_to_one_rank_stops_every_rank_after_the_same_epoch(learnable_folder: Path, tmp_path: Path) -> None:
    # SIGTERM to rank 1 alone: the ranks agree (an all-reduce of the stop flag) to stop after one epoch, rank 0
    # writes that epoch's state, and a resumed run finishes the rest.
    output, epochs = tmp_path / "ddp" / "alexnet.safetensors", 4
    log = (tmp_path / "stderr").open("w+")
    process = subprocess.Popen(torchrun(learnable_folder, output, "--epochs", str(epochs), "--save-every-s", "0"),
                               stderr=log, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "epoch 1/" not in Path(log.name).read_text() and process.poll() is None:
            assert time.monotonic() < deadline, "no epoch finished in 2 minutes"
            time.sleep(0.05)
        pid = rank_pid(process.pid, 1)
        assert pid is not None, "rank 1 not found"
        os.kill(pid, signal.SIGTERM)
        process.wait(timeout=120)
    finally:
        process.kill()
        process.wait()
    stderr = Path(log.name).read_text()
    stopped = [line for line in stderr.splitlines() if "SIGTERM received: stopped after epoch" in line]
    # Each rank says so, rank 0 too though only rank 1 got the signal, and after the same epoch.
    epochs_stopped = {int(line.split("stopped after epoch ")[1].split(",")[0]) for line in stopped}
    assert len(stopped) == 2 and len(epochs_stopped) == 1, stderr[-3000:]
    (epoch,) = epochs_stopped
    assert 1 <= epoch < epochs and not output.exists()
    assert torch.load(state_path(output), weights_only=True)["epoch"] == epoch

    result = subprocess.run(torchrun(learnable_folder, output, "--epochs", str(epochs), "--resume"),
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"after epoch {epoch}" in result.stderr
    assert [h["epoch"] for h in load_checkpoint(output).metrics["history"]] == list(range(1, epochs + 1))
