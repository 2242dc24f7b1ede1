"""`make serve` without a GPU, for real: a first stand-in served at once, its replacement trained in the
background and taken by the running service (its checkpoint poll), Ctrl-C stopping both with the training's
state saved. The real Makefile, trainer and service as processes, real HTTP, a small generated image folder."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from benchmarks.servers.launch import free_port
from models.checkpoint import load_checkpoint, save_checkpoint
from tests.app.helpers import png
from tests.deploy.test_makefile import checkpoints, fake_venv
from tests.helpers import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")

# Both runs small: one epoch each on 4 x 48 generated images (the explicit --epochs replaces the recipes' time
# budgets); the replacement's epochs are what the Ctrl-C test interrupts.
SMALL = "--no-download --no-cache --decode-workers 1 --val-size 32 --batch-size 40 --no-ood"


def start_make_serve(
    tmp_path: Path, learnable_folder: Path, replacement_epochs: int
) -> tuple[subprocess.Popen[str], str, Path]:
    venv, names = fake_venv(tmp_path), checkpoints(tmp_path)
    port = free_port()
    args = f"--data-dir {learnable_folder} {SMALL}"
    command = [
        "make",
        "-C",
        str(REPO),
        "serve",
        f"VENV={venv}",
        *names,
        "HAS_GPU=false",
        f"PORT={port}",
        f"FIRST_TRAIN_ARGS=--recipe cpu-first --epochs 1 {args}",
        f"CPU_TRAIN_ARGS=--recipe cpu --epochs {replacement_epochs} --save-every-s 0 {args}",
    ]
    env = {**os.environ, "ALEXNET_CHECKPOINT_POLL_S": "0.5", "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "make.log").open("w")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    return process, f"http://127.0.0.1:{port}", Path(names[1].split("=")[1])


def served_model(base: str, deadline: float, process: subprocess.Popen[str]) -> dict[str, Any]:
    """/model.json once the service answers it."""
    while time.monotonic() < deadline:
        assert process.poll() is None, "make serve stopped"
        try:
            response = httpx.get(f"{base}/model.json", timeout=5)
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError("the service never answered")


def stop(process: subprocess.Popen[str]) -> int:
    """Ctrl-C as a terminal sends it: SIGINT to the whole foreground group."""
    os.killpg(process.pid, signal.SIGINT)
    try:
        return process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def group_is_gone(process: subprocess.Popen[str]) -> bool:
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_first_stand_in_is_served_then_replaced_without_a_restart(tmp_path: Path, learnable_folder: Path) -> None:
    process, base, checkpoint = start_make_serve(tmp_path, learnable_folder, replacement_epochs=2)
    try:
        first = served_model(base, time.monotonic() + 240, process)
        assert first["config"]["recipe"] == "cpu-first" and first["model"]["stand_in"]
        answer = httpx.post(f"{base}/predict", files={"file": ("a.png", png())}, timeout=30)
        assert (
            answer.status_code == 200 and answer.json()["model"]["weights_sha256"] == first["model"]["weights_sha256"]
        )
        deadline = time.monotonic() + 240
        while (now := served_model(base, deadline, process))["config"]["recipe"] != "cpu":
            assert time.monotonic() < deadline, "the replacement was never taken"
            time.sleep(0.5)
        assert now["model"]["version"] == 2 and now["model"]["weights_sha256"] != first["model"]["weights_sha256"]
        answer = httpx.post(f"{base}/predict", files={"file": ("a.png", png())}, timeout=30)
        assert answer.json()["model"]["weights_sha256"] == now["model"]["weights_sha256"]
    finally:
        code = stop(process)
    log = (tmp_path / "make.log").read_text()
    assert code is not None, log[-3000:]
    assert "is a first stand-in (recipe cpu-first); training its replacement (recipe cpu)" in log
    assert group_is_gone(process)
    assert checkpoint.is_file()


def test_ctrl_c_stops_the_background_training_with_its_state_saved(
    tmp_path: Path, learnable_folder: Path, tiny_checkpoint: Path
) -> None:
    # The script alone, over a first stand-in already there (what make serve runs once it has one).
    checkpoint = tmp_path / "stand-in.safetensors"
    first = load_checkpoint(tiny_checkpoint)
    save_checkpoint(
        checkpoint,
        first.build_model(),
        model_args=first.model_args,
        classes=first.classes,
        preprocess=first.preprocess,
        config={"recipe": "cpu-first"},
    )
    venv, port = fake_venv(tmp_path), free_port()
    command = [
        str(REPO / "scripts" / "serve_while_training.sh"),
        str(checkpoint),
        "127.0.0.1",
        str(port),
        "--recipe",
        "cpu",
        "--epochs",
        "200",
        "--save-every-s",
        "0",
        "--data-dir",
        str(learnable_folder),
        *SMALL.split(),
    ]
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    state = checkpoint.with_suffix(".state.pt")
    try:
        assert served_model(f"http://127.0.0.1:{port}", time.monotonic() + 120, process)["config"]["recipe"] == (
            "cpu-first"
        )
        deadline = time.monotonic() + 120
        while not (state.is_file() and "epoch 2/200" in log_path.read_text()):
            assert time.monotonic() < deadline, "the background training never wrote its state"
            time.sleep(0.5)
    finally:
        stop(process)
    log = log_path.read_text()
    assert "stopping the background training (its state is saved; make serve resumes it)" in log, log[-3000:]
    assert group_is_gone(process)
    saved = torch.load(state, weights_only=True)  # our own file: the trainer's resumable state
    assert saved["epoch"] >= 2 and saved["config"]["recipe"] == "cpu"
