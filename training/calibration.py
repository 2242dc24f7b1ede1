"""Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks").

One number T divides the logits before the softmax. It is fitted on the validation split (held out from
training; never the test split) by minimising the negative log-likelihood. The NLL of ``logits * b`` is
convex in the inverse temperature b = 1/T, so a golden-section search over b finds the minimum without
gradients, tuning or a random start. T > 1 softens an over-confident network; the ranking of the classes,
and so the accuracy, never changes.
"""

from __future__ import annotations

import math

import torch

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0  # the search's bounds: beyond them a fit means a broken model
_GOLDEN = (math.sqrt(5) - 1) / 2


def mean_nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true classes under softmax(logits / temperature)."""
    return float(torch.nn.functional.cross_entropy(logits.double() / temperature, labels.long()))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, tolerance: float = 1e-5) -> float:
    """The temperature that minimises the mean NLL of ``logits`` (N, C) against ``labels`` (N,)."""
    if len(labels) == 0:
        raise ValueError("no images to fit a temperature on")
    low, high = 1 / MAX_TEMPERATURE, 1 / MIN_TEMPERATURE  # bounds of the inverse temperature b
    nll = lambda inverse: mean_nll(logits, labels, 1 / inverse)  # noqa: E731
    a, b = high - _GOLDEN * (high - low), low + _GOLDEN * (high - low)
    nll_a, nll_b = nll(a), nll(b)
    while high - low > tolerance * max(1.0, high):
        if nll_a < nll_b:  # the minimum lies left of b
            high, b, nll_b = b, a, nll_a
            a = high - _GOLDEN * (high - low)
            nll_a = nll(a)
        else:
            low, a, nll_a = a, b, nll_b
            b = low + _GOLDEN * (high - low)
            nll_b = nll(b)
    return 2 / (low + high)
