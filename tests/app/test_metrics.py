"""/metrics in Prometheus format: counts by status, latency, queue, batches, load time."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.app.helpers import LiveServer, files, png


def test_metrics_count_what_happened(server: LiveServer, client: httpx.Client) -> None:
    ok_before = _sample(client, "alexnet_requests_total", route="/predict", status="200")
    bad_before = _sample(client, "alexnet_requests_total", route="/predict", status="415")
    images_before = _sample(client, "alexnet_images_classified_total")
    assert client.post("/predict", files=files(("a.png", png()), ("b.png", png()))).status_code == 200
    assert client.post("/predict", files=files(("a.txt", b"text"))).status_code == 415
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    assert _sample(client, "alexnet_requests_total", route="/predict", status="200") == ok_before + 1
    assert _sample(client, "alexnet_requests_total", route="/predict", status="415") == bad_before + 1
    assert _sample(client, "alexnet_images_classified_total") == images_before + 2
    assert _sample(client, "alexnet_request_latency_seconds_count", route="/predict") >= 2
    assert _sample(client, "alexnet_queue_wait_seconds_count") >= 1
    assert _sample(client, "alexnet_batch_size_images_count") >= 1
    assert _sample(client, "alexnet_queue_depth_images") == 0
    assert _sample(client, "alexnet_model_load_seconds") > 0
    assert _sample(client, "alexnet_ready") == 1


def test_apps_have_separate_registries(server: LiveServer, serve) -> None:
    other = serve()
    httpx.post(f"{other.url}/predict", files=files(("a.png", png())))
    assert other.metric("alexnet_images_classified_total") == 1  # its own count, not the shared server's


def _sample(client: httpx.Client, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0
