"""Temperature scaling: it fixes a deliberately over-confident model, and the trainer and alexnet-evaluate fit it."""

from __future__ import annotations

import pytest
import torch

from training.calibration import MAX_TEMPERATURE, MIN_TEMPERATURE, fit_temperature, mean_nll
from training.metrics import calibration_from_sums, calibration_sums, expected_calibration_error


def overconfident(n: int = 4000, classes: int = 10, scale: float = 5.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of a model that is right about 70% of the time but whose logits are ``scale`` times too large."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, classes, (n,), generator=g)
    guessed = torch.where(torch.rand(n, generator=g) < 0.7, labels, torch.randint(0, classes, (n,), generator=g))
    logits = torch.randn(n, classes, generator=g) + 2.0 * torch.nn.functional.one_hot(guessed, classes)
    return scale * logits, labels


def test_a_temperature_fixes_an_overconfident_model() -> None:
    logits, labels = overconfident()
    temperature = fit_temperature(logits, labels)
    assert 4 < temperature < 6  # recovers the scale the logits were blown up by
    assert mean_nll(logits, labels, temperature) < 0.5 * mean_nll(logits, labels)
    before = expected_calibration_error(logits.softmax(dim=1), labels)
    after = expected_calibration_error((logits / temperature).softmax(dim=1), labels)
    assert before > 0.25 and after < 0.1
    assert torch.equal((logits / temperature).argmax(dim=1), logits.argmax(dim=1))  # the ranking never changes


def test_the_fit_is_the_minimum_of_the_nll() -> None:
    logits, labels = overconfident(scale=0.3)  # under-confident this time: the temperature goes below 1
    temperature = fit_temperature(logits, labels)
    assert temperature < 1
    best = mean_nll(logits, labels, temperature)
    for factor in (0.9, 0.97, 1.03, 1.1):
        assert best <= mean_nll(logits, labels, temperature * factor)
    assert MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE


def test_ece_bins_and_their_sums() -> None:
    probabilities = torch.tensor([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.55, 0.45]])
    labels = torch.tensor([0, 1, 0, 0])
    ece, bins = calibration_from_sums(calibration_sums(probabilities, labels))
    top, middle = bins[14], bins[8]  # 0.95 falls in the last of 15 bins, 0.55 in the ninth
    assert (top["images"], top["accuracy"], top["confidence"]) == (2, 0.5, pytest.approx(0.95))
    assert (middle["images"], middle["accuracy"]) == (2, 1.0)
    assert ece == pytest.approx(0.5 * 0.45 + 0.5 * 0.45)
    assert sum(b["images"] for b in bins) == 4


def test_no_images_to_fit_is_an_error() -> None:
    with pytest.raises(ValueError, match="no images"):
        fit_temperature(torch.zeros(0, 10), torch.zeros(0, dtype=torch.long))
