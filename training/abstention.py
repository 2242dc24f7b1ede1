"""Choosing how the model says "none of these": the scores of ``models.abstention`` measured, the best kept.

For each score (calibrated MSP, energy, Mahalanobis) the threshold is the value under which
``TARGET_FLAGGED`` (5%) of the correctly classified validation images fall: at most 5% of right answers on
data like the training data are flagged. The score kept is the one with the highest mean AUROC of the
validation split against the out-of-distribution sets; the test split is only reported (AUROC, FPR at 95%
TPR, and at the threshold the share of each set flagged beside the share of correct test answers flagged).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from models import Classifier
from models.abstention import SCORES, DegenerateFeatures, FeatureGaussian, ood_scores
from models.inference import to_probabilities
from training.ood_sets import ood_sets
from training.report_page import hardest_images
from training.splits import Split, stratified_indices

log = logging.getLogger(__name__)

TARGET_FLAGGED = 0.05  # share of correct validation answers the threshold may flag
# Training images the Mahalanobis statistics are fitted on at most, stratified: on the 2-core CPU at 64 px the
# fit took 75 s on CIFAR-10's 45,000 (56 s of forward passes, 19 s of float64 sums) and 17 s on 10,000.
FIT_SAMPLE = 10_000
TARGET = "at most 5% of the correctly classified validation images flagged"


def auroc(inside: torch.Tensor, outside: torch.Tensor) -> float:
    """P(an in-distribution score > an out-of-distribution one), ties counted half (the Mann-Whitney U)."""
    scores = torch.cat([inside, outside]).double()
    _, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)  # sorted distinct values
    average_rank = counts.cumsum(0).double() - (counts.double() - 1) / 2  # tied values share their mean rank
    ranks = average_rank[inverse]
    u = ranks[: len(inside)].sum() - len(inside) * (len(inside) + 1) / 2
    return float(u / (len(inside) * len(outside)))


def fpr_at_95_tpr(inside: torch.Tensor, outside: torch.Tensor) -> float:
    """Share of out-of-distribution images kept (not flagged) when 95% of the in-distribution ones are kept."""
    threshold = torch.quantile(inside.double(), 0.05)
    return float((outside.double() >= threshold).double().mean())


def _scored(classifier: Classifier, images: np.ndarray, batch_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    return classifier.logits_and_features(torch.from_numpy(images), batch_size=batch_size)


def fit_abstention(
    classifier: Classifier,
    temperature: float,
    splits: dict[str, Split],
    sets: dict[str, np.ndarray],
    num_classes: int,
    batch_size: int | None = None,
    test_outputs: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """(the checkpoint's ``abstention`` metadata, its tensors, the full comparison for metrics.json).

    ``splits``: "train" (for the Mahalanobis fit, on at most ``FIT_SAMPLE`` of its images, stratified), "val"
    (thresholds and the choice) and "test" (the report);
    ``test_outputs``: the test split's logits and features when the caller has them already.
    """
    train, val, test = splits["train"], splits["val"], splits["test"]
    train = train.take(stratified_indices(train.labels, FIT_SAMPLE, np.random.default_rng(0)))
    train_logits, train_features = _scored(classifier, train.images, batch_size)
    del train_logits
    gaussian = FeatureGaussian.fit(train_features, torch.from_numpy(train.labels), num_classes)
    del train_features
    outputs = {
        "val": _scored(classifier, val.images, batch_size),
        "test": test_outputs or _scored(classifier, test.images, batch_size),
    }
    outputs |= {name: _scored(classifier, images, batch_size) for name, images in sets.items()}
    correct = {
        name: outputs[name][0].argmax(dim=1) == torch.from_numpy(split.labels)
        for name, split in (("val", val), ("test", test))
    }
    report = {}
    for score in SCORES:
        values = {
            name: ood_scores(score, logits, features, temperature, gaussian)
            for name, (logits, features) in outputs.items()
        }
        report[score] = _compare(values, correct, list(sets))
    chosen = max(SCORES, key=lambda score: report[score]["val_mean_auroc"])
    metadata = {
        "score": chosen,
        "threshold": report[chosen]["threshold"],
        "target": TARGET,
        "chosen_by": "the highest mean AUROC of the validation split against the out-of-distribution sets",
        "sets": list(sets),
    }
    log.info(
        "abstention: %s kept (mean validation AUROC %s), threshold %.4g",
        chosen,
        ", ".join(f"{s} {report[s]['val_mean_auroc']:.3f}" for s in SCORES),
        metadata["threshold"],
    )
    return metadata, gaussian.tensors() if chosen == "mahalanobis" else {}, {**metadata, "scores": report}


def _compare(values: dict[str, torch.Tensor], correct: dict[str, torch.Tensor], sets: list[str]) -> dict[str, Any]:
    """One score: its threshold, and per OOD set the AUROC against validation and test, FPR95 and flagged share."""
    threshold = float(torch.quantile(values["val"][correct["val"]].double(), TARGET_FLAGGED))
    flagged = lambda name: float((values[name] < threshold).double().mean())  # noqa: E731
    test = values["test"]
    rows = {
        name: {
            "auroc": auroc(test, values[name]),
            "val_auroc": auroc(values["val"], values[name]),
            "fpr95": fpr_at_95_tpr(test, values[name]),
            "flagged": flagged(name),
        }
        for name in sets
    }
    return {
        "threshold": threshold,
        "val_mean_auroc": float(np.mean([row["val_auroc"] for row in rows.values()])) if rows else 0.0,
        "test_mean_auroc": float(np.mean([row["auroc"] for row in rows.values()])) if rows else 0.0,
        "test_correct_flagged": float((test[correct["test"]] < threshold).double().mean()),
        "test_wrong_flagged": float((test[~correct["test"]] < threshold).double().mean()),
        "sets": rows,
    }


@dataclass(frozen=True)
class Judgement:
    """What the end of a run and ``alexnet-evaluate`` add beyond accuracy and calibration.

    Without a validation split (or with the OOD comparison off) there is no rule: ``rule`` and ``tensors`` are
    empty and ``comparison`` is None; when the training features cannot be fitted (a collapsed network) there is
    none either, and ``comparison`` says why: ``{"refused": the sentence}``.
    """

    rule: dict[str, Any]  # the checkpoint's ``abstention`` metadata: score, threshold, target; {} for none
    tensors: dict[str, torch.Tensor]  # its fitted tensors (mahalanobis), named for the checkpoint
    comparison: dict[str, Any] | None  # every score measured, for metrics.json and the report
    hardest: list[dict[str, Any]]  # the hardest test images with their verdicts, for the report


def judge(
    classifier: Classifier,
    temperature: float,
    splits: dict[str, Split],
    classes: tuple[str, ...],
    with_ood: bool = True,
    batch_size: int | None = None,
) -> Judgement:
    """The abstention rule fitted and compared (``fit_abstention``) and the hardest test images."""
    test = splits["test"]
    test_logits, test_features = _scored(classifier, test.images, batch_size)
    rule: dict[str, Any] = {}
    extras: dict[str, torch.Tensor] = {}
    comparison = None
    if with_ood and len(splits["val"]):
        sets = ood_sets(test.images.shape[-1])
        try:
            rule, extras, comparison = fit_abstention(
                classifier, temperature, splits, sets, len(classes), batch_size, (test_logits, test_features)
            )
        except DegenerateFeatures as exc:  # the checkpoint is still written, without a rule
            log.warning("abstention: no rule (predictions will carry no verdict): %s", exc)
            comparison = {"refused": str(exc)}
    confident = None
    if rule:
        gaussian = FeatureGaussian.from_tensors(extras) if extras else None
        scores = ood_scores(rule["score"], test_logits, test_features, temperature, gaussian)
        confident = (scores >= rule["threshold"]).numpy()
    probabilities = to_probabilities([test_logits], temperature).numpy()
    hardest = hardest_images(test.images, test.labels, probabilities, classes, confident)
    return Judgement(rule, extras, comparison, hardest)
