"""'None of these' in the API: each prediction's ood_score and verdict, the per-request threshold, bad values."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from app.predictor import Predictor
from models.abstention import FeatureGaussian
from tests.app.helpers import LiveServer, encode, files, picture, service_settings, with_rule
from tests.helpers import module_folder
from training.ood_sets import generated_sets

PICTURES = [encode(picture(seed=i), "PNG") for i in range(2)]


def scores_of(checkpoint: Path, pictures: list[bytes]) -> np.ndarray:
    """The scores the service will compute, computed here through the same predictor."""
    from app.uploads import Upload, decode_image

    predictor = Predictor.load(checkpoint, "cpu")
    images = np.stack([decode_image(Upload("x.png", 1, data), predictor.source_size, 10**8) for data in pictures])
    return predictor.outputs(images)["score"]


@pytest.fixture(scope="module")
def split_rule(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[LiveServer, float]:
    """A service whose msp threshold lies between the two pictures' scores: one confident, one not."""
    with module_folder(tmp_path_factory, "rule") as folder:
        probe = with_rule(tiny_checkpoint, folder / "probe.safetensors", "msp", 0.0)
        low, high = sorted(scores_of(probe, PICTURES).tolist())
        assert low < high
        checkpoint = with_rule(tiny_checkpoint, folder / "rule.safetensors", "msp", (low + high) / 2)
        server = LiveServer(service_settings(checkpoint)).start()
        yield server, (low + high) / 2
        server.stop()


def predict(server: LiveServer, **params: object) -> httpx.Response:
    return httpx.post(f"{server.url}/predict", params=params, files=files(*(("p.png", p) for p in PICTURES)))


def test_a_confident_and_an_uncertain_prediction(split_rule: tuple[LiveServer, float]) -> None:
    server, threshold = split_rule
    body = predict(server).json()
    assert body["model"]["abstention"] == {"score": "msp", "threshold": threshold, "target": "a test"}
    verdicts = sorted(p["confident"] for p in body["predictions"])
    assert verdicts == [False, True]
    for prediction in body["predictions"]:
        assert prediction["confident"] == (prediction["ood_score"] >= threshold)
        assert prediction["ood_score"] == pytest.approx(prediction["probability"], abs=1e-6)  # msp: the top probability


def test_the_threshold_can_be_set_per_request(split_rule: tuple[LiveServer, float]) -> None:
    server, _ = split_rule
    assert [p["confident"] for p in predict(server, threshold=0).json()["predictions"]] == [True, True]
    assert [p["confident"] for p in predict(server, threshold=1.5).json()["predictions"]] == [False, False]


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "abc", ""])
def test_bad_thresholds_get_422(split_rule: tuple[LiveServer, float], bad: str) -> None:
    server, _ = split_rule
    response = predict(server, threshold=bad)
    assert response.status_code == 422 and "threshold" in response.json()["detail"]


def test_a_model_without_a_rule_has_no_verdict_and_refuses_a_threshold(client: httpx.Client) -> None:
    uploads = files(("p.png", PICTURES[0]))
    body = client.post("/predict", files=uploads).json()
    assert body["model"]["abstention"] is None
    assert (body["predictions"][0]["confident"], body["predictions"][0]["ood_score"]) == (None, None)
    refused = client.post("/predict", params={"threshold": 0.5}, files=uploads)
    assert refused.status_code == 422 and "no abstention score" in refused.json()["detail"]


def test_the_setting_replaces_the_checkpoints_threshold(tiny_checkpoint: Path, tmp_path: Path) -> None:
    checkpoint = with_rule(tiny_checkpoint, tmp_path / "rule.safetensors", "energy", 1e9)  # flags everything
    server = LiveServer(service_settings(checkpoint, ood_threshold=-1e9)).start()  # ... unless overridden
    try:
        body = predict(server).json()
    finally:
        server.stop()
    assert body["model"]["abstention"]["threshold"] == -1e9
    assert [p["confident"] for p in body["predictions"]] == [True, True]


def test_the_mahalanobis_score_is_served_from_the_checkpoints_tensors(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Fitted on some images' features, it flags flat colours far more than those images."""
    predictor = Predictor.load(tiny_checkpoint, "cpu")
    rng = np.random.default_rng(0)
    known = rng.integers(0, 256, (64, 3, 32, 32), dtype=np.uint8)
    _, features = predictor.classifier.logits_and_features(torch.from_numpy(known))
    gaussian = FeatureGaussian.fit(features, torch.arange(64) % 10, 10)
    checkpoint = with_rule(tiny_checkpoint, tmp_path / "m.safetensors", "mahalanobis", 0.0, gaussian.tensors())
    served = Predictor.load(checkpoint, "cpu")
    flat = generated_sets(count=8)["flat colours"].transpose(0, 2, 3, 1)  # (8, 32, 32, 3)
    expected = gaussian.score(served.classifier.logits_and_features(torch.from_numpy(flat).permute(0, 3, 1, 2))[1])
    np.testing.assert_allclose(served.outputs(np.ascontiguousarray(flat))["score"], expected.numpy(), rtol=1e-5)
    assert float(gaussian.score(features).median()) > float(expected.median())  # the known images score higher
