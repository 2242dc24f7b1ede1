"""The metrics of a split through the one inference pass, at one or more temperatures, over all DDP ranks.

``fit_calibration`` fits the temperature on the validation split and ``test_metrics`` makes the test
numbers the report shows; the trainer and ``alexnet-evaluate`` both call them. Each rank runs its stride
of the split through ``models.Classifier`` once (twice with flip TTA: the image
and its mirror); every temperature's metrics come from those same logits, and the counts are summed over
the ranks, so the numbers are the whole split's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from models import Classifier
from models.inference import to_probabilities
from training import distributed
from training.calibration import fit_temperature, mean_nll
from training.distributed import World
from training.metrics import (
    CALIBRATION_BINS,
    calibration_from_sums,
    calibration_sums,
    confusion_matrix,
    nll_sum,
    summarize,
)
from training.splits import Split

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitMetrics:
    """One split at one temperature."""

    accuracy: float
    loss: float  # mean negative log-likelihood of the true classes
    confusion: torch.Tensor  # (C, C) int64: row = true class, column = predicted
    ece: float  # expected calibration error, 15 equal-width bins of the top-class probability
    bins: list[dict[str, Any]]  # those bins: images, mean confidence, accuracy


def score_split(
    classifier: Classifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    world: World,
    *,
    temperatures: Sequence[float] = (1.0,),
    tta: bool = False,
    batch_size: int | None = None,
) -> list[SplitMetrics]:
    """Metrics of uint8 ``images`` (N, 3, S, S) against ``labels`` (N,), one entry per temperature."""
    mine = slice(world.rank, None, world.size)
    views = [classifier.logits(images[mine], batch_size=batch_size)]  # (n, C) each
    if tta:
        views.append(classifier.logits(images[mine], mirrored=True, batch_size=batch_size))
    truth = labels[mine].cpu()
    results = []
    for temperature in temperatures:
        probabilities = to_probabilities(views, temperature)  # (n, C)
        confusion = confusion_matrix(truth, probabilities.argmax(dim=1), num_classes)
        parts = [confusion.flatten().double(), nll_sum(probabilities, truth).double().view(1)]
        totals = torch.cat([*parts, calibration_sums(probabilities, truth).flatten()]).to(world.device)
        distributed.all_sum(totals, world)
        totals = totals.cpu()
        confusion = totals[: num_classes**2].round().long().view(num_classes, num_classes)
        count = max(int(confusion.sum()), 1)
        ece, bins = calibration_from_sums(totals[num_classes**2 + 1 :].view(CALIBRATION_BINS, 3))
        accuracy = float(confusion.trace()) / count
        results.append(SplitMetrics(accuracy, float(totals[num_classes**2]) / count, confusion, ece, bins))
    return results


def fit_calibration(classifier: Classifier, val: Split, batch_size: int | None = None) -> dict[str, Any]:
    """The temperature fitted on the whole validation split, with the split's NLL before and after.

    Every DDP rank computes the same number from the same weights and images: nothing to broadcast. Empty
    without a validation split: the model then stays uncalibrated (temperature 1), and the log says so.
    """
    if not len(val):
        log.warning("no validation split (--val-size 0): not calibrated, temperature 1")
        return {}
    logits = classifier.logits(torch.from_numpy(val.images), batch_size=batch_size)  # (V, C), one view
    labels = torch.from_numpy(val.labels)
    temperature = fit_temperature(logits, labels)
    return {
        "temperature": temperature,
        "fitted_on": f"validation split ({len(val)} images held out from train)",
        "val_nll_before": mean_nll(logits, labels),
        "val_nll_after": mean_nll(logits, labels, temperature),
    }


def test_metrics(
    classifier: Classifier,
    test: Split,
    classes: Sequence[str],
    world: World,
    calibration: dict[str, Any],
    tta: bool,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Test accuracy (flip TTA when asked) at the fitted temperature, and the served single view's NLL, ECE
    and calibration bins before and after temperature scaling: what metrics.json and the report show."""
    images, labels = torch.from_numpy(test.images), torch.from_numpy(test.labels)
    temperature = calibration.get("temperature", 1.0)
    score = lambda temperatures, tta: score_split(  # noqa: E731
        classifier, images, labels, len(classes), world, temperatures=temperatures, tta=tta, batch_size=batch_size
    )
    raw, served = score((1.0, temperature), False)
    shown = score((temperature,), True)[0] if tta else served
    calibration = {
        **calibration,
        "test_nll_before": raw.loss,
        "test_nll_after": served.loss,
        "test_ece_before": raw.ece,
        "test_ece_after": served.ece,
        "bins_before": raw.bins,
        "bins_after": served.bins,
    }
    return {
        **summarize(shown.confusion, classes),
        "test_loss": shown.loss,
        "test_accuracy_single_view": served.accuracy,
        "tta": tta,
        "calibration": calibration,
    }
