import json
import os
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from models import (
    CIFAR10_CLASSES,
    AlexNet,
    CheckpointError,
    PreprocessSpec,
    load_checkpoint,
    save_checkpoint,
    save_random_checkpoint,
)
from models.checkpoint import weights_sha256


def test_round_trip(tiny_checkpoint: Path) -> None:
    checkpoint = load_checkpoint(tiny_checkpoint)
    assert checkpoint.classes == CIFAR10_CLASSES
    assert checkpoint.preprocess == PreprocessSpec(input_size=64)
    assert checkpoint.model_args == {"num_classes": 10, "dropout": 0.5}
    torch.manual_seed(0)
    original = AlexNet(num_classes=10)
    model = checkpoint.build_model()
    assert not model.training
    for name, tensor in original.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor)
    assert checkpoint.weights_sha256 == weights_sha256(original.state_dict())


def test_random_checkpoint_is_seeded_and_at_the_serving_size(tmp_path: Path) -> None:
    first = load_checkpoint(save_random_checkpoint(tmp_path / "a.safetensors", seed=1, note="bench"))
    again = load_checkpoint(save_random_checkpoint(tmp_path / "b.safetensors", seed=1))
    other = load_checkpoint(save_random_checkpoint(tmp_path / "c.safetensors", seed=2))
    assert first.preprocess == PreprocessSpec()  # 32x32 upsampled to 224, as served
    assert first.config == {"note": "bench"}
    assert first.weights_sha256 == again.weights_sha256 != other.weights_sha256


def test_no_temporary_file_left(tmp_path: Path) -> None:
    save_checkpoint(
        tmp_path / "a.safetensors",
        AlexNet(),
        model_args={"num_classes": 10},
        classes=CIFAR10_CLASSES,
        preprocess=PreprocessSpec(),
    )
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]


def test_written_file_is_readable_like_any_new_file(tmp_path: Path) -> None:
    """Not mkstemp's 0600: a container user must be able to read a checkpoint trained on the host."""
    path = save_random_checkpoint(tmp_path / "a.safetensors", input_size=64)
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_truncated_file(tiny_checkpoint: Path, tmp_path: Path) -> None:
    broken = tmp_path / "truncated.safetensors"
    broken.write_bytes(tiny_checkpoint.read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match=r"truncated\.safetensors"):
        load_checkpoint(broken)


def test_pickle_file_is_refused_without_unpickling(tmp_path: Path) -> None:
    pickled = tmp_path / "model.safetensors"
    torch.save({"weights": torch.zeros(3)}, pickled)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(pickled)


def test_flipped_weight_byte_fails_the_checksum(tiny_checkpoint: Path, tmp_path: Path) -> None:
    altered = tmp_path / "altered.safetensors"
    shutil.copy(tiny_checkpoint, altered)
    data = bytearray(altered.read_bytes())
    data[-10] ^= 0xFF  # inside the last tensor's bytes
    altered.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(altered)


def test_foreign_safetensors_file(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, foreign, metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not an alexnet-service checkpoint"):
        load_checkpoint(foreign)


def rewrite_metadata(source: Path, target: Path, drop: tuple[str, ...] = (), **changes: str) -> None:
    """Copy a checkpoint with some metadata values replaced or dropped (the header is JSON after an 8-byte length)."""
    data = source.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    header["__metadata__"].update(changes)
    for key in drop:
        del header["__metadata__"][key]
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    target.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data[8 + length :])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format_version": "99"}, "format version 99 is not supported \\(this code reads 1 and 2\\)"),
        ({"calibration": json.dumps({"temperature": 0})}, "calibration temperature 0 is not a positive number"),
        ({"calibration": json.dumps({"temperature": "hot"})}, "calibration temperature 'hot' is not a positive"),
        ({"classes": json.dumps(["cat", "dog"])}, "2 class names for 10 model outputs"),
        ({"model_args": "{not json"}, "metadata is malformed"),
        ({"model_args": json.dumps({"num_classes": 10, "width": 3})}, "model_args do not fit"),
    ],
)
def test_bad_metadata(tiny_checkpoint: Path, tmp_path: Path, changes: dict, message: str) -> None:
    bad = tmp_path / "bad.safetensors"
    rewrite_metadata(tiny_checkpoint, bad, **changes)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(bad)


def test_weights_of_another_shape(tmp_path: Path) -> None:
    state = {k: v for k, v in AlexNet(num_classes=10).state_dict().items()}
    state["classifier.6.weight"] = torch.zeros(10, 10)
    path = tmp_path / "wrong.safetensors"
    meta = {
        "format": "alexnet-service-checkpoint",
        "format_version": "1",
        "model_args": json.dumps({"num_classes": 10}),
        "classes": json.dumps(list(CIFAR10_CLASSES)),
        "preprocess": json.dumps(PreprocessSpec().to_dict()),
        "weights_sha256": weights_sha256(state),
    }
    save_file(state, path, metadata=meta)
    with pytest.raises(CheckpointError, match=r"classifier.6.weight has shape \(10, 10\)"):
        load_checkpoint(path)


def test_a_version_1_checkpoint_loads_uncalibrated(tiny_checkpoint: Path, tmp_path: Path) -> None:
    old = tmp_path / "v1.safetensors"
    rewrite_metadata(tiny_checkpoint, old, drop=("calibration",), format_version="1")
    ckpt = load_checkpoint(old)
    assert (ckpt.format_version, ckpt.calibration, ckpt.temperature) == (1, {}, 1.0)


def test_the_calibration_travels_in_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "calibrated.safetensors"
    calibration = {"temperature": 2.5, "fitted_on": "validation split (100 images)"}
    save_checkpoint(path, AlexNet(num_classes=10), model_args={"num_classes": 10}, classes=CIFAR10_CLASSES,
                    preprocess=PreprocessSpec(), calibration=calibration)  # fmt: skip
    ckpt = load_checkpoint(path)
    assert ckpt.calibration == calibration and ckpt.temperature == 2.5 and ckpt.format_version == 2
