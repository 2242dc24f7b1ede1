"""GET /model serves the loaded model's report page (only if it is these weights'), GET /model.json its metadata."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from models import CIFAR10_CLASSES, load_checkpoint
from models.checkpoint import REPORT_FILE
from tests.app.helpers import LiveServer, encode, picture, service_settings
from tests.helpers import module_folder
from training.evaluate import evaluate_checkpoint

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def reported(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> LiveServer:
    """A checkpoint with its report.html beside it (written by alexnet-evaluate), served."""
    with module_folder(tmp_path_factory, "reported") as folder:
        checkpoint = folder / "model.safetensors"
        shutil.copy(tiny_checkpoint, checkpoint)
        data = folder / "data"
        for split in ("train", "test"):
            for label, name in enumerate(CIFAR10_CLASSES):
                (data / split / name).mkdir(parents=True)
                (data / split / name / "0.png").write_bytes(encode(picture(32, 32, seed=label), "PNG"))
        evaluate_checkpoint(checkpoint, str(data), "cpu")
        server = LiveServer(service_settings(checkpoint)).start()
        yield server
        server.stop()


def test_the_report_of_the_loaded_weights_is_served(reported: LiveServer) -> None:
    page = httpx.get(f"{reported.url}/model")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    sha = httpx.get(f"{reported.url}/health").json()["model"]["weights_sha256"]
    assert sha in page.text and "Per class" in page.text and "data:image/png;base64," in page.text


def test_the_metadata_is_served_as_json(reported: LiveServer) -> None:
    meta = httpx.get(f"{reported.url}/model.json").json()
    assert meta["model"]["classes"] == list(CIFAR10_CLASSES)
    assert set(meta) >= {"format_version", "model_args", "preprocess", "calibration", "abstention", "config", "metrics"}
    assert meta["model_args"]["num_classes"] == 10 and meta["preprocess"]["source_size"] == 32


def test_no_report_or_another_models_report_is_a_404(
    tiny_checkpoint: Path, tmp_path: Path, client: httpx.Client
) -> None:
    missing = client.get("/model")
    assert missing.status_code == 404 and "alexnet-evaluate" in missing.json()["detail"]
    other = tmp_path / "other.safetensors"
    shutil.copy(tiny_checkpoint, other)
    (tmp_path / REPORT_FILE).write_text("<meta name='alexnet-weights-sha256' content='0000'>someone else's page")
    server = LiveServer(service_settings(other)).start()
    try:
        assert httpx.get(f"{server.url}/model").status_code == 404
    finally:
        server.stop()
    assert load_checkpoint(other).weights_sha256 != "0000"


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Chromium (apt-get install chromium)")
def test_the_report_renders_in_headless_chromium_offline(reported: LiveServer, tmp_path: Path) -> None:
    page = httpx.get(f"{reported.url}/model").text
    assert "http://" not in page and "https://" not in page  # nothing to fetch: it renders with no network at all
    command = ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom"]
    dom = subprocess.run([*command, f"{reported.url}/model"], capture_output=True, text=True, timeout=120, check=True)
    assert "<h1>AlexNet on 10 classes</h1>" in dom.stdout and dom.stdout.count("<img") >= 3
