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
    commands = {"python": "", "alexnet-train": "-m training", "alexnet-serve": "-m app"}
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


def checkpoints(tmp_path: Path) -> list[str]:
    """The real model's and the CPU stand-in's paths, under tmp_path, as make variables."""
    real, stand_in = tmp_path / "out" / "real.safetensors", tmp_path / "out" / "stand-in.safetensors"
    return [f"TRAINED_CHECKPOINT={real}", f"STAND_IN_CHECKPOINT={stand_in}"]


SERVE = r"(?:alexnet-serve --checkpoint|serve_while_training\.sh) (\S+)"


def served_and_trained(result: subprocess.CompletedProcess[str]) -> tuple[str, str | None]:
    """From `make -n serve`: the checkpoint served and the one alexnet-train writes first (None: none)."""
    assert result.returncode == 0, result.stderr
    served = re.search(SERVE, result.stdout)
    trained = re.search(r"alexnet-train --output (\S+) --resume", result.stdout)
    if trained is not None:  # trained, then served
        assert trained.start() < served.start()
    return served.group(1), trained and trained.group(1)


def test_without_a_gpu_a_first_stand_in_is_served_while_the_better_one_trains(tmp_path: Path) -> None:
    venv, names = fake_venv(tmp_path), checkpoints(tmp_path)
    result = make("-n", "serve", f"VENV={venv}", *names, "HAS_GPU=false", tmp_path=tmp_path)
    stand_in = names[1].split("=")[1]
    assert served_and_trained(result) == (stand_in, stand_in)  # under its own name
    assert f"--output {stand_in} --resume --stale-state restart --device cpu --recipe cpu-first" in result.stdout
    # Then served by the script that trains the cpu recipe over it in the background (tested for real in
    # test_serve_while_training.py).
    assert f"serve_while_training.sh {stand_in} 127.0.0.1 8000 --device cpu --recipe cpu\n" in result.stdout


def test_a_gpu_trains_the_real_model_even_where_a_stand_in_was_left(tmp_path: Path, tiny_checkpoint: Path) -> None:
    venv, names = fake_venv(tmp_path), checkpoints(tmp_path)
    real, stand_in = (Path(name.split("=")[1]) for name in names)
    stand_in.parent.mkdir(parents=True)
    shutil.copy(tiny_checkpoint, stand_in)  # what an earlier `make serve` without a GPU left
    result = make("-n", "serve", f"VENV={venv}", *names, "HAS_GPU=true", tmp_path=tmp_path)
    assert served_and_trained(result) == (str(real), str(real))
    assert f"--output {real} --resume --stale-state restart --device cuda" in result.stdout


def test_without_a_gpu_the_real_model_is_served_when_it_is_there(tmp_path: Path, tiny_checkpoint: Path) -> None:
    venv, names = fake_venv(tmp_path), checkpoints(tmp_path)
    real = Path(names[0].split("=")[1])
    real.parent.mkdir(parents=True)
    shutil.copy(tiny_checkpoint, real)  # copied from a GPU host
    result = make("-n", "serve", f"VENV={venv}", *names, "HAS_GPU=false", tmp_path=tmp_path)
    assert served_and_trained(result) == (str(real), None)


def test_the_gpu_probe_asks_the_installed_torch(tmp_path: Path) -> None:
    # The probe itself, not overridden: on this machine it gives what torch says here.
    import torch

    venv, names = fake_venv(tmp_path), checkpoints(tmp_path)
    served, _ = served_and_trained(make("-n", "serve", f"VENV={venv}", *names, tmp_path=tmp_path))
    assert served == names[0 if torch.cuda.is_available() else 1].split("=")[1]


def test_a_checkpoint_you_name_is_never_trained(tmp_path: Path) -> None:
    venv, typo = fake_venv(tmp_path), tmp_path / "mine.safetensros"
    result = make("serve", f"VENV={venv}", f"CHECKPOINT={typo}", tmp_path=tmp_path)
    assert result.returncode != 0
    assert f"no checkpoint at {typo}: a checkpoint you name is served, never trained" in result.stderr
    assert "alexnet-train" not in result.stdout and not typo.exists()


def test_a_cpu_run_is_announced_and_a_data_problem_stops_it_cleanly(tmp_path: Path) -> None:
    # The real trainer on an empty data folder, download off (nothing leaves this machine in tests):
    # the log says it is a short CPU run and how to run the full one, then the trainer's own message.
    venv, names = fake_venv(tmp_path), checkpoints(tmp_path)
    real, stand_in = (Path(name.split("=")[1]) for name in names)
    first_args = "--epochs 3 --no-download"
    result = make("checkpoint", f"VENV={venv}", *names, "HAS_GPU=false", f"FIRST_TRAIN_ARGS={first_args}",
                  tmp_path=tmp_path)  # fmt: skip
    assert result.returncode != 0
    assert f"a FIRST stand-in ({first_args}, about a minute of training)" in result.stdout
    assert "then a better one (--recipe cpu, 7 minutes of training) trains in the background" in result.stdout
    assert f"both are saved as {stand_in}; a GPU host trains the real model as {real}" in result.stdout
    assert f"for the full recipe on this CPU run:  {venv}/bin/alexnet-train --output {real}" in result.stdout
    assert str(tmp_path / "no-data") in result.stderr  # the trainer names the folder and what belongs there
    assert "Traceback" not in result.stderr
    assert not stand_in.exists() and not real.exists()


def test_the_cpu_recipes_and_their_name_are_the_same_with_and_without_docker() -> None:
    makefile = (REPO / "Makefile").read_text()
    override = (REPO / "docker-compose.cpu.yml").read_text()
    commands = [json.loads(found) for found in re.findall(r"^    command: (\[.*?\])", override, re.M | re.S)]
    for variable, command in zip(("FIRST_TRAIN_ARGS", "CPU_TRAIN_ARGS"), commands, strict=True):
        makefile_args = re.search(rf"^{variable} \?= (.*)$", makefile, re.M).group(1).split()
        assert command[:3] == ["alexnet-train-if-missing", "--device", "cpu"]
        assert command[3:] == makefile_args
    stand_in = re.search(r"^STAND_IN_CHECKPOINT \?= (.*)$", (REPO / "Makefile").read_text(), re.M).group(1)
    names = set(re.findall(r"ALEXNET_CHECKPOINT_NAME:-([^}]+)}", override))
    assert names == {Path(stand_in).name}  # one name for the stand-in, with and without Docker
