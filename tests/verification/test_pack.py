"""The GPU bundle's packer refuses without data, and turns the CIFAR-10 python version into image folders.

The packing itself (wheels, the archive, the size check) runs for real in CI's rehearsal
(verification/rehearse_gpu_check.sh).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from tests.helpers import REPO
from tests.training.helpers import CLASSES, learnable_split, write_cifar_folder
from verification.cifar_jpeg import main as cifar_jpeg


def test_the_packer_refuses_without_data_before_downloading_anything(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    command = [str(REPO / "verification" / "pack_gpu_check.sh"), "--data", str(tmp_path / "empty"),
               "--dest", str(tmp_path / "bundle")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"no training data at {tmp_path / 'empty'}" in done.stderr and "--no-data" in done.stderr
    assert not (tmp_path / "bundle").exists()


def test_the_python_version_becomes_jpeg_image_folders_close_to_the_pixels(tmp_path: Path) -> None:
    train, test = learnable_split(6, seed=1), learnable_split(2, seed=2)
    write_cifar_folder(tmp_path / "cifar-10-batches-py", train, test)
    cifar_jpeg([str(tmp_path), str(tmp_path / "jpeg")])
    for name, split in (("train", train), ("test", test)):
        files = sorted((tmp_path / "jpeg" / name).glob("*/*.jpg"))
        assert len(files) == len(split) and {f.parent.name for f in files} == set(CLASSES)
    first_red = np.asarray(Image.open(tmp_path / "jpeg" / "train" / "red" / "0000.jpg"), dtype=np.float64)
    original = train.images[0].transpose(1, 2, 0).astype(np.float64)  # the first image of class 0 (red)
    assert np.abs(first_red - original).mean() < 9  # lossy (6.2 when written), but the same picture
