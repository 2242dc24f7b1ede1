"""The baseline: a FastAPI endpoint written the way most tutorials write one.

Deliberately naive, because that is what it measures: the model is loaded at import, the endpoint is a
plain ``def`` (FastAPI runs it in its thread pool), each upload is opened with PIL at full size,
resized straight to the network's input with torchvision's Resize, turned into a tensor with ToTensor
and normalized; then one forward pass for the request's images. No batching across requests, no reduced
decoding of large JPEGs. Only the weights and the mean/std come from the same checkpoint as the other
servers, through the project's loader, so every server runs the same network; like a tutorial's endpoint it
computes no calibration and no abstention score (which the service and the LitServe peer pay for), a
difference in its favour.

With ``BENCH_MODEL_FREE=1`` (the benchmark's ``--model-free``) the network's forward pass is a constant
(``benchmarks.servers.model_free``); the decode, the transforms and the response stay as they are.

Run: BENCH_CHECKPOINT=ckpt.safetensors BENCH_DEVICE=cpu uvicorn benchmarks.servers.plain_fastapi:app
"""

from __future__ import annotations

import os

import torch
from fastapi import FastAPI, File, UploadFile
from PIL import Image
from torchvision import transforms

from benchmarks.servers import model_free
from models import load_checkpoint

if os.environ.get("BENCH_MODEL_FREE") == "1":
    model_free.install()  # before the model is built: build_model then returns the constant network
checkpoint = load_checkpoint(os.environ["BENCH_CHECKPOINT"])
device = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))
model = checkpoint.build_model().to(device).eval()
spec = checkpoint.preprocess
transform = transforms.Compose(
    [
        transforms.Resize((spec.input_size, spec.input_size)),
        transforms.ToTensor(),
        transforms.Normalize(spec.mean, spec.std),
    ]
)

app = FastAPI(title="plain FastAPI baseline")


@app.get("/health")
def health() -> dict[str, str]:
    """Ready as soon as the module is imported (the model was loaded at import)."""
    return {"status": "ok"}


@app.post("/predict")
def predict(file: list[UploadFile] = File(...)) -> dict[str, list[dict[str, object]]]:  # noqa: B008 (FastAPI idiom)
    """Classify the uploaded images, one forward pass per request."""
    images = [transform(Image.open(upload.file).convert("RGB")) for upload in file]
    batch = torch.stack(images).to(device)  # (N, 3, 224, 224)
    with torch.no_grad():
        probabilities = torch.softmax(model(batch), dim=1)  # (N, classes)
    best = probabilities.max(dim=1)
    return {
        "predictions": [
            {"filename": upload.filename, "label": checkpoint.classes[i], "probability": p}
            for upload, i, p in zip(file, best.indices.tolist(), best.values.tolist(), strict=True)
        ]
    }
