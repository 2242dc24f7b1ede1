"""The JSON the service answers with, as pydantic classes (they also write the OpenAPI page's schemas).

``prediction_dicts`` is the one place an answer is shaped from the inference pass's probabilities: /predict
sends it as JSON bytes (``PredictResponse.render``: per request, after the shared pass, without pydantic's
validation, which cost more than the rest of the answer) and ``alexnet-predict`` validates it
(``PredictResponse.build``). The classes stay the schema of both.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models import CIFAR10_CLASSES, DEFAULT_CHECKPOINT, INPUT_SIZE
from models.abstention import SCORES

PROBABILITY_DECIMALS = 6  # float32 sums vary ~1e-7 with the batch an image ran in; nobody needs more
Status = Literal["starting", "warming_up", "ready", "stopping", "failed"]

EXAMPLE_SHA = "3f1c9a0d5e7b2c4a6f8e0d1c3b5a79684e2f0a1b3c5d7e9f1a2b4c6d8e0f1a2b"
EXAMPLE_MODEL = {
    "name": "alexnet",
    "checkpoint": Path(DEFAULT_CHECKPOINT).name,
    "weights_sha256": EXAMPLE_SHA,
    "classes": list(CIFAR10_CLASSES),
    "input_size": INPUT_SIZE,
    "temperature": 1.42,
    "calibrated": True,
    "abstention": {
        "score": "mahalanobis",
        "threshold": -1520.5,
        "target": "at most 5% of the correctly classified validation images flagged",
    },
}


class ClassProbability(BaseModel):
    label: str = Field(description="class name")
    index: int = Field(description="class index in the model's output")
    probability: float = Field(ge=0, le=1, description="calibrated softmax probability, rounded to 6 decimals")


class ImagePrediction(BaseModel):
    filename: str = Field(description="the uploaded file's name, as sent")
    label: str = Field(description="the most probable class (always one of the model's classes)")
    probability: float = Field(ge=0, le=1, description="its probability")
    confident: bool | None = Field(
        description="false: the image looks unlike the training data (maybe none of these classes): do not trust "
        "the label; true: it passed the model's abstention threshold; null: the model has no abstention rule"
    )
    ood_score: float | None = Field(
        description="the abstention score: higher means more like the training data; compared with the threshold"
    )
    top_k: list[ClassProbability] = Field(description="the k most probable classes, most probable first")


class AbstentionInfo(BaseModel):
    score: Literal[SCORES] = Field(description="msp, energy or mahalanobis (see docs/quality.md)")  # type: ignore[valid-type]
    threshold: float = Field(description="a score under this flags the prediction (confident: false)")
    target: str = Field(description="how the threshold was chosen")


class ModelInfo(BaseModel):
    name: str
    checkpoint: str = Field(description="the checkpoint's file name")
    weights_sha256: str = Field(description="checksum of the served weights, as recorded in the checkpoint")
    version: int = Field(1, description="1 at start, one more with each checkpoint loaded while serving")
    classes: list[str]
    input_size: int = Field(description="pixels: images are reduced to 32x32, then upsampled to this")
    temperature: float = Field(
        description="the logits are divided by this before the softmax (fitted on the validation split; 1: not)"
    )
    calibrated: bool = Field(description="whether a temperature was fitted, so that probabilities mean what they say")
    abstention: AbstentionInfo | None = Field(description="how predictions are flagged; null: they are not")
    stand_in: bool = Field(
        False, description="trained by a short CPU stand-in recipe (--recipe cpu or cpu-first), not the real model"
    )


class PredictResponse(BaseModel):
    """One prediction per uploaded file, in request order, and the model that made them."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "predictions": [
                        {
                            "filename": "cat.jpg",
                            "label": "cat",
                            "probability": 0.913002,
                            "confident": True,
                            "ood_score": -1204.7,
                            "top_k": [
                                {"label": "cat", "index": 3, "probability": 0.913002},
                                {"label": "dog", "index": 5, "probability": 0.061437},
                                {"label": "frog", "index": 6, "probability": 0.009876},
                            ],
                        }
                    ],
                    "model": EXAMPLE_MODEL,
                }
            ]
        }
    )

    predictions: list[ImagePrediction]
    model: ModelInfo

    @classmethod
    def build(
        cls, filenames: Sequence[str], rows: np.ndarray, model: ModelInfo, top_k: int, threshold: float | None = None
    ) -> PredictResponse:
        """The answer as a validated model (``alexnet-predict``); /predict sends ``render``'s bytes, the same JSON."""
        return cls.model_validate(
            {"predictions": prediction_dicts(filenames, rows, model, top_k, threshold), "model": model}
        )

    @staticmethod
    def render(
        filenames: Sequence[str],
        rows: np.ndarray,
        model: ModelInfo,
        model_json: bytes,
        top_k: int,
        threshold: float | None = None,
    ) -> bytes:
        """The answer's JSON, built without pydantic: /predict's hot path. ``model_json`` is ``model`` dumped
        once, at start-up. The same document as ``build(...).model_dump_json()`` (tests/app/test_schemas.py)."""
        predictions = _COMPACT_JSON.encode(prediction_dicts(filenames, rows, model, top_k, threshold))
        return b'{"predictions":' + predictions.encode() + b',"model":' + model_json + b"}"


