"""The official CIFAR-10 "python version": download (URL and md5 checked) and a pickle reader that runs no code.

A pickle is a program: ``pickle.load`` on a file from a data folder can run anything. The batch files only
need numpy's array reconstruction, so ``RestrictedUnpickler`` admits exactly that and refuses every other
global before it is called.
"""

from __future__ import annotations

import codecs
import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from training.splits import DataError, Split

log = logging.getLogger(__name__)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"
IMAGE_SIZE = 32  # pixels: the python version stores 32x32 images only


class RefusedError(pickle.UnpicklingError):
    """The pickle asked for something a CIFAR-10 batch file never contains."""


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """What a protocol-2 pickle written by Python 3 uses to store bytes; only the latin1 form is admitted."""
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise RefusedError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _numpy_reconstruct() -> Any:
    # numpy 2 moved numpy.core to numpy._core; take whichever this numpy has, without deprecated imports.
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


# (module, name) -> the object to hand the unpickler. Python 2 files name numpy.core; numpy 2 writes numpy._core.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Admits numpy arrays and plain containers; any other global is refused before it can run."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise RefusedError(
                f"refused to load {module}.{name}: a CIFAR-10 batch file holds only numpy arrays and lists"
            ) from None


def read_batch(path: Path) -> dict[bytes, Any]:
    """One batch file as a dict with bytes keys, as the originals were written (Python 2, protocol 2)."""
    try:
        with open(path, "rb") as f:
            batch = RestrictedUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"{path}: missing; a {FOLDER} folder has {', '.join((*TRAIN_FILES, *TEST_FILES))}") from None
    except RefusedError as exc:
        raise DataError(f"{path}: not a CIFAR-10 batch file ({exc})") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, AttributeError, OSError) as exc:
        raise DataError(f"{path}: corrupt or truncated ({type(exc).__name__}: {exc})") from exc
    if not isinstance(batch, dict):
        raise DataError(f"{path}: not a CIFAR-10 batch file (holds a {type(batch).__name__}, not a dict)")
    return batch


def _images_and_labels(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = read_batch(path)
    data, labels = batch.get(b"data"), batch.get(b"labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: b'data' must be a uint8 array of shape (N, 3072)")
    labels = np.asarray(labels, dtype=np.int64) if isinstance(labels, list) else None
    if (
        labels is None
        or labels.shape != (len(data),)
        or labels.min(initial=0) < 0
        or labels.max(initial=0) >= num_classes
    ):
        raise DataError(f"{path}: b'labels' must be a list of {len(data)} class indices below {num_classes}")
    # Rows are 1024 red, 1024 green, 1024 blue values, row-major: exactly (3, 32, 32).
    return data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE), labels  # (N, 3, 32, 32)


def read_cifar10(folder: Path) -> tuple[Split, Split, tuple[str, ...]]:
    """Train (50,000) and test (10,000) images as uint8 (N, 3, 32, 32) with the class names of batches.meta."""
    meta = read_batch(folder / META_FILE)
    names = meta.get(b"label_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, bytes) for n in names):
        raise DataError(f"{folder / META_FILE}: b'label_names' must be a list of class names")
    classes = tuple(n.decode("utf-8") for n in names)
    parts = [_images_and_labels(folder / name, len(classes)) for name in TRAIN_FILES]
    train = Split(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    test = Split(*_images_and_labels(folder / TEST_FILES[0], len(classes)))
    return train, test, classes


def download_cifar10(root: Path, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5) -> Path:
    """Fetch and unpack the archive into root; the md5 is checked before anything is extracted."""
    # Imported here: torchvision takes seconds to import and only downloading needs it, not every trainer start.
    from torchvision.datasets.utils import check_integrity, download_and_extract_archive

    archive = root / url.rsplit("/", 1)[-1]
    log.info("downloading CIFAR-10 from %s to %s", url, root)
    try:
        download_and_extract_archive(url, download_root=str(root), md5=md5)
    except Exception as exc:  # urllib, tarfile and torchvision each raise their own kinds
        bad_archive = archive.is_file() and not check_integrity(str(archive), md5)
        reason = "the archive's md5 does not match (deleted it)" if bad_archive else f"{type(exc).__name__}: {exc}"
        if bad_archive:
            archive.unlink()
        raise DataError(
            f"could not download CIFAR-10 from {url} ({reason}). Put a local copy in place instead: "
            f"either {root / FOLDER}/ with data_batch_1..5, test_batch and batches.meta (the python version, "
            f"extracted), or image folders {root}/train/<class>/ and {root}/test/<class>/; or point "
            f"--data-dir / ALEXNET_DATA_DIR at such a folder"
        ) from exc
    if not (root / FOLDER).is_dir():
        raise DataError(f"the archive from {url} did not contain a {FOLDER}/ folder")
    return root / FOLDER
