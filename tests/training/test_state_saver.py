"""When the resumable state is written: on a schedule, after the last epoch, and when a signal stops the run."""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tests.training.helpers import tiny_config
from training import state_saver, train
from training.state_file import load_state, snapshot, state_path
from training.state_saver import StateSaver, Stopped


def test_a_snapshot_is_the_state_at_save_time_though_training_goes_on(tmp_path: Path) -> None:
    weights = torch.zeros(1000)
    saver = StateSaver(tmp_path / "run.state.pt", every_s=0)
    saver.save({"config": {}, "model": {"w": weights}, "epoch": 1})
    weights += 1  # the next epoch changes the live tensor while the copy is being written
    saver.wait()
    state = torch.load(tmp_path / "run.state.pt", weights_only=True)
    assert state["epoch"] == 1 and torch.equal(state["model"]["w"], torch.zeros(1000))


def test_a_failed_background_write_is_raised_in_the_training_thread(tmp_path: Path, monkeypatch) -> None:
    def no_space(path: Path, full: dict) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(state_saver, "write_state", no_space)
    saver = StateSaver(tmp_path / "run.state.pt", every_s=0)
    saver.save({"epoch": 1})
    with pytest.raises(OSError, match="No space left"):
        saver.wait()
    saver.wait()  # raised once, then clear


def test_the_schedule(tmp_path: Path) -> None:
    saver = StateSaver(tmp_path / "s.pt", every_s=3600)
    assert not saver.due(last_epoch=False, stopping=False)  # the run just started
    assert saver.due(last_epoch=True, stopping=False) and saver.due(last_epoch=False, stopping=True)
    assert StateSaver(tmp_path / "s.pt", every_s=0).due(last_epoch=False, stopping=False)
    assert snapshot({"epoch": 2})["rng"]  # the RNG states are taken with the snapshot, in this thread


def test_state_only_at_the_end_then_on_sigterm_and_the_run_resumes(learnable_folder: Path, tmp_path: Path) -> None:
    output = tmp_path / "alexnet.safetensors"
    config = tiny_config(learnable_folder, output, epochs=3, save_every_s=3600.0, train_subset=40, batch_size=20)
    seen: list[bool] = []
    train.main(config, on_epoch_end=lambda epoch: seen.append(state_path(output).exists()))
    assert seen[:2] == [False, False]  # an hour between writes: none after epochs 1 and 2, only after the last
    assert load_state(state_path(output), config.to_dict())["epoch"] == 3

    again = replace(config, output=str(tmp_path / "again.safetensors"))

    def terminate_after_the_first(epoch: int) -> None:
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # between epochs 1 and 2: the run stops after epoch 2

    with pytest.raises(Stopped) as stopped:
        train.main(again, on_epoch_end=terminate_after_the_first)
    assert (stopped.value.signum, stopped.value.epoch) == (signal.SIGTERM, 2)
    assert load_state(state_path(again.output), again.to_dict())["epoch"] == 2  # written though not due
    metrics = train.main(replace(again, resume=True))
    assert [entry["epoch"] for entry in metrics["history"]] == [1, 2, 3]
    assert metrics["state_write_seconds"] >= 0


def test_the_command_line_says_how_to_go_on_and_exits_128_plus_the_signal(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    def stopped(config: object) -> None:
        raise Stopped(signal.SIGTERM, 2)

    monkeypatch.setattr(train, "main", stopped)
    with pytest.raises(SystemExit) as exited:
        train.cli(["--data-dir", str(tmp_path), "--device", "cpu"])
    assert exited.value.code == 143
    assert "SIGTERM received: stopped after epoch 2, its state written: rerun with --resume" in caplog.text
