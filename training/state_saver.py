"""When the resumable state is written, and how without holding up training.

The state file is about 0.7 GB for AlexNet (weights, momentum, EMA). On a GPU an epoch of the default recipe
takes a second or two, so writing it after every epoch would cost as much as the training (expected).
Instead it is written:

- after an epoch, when ``save_every_s`` seconds have passed since the last write (0: after every epoch);
- after the last epoch, always;
- after the current epoch when SIGTERM or SIGINT arrives, and then the run stops (a second signal stops at
  once, as before, losing the epoch in progress).

A write copies the state to host memory (a device-to-host copy on a GPU, a memory copy on a CPU) and
captures the RNG states in the training thread, then serialises and writes the copy in a background
thread while the next epoch trains; the next write, or the end of the run, waits for it. A failed write
(a full disk) is raised there, as the one-line ``WriteError``.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from training.state_file import snapshot, write_state

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(Exception):
    """The run stopped after an epoch because a signal asked it to; the state of that epoch is written."""

    def __init__(self, signum: int, epoch: int) -> None:
        super().__init__(f"{signal.Signals(signum).name} received: stopped after epoch {epoch}")
        self.signum, self.epoch = signum, epoch


class StateSaver:
    """Writes snapshots of the training state to ``path`` on the schedule above, one write at a time."""

    def __init__(self, path: Path, every_s: float) -> None:
        self.path, self.every_s = path, every_s
        self.last_write = time.monotonic()  # the run's start counts as a write: nothing to lose before it
        self.seconds = 0.0  # time the training thread spent on writes (copies, and waiting for the last one)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def due(self, last_epoch: bool, stopping: bool) -> bool:
        return last_epoch or stopping or time.monotonic() - self.last_write >= self.every_s

    def save(self, state: dict[str, Any], wait: bool = False) -> None:
        """Snapshot ``state`` now (host copies, RNG states), write it in the background (or at once: ``wait``)."""
        started = time.perf_counter()
        self.wait()
        full = snapshot(state)
        self._thread = threading.Thread(target=self._write, args=(full,), name="alexnet-state-writer")
        self._thread.start()
        self.last_write = time.monotonic()
        if wait:
            self.wait()
        self.seconds += time.perf_counter() - started

    def wait(self) -> None:
        """Until the write in flight is on disk; raises what it failed with."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _write(self, full: dict[str, Any]) -> None:
        try:
            write_state(self.path, full)
        except BaseException as exc:  # handed to the training thread at its next wait
            self._error = exc


class StopRequest:
    """Set by SIGTERM or SIGINT while training; a second signal interrupts at once."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def agreed(self, device: torch.device, distributed: bool) -> int | None:
        """The signal, if any rank got one (all ranks stop after the same epoch)."""
        if not distributed:
            return self.signum
        flag = torch.tensor([self.signum or 0], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item()) or None


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Catch SIGTERM and SIGINT for the block (in the main thread only; elsewhere, nothing changes)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.signal(s, request) for s in STOP_SIGNALS}
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
