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
from training.state_file import StateError, state_path
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


def test_a_state_file_of_other_settings_is_refused_or_set_aside(learnable_folder: Path, tmp_path: Path) -> None:
    # What `make serve` meets after a change of recipe: --resume with a state file the settings do not match.
    output = tmp_path / "a.safetensors"
    first = tiny_config(learnable_folder, output, train_subset=40, val_size=16, batch_size=20, epochs=1, ood=False)
    main(first)
    old_state = state_path(output).read_bytes()
    output.unlink()
    changed = replace(first, epochs=2, resume=True)
    with pytest.raises(StateError, match=r"other settings \(epochs: 1 -> 2\)"):
        main(changed)  # the default: stop and say what differs
    assert state_path(output).read_bytes() == old_state and not output.exists()

    restarted = main(replace(changed, stale_state="restart"))
    assert [h["epoch"] for h in restarted["history"]] == [1, 2]  # from scratch, not from epoch 1
    assert Path(str(state_path(output)) + ".stale").read_bytes() == old_state  # kept, not lost
    assert torch.load(state_path(output), weights_only=True)["epoch"] == 2 and output.is_file()