_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))  # made once: json.dumps with options makes one per call


def prediction_dicts(
    filenames: Sequence[str], rows: np.ndarray, model: ModelInfo, top_k: int, threshold: float | None = None
) -> list[dict[str, Any]]:
    """One prediction per file from its row of the pass (probabilities and score), with the ``top_k`` best
    classes and the verdict at ``threshold`` (default: the model's); the fields of ``ImagePrediction``.

    Plain Python on the rows' lists: for a few rows of ten classes numpy's per-call cost is most of the work.
    """
    rule = model.abstention
    limit = threshold if threshold is not None else rule.threshold if rule else None
    classes = model.classes
    predictions = []
    rows_probabilities = rows["probabilities"].tolist()  # float32 -> float: the values rounded are the pass's
    scores = rows["score"].tolist()
    for name, probabilities, score in zip(filenames, rows_probabilities, scores, strict=True):
        # Most probable first; a tie keeps the lower index first (a stable sort on the negated values)
        best = sorted(range(len(probabilities)), key=lambda i: -probabilities[i])[:top_k]
        top = [
            {"label": classes[i], "index": i, "probability": round(probabilities[i], PROBABILITY_DECIMALS)}
            for i in best
        ]
        score = round(score, PROBABILITY_DECIMALS) if math.isfinite(score) else score
        predictions.append(
            {
                "filename": name,
                "label": top[0]["label"],
                "probability": top[0]["probability"],
                "confident": None if limit is None else score >= limit,
                # JSON has no infinities: an infinite score is sent as null, as pydantic sends it
                "ood_score": None if rule is None or not math.isfinite(score) else score,
                "top_k": top,
            }
        )
    return predictions


class HealthResponse(BaseModel):
    """Readiness: 200 when the model is loaded and warmed up, else 503 with the same shape."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"status": "ready", "ready": True, "device": "cpu", "model": EXAMPLE_MODEL, "detail": None}]
        }
    )

    status: Status
    ready: bool
    device: str | None = Field(None, description="where the model runs, e.g. cpu or cuda:0")
    model: ModelInfo | None = None
    detail: str | None = Field(None, description="why the service is not ready, when it is not")


class LiveResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "alive"}]})

    status: Literal["alive"] = "alive"


class ErrorResponse(BaseModel):
    """Every error: what went wrong, naming the offending file where there is one."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"detail": "file 'notes.txt': not a supported image (accepted: JPEG, ...)"}]}
    )

    detail: str
