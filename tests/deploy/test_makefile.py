"""`make serve`: train only when the checkpoint is missing, say plainly what a CPU run is, stop cleanly."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def fake_venv(tmp_path: Path) -> Path:
    """A folder shaped like the Makefile's venv, already installed, whose commands run this Python on this
    work tree: the real trainer and service, without a second install."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    commands = {"python": "", "alexnet-train": "-m training", "alexnet-serve": "-m app.cli"}
    for name, module in commands.items():
        script = venv / "bin" / name
        script.write_text(
            f'#!/bin/sh\nPYTHONPATH={shlex.quote(str(REPO))} exec {shlex.quote(sys.executable)} {module} "$@"\n'
        )
        script.chmod(0o755)
    (venv / ".installed").touch()  # newer than pyproject.toml: no install step
    return venv


def make(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """make in the repository (paths in args are absolute, under tmp_path); the data folder is empty."""
    env = {**os.environ, "ALEXNET_DATA_DIR": str(tmp_path / "no-data")}
    return subprocess.run(["make", "-C", str(REPO), *args], capture_output=True, text=True, env=env, timeout=300)


def test_an_existing_checkpoint_is_served_without_training(tmp_path: Path, tiny_checkpoint: Path) -> None:
    venv = fake_venv(tmp_path)
    result = make("-n", "serve", f"VENV={venv}", f"CHECKPOINT={tiny_checkpoint}", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "alexnet-train" not in result.stdout
    assert f"alexnet-serve --checkpoint {tiny_checkpoint}" in result.stdout


def test_a_missing_checkpoint_is_trained_first_and_resumable(tmp_path: Path) -> None:
    venv, checkpoint = fake_venv(tmp_path), tmp_path / "out" / "model.safetensors"
    result = make("-n", "serve", f"VENV={venv}", f"TRAINED_CHECKPOINT={checkpoint}", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    train_at = result.stdout.index(f"alexnet-train --output {checkpoint} --resume")
    assert train_at < result.stdout.index(f"alexnet-serve --checkpoint {checkpoint}")


def test_a_checkpoint_you_name_is_never_trained(tmp_path: Path) -> None:
    venv, typo = fake_venv(tmp_path), tmp_path / "mine.safetensros"
    result = make("serve", f"VENV={venv}", f"CHECKPOINT={typo}", tmp_path=tmp_path)
    assert result.returncode != 0
    assert f"no checkpoint at {typo}: a checkpoint you name is served, never trained" in result.stderr
    assert "alexnet-train" not in result.stdout and not typo.exists()


def test_a_cpu_run_is_announced_and_a_data_problem_stops_it_cleanly(tmp_path: Path) -> None:
    # The real trainer on an empty data folder, download off (nothing leaves this machine in tests):
    # the log says it is a short CPU run and how to run the full one, then the trainer's own message.
    venv, checkpoint = fake_venv(tmp_path), tmp_path / "out" / "model.safetensors"
    cpu_args = "--epochs 3 --no-download"
    result = make(
        "checkpoint",
        f"VENV={venv}",
        f"TRAINED_CHECKPOINT={checkpoint}",
        f"CPU_TRAIN_ARGS={cpu_args}",
        tmp_path=tmp_path,
    )
    if "a GPU is here" in result.stdout:
        pytest.skip("this machine has a GPU: the CPU branch is not taken")
    assert result.returncode != 0
    assert f"SHORT CPU run ({cpu_args})" in result.stdout
    assert f"for the full recipe run:  {venv}/bin/alexnet-train --output {checkpoint}" in result.stdout
    assert str(tmp_path / "no-data") in result.stderr  # the trainer names the folder and what belongs there
    assert "Traceback" not in result.stderr
    assert not checkpoint.exists()


def test_the_cpu_recipe_is_the_same_with_and_without_docker() -> None:
    makefile_args = re.search(r"^CPU_TRAIN_ARGS \?= (.*)$", (REPO / "Makefile").read_text(), re.M).group(1).split()
    override = (REPO / "docker-compose.cpu.yml").read_text()
    command = json.loads(re.search(r"^    command: (\[.*?\])", override, re.M | re.S).group(1))
    assert command[:3] == ["alexnet-train-if-missing", "--device", "cpu"]
    assert command[3:] == makefile_args
