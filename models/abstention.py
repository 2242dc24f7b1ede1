""" "None of these": a score per image of how much it looks like the training data, and a threshold under which
a prediction is flagged as not to be trusted.

Three scores, each higher for images more like CIFAR-10:

- ``msp``: the calibrated maximum softmax probability (Hendrycks & Gimpel 2017);
- ``energy``: T * logsumexp(logits / T), the negative free energy (Liu et al. 2020), which keeps the size of
  the logits that a softmax normalises away;
- ``mahalanobis``: minus the smallest squared Mahalanobis distance from the L2-normalised penultimate features
  to the class means, under one covariance shared by the classes (Lee et al. 2018; normalising first, as in
  Sehwag et al. 2021, because unnormalised noise images have small features that sit close to every mean:
  measured on the CPU stand-in, a mean AUROC of 0.45 without it, 0.73 with it, docs/quality.md), fitted on
  the training split. It sees inputs far from every class in feature space, which a softmax can still
  answer with a confident class.

The trainer measures all three and keeps the best (training/abstention.py); the checkpoint stores which one,
its threshold and, for ``mahalanobis``, the fitted means and precision as tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

SCORES: tuple[str, ...] = ("msp", "energy", "mahalanobis")
SHRINKAGE = 0.1  # share of the covariance replaced by its mean variance: 4096 features need it to invert
TENSOR_PREFIX = "abstention."  # how the fitted tensors are named in the checkpoint


class DegenerateFeatures(ValueError):
    """The training features cannot be fitted (they do not vary, or are not finite); the message says which."""


@dataclass(frozen=True)
class FeatureGaussian:
    """Class means and one shared precision of the penultimate features, kept in the form that scores fastest.

    d_c(f) = (f - m_c)' P (f - m_c) = f'Pf - 2 f'(P m_c) + m_c'P m_c: one matrix-vector product per image.
    """

    precision: torch.Tensor  # (D, D) float32
    projected_means: torch.Tensor  # (C, D) float32: P m_c
    offsets: torch.Tensor  # (C,) float32: m_c' P m_c

    @classmethod
    def fit(cls, features: torch.Tensor, labels: torch.Tensor, num_classes: int, chunk: int = 4096) -> FeatureGaussian:
        """From the features (N, D) of the training images and their labels (N,), summed in float64 by chunks."""
        labels = labels.long()
        features = normalise(features)
        size = features.shape[1]
        sums = torch.zeros(num_classes, size, dtype=torch.float64)
        gram = torch.zeros(size, size, dtype=torch.float64)
        for start in range(0, len(features), chunk):
            x = features[start : start + chunk].double()
            sums.index_add_(0, labels[start : start + chunk], x)
            gram += x.T @ x
        counts = torch.bincount(labels, minlength=num_classes).double()  # (C,)
        means = sums / counts.clamp_min(1)[:, None]  # (C, D)
        # Within-class scatter: sum of f f' over all images minus each class's n_c m_c m_c'.
        covariance = (gram - (means.T * counts) @ means) / max(1, len(features) - num_classes)  # (D, D)
        scale = covariance.diagonal().mean()
        if not (torch.isfinite(covariance).all() and scale > 0):
            # A collapsed network (every ReLU dead) gives all-zero features: nothing to fit, and the shrunk
            # covariance would be the zero matrix, which has no inverse.
            what = "are not finite" if not torch.isfinite(covariance).all() else "do not vary within the classes"
            raise DegenerateFeatures(
                f"the penultimate features of the {len(features)} training images {what} "
                "(a collapsed network?): no Mahalanobis fit"
            )
        shrunk = (1 - SHRINKAGE) * covariance + SHRINKAGE * scale * torch.eye(size, dtype=torch.float64)
        precision, info = torch.linalg.inv_ex(shrunk)
        if info.item() != 0:
            raise DegenerateFeatures(
                f"the covariance of the penultimate features of the {len(features)} training "
                "images cannot be inverted: no Mahalanobis fit"
            )
        projected = means @ precision  # (C, D)
        return cls(precision.float(), projected.float(), (projected * means).sum(dim=1).float())

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N,): minus the squared distance to the nearest class mean."""
        f = normalise(features.float())
        quadratic = ((f @ self.precision) * f).sum(dim=1, keepdim=True)  # (N, 1)
        distances = quadratic - 2 * f @ self.projected_means.T + self.offsets  # (N, C)
        return -distances.min(dim=1).values

    def to(self, device: torch.device) -> FeatureGaussian:
        """The same fit on ``device``, where the features are: the score is one (D, D) product per image."""
        return FeatureGaussian(*(t.to(device) for t in (self.precision, self.projected_means, self.offsets)))

    def tensors(self) -> dict[str, torch.Tensor]:
        fields = {"precision": self.precision, "projected_means": self.projected_means, "offsets": self.offsets}
        return {TENSOR_PREFIX + name: tensor.contiguous() for name, tensor in fields.items()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> FeatureGaussian:
        return cls(*(tensors[TENSOR_PREFIX + name].float() for name in ("precision", "projected_means", "offsets")))


def normalise(features: torch.Tensor) -> torch.Tensor:
    """Each feature vector scaled to unit length (all-zero vectors stay zero)."""
    return features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)


def ood_scores(
    name: str,
    logits: torch.Tensor,
    features: torch.Tensor | None,
    temperature: float,
    gaussian: FeatureGaussian | None = None,
) -> torch.Tensor:
    """One score per image (N,), higher for images more like the training data."""
    if name == "msp":
        return (logits / temperature).softmax(dim=1).max(dim=1).values
    if name == "energy":
        return temperature * torch.logsumexp(logits / temperature, dim=1)
    if name == "mahalanobis":
        if gaussian is None or features is None:
            raise ValueError("the mahalanobis score needs the penultimate features and the fitted class means")
        return gaussian.score(features)
    raise ValueError(f"unknown score {name!r} (choose from {', '.join(SCORES)})")


@dataclass(frozen=True)
class Abstention:
    """Which score, and the threshold under which a prediction is flagged ("uncertain": maybe none of these)."""

    score: str
    threshold: float
    gaussian: FeatureGaussian | None = None  # for ``mahalanobis`` only

    @property
    def needs_features(self) -> bool:
        return self.score == "mahalanobis"

    def scores(self, logits: torch.Tensor, features: torch.Tensor | None, temperature: float) -> torch.Tensor:
        return ood_scores(self.score, logits, features, temperature, self.gaussian)

    def to(self, device: torch.device) -> Abstention:
        """The same rule with its fitted tensors on ``device``."""
        return replace(self, gaussian=self.gaussian.to(device) if self.gaussian else None)
