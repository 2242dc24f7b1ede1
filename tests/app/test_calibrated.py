"""The temperature travels in the checkpoint: it changes /predict's probabilities, never its ranking."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np

from models import load_checkpoint, save_checkpoint
from tests.app.helpers import LiveServer, files, picture, png, service_settings


def with_temperature(source: Path, target: Path, temperature: float) -> Path:
    ckpt = load_checkpoint(source)
    calibration = {"temperature": temperature, "fitted_on": "a test"}
    save_checkpoint(target, ckpt.build_model(), model_args=ckpt.model_args, classes=ckpt.classes,
                    preprocess=ckpt.preprocess, calibration=calibration)  # fmt: skip
    return target


def answers(checkpoint: Path) -> dict:
    server = LiveServer(service_settings(checkpoint)).start()
    try:
        uploads = files(*((f"{i}.png", png(picture(seed=i))) for i in range(6)))
        return httpx.post(f"{server.url}/predict", params={"top_k": 10}, files=uploads).json()
    finally:
        server.stop()


def test_the_temperature_softens_probabilities_and_keeps_the_ranking(tiny_checkpoint: Path, tmp_path: Path) -> None:
    plain, hot = answers(tiny_checkpoint), answers(with_temperature(tiny_checkpoint, tmp_path / "t3.safetensors", 3.0))
    assert (plain["model"]["temperature"], plain["model"]["calibrated"]) == (1.0, False)
    assert (hot["model"]["temperature"], hot["model"]["calibrated"]) == (3.0, True)
    assert hot["model"]["weights_sha256"] == plain["model"]["weights_sha256"]
    for cold_one, hot_one in zip(plain["predictions"], hot["predictions"], strict=True):
        assert [t["index"] for t in hot_one["top_k"]] == [t["index"] for t in cold_one["top_k"]]  # same ranking
        p1 = np.array([t["probability"] for t in cold_one["top_k"]])
        p3 = np.array([t["probability"] for t in hot_one["top_k"]])
        assert not np.allclose(p1, p3)
        # softmax(z / 3) is softmax(z)^(1/3), renormalised: the same answer, a third as sure
        expected = p1 ** (1 / 3) / (p1 ** (1 / 3)).sum()
        np.testing.assert_allclose(p3, expected, atol=2e-6)
