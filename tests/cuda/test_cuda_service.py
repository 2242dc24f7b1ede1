"""The service on CUDA answers like the service on the CPU, over real HTTP on loopback.

All CUDA tests live in tests/cuda/ (``pytest tests/cuda``; scripts/gpu_check.sh runs them), skipped without a
GPU. The comparison (``tests.helpers.prediction_error``) is shown on the CPU to catch a wrong channel order or
layout at these tolerances (tests/models/test_inference.py).
"""

import sys
from dataclasses import replace

import httpx
import pytest
import torch

from benchmarks.payloads import make_uploads, multipart_body
from benchmarks.servers.catalog import server_specs
from benchmarks.servers.launch import LOOPBACK, ServerSpec, start_server
from tests.helpers import BF16_TOLERANCE, FP32_TOLERANCE, prediction_error, write_he_checkpoint

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _probabilities(spec: ServerSpec, body: bytes, content_type: str, log) -> torch.Tensor:
    """Every class's probability (N, 10) for each image, in class-index order."""
    with start_server(spec, log) as server:
        device = httpx.get(f"http://{LOOPBACK}:{server.port}/health").json()["device"]
        assert device.startswith(spec.env["ALEXNET_DEVICE"]), device  # cuda:0 on the GPU: no silent CPU fallback
        answer = httpx.post(f"http://{LOOPBACK}:{server.port}/predict?top_k=10", content=body,
                            headers={"Content-Type": content_type}, timeout=60)  # fmt: skip
    assert answer.status_code == 200, answer.text
    rows = []
    for prediction in answer.json()["predictions"]:
        by_index = {entry["index"]: entry["probability"] for entry in prediction["top_k"]}
        rows.append([by_index[i] for i in range(10)])
    return torch.tensor(rows)


@pytest.mark.parametrize(("precision", "tolerance"), [("fp32", FP32_TOLERANCE), ("auto", BF16_TOLERANCE)])
def test_service_on_cuda_matches_cpu(tmp_path, precision, tolerance):
    checkpoint = write_he_checkpoint(tmp_path / "he.safetensors")
    body, content_type = multipart_body(make_uploads("cifar", 8, tmp_path) + make_uploads("photo", 1, tmp_path))
    results = {}
    for device in ("cpu", "cuda"):
        spec = server_specs(sys.executable, checkpoint, device, 32, 5.0)["service"]
        spec = replace(spec, env={**spec.env, "ALEXNET_PRECISION": precision})  # auto: bf16 on CUDA, fp32 on CPU
        results[device] = _probabilities(spec, body, content_type, tmp_path / f"{device}.log")
    assert results["cpu"].shape == results["cuda"].shape == (9, 10)
    assert prediction_error(results["cuda"], results["cpu"]) <= tolerance
