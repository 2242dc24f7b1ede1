"""A run killed mid-epoch resumes from its last completed epoch and ends with the uninterrupted run's weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from models import load_checkpoint
from tests.training.helpers import command_line, tiny_config
from training.state import state_path
from training.train import main


def _assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            _assert_same_tensors(a[key], b[key])
        elif isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
def test_killed_run_resumes_to_identical_weights(learnable_folder: Path, tmp_path: Path) -> None:
    # The default recipe (SGD + Nesterov momentum, EMA, augmentation, dropout), 2 steps per epoch.
    output = tmp_path / "ref" / "a.safetensors"
    config = tiny_config(
        learnable_folder, output, train_subset=40, val_size=16, batch_size=20, lr=0.01, warmup_fraction=0.5
    )
    reference = main(config)

    killed = replace(config, output=str(tmp_path / "killed" / "a.safetensors"))
    state = state_path(killed.output)
    process = subprocess.Popen([sys.executable, "-m", "training", *command_line(killed)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not state.is_file() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)  # somewhere inside epoch 2
    finally:
        process.wait()
    assert torch.load(state, weights_only=True)["epoch"] == 1, "the run was not killed after epoch 1"
    assert not Path(killed.output).exists()

    resumed = main(replace(killed, resume=True))
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    _assert_same_tensors(load_checkpoint(config.output).state_dict, load_checkpoint(killed.output).state_dict)
    # Not only the shipped EMA weights: the raw weights and the optimizer's momentum too.
    ref_state = torch.load(state_path(config.output), weights_only=True)
    new_state = torch.load(state, weights_only=True)
    _assert_same_tensors(ref_state["model"], new_state["model"])
    _assert_same_tensors(ref_state["optimizer"]["state"], new_state["optimizer"]["state"])
    assert resumed["test_accuracy"] == reference["test_accuracy"]
