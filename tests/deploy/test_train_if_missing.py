"""scripts/train_if_missing.sh, the compose `train` service's command: train only when no checkpoint exists
(or a first stand-in, when another recipe is asked for)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn

from models.checkpoint import save_checkpoint
from models.transforms import PreprocessSpec
from tests.helpers import REPO

SCRIPT = REPO / "scripts" / "train_if_missing.sh"


def run(checkpoint: Path, *args: str, path: str) -> subprocess.CompletedProcess[str]:
    env = {"ALEXNET_CHECKPOINT": str(checkpoint), "PATH": path, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        ["/bin/sh", str(SCRIPT), *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False
    )


PYTHON_PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
# Arguments with which a trainer that starts fails at once, naming the folder: no data, no download.
NO_DATA = ("--data-dir", "no-data-here", "--no-download", "--device", "cpu")


def checkpoint_of_recipe(path: Path, recipe: str) -> Path:
    """A file whose metadata records ``recipe`` (the script reads nothing else of it)."""
    save_checkpoint(
        path,
        nn.Linear(2, 2),
        model_args={"num_classes": 2},
        classes=("a", "b"),
        preprocess=PreprocessSpec(input_size=64),
        config={"recipe": recipe},
    )
    return path


def test_an_existing_checkpoint_is_kept_and_nothing_is_trained(tiny_checkpoint: Path, tmp_path: Path) -> None:
    checkpoint = Path(shutil.copy(tiny_checkpoint, tmp_path / "model.safetensors"))
    before = checkpoint.read_bytes()
    result = run(checkpoint, *NO_DATA, path=PYTHON_PATH)  # a trainer started here would fail
    assert result.returncode == 0, result.stderr
    assert "already exists, not training" in result.stdout
    assert checkpoint.read_bytes() == before


@pytest.mark.parametrize(("recorded", "asked"), [("cpu", ["--recipe", "cpu"]), ("cpu-first", ["--recipe=cpu-first"])])
def test_a_stand_in_of_the_recipe_asked_or_a_full_one_is_kept(tmp_path: Path, recorded: str, asked: list[str]) -> None:
    checkpoint = checkpoint_of_recipe(tmp_path / "model.safetensors", recorded)
    result = run(checkpoint, *NO_DATA, *asked, path=PYTHON_PATH)
    assert result.returncode == 0, result.stderr
    assert "already exists, not training" in result.stdout


@pytest.mark.parametrize("asked", [["--recipe", "cpu"], ["--recipe=cpu"], []])
def test_a_first_stand_in_is_trained_over_by_another_recipe(tmp_path: Path, asked: list[str]) -> None:
    checkpoint = checkpoint_of_recipe(tmp_path / "model.safetensors", "cpu-first")
    result = run(checkpoint, *NO_DATA, *asked, path=PYTHON_PATH)
    recipe = "default" if not asked else "cpu"
    assert f"{checkpoint} is a first stand-in (recipe cpu-first); training its replacement (recipe {recipe})" in (
        result.stdout
    )
    assert result.returncode != 0 and "no-data-here" in result.stderr  # the real trainer started, and stopped


def test_a_missing_checkpoint_runs_the_trainer_with_the_arguments(tmp_path: Path) -> None:
    # The real trainer, offline on an empty data folder: it must stop with its own message, and the script
    # must pass its failure on (so compose never starts the API on a checkpoint that is not there).
    checkpoint = tmp_path / "out" / "model.safetensors"
    result = run(
        checkpoint, "--data-dir", str(tmp_path / "no-data"), "--no-download", "--device", "cpu", path=PYTHON_PATH
    )
    assert f"no checkpoint at {checkpoint}; training" in result.stdout
    assert result.returncode != 0
    assert str(tmp_path / "no-data") in result.stderr  # the trainer's own message names the folder
    assert "Traceback" not in result.stderr
    assert not checkpoint.exists()


def test_without_the_variable_it_says_what_is_missing(tmp_path: Path) -> None:
    result = subprocess.run(["/bin/sh", str(SCRIPT)], capture_output=True, text=True, env={}, check=False)
    assert result.returncode != 0 and "ALEXNET_CHECKPOINT" in result.stderr
