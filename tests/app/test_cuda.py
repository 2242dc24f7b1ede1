"""On a GPU: the service runs the model on CUDA (bf16 autocast, channels_last) and agrees with the CPU."""

from __future__ import annotations

import httpx
import pytest
import torch

from tests.app.conftest import files, picture, png

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_service_on_cuda_agrees_with_cpu(serve) -> None:
    uploads = files(*((f"{i}.png", png(picture(seed=i))) for i in range(8)))
    gpu = serve(device="cuda")
    cpu = serve(device="cpu")
    health = httpx.get(f"{gpu.url}/health").json()
    assert health["device"].startswith("cuda")
    on_gpu = httpx.post(f"{gpu.url}/predict", params={"top_k": 10}, files=uploads).json()["predictions"]
    on_cpu = httpx.post(f"{cpu.url}/predict", params={"top_k": 10}, files=uploads).json()["predictions"]
    for g, c in zip(on_gpu, on_cpu, strict=True):
        probabilities_g = {t["label"]: t["probability"] for t in g["top_k"]}
        probabilities_c = {t["label"]: t["probability"] for t in c["top_k"]}
        for label, p in probabilities_c.items():
            assert probabilities_g[label] == pytest.approx(p, abs=2e-3)  # bf16 autocast vs float32
