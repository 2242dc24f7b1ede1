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
