"""The CIFAR-10 python-version reader on generated files in the real format, and the download path."""

from __future__ import annotations

import hashlib
import http.server
import pickle
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from tests.training.helpers import CLASSES, learnable_split, write_cifar_folder
from training import cifar
from training.data import read_sources
from training.splits import DataError


def test_reads_generated_batches_exactly(tmp_path: Path) -> None:
    train, test = learnable_split(10, seed=1), learnable_split(3, seed=2)
    write_cifar_folder(tmp_path / cifar.FOLDER, train, test)
    got_train, got_test, classes, source = read_sources(tmp_path, 32)
    assert classes == CLASSES
    assert "CIFAR-10 python version" in source
    np.testing.assert_array_equal(got_train.images, train.images)  # (N, 3, 32, 32): channel planes kept
    np.testing.assert_array_equal(got_train.labels, train.labels)
    np.testing.assert_array_equal(got_test.images, test.images)


def test_refuses_a_pickle_that_would_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):  # what a hostile data folder would ship: os.system("touch ran")
            import os

            return (os.system, (f"touch {marker}",))

    folder = write_cifar_folder(tmp_path / cifar.FOLDER, learnable_split(2), learnable_split(1))
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Exploit()}, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_3: not a CIFAR-10 batch file \(refused to load posix.system"):
        read_sources(tmp_path, 32)
    assert not marker.exists()


def test_refuses_codecs_encode_other_than_latin1(tmp_path: Path) -> None:
    # protocol 2 stores bytes as _codecs.encode(text, "latin1"); any other codec is not what the files need.
    payload = (  # {b"data": _codecs.encode("abc", "zlib")}, protocol 2, written by hand
        b"\x80\x02}q\x00C\x04dataq\x01c_codecs\nencode\nq\x02"
        b"X\x03\x00\x00\x00abcX\x04\x00\x00\x00zlibq\x03\x86q\x04Rq\x05s."
    )
    path = tmp_path / "batch"
    path.write_bytes(payload)
    with pytest.raises(DataError, match=r"refused _codecs\.encode with encoding 'zlib'"):
        cifar.read_batch(path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "test_batch").unlink(), "test_batch: missing"),
        (lambda f: (f / "data_batch_2").write_bytes((f / "data_batch_2").read_bytes()[:500]), "data_batch_2: corrupt"),
        (lambda f: (f / "data_batch_1").write_bytes(pickle.dumps([1, 2], protocol=2)), "holds a list, not a dict"),
        (lambda f: (f / "batches.meta").write_bytes(pickle.dumps({b"x": 1}, protocol=2)), "label_names"),
    ],
)
def test_broken_folders_name_the_file(tmp_path: Path, damage, message: str) -> None:
    folder = write_cifar_folder(tmp_path / cifar.FOLDER, learnable_split(2), learnable_split(1))
    damage(folder)
    with pytest.raises(DataError, match=message):
        read_sources(tmp_path, 32)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A generated cifar-10-python.tar.gz served over HTTP on the loopback: its URL and md5."""
    folder = write_cifar_folder(tmp_path / "src" / cifar.FOLDER, learnable_split(5), learnable_split(2))
    archive = tmp_path / "src" / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=cifar.FOLDER)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(archive.parent))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/{archive.name}", hashlib.md5(archive.read_bytes()).hexdigest()
    finally:
        server.shutdown()
        server.server_close()


def test_download_checks_md5_then_extracts(tmp_path: Path, served: tuple[str, str]) -> None:
    url, md5 = served
    root = tmp_path / "data"
    assert cifar.download_cifar10(root, url, md5) == root / cifar.FOLDER
    train, _, classes, _ = read_sources(root, 32)
    assert len(train) == 20
    assert classes == CLASSES


def test_download_with_wrong_md5_is_refused_and_deleted(tmp_path: Path, served: tuple[str, str]) -> None:
    url, _ = served
    root = tmp_path / "data"
    with pytest.raises(DataError, match="md5 does not match"):
        cifar.download_cifar10(root, url, "0" * 32)
    assert not (root / "cifar-10-python.tar.gz").exists()
    assert not (root / cifar.FOLDER).exists()


def test_failed_download_says_where_to_put_a_copy(tmp_path: Path, served: tuple[str, str]) -> None:
    url, md5 = served
    with pytest.raises(DataError) as info:  # a 404, as an offline mirror or a moved file would give
        cifar.download_cifar10(tmp_path, url.replace("cifar-10-python", "absent"), md5)
    text = str(info.value)
    assert "404" in text
    assert "could not download CIFAR-10" in text
    assert f"{tmp_path / cifar.FOLDER}/ with data_batch_1..5" in text
    assert "ALEXNET_DATA_DIR" in text
