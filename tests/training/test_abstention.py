"""The out-of-distribution sets, the AUROC and FPR95 behind the comparison, and the trainer's abstention rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models import load_checkpoint
from models.abstention import SCORES, DegenerateFeatures, FeatureGaussian
from models.checkpoint import REPORT_FILE, REPORT_SHA_META
from tests.training.helpers import tiny_config
from training import train as train_module
from training.abstention import TARGET_FLAGGED, _compare, auroc, fpr_at_95_tpr
from training.config import TrainConfig
from training.ood_sets import GENERATED, generated_sets, ood_sets
from training.report_page import render
from training.train import main


def test_generated_sets_are_deterministic_images_as_the_network_sees_them() -> None:
    first, again = generated_sets(count=4), generated_sets(count=4)
    assert list(first) == list(GENERATED)
    for name, images in first.items():
        assert images.dtype == np.uint8 and images.shape == (4, 3, 32, 32), name
        np.testing.assert_array_equal(images, again[name])
    assert len({first["flat colours"][i].tobytes() for i in range(4)}) == 4  # four different colours
    assert np.all(first["flat colours"] == first["flat colours"][:, :, :1, :1])  # each one flat


def test_packaged_sets_are_there_when_the_packages_are() -> None:
    pytest.importorskip("skimage")
    pytest.importorskip("sklearn")
    sets = ood_sets()
    assert {"sample photos", "faces", "digits"} <= set(sets)
    assert all(images.shape[1:] == (3, 32, 32) for images in sets.values())


def test_auroc_and_fpr95_by_hand() -> None:
    inside, outside = torch.tensor([3.0, 4.0, 5.0, 6.0]), torch.tensor([1.0, 2.0, 3.0])
    assert auroc(inside, outside) == pytest.approx(11.5 / 12)  # 12 pairs; 3 against 3 is a tie, counted half
    assert auroc(outside, inside) == pytest.approx(0.5 / 12)
    assert fpr_at_95_tpr(torch.arange(100.0), torch.tensor([1.0, 10.0, 50.0, 99.0])) == 0.75  # 5th percentile 4.95


def test_the_threshold_flags_5_percent_of_correct_validation_answers() -> None:
    values = {"val": torch.arange(200.0), "test": torch.arange(100.0), "noise": torch.full((10,), -1.0)}
    correct = {"val": torch.arange(200) % 2 == 0, "test": torch.ones(100, dtype=torch.bool)}  # even scores right
    row = _compare(values, correct, ["noise"])
    flagged = (values["val"][correct["val"]] < row["threshold"]).double().mean()
    assert float(flagged) == pytest.approx(TARGET_FLAGGED, abs=0.01)
    assert row["sets"]["noise"] == {"auroc": 1.0, "val_auroc": 1.0, "fpr95": 0.0, "flagged": 1.0}
    assert row["test_correct_flagged"] == pytest.approx(0.1)  # test scores 0..9 fall under the threshold 9.9


def test_the_run_keeps_the_best_score_and_flags_at_most_5_percent(trained: tuple[TrainConfig, dict[str, Any]]) -> None:
    config, metrics = trained
    compared = metrics["abstention"]
    assert set(compared["scores"]) == set(SCORES)
    best = max(SCORES, key=lambda s: compared["scores"][s]["val_mean_auroc"])
    assert compared["score"] == best and compared["threshold"] == compared["scores"][best]["threshold"]
    for score in compared["scores"].values():
        assert set(score["sets"]) == set(ood_sets())
        assert all(0 <= row["auroc"] <= 1 and 0 <= row["flagged"] <= 1 for row in score["sets"].values())
    rule = load_checkpoint(config.output).abstention_rule()
    assert rule is not None and (rule.score, rule.threshold) == (best, compared["threshold"])
    assert (rule.gaussian is not None) == (best == "mahalanobis")


def test_the_report_page_is_self_contained(trained: tuple[TrainConfig, dict[str, Any]]) -> None:
    config, _ = trained
    page = (Path(config.output).parent / REPORT_FILE).read_text()
    sha = load_checkpoint(config.output).weights_sha256
    assert f"<meta name='{REPORT_SHA_META}' content='{sha}'>" in page
    assert page.count("data:image/png;base64,") >= 4 + 16  # four plots and the hardest images
    assert "http://" not in page and "https://" not in page  # nothing from the network
    for heading in ("Per class", "Reliability", "None of these", "The hardest test images", "Training config"):
        assert heading in page, heading
    assert json.loads(json.dumps(config.to_dict()))  # the config the page lists is plain JSON


def test_a_stand_in_reports_itself_as_one(trained: tuple[TrainConfig, dict[str, Any]]) -> None:
    config, metrics = trained
    report = {**metrics, "config": {**config.to_dict(), "recipe": "cpu"}, "weights_sha256": "0" * 64}
    page = render(report, ("a", "b", "c", "d"), {})
    assert "A CPU stand-in (<code>--recipe cpu</code>)" in page
    assert "A CPU stand-in" not in render({**report, "config": config.to_dict()}, ("a", "b", "c", "d"), {})


def test_features_that_do_not_vary_are_refused_in_one_sentence() -> None:
    labels = torch.arange(40) % 4
    with pytest.raises(DegenerateFeatures, match=r"^the penultimate features of the 40 training images do not vary"):
        FeatureGaussian.fit(torch.zeros(40, 16), labels, 4)
    with pytest.raises(DegenerateFeatures, match="are not finite"):
        FeatureGaussian.fit(torch.full((40, 16), float("nan")), labels, 4)


def _collapse(model: torch.nn.Module) -> None:
    """Every weight and bias zero: each ReLU gets 0 and passes no gradient, so the network stays collapsed."""
    for parameter in model.parameters():
        torch.nn.init.zeros_(parameter)


def test_a_collapsed_network_still_writes_its_checkpoint_without_a_rule(
    learnable_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(train_module, "init_weights", _collapse)  # the trainer's own init, replaced by a collapse
    config = tiny_config(learnable_folder, tmp_path / "collapsed.safetensors", epochs=1, ood=True)
    metrics = main(config)
    assert metrics["abstention"]["refused"].startswith("the penultimate features of the")
    checkpoint = load_checkpoint(config.output)
    assert checkpoint.abstention == {} and checkpoint.abstention_rule() is None
    assert "abstention: no rule (predictions will carry no verdict): the penultimate features" in caplog.text
    page = (tmp_path / REPORT_FILE).read_text()
    assert "No abstention rule: the penultimate features of the" in page
