"""One picture, three paths, one answer: the trainer's evaluation, POST /predict and alexnet-predict.

The images are real CIFAR-10 test JPEGs when the team's copy is beside the repository
(../shared/data/cifar10-test-jpeg.tar.xz), else generated JPEGs in the same folder layout. The trainer reads
them with its image-folder reader; the service and the CLI receive the files themselves.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from app.cli import predict as predict_cli
from models import CIFAR10_CLASSES, AlexNet, Classifier, Preprocess, PreprocessSpec, load_checkpoint, save_checkpoint
from tests.app.helpers import LiveServer, encode, picture, service_settings
from tests.helpers import TEST_INPUT_SIZE, module_folder
from training.data import read_sources
from training.folder import list_split
from training.init import init_weights

CIFAR_JPEGS = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-test-jpeg.tar.xz"
PER_CLASS = 3


def extract_cifar_jpegs(archive: Path, root: Path) -> None:
    """test/<class>/0000.jpg .. the first PER_CLASS of each class, from the xz-compressed tar."""
    wanted = {f"test/{c}/{i:04d}.jpg" for c in CIFAR10_CLASSES for i in range(PER_CLASS)}
    with tarfile.open(archive, "r:xz") as tar:
        members = [m for m in tar if m.isfile() and m.name.removeprefix("./") in wanted]
        tar.extractall(root, members=members, filter="data")


def generate_jpegs(root: Path) -> None:
    for label, name in enumerate(CIFAR10_CLASSES):
        folder = root / "test" / name
        folder.mkdir(parents=True)
        for i in range(PER_CLASS):
            (folder / f"{i:04d}.jpg").write_bytes(encode(picture(32, 32, seed=label * 10 + i), "JPEG"))


@pytest.fixture(scope="module")
def test_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cifar-jpeg")
    if CIFAR_JPEGS.is_file():
        extract_cifar_jpegs(CIFAR_JPEGS, root)
    else:
        generate_jpegs(root)
    (root / "train").mkdir()  # the reader wants both splits; evaluation reads only test/
    for name in CIFAR10_CLASSES:
        (root / "train" / name).mkdir()
        (root / "train" / name / "0000.png").write_bytes(encode(picture(32, 32), "PNG"))
    return root


@pytest.fixture(scope="module")
def decisive_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Random weights that tell pictures apart: different, clear-cut classes for different pictures."""
    torch.manual_seed(1)
    model = AlexNet(num_classes=10)
    init_weights(model)  # the trainer's He init: signal survives the depth, unlike PyTorch's default init
    with torch.no_grad():
        model.classifier[6].weight.mul_(30)
    with module_folder(tmp_path_factory, "parity") as folder:
        path = folder / "decisive.safetensors"
        save_checkpoint(path, model, model_args={"num_classes": 10, "dropout": 0.5}, classes=CIFAR10_CLASSES,
                        preprocess=PreprocessSpec(input_size=TEST_INPUT_SIZE))  # fmt: skip
        yield path


def test_trainer_service_and_cli_agree(test_folder: Path, decisive_checkpoint: Path, capsys) -> None:
    checkpoint = load_checkpoint(decisive_checkpoint)
    _, test, classes, _ = read_sources(test_folder, checkpoint.preprocess.source_size, cache=False, with_train=False)
    _, paths, labels = list_split(test_folder, "test")
    assert classes == CIFAR10_CLASSES and test.labels.tolist() == labels
    # As the trainer evaluates: its (NCHW) model and preprocessing, the image-folder reader's (N, 3, S, S) images.
    classifier = Classifier(checkpoint.build_model(), Preprocess(checkpoint.preprocess), torch.device("cpu"))
    trainer = classifier.predict(torch.from_numpy(test.images), batch_size=7).probabilities.numpy()  # (N, 10)

    settings = service_settings(decisive_checkpoint, max_files=len(paths), max_queue=len(paths))
    server = LiveServer(settings).start()
    try:
        uploads = [("file", (f"{p.parent.name}/{p.name}", p.read_bytes())) for p in paths]
        served = httpx.post(f"{server.url}/predict", params={"top_k": 10}, files=uploads, timeout=60).json()
    finally:
        server.stop()
    predict_cli(["--checkpoint", str(decisive_checkpoint), "--device", "cpu", "--top-k", "10", *map(str, paths)])
    printed = json.loads(capsys.readouterr().out)

    assert [p["filename"] for p in printed["predictions"]] == [path.name for path in paths]
    assert [p["filename"] for p in served["predictions"]] == [f"{p.parent.name}/{p.name}" for p in paths]
    top_two = np.sort(trainer, axis=1)[:, -2:]
    assert (top_two[:, 1] - top_two[:, 0]).min() > 1e-4  # no near-ties: float noise cannot flip a label
    assert len(set(trainer.argmax(axis=1).tolist())) > 1  # the weights tell pictures apart
    for row, served_one, printed_one in zip(trainer, served["predictions"], printed["predictions"], strict=True):
        # The service may split a request over passes of other sizes than the trainer's batch: float32
        # sums then differ around 1e-7, and the 6-decimal rounding can move the last digit.
        for prediction in (served_one, printed_one):
            assert prediction["label"] == CIFAR10_CLASSES[int(row.argmax())]
            np.testing.assert_allclose(probabilities(prediction), row, atol=2e-6)


def probabilities(prediction: dict) -> np.ndarray:
    """The 10 class probabilities of one answer with top_k=10, by class index."""
    out = np.zeros(len(CIFAR10_CLASSES))
    for entry in prediction["top_k"]:
        out[entry["index"]] = entry["probability"]
    return out
