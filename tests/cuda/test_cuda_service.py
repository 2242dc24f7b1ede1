"""The service on CUDA answers like the service on the CPU, over real HTTP on loopback.

All CUDA tests live in tests/cuda/. Marked ``cuda``: skipped without a GPU (run them with ``pytest -m cuda``
or scripts/gpu_check.sh).
"""

import sys
from dataclasses import replace

import httpx
import pytest
import torch

from benchmarks.payloads import make_uploads, multipart_body
from benchmarks.servers.catalog import server_specs
from benchmarks.servers.launch import LOOPBACK, ServerSpec, start_server

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _probabilities(spec: ServerSpec, body: bytes, content_type: str, log) -> list[list[float]]:
    """Every class's probability for each image, in class-index order."""
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
    return rows


@pytest.mark.parametrize(("precision", "tolerance"), [("fp32", 2e-3), ("auto", 3e-2)])
def test_service_on_cuda_matches_cpu(tiny_checkpoint, tmp_path, precision, tolerance):
    body, content_type = multipart_body(make_uploads("cifar", 8, tmp_path) + make_uploads("photo", 1, tmp_path))
    results = {}
    for device in ("cpu", "cuda"):
        spec = server_specs(sys.executable, tiny_checkpoint, device, 32, 5.0)["service"]
        spec = replace(spec, env={**spec.env, "ALEXNET_PRECISION": precision})  # auto: bf16 on CUDA, fp32 on CPU
        results[device] = _probabilities(spec, body, content_type, tmp_path / f"{device}.log")
    cpu, cuda = torch.tensor(results["cpu"]), torch.tensor(results["cuda"])  # (9, 10)
    assert cpu.shape == cuda.shape == (9, 10)
    torch.testing.assert_close(cuda, cpu, atol=tolerance, rtol=0)
