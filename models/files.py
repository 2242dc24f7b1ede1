"""Writing a file so that a crash never leaves half of it: the checkpoint, the training state, reports, caches.

The bytes go to a temporary file beside the target, ``.<name>.<random>.tmp``, which is flushed, fsynced and
renamed over the target. A full disk or any other failed write leaves the previous file as it was, removes the
temporary file and raises ``WriteError``, one sentence naming the file. A writer killed outright (SIGKILL, the
OOM killer) cannot remove its temporary file; the next write of the same target does.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import tempfile
from collections.abc import Callable
from io import BufferedWriter, FileIO
from pathlib import Path
from typing import Any, BinaryIO

TEMP_SUFFIX = ".tmp"


class WriteError(OSError):
    """A file that could not be written; whatever was at its path before is left untouched."""

    def __init__(self, path: str | os.PathLike[str], cause: OSError, kept: bool) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause), os.fspath(path))
        self.kept = kept

    def __str__(self) -> str:
        left = "the previous file is kept" if self.kept else "no partial file is left"
        return f"cannot write {self.filename}: {self.strerror}; {left}"


def temp_files(path: str | os.PathLike[str]) -> list[Path]:
    """The temporary files of ``path`` that exist now: being written, or abandoned by a killed writer."""
    target = Path(path)
    return sorted(target.parent.glob(f".{glob.escape(target.name)}.*{TEMP_SUFFIX}"))


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(file)`` on a temporary file, then rename it over ``path``: readers see the old file or the
    new, never half. Any OSError on the way (ENOSPC, EIO, EACCES...) raises ``WriteError``."""
    target = Path(path)
    kept = target.exists()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(target)
        file, tmp = _locked_temp(target)
    except OSError as exc:
        raise WriteError(target, exc, kept) from exc
    try:
        with file:  # closing it drops the lock, so it stays open until the rename is done
            write(file)
            file.flush()
            os.fsync(file.fileno())
            # mkstemp makes the file 0600; give it the mode a plain open() would, so that another user (the
            # container's, when a checkpoint trained on the host is mounted into it) can read it.
            os.fchmod(file.fileno(), 0o666 & ~_umask())
            os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        cause = file.error or (exc if isinstance(exc, OSError) else None)
        if cause is None:
            raise
        raise WriteError(target, cause, kept) from exc
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def _remove_abandoned(path: str | os.PathLike[str]) -> None:
    """Delete the temporary files of ``path`` whose writer is dead.

    A writer holds an exclusive flock on its temporary file until the rename, and the kernel drops the locks of a
    process that dies, however it dies: a lock we can take belongs to nobody. Where the filesystem has no flock
    nothing can be told apart, and nothing is deleted.
    """
    for tmp in temp_files(path):
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except OSError:  # renamed or removed by its writer meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            tmp.unlink(missing_ok=True)
        except OSError:  # held by a live writer, or no flock here
            pass
        finally:
            os.close(fd)


class _TempFile(BufferedWriter):
    """The temporary file handed to ``write``. It remembers the first OSError of a write, because torch's C++
    writer turns a failed write into a RuntimeError that does not say why ("unexpected pos 704 vs 598")."""

    error: OSError | None = None

    def write(self, data: Any) -> int:  # type: ignore[override]
        try:
            return super().write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as exc:
            self.error = self.error or exc
            raise


def _locked_temp(target: Path) -> tuple[_TempFile, Path]:
    """A new temporary file beside ``target``, open and flocked."""
    while True:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
        with contextlib.suppress(OSError):  # no flock on this filesystem: then nobody removes it either
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            # Between mkstemp and flock another writer may have found it unlocked and deleted it: take another.
            if os.path.samestat(os.fstat(fd), os.stat(name)):
                return _TempFile(FileIO(fd, "w")), Path(name)
        except FileNotFoundError:
            pass
        os.close(fd)


def _umask() -> int:
    umask = os.umask(0o022)  # reading it means setting it: put the old value straight back
    os.umask(umask)
    return umask
