"""Training faults: SIGKILLs in four phases of one run, then a full disk under the state file and the checkpoint.

A run killed while decoding its data, mid-epoch, while writing its state file and while writing its checkpoint,
restarted each time with the same ``--resume`` command line (as a job with a restart policy would be), ends with
a valid checkpoint after all its epochs and no temporary file. A full disk while the state or the checkpoint is
written leaves the previous file byte for byte, no temporary file, and one line saying so.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from models import files, load_checkpoint
from models.files import temp_files
from tests.helpers import FullDisk
from tests.training.helpers import command_line, tiny_config
from training import state_saver, train
from training.config import TrainConfig
from training.state_file import state_path

TIMEOUT = 120  # seconds for any one phase to arrive on a slow machine; it takes a few


def _fault_config(data_dir: Path, output: Path, **overrides: Any) -> TrainConfig:
    # Two steps per epoch. Without momentum and EMA the state file holds the weights alone (228 MB, not 684): every
    # write and resume is three times shorter, and still lasts long enough to be killed in. PyTorch's init and no
    # flip TTA spare seconds the faults do not care about (test_resume.py resumes the default recipe exactly).
    return tiny_config(data_dir, output, train_subset=16, val_size=8, batch_size=8, lr=0.01, momentum=0.0,
                       ema_decay=0.0, init="torch", tta=False, resume=True, **overrides)  # fmt: skip


class Trainer:
    """``python -m training`` in a subprocess, its log lines gathered as they come."""

    def __init__(self, config: TrainConfig) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "training", *command_line(config)], stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def logged(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def kill_when(self, ready: Callable[[], bool], moment: str, after: float = 0.0) -> None:
        """SIGKILL the trainer ``after`` seconds after ``ready()`` (polled every millisecond) turns true."""
        deadline = time.monotonic() + TIMEOUT
        while not ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                self.finish()
                pytest.fail(f"the trainer ended or stalled before {moment}:\n{''.join(self.lines)}")
            time.sleep(0.001)
        time.sleep(after)
        os.kill(self.process.pid, signal.SIGKILL)
        assert self.finish() == -signal.SIGKILL

    def finish(self) -> int:
        code = self.process.wait(TIMEOUT)
        self.reader.join()
        return code


def _writing(path: Path) -> Callable[[], bool]:
    """True once a temporary file of ``path`` holds some bytes: the write is under way, not done."""

    def size(tmp: Path) -> int:
        try:
            return tmp.stat().st_size
        except FileNotFoundError:  # renamed into place between the listing and now
            return 0

    return lambda: any(size(tmp) > 0 for tmp in temp_files(path))


def _epoch(state: Path) -> int:
    return torch.load(state, map_location="cpu", weights_only=True, mmap=True)["epoch"]


@pytest.mark.slow
def test_run_killed_in_every_phase_resumes_to_a_valid_checkpoint(learnable_folder: Path, tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "run"
    shutil.copytree(learnable_folder, data)
    config = _fault_config(data, out / "alexnet.safetensors", epochs=2)
    checkpoint, state = Path(config.output), state_path(config.output)

    # 1. While decoding. An image that is still arriving (a FIFO nobody writes to) holds the decoder inside
    # the data: once the trainer has it open, the kill lands in the middle of decoding, not before or after.
    arriving = data / "train" / "red" / "00000-arriving.png"
    os.mkfifo(arriving)
    trainer = Trainer(config)
    writer: list[int] = []

    def decoder_waiting() -> bool:
        try:
            writer.append(os.open(arriving, os.O_WRONLY | os.O_NONBLOCK))  # ENXIO until a reader has it open
        except OSError as exc:
            assert exc.errno == errno.ENXIO
        return bool(writer)

    trainer.kill_when(decoder_waiting, "it opened the arriving image")
    os.close(writer[0])
    arriving.unlink()
    assert not trainer.logged("training on"), "the data was read before the kill"
    assert not out.exists()

    # 2. Mid-epoch: the first epoch's steps take seconds; 0.3 s after they start, it is still on them.
    trainer = Trainer(config)
    trainer.kill_when(lambda: trainer.logged("steps/epoch"), "the first epoch", after=0.3)
    assert trainer.logged("no state file")
    assert not state.exists() and not out.exists(), "the first epoch ended before the kill"

    # 3. While writing the state file after epoch 2: epoch 1's state must come through whole.
    trainer = Trainer(config)
    trainer.kill_when(lambda: state.exists() and _writing(state)(), "the state file of epoch 2 was written")
    assert _epoch(state) == 1
    (stray_state,) = temp_files(state)

    # 4. While writing the checkpoint, after both epochs.
    trainer = Trainer(config)
    trainer.kill_when(_writing(checkpoint), "the checkpoint was written")
    assert trainer.logged("after epoch 1")
    assert _epoch(state) == 2
    assert not checkpoint.exists()
    assert not stray_state.exists(), "the killed run's temporary state file survived the next state write"
    assert len(temp_files(checkpoint)) == 1  # the one the next run must remove

    # 5. To the end.
    trainer = Trainer(config)
    assert trainer.finish() == 0, "".join(trainer.lines)
    log = "".join(trainer.lines)
    assert "after epoch 2" in log and "Traceback" not in log
    loaded = load_checkpoint(checkpoint)  # checks the weights' and the abstention tensors' sha256
    assert [h["epoch"] for h in loaded.metrics["history"]] == [1, 2]
    assert loaded.config["epochs"] == 2
    assert list(tmp_path.rglob(f"*{files.TEMP_SUFFIX}")) == []  # the output folder and the data folder
    shutil.rmtree(out)  # about 460 MB, and pytest keeps the last three runs' temporary folders


@pytest.mark.parametrize("victim", ["state", "checkpoint"])
def test_full_disk_keeps_the_previous_file_and_says_so_in_one_line(
    victim: str,
    learnable_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Without --resume the trainer overwrites the state file without reading it: any bytes will do as the previous one.
    config = replace(_fault_config(learnable_folder, tmp_path / "alexnet.safetensors", epochs=1), resume=False)
    path = state_path(config.output) if victim == "state" else Path(config.output)
    path.write_bytes(b"the previous file")
    # The disk fills up just as that file is written; everything before it was written normally. (The state
    # is written by the saver's background thread, through training.state_saver's write_state.)
    module, name = (state_saver, "write_state") if victim == "state" else (train, "save_checkpoint")
    save = getattr(module, name)

    def full_disk_save(*args: Any, **kwargs: Any) -> Any:
        with monkeypatch.context() as patch:
            patch.setattr(files, "FileIO", FullDisk)
            return save(*args, **kwargs)

    monkeypatch.setattr(module, name, full_disk_save)
    with pytest.raises(SystemExit) as exited, caplog.at_level(logging.ERROR):
        train.cli(command_line(config))
    assert exited.value.code == 1
    (error,) = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert error.getMessage() == (
        f"cannot write {path}: No space left on device; the previous file is kept. "
        "Rerun with --resume once it can be written, to continue from the last saved epoch"
    )
    assert error.exc_info is None
    assert path.read_bytes() == b"the previous file"
    assert list(tmp_path.glob(f".*{files.TEMP_SUFFIX}")) == []
