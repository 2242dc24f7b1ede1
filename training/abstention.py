"""Choosing how the model says "none of these": the scores of ``models.abstention`` measured, the best kept.

For each score (calibrated MSP, energy, Mahalanobis) the threshold is the value under which
``TARGET_FLAGGED`` (5%) of the correctly classified validation images fall: at most 5% of right answers on
data like the training data are flagged. The score kept is the one with the highest mean AUROC of the
validation split against the out-of-distribution sets; the test split is only reported (AUROC, FPR at 95%
TPR, and at the threshold the share of each set flagged beside the share of correct test answers flagged).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from models import Classifier
from models.abstention import SCORES, DegenerateFeatures, FeatureGaussian, ood_scores
from models.inference import to_probabilities
from training.dataset import Split
from training.html_report import hardest_images
from training.ood_sets import ood_sets

log = logging.getLogger(__name__)

TARGET_FLAGGED = 0.05  # share of correct validation answers the threshold may flag
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
    classifier: Classifier, temperature: float, splits: dict[str, Split], sets: dict[str, np.ndarray],
    num_classes: int, batch_size: int | None = None,
    test_outputs: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:  # fmt: skip
    """(the checkpoint's ``abstention`` metadata, its tensors, the full comparison for metrics.json).

    ``splits``: "train" (for the Mahalanobis fit), "val" (thresholds and the choice) and "test" (the report);
    ``test_outputs``: the test split's logits and features when the caller has them already.
    """
    train, val, test = splits["train"], splits["val"], splits["test"]
    train_logits, train_features = _scored(classifier, train.images, batch_size)
    del train_logits
    gaussian = FeatureGaussian.fit(train_features, torch.from_numpy(train.labels), num_classes)
    del train_features
    outputs = {"val": _scored(classifier, val.images, batch_size),
               "test": test_outputs or _scored(classifier, test.images, batch_size)}  # fmt: skip
    outputs |= {name: _scored(classifier, images, batch_size) for name, images in sets.items()}
    correct = {name: outputs[name][0].argmax(dim=1) == torch.from_numpy(split.labels)
               for name, split in (("val", val), ("test", test))}  # fmt: skip
    report = {}
    for score in SCORES:
        values = {name: ood_scores(score, logits, features, temperature, gaussian)
                  for name, (logits, features) in outputs.items()}  # fmt: skip
        report[score] = _compare(values, correct, list(sets))
    chosen = max(SCORES, key=lambda score: report[score]["val_mean_auroc"])
    metadata = {
        "score": chosen, "threshold": report[chosen]["threshold"], "target": TARGET,
        "chosen_by": "the highest mean AUROC of the validation split against the out-of-distribution sets",
        "sets": list(sets),
    }  # fmt: skip
    log.info("abstention: %s kept (mean validation AUROC %s), threshold %.4g", chosen,
             ", ".join(f"{s} {report[s]['val_mean_auroc']:.3f}" for s in SCORES), metadata["threshold"])  # fmt: skip
    return metadata, gaussian.tensors() if chosen == "mahalanobis" else {}, {**metadata, "scores": report}


def _compare(values: dict[str, torch.Tensor], correct: dict[str, torch.Tensor], sets: list[str]) -> dict[str, Any]:
    """One score: its threshold, and per OOD set the AUROC against validation and test, FPR95 and flagged share."""
    threshold = float(torch.quantile(values["val"][correct["val"]].double(), TARGET_FLAGGED))
    flagged = lambda name: float((values[name] < threshold).double().mean())  # noqa: E731
    test = values["test"]
    rows = {
        name: {"auroc": auroc(test, values[name]), "val_auroc": auroc(values["val"], values[name]),
               "fpr95": fpr_at_95_tpr(test, values[name]), "flagged": flagged(name)}
        for name in sets
    }  # fmt: skip
    return {
        "threshold": threshold,
        "val_mean_auroc": float(np.mean([row["val_auroc"] for row in rows.values()])) if rows else 0.0,
        "test_mean_auroc": float(np.mean([row["auroc"] for row in rows.values()])) if rows else 0.0,
        "test_correct_flagged": float((test[correct["test"]] < threshold).double().mean()),
        "test_wrong_flagged": float((test[~correct["test"]] < threshold).double().mean()),
        "sets": rows,
    }


def judge(
    classifier: Classifier, temperature: float, splits: dict[str, Split], classes: tuple[str, ...],
    with_ood: bool = True, batch_size: int | None = None,
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any] | None, list[dict[str, Any]]]:  # fmt: skip
    """What the end of a run and ``alexnet-evaluate`` add beyond accuracy and calibration: (the abstention rule,
    its tensors, the comparison of the scores, the hardest test images with their verdicts).

    Without a validation split (or with ``with_ood`` off) there is no rule: ({}, {}, None, hardest); when the
    training features cannot be fitted (a collapsed network) there is none either, and the comparison says why:
    ({}, {}, {"refused": the sentence}, hardest).
    """
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
    return rule, extras, comparison, hardest_images(test.images, test.labels, probabilities, classes, confident)
