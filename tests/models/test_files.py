"""Atomic writes: a full disk or a failed fsync keeps the previous file, a killed writer's temporary file is
removed by the next write, a live writer's is not."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest
import torch

from models import files, save_random_checkpoint
from models.files import WriteError, atomic_write, temp_files
from tests.helpers import FullDisk

PREVIOUS = b"the previous file"

WRITERS: dict[str, Callable[[BinaryIO], object]] = {
    "bytes": lambda f: f.write(b"x" * 100_000),
    # torch's C++ writer turns the failed write into a RuntimeError of its own: the cause must still come out.
    "torch.save": lambda f: torch.save({"w": torch.zeros(100_000)}, f),
    "np.savez": lambda f: np.savez(f, images=np.zeros(100_000, dtype=np.uint8)),
}


@pytest.mark.parametrize("writer", WRITERS)
def test_full_disk_keeps_the_previous_file(writer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(PREVIOUS)
    monkeypatch.setattr(files, "FileIO", FullDisk)
    with pytest.raises(WriteError) as caught:
        atomic_write(path, WRITERS[writer])
    assert str(caught.value) == f"cannot write {path}: No space left on device; the previous file is kept"
    assert caught.value.errno == errno.ENOSPC
    assert path.read_bytes() == PREVIOUS
    assert sorted(tmp_path.iterdir()) == [path]  # no temporary file


def test_full_disk_without_a_previous_file_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.safetensors"
    monkeypatch.setattr(files, "FileIO", FullDisk)
    with pytest.raises(WriteError, match=r"No space left on device; no partial file is left$"):
        save_random_checkpoint(path, input_size=64)
    assert list(tmp_path.iterdir()) == []


def test_failed_fsync_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Some filesystems (NFS, XFS with delayed allocation) only report a full disk or a lost write at fsync.
    path = tmp_path / "a.bin"
    path.write_bytes(PREVIOUS)

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(WriteError, match=r"Input/output error; the previous file is kept$"):
        atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == PREVIOUS
    assert sorted(tmp_path.iterdir()) == [path]


def test_a_bug_in_the_writer_is_not_a_write_error(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(PREVIOUS)

    def broken(f: BinaryIO) -> None:
        f.write(b"half")
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        atomic_write(path, broken)
    assert path.read_bytes() == PREVIOUS
    assert sorted(tmp_path.iterdir()) == [path]


def test_killed_writers_temp_file_is_removed_by_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    # What a writer killed mid-write leaves: a partial temporary file that nobody holds a lock on any more.
    abandoned = tmp_path / ".a.bin.k1ll3d.tmp"
    abandoned.write_bytes(b"half of it")
    other = tmp_path / ".b.bin.k1ll3d.tmp"  # another file's: not this write's business
    other.write_bytes(b"half")
    atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new"
    assert sorted(tmp_path.iterdir()) == [other, path]


def test_live_writers_temp_file_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    writing, release = threading.Event(), threading.Event()

    def slow(f: BinaryIO) -> None:
        f.write(b"slow")
        writing.set()
        release.wait(30)

    thread = threading.Thread(target=atomic_write, args=(path, slow))
    thread.start()
    try:
        assert writing.wait(30)
        (live,) = temp_files(path)
        atomic_write(path, lambda f: f.write(b"fast"))  # flock works between two opens in one process too
        assert live.exists()
        assert path.read_bytes() == b"fast"
    finally:
        release.set()
        thread.join()
    assert path.read_bytes() == b"slow"  # renamed last
    assert temp_files(path) == []
