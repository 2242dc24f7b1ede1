"""scripts/train_if_missing.sh, the compose `train` service's command: train only when no checkpoint exists."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

SCRIPT = REPO / "scripts" / "train_if_missing.sh"


def run(checkpoint: Path, *args: str, path: str) -> subprocess.CompletedProcess[str]:
    env = {"ALEXNET_CHECKPOINT": str(checkpoint), "PATH": path, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        ["/bin/sh", str(SCRIPT), *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False
    )


def test_an_existing_checkpoint_is_kept_and_nothing_is_trained(tiny_checkpoint: Path, tmp_path: Path) -> None:
    checkpoint = shutil.copy(tiny_checkpoint, tmp_path / "model.safetensors")
    before = Path(checkpoint).read_bytes()
    # An empty PATH: had the script tried to start the trainer, it would have failed with 127.
    result = run(Path(checkpoint), "--device", "cuda", path="")
    assert result.returncode == 0, result.stderr
    assert "already exists, not training" in result.stdout
    assert Path(checkpoint).read_bytes() == before


def test_a_missing_checkpoint_runs_the_trainer_with_the_arguments(tmp_path: Path) -> None:
    # The real trainer, offline on an empty data folder: it must stop with its own message, and the script
    # must pass its failure on (so compose never starts the API on a checkpoint that is not there).
    checkpoint = tmp_path / "out" / "model.safetensors"
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    result = run(checkpoint, "--data-dir", str(tmp_path / "no-data"), "--no-download", "--device", "cpu", path=path)
    assert f"no checkpoint at {checkpoint}; training" in result.stdout
    assert result.returncode != 0
    assert str(tmp_path / "no-data") in result.stderr  # the trainer's own message names the folder
    assert "Traceback" not in result.stderr
    assert not checkpoint.exists()


def test_without_the_variable_it_says_what_is_missing(tmp_path: Path) -> None:
    result = subprocess.run(["/bin/sh", str(SCRIPT)], capture_output=True, text=True, env={}, check=False)
    assert result.returncode != 0 and "ALEXNET_CHECKPOINT" in result.stderr
