"""The JSON the service answers with, as pydantic classes (they also write the OpenAPI page's schemas)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.predictor import Classification

EXAMPLE_SHA = "3f1c9a0d5e7b2c4a6f8e0d1c3b5a79684e2f0a1b3c5d7e9f1a2b4c6d8e0f1a2b"
EXAMPLE_MODEL = {
    "name": "alexnet",
    "checkpoint": "alexnet-cifar10.safetensors",
    "weights_sha256": EXAMPLE_SHA,
    "classes": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    "input_size": 224,
}


class ClassProbability(BaseModel):
    label: str = Field(description="class name")
    index: int = Field(description="class index in the model's output")
    probability: float = Field(ge=0, le=1, description="softmax probability, rounded to 6 decimals")


class ImagePrediction(BaseModel):
    filename: str = Field(description="the uploaded file's name, as sent")
    label: str = Field(description="the most probable class")
    probability: float = Field(ge=0, le=1, description="its probability")
    top_k: list[ClassProbability] = Field(description="the k most probable classes, most probable first")


class ModelInfo(BaseModel):
    name: str
    checkpoint: str = Field(description="the checkpoint's file name")
    weights_sha256: str = Field(description="checksum of the served weights, as recorded in the checkpoint")
    classes: list[str]
    input_size: int = Field(description="pixels: images are reduced to 32x32, then upsampled to this")


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
        cls, filenames: Sequence[str], results: Sequence[Classification], model_info: dict[str, Any], top_k: int
    ) -> PredictResponse:
        """The one place /predict's and alexnet-predict's answers are assembled."""
        predictions = [
            ImagePrediction(filename=name, label=r.label, probability=r.probability, top_k=r.top_k[:top_k])  # type: ignore[arg-type]
            for name, r in zip(filenames, results, strict=True)
        ]
        return cls(predictions=predictions, model=ModelInfo(**model_info))


class HealthResponse(BaseModel):
    """Readiness: 200 when the model is loaded and warmed up, else 503 with the same shape."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"status": "ready", "ready": True, "device": "cpu", "model": EXAMPLE_MODEL, "detail": None}]
        }
    )

    status: Literal["starting", "warming_up", "ready", "stopping", "failed"]
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
