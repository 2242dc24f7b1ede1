"""A checkpoint loaded for serving: the one inference pass (``models.Classifier``) on its device, warm-up,
and what every answer says about the model.

uint8 images (N, S, S, 3), as uploads are decoded -> ``outputs``: one row per image with its calibrated
class probabilities and its out-of-distribution score (NaN when the checkpoint has no abstention rule), as
a numpy structured array, so the batcher still moves one array. The batcher calls ``outputs`` on the images
of a pass; ``alexnet-predict`` calls it on its files.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from app.schemas import AbstentionInfo, ModelInfo
from models import Checkpoint, Classifier, load_checkpoint, resolve_device
from models.checkpoint import load_report

logger = logging.getLogger(__name__)

MODEL_NAME = "alexnet"


class Predictor:
    """The network, its preprocessing and its class names, on one device. Several threads may call it at once."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        device: torch.device,
        *,
        source: str = "",
        precision: str = "auto",
        threshold: float | None = None,
        version: int = 1,
    ) -> None:
        """``threshold``: replaces the checkpoint's abstention threshold (the ALEXNET_OOD_THRESHOLD setting);
        ``version``: which load this is, 1 at start (app/model_loader.py counts the loads while serving)."""
        self.classifier = Classifier.from_checkpoint(checkpoint, device, precision)
        self.device = device
        self.classes = checkpoint.classes
        self.source_size = checkpoint.preprocess.source_size
        self.rows = np.dtype([("probabilities", np.float32, (len(self.classes),)), ("score", np.float32)])
        self.info = ModelInfo(
            name=MODEL_NAME,
            checkpoint=source,
            weights_sha256=checkpoint.weights_sha256,
            version=version,
            classes=list(checkpoint.classes),
            input_size=checkpoint.preprocess.input_size,
            temperature=checkpoint.temperature,
            calibrated="temperature" in checkpoint.calibration,
            abstention=abstention_info(checkpoint, threshold),
            stand_in=checkpoint.stand_in,
        )
        self.info_json = self.info.model_dump_json().encode()  # every answer carries it: dumped once
        _warn_if_incomplete(self.info, source or "the checkpoint", device, checkpoint.config.get("recipe"))
        # What GET /model.json tells: the checkpoint's own description of itself.
        self.metadata = {
            "model": self.info.model_dump(mode="json"),
            "format_version": checkpoint.format_version,
            "model_args": checkpoint.model_args,
            "preprocess": checkpoint.preprocess.to_dict(),
            "calibration": checkpoint.calibration,
            "abstention": checkpoint.abstention,
            "config": checkpoint.config,
            "metrics": checkpoint.metrics,
        }
        self.report: str | None = None  # report.html beside the checkpoint, when it is these weights' page

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str = "auto",
        precision: str = "auto",
        threshold: float | None = None,
        version: int = 1,
    ) -> Predictor:
        """Read and check a checkpoint (CheckpointError names the file) and place it on the device.

        A malformed or absent device raises ``models.DeviceError``.
        """
        checkpoint = load_checkpoint(path)
        name = Path(path).name
        device_ = resolve_device(device)
        predictor = cls(checkpoint, device_, source=name, precision=precision, threshold=threshold, version=version)
        predictor.report = load_report(path, checkpoint.weights_sha256)
        return predictor

    def outputs(self, images: np.ndarray) -> np.ndarray:
        """uint8 images (N, S, S, 3) -> (N,) rows of ``probabilities`` (classes,) float32 and ``score`` float32."""
        predictions = self.classifier.predict(torch.from_numpy(images).permute(0, 3, 1, 2))  # a view: (N, 3, S, S)
        rows = np.empty(len(images), dtype=self.rows)
        rows["probabilities"] = predictions.probabilities.numpy()
        rows["score"] = predictions.scores.numpy() if predictions.scores is not None else np.nan
        return rows

    def warm_up(self, batch_sizes: list[int]) -> float:
        """Run each batch size once (allocator, kernel choices, lazy init) so real requests don't pay for it."""
        start = time.perf_counter()
        for size in batch_sizes:
            self.outputs(np.zeros((size, self.source_size, self.source_size, 3), dtype=np.uint8))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        logger.debug("warmed up on %s at batch sizes %s in %.2f s", self.device, batch_sizes, seconds)
        return seconds


def abstention_info(checkpoint: Checkpoint, threshold: float | None) -> AbstentionInfo | None:
    """The rule answers report: the checkpoint's score and threshold, or ``threshold`` from the setting."""
    if not checkpoint.abstention:
        return None
    if threshold is not None:
        return AbstentionInfo(
            score=checkpoint.abstention["score"], threshold=threshold, target="set by ALEXNET_OOD_THRESHOLD"
        )
    return AbstentionInfo(
        score=checkpoint.abstention["score"],
        threshold=checkpoint.abstention["threshold"],
        target=checkpoint.abstention.get("target", ""),
    )


def _warn_if_incomplete(info: ModelInfo, name: str, device: torch.device, recipe: str | None) -> None:
    if not info.calibrated:
        logger.warning(
            "%s is not calibrated: its probabilities are the raw softmax (temperature 1); "
            "alexnet-evaluate --calibrate fits a temperature",
            name,
        )
    if info.abstention is None:
        logger.warning("%s has no abstention rule: predictions carry no verdict (confident: null)", name)
    if info.stand_in:
        logger.warning(
            "%s is a CPU stand-in (--recipe %s: a short run at 64 px), not the real model: expect "
            "low accuracy (its test accuracy is on /model); train the default recipe on a GPU for the "
            "real one",
            name,
            recipe,
        )
        if device.type == "cuda":
            logger.warning(
                "a GPU is here: `make serve` trains and serves the real model (%s, the stand-in, keeps "
                "a name of its own), or alexnet-train --output <another path>",
                name,
            )


def warmup_sizes(largest: int) -> list[int]:
    """1, 2, 4, ... up to ``largest``, and ``largest`` itself: the sizes the batcher mostly runs."""
    sizes = []
    size = 1
    while size < largest:
        sizes.append(size)
        size *= 2
    return [*sizes, largest]
