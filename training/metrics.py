"""Classification metrics over a split: the confusion matrix and what the report shows of it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def confusion_matrix(labels: torch.Tensor, predicted: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts; row = true class, column = predicted class."""
    flat = labels.long() * num_classes + predicted.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def nll_sum(probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed negative log-likelihood of the true classes (a 0-d tensor); probabilities (N, C), labels (N,)."""
    picked = probabilities[torch.arange(len(probabilities)), labels.long()]  # (N,)
    return -picked.clamp_min(1e-12).log().sum()


CALIBRATION_BINS = 15  # equal-width bins of the top-class probability, as in Guo et al. 2017


def calibration_sums(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = CALIBRATION_BINS) -> torch.Tensor:
    """Per bin of the top-class probability: (images, sum of confidences, correct), float64 (bins, 3).

    Sums, so that DDP ranks can add theirs up before ``calibration_from_sums``.
    """
    confidence, predicted = probabilities.double().max(dim=1)  # (N,) each
    correct = (predicted == labels.long()).double()
    index = (confidence * bins).long().clamp_(max=bins - 1)  # a confidence of exactly 1 is in the last bin
    sums = torch.zeros(bins, 3, dtype=torch.float64)
    sums.index_add_(0, index, torch.stack([torch.ones_like(confidence), confidence, correct], dim=1))
    return sums


def calibration_from_sums(sums: torch.Tensor) -> tuple[float, list[dict[str, Any]]]:
    """(expected calibration error, the bins: images, mean confidence and accuracy) from ``calibration_sums``."""
    bins, total = len(sums), max(1.0, float(sums[:, 0].sum()))
    rows, ece = [], 0.0
    for b, (images, confidence, correct) in enumerate(sums.tolist()):
        row = {"low": b / bins, "high": (b + 1) / bins, "images": round(images), "confidence": None, "accuracy": None}
        if images:
            row.update(confidence=confidence / images, accuracy=correct / images)
            ece += images / total * abs(row["confidence"] - row["accuracy"])
        rows.append(row)
    return ece, rows


def expected_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    """ECE: the image-weighted mean gap between confidence and accuracy over equal-width bins (Guo et al.)."""
    return calibration_from_sums(calibration_sums(probabilities, labels))[0]


def summarize(confusion: torch.Tensor | np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-class accuracy (recall) and the matrix itself, as JSON-ready values."""
    counts = np.asarray(confusion, dtype=np.int64)
    per_class = np.diag(counts) / np.maximum(counts.sum(axis=1), 1)
    return {
        "test_accuracy": float(np.trace(counts) / max(counts.sum(), 1)),
        "test_images": int(counts.sum()),
        "per_class_accuracy": {name: float(acc) for name, acc in zip(classes, per_class, strict=True)},
        "confusion_matrix": counts.tolist(),
    }
